"""Faster inference beyond the paper: where a model's time goes, and faster engines for it.

:func:`profile_blocks` times every block of one forward pass (embeddings, each unit, the head),
which says what an engine has to speed up. Each deployment path turns a QA model into a function
from a batch to ``(start_logits, end_logits)``:
eager fp32 (the reference), bf16 autocast, ``torch.compile``, dynamic int8 quantisation of the
Linear layers, and an ONNX export run by ONNX Runtime. A speed-up only counts if the answers
survive it, so every path reports its largest logit difference from eager fp32 on the same
batch, and :func:`agreement_on_dev` scores a trained checkpoint on the dev set through a path.

Explained in book/07_speed.ipynb.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from waldorf.bench import Timing, make_inputs, measure_group
from waldorf.bench_report import summarise

DEPLOY_PATHS = ("eager_fp32", "bf16_autocast", "compile", "int8_dynamic", "onnxruntime")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
Logits = tuple[torch.Tensor, torch.Tensor]
# Name fragment of a block -> its kind, as in the components of waldorf.models.count_macs.
BLOCK_KINDS = (("embeddings", "embeddings"), ("conv_units", "conv"), ("sample", "resample"),
               ("transformer_units", "transformer"), ("encoder.layer", "transformer"),
               ("qa_outputs", "head"))


def model_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The top-level blocks of a QA model in forward order: embeddings, every unit, the head.

    Descends into the base model, module lists and wrappers of one list (BERT's encoder).
    Explained in book/07_speed.ipynb.
    """
    def walk(prefix: str, module: nn.Module):
        for name, child in module.named_children():
            inner = list(child.children())
            if child is getattr(model, "base_model", None):
                yield from walk(prefix, child)
            elif isinstance(child, nn.ModuleList) or (
                    len(inner) == 1 and isinstance(inner[0], nn.ModuleList)):
                yield from walk(f"{prefix}{name}.", child)
            else:
                yield prefix + name, child

    return list(walk("", model))


def profile_blocks(model: nn.Module, seq_len: int, batch_size: int = 1, repeats: int = 20,
                   warmup: int = 2, seed: int = 0) -> list[dict]:
    """Where the time of one forward pass goes: median time and share of every block.

    Forward hooks time each block of :func:`model_blocks`; ``other`` is the rest of the pass
    (masks, reshapes, Python between blocks), so ``fraction`` sums to 1. Rows: block, kind
    (see BLOCK_KINDS), median_ms, iqr_ms, n, fraction. Explained in book/07_speed.ipynb.
    """
    device = next(model.parameters()).device
    sync = partial(torch.cuda.synchronize, device) if device.type == "cuda" else lambda: None
    inputs = make_inputs(batch_size, seq_len, model.config.vocab_size, device, seed)
    blocks, spent = model_blocks(model), {}

    def start(name: str, *_) -> None:
        sync()
        spent[name] = spent.get(name, 0.0) - time.perf_counter()

    def stop(name: str, *_) -> None:
        sync()
        spent[name] += time.perf_counter()

    times = {name: [] for name, _ in blocks} | {"other": []}
    handles = [hook for name, block in blocks for hook in (
        block.register_forward_pre_hook(partial(start, name)),
        block.register_forward_hook(partial(stop, name)))]
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                spent.clear()
                sync()
                begin = time.perf_counter()
                model(**inputs)
                sync()
                spent["other"] = time.perf_counter() - begin - sum(spent.values())
                for name, seconds in spent.items():
                    if i >= warmup:
                        times[name].append(seconds * 1e3)
    finally:
        for hook in handles:
            hook.remove()
    stats = {name: summarise(t) for name, t in times.items()}
    whole = sum(s["median"] for s in stats.values())
    return [dict(block=name, kind=next((k for key, k in BLOCK_KINDS if key in name), "other"),
                 median_ms=s["median"], iqr_ms=s["iqr"], n=s["n"], fraction=s["median"] / whole)
            for name, s in stats.items()]


class PathUnsupportedError(RuntimeError):
    """A path this device cannot run (e.g. int8 on CUDA). Explained in book/07_speed.ipynb."""


class SpanLogits(nn.Module):
    """A QA model with plain tensors in and out, as exporters and compilers want.

    Explained in book/07_speed.ipynb.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids) -> Logits:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids)
        return out.start_logits, out.end_logits  # (batch, seq) each


def _export_onnx(model: nn.Module, example: dict, path: Path) -> None:
    """Export with the torch.export-based exporter (the legacy TorchScript one silently bakes
    the example's shape into some ops). Batch and length stay dynamic where the model's code
    allows (Dim.AUTO); an axis the code specialises is fixed to the example's size."""
    auto = torch.export.Dim.AUTO
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SpanLogits(model).eval(), tuple(example[k] for k in INPUT_NAMES), str(path),
            dynamo=True, input_names=list(INPUT_NAMES), output_names=["start_logits", "end_logits"],
            dynamic_shapes={k: {0: auto, 1: auto} for k in INPUT_NAMES}, verbose=False)


def prepare_path(model: nn.Module, path: str, example: dict[str, torch.Tensor],
                 workdir: Path | None = None, compile_backend: str = "inductor"
                 ) -> Callable[[dict[str, torch.Tensor]], Logits]:
    """A function batch -> (start, end) logits running ``model`` by ``path`` (see DEPLOY_PATHS).

    ``example`` (a batch on the model's device) triggers compilation or export here, so
    failures surface before timing. Explained in book/07_speed.ipynb.
    """
    model = model.eval()
    device = next(model.parameters()).device
    plain = SpanLogits(model).eval()
    if path == "eager_fp32":
        runner = plain
    elif path == "bf16_autocast":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise PathUnsupportedError(f"{torch.cuda.get_device_name(device)} has no bf16")

        def runner(**batch):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return tuple(t.float() for t in plain(**batch))
    elif path == "compile":
        runner = torch.compile(plain, backend=compile_backend, dynamic=False)
    elif path == "int8_dynamic":
        if device.type != "cpu":
            raise PathUnsupportedError("dynamic int8 quantisation runs on CPU only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
            quantised = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
        runner = SpanLogits(quantised).eval()
    elif path == "onnxruntime":
        runner = _onnx_runner(model, example, device, workdir)
    else:
        raise ValueError(f"unknown deployment path {path!r}; choose from {DEPLOY_PATHS}")

    def fn(batch: dict[str, torch.Tensor]) -> Logits:
        return runner(**batch)

    fn.details = getattr(runner, "details", {})
    with torch.inference_mode():
        fn(example)  # compilation and first-run set-up happen here, outside timing
    return fn


def _onnx_runner(model: nn.Module, example: dict, device: torch.device,
                 workdir: Path | None) -> Callable[..., Logits]:
    import onnxruntime as ort

    workdir = Path(workdir or tempfile.mkdtemp(prefix="waldorf-onnx-"))
    file = workdir / f"{type(model).__name__}-{id(model)}.onnx"
    _export_onnx(model, example, file)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # same threads as the torch paths
    # Idle ORT threads spin for a while after each call by default, taking the cores from the
    # torch paths timed next to it in the interleaved schedule: let them sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = (["CUDAExecutionProvider"] if device.type == "cuda" else []) + [
        "CPUExecutionProvider"]
    session = ort.InferenceSession(str(file), options, providers=providers)

    def run(**batch):
        feed = {k: batch[k].cpu().numpy() for k in INPUT_NAMES}
        start, end = session.run(None, feed)
        return torch.from_numpy(start).to(device), torch.from_numpy(end).to(device)

    run.details = {"onnx_input_shape": session.get_inputs()[0].shape,  # str: a dynamic axis
                   "onnx_providers": session.get_providers()}
    return run


def root_cause(error: BaseException) -> str:
    """The innermost cause of an exception, on one line: exporters wrap the informative one.

    Explained in book/07_speed.ipynb.
    """
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines[:2])[:300]}"


def max_abs_diff(a: Logits, b: Logits) -> float:
    """Largest absolute difference of two (start, end) pairs. Explained in book/07_speed.ipynb."""
    pairs = zip(a, b, strict=True)
    return max(float((x.float().cpu() - y.float().cpu()).abs().max()) for x, y in pairs)


def compare_paths(models: dict[str, nn.Module], paths: Sequence[str], seq_len: int,
                  batch_size: int, timing: Timing | None = None, device: str | torch.device = "cpu",
                  seed: int = 0, compile_backend: str = "inductor") -> list[dict]:
    """Time every (model, path) interleaved and report agreement with eager fp32.

    Rows: model, path, status ("ok", "unsupported" or "failed"), error, prepare_s, median_ms,
    iqr_ms, n, speedup_vs_eager, max_abs_diff. Explained in book/07_speed.ipynb.
    """
    unknown = sorted(set(paths) - set(DEPLOY_PATHS))
    if unknown:
        raise ValueError(f"unknown deployment path {unknown[0]!r}; choose from {DEPLOY_PATHS}")
    device = torch.device(device)
    rows, fns = {}, {}
    for name, model in models.items():
        model = model.to(device).eval()
        vocab = getattr(model.config, "vocab_size", 30522)
        batch = make_inputs(batch_size, seq_len, vocab, device, seed)
        with torch.inference_mode():
            reference = SpanLogits(model)(**batch)
        for path in paths:
            row = rows[(name, path)] = dict(model=name, path=path, seq_len=seq_len,
                                            batch_size=batch_size, status="ok", error=None)
            started = time.perf_counter()
            try:
                fn = prepare_path(model, path, batch, compile_backend=compile_backend)
                with torch.inference_mode():
                    row["max_abs_diff"] = max_abs_diff(fn(batch), reference)
            except PathUnsupportedError as error:
                row.update(status="unsupported", error=str(error))
                continue
            except Exception as error:  # a failing compiler or exporter is a result, not a crash
                row.update(status="failed", error=root_cause(error))
                continue
            row.update(prepare_s=time.perf_counter() - started, **fn.details)
            fns[(name, path)] = partial(fn, batch)
    with torch.inference_mode():
        measured = measure_group(fns, timing or Timing(), device, seed, desc="deploy paths")
    for key, cell in measured.items():
        stats = summarise(cell["times_ms"])
        rows[key].update(median_ms=stats["median"], iqr_ms=stats["iqr"], n=stats["n"])
    for (name, _), row in rows.items():
        eager = rows.get((name, "eager_fp32"), {}).get("median_ms")
        if eager and row.get("median_ms"):
            row["speedup_vs_eager"] = eager / row["median_ms"]
    return list(rows.values())


def format_paths(rows: list[dict]) -> str:
    """The path comparison as text. Explained in book/07_speed.ipynb."""
    w = max((len(r["model"]) for r in rows), default=5) + 2
    lines = [f"{'model':<{w}}{'path':<15}{'median ms':>11}{'IQR ms':>9}{'x eager':>9}"
             f"{'max |diff|':>12}  status"]
    def num(row: dict, key: str, spec: str) -> str:
        return "-" if row.get(key) is None else format(row[key], spec)

    for r in rows:
        status = r["status"] if r["error"] is None else f"{r['status']}: {r['error']}"
        lines.append(f"{r['model']:<{w}}{r['path']:<15}{num(r, 'median_ms', '.1f'):>11}"
                     f"{num(r, 'iqr_ms', '.1f'):>9}{num(r, 'speedup_vs_eager', '.2f'):>9}"
                     f"{num(r, 'max_abs_diff', '.2e'):>12}  {status}")
    return "\n".join(lines)


class PathModel(nn.Module):
    """A model whose forward runs a deployment path, so the QA evaluation code can score it.

    Explained in book/07_speed.ipynb.
    """

    def __init__(self, model: nn.Module, fn: Callable[[dict], Logits]):
        super().__init__()
        self.model, self.fn = model, fn  # model: for .device and .config in the QA code

    def forward(self, input_ids, attention_mask, token_type_ids) -> QuestionAnsweringModelOutput:
        batch = dict(input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=token_type_ids)
        start, end = self.fn(batch)
        return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)


def agreement_on_dev(model_dir: str | Path, paths: Sequence[str] = DEPLOY_PATHS,
                     profile=None, examples=None) -> dict[str, dict]:
    """Dev-set scores of a trained checkpoint through each path: ``{path: metrics}``.

    Uses the profile's dev split unless ``examples`` are given. Explained in book/07_speed.ipynb.
    """
    from waldorf.config import get_profile
    from waldorf.data import load_squad
    from waldorf.qa import evaluate_qa, load_qa

    profile = profile or get_profile()
    model, tokenizer = load_qa(model_dir)
    examples = examples if examples is not None else load_squad("dev", profile)
    example = make_inputs(2, 32, tokenizer.vocab_size, next(model.parameters()).device)
    scores = {}
    for path in paths:
        try:
            scored = PathModel(model, prepare_path(model, path, example)).eval()
            metrics = evaluate_qa(scored, tokenizer, examples, profile)
        except PathUnsupportedError as error:
            scores[path] = {"status": "unsupported", "error": str(error)}
            continue
        scores[path] = {k: v for k, v in metrics.items() if k != "predictions"}
    return scores
