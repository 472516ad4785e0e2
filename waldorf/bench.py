"""Inference-speed benchmark of WaLDORf and the models the paper compares it with.

Measuring speed honestly takes more than a loop around ``model(x)``: warm-up runs before timing,
many repeats summarised by median and interquartile range (IQR), models interleaved in a
shuffled round-robin so machine drift (turbo, a neighbour's job) hits all of them alike, a
fixed and recorded thread count, synchronised CUDA timing, and the environment stored next to
every number. Weights are randomly initialised: a forward pass costs the same whatever the
weights are, so timing needs no trained checkpoint. What the numbers mean (speed-ups next to
the paper's, the JSON schema) lives in :mod:`waldorf.bench_report`.

Explained in book/07_speed.ipynb.
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import gc
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from waldorf import bench_report as report
from waldorf.errors import UserError

ALL_MODELS = ("bert_large", "bert_base", "distilbert4", "tinybert4", "teacher", "waldorf")
ALIASES = {"teacher": "teacher-shape"}  # the offline teacher MiniLM-L6-H384, as a shape
WEIGHTS = "random-initialised (a forward pass costs the same whatever the weights)"
MEMORY_NOTE = {
    "cuda": "parameter bytes + (torch.cuda.max_memory_allocated during the first warm-up run"
            " - memory allocated before it)",
    "cpu": "parameter bytes + (peak resident set during the first warm-up run - resident set"
           " before it), peak reset via /proc/self/clear_refs after malloc_trim; null where"
           " unsupported",
}


@dataclass(frozen=True)
class Timing:
    """How long each cell (model x sequence length x batch size) is measured.

    Each cell gets ``warmup`` untimed runs, then repeats until ``cell_budget_s`` of timed
    work, never fewer than ``min_repeats`` nor more than ``max_repeats``: slow cells
    (BERT-Large at batch 32) get few repeats, fast ones many. Explained in book/07_speed.ipynb.
    """

    warmup: int = 1
    min_repeats: int = 3
    max_repeats: int = 100
    cell_budget_s: float = 10.0


@dataclass(frozen=True)
class Preset:
    """A named benchmark: models, shapes and timing budget. Explained in book/07_speed.ipynb."""

    models: tuple[str, ...]
    seq_lens: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    timing: Timing


PRESETS: dict[str, Preset] = {
    # ~15 s on 2 CPU cores: checks the harness, not the paper.
    "quick": Preset(("bert_base", "distilbert4", "tinybert4", "teacher", "waldorf"), (128,), (1,),
                    Timing(warmup=1, min_repeats=3, max_repeats=30, cell_budget_s=1.5)),
    # ~7 min on 2 idle CPU cores; BERT-Large at batch 32 alone takes ~4 of them (4 runs of ~45 s).
    "paper": Preset(ALL_MODELS, (384,), (1, 32),
                    Timing(warmup=1, min_repeats=3, max_repeats=100, cell_budget_s=12.0)),
    # For a GPU: every length the issue asks for; hours on a CPU.
    "full": Preset(ALL_MODELS, (128, 256, 384, 512), (1, 32),
                   Timing(warmup=5, min_repeats=10, max_repeats=200, cell_budget_s=3.0)),
}


def interleaved_schedule(models: Sequence[str], repeats: int | dict[str, int],
                         seed: int) -> list[list[str]]:
    """Rounds of runs: each model at most once per round, in a fresh seeded shuffle each round.

    ``repeats`` is one count for all or a count per model; a model with fewer runs is spread
    evenly over the rounds, so drift late in the benchmark still hits every model.
    Explained in book/07_speed.ipynb.
    """
    counts = dict.fromkeys(models, repeats) if isinstance(repeats, int) else dict(repeats)
    rounds = max(counts.values(), default=0)
    rng = random.Random(seed)
    schedule = []
    for r in range(rounds):
        present = [m for m in models if (r + 1) * counts[m] // rounds > r * counts[m] // rounds]
        rng.shuffle(present)
        schedule.append(present)
    return schedule


def repeats_for(estimate_ms: float, timing: Timing) -> int:
    """Timed runs that fill the cell's budget, clamped to [min_repeats, max_repeats].

    Explained in book/07_speed.ipynb.
    """
    wanted = math.ceil(timing.cell_budget_s * 1e3 / max(estimate_ms, 1e-3))
    return max(timing.min_repeats, min(timing.max_repeats, wanted))


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call; on CUDA between events, after the GPU finished the work.

    Explained in book/07_speed.ipynb.
    """
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} missing from /proc/self/status")


def peak_memory_mb(fn: Callable[[], object], device: torch.device,
                   weight_bytes: int) -> float | None:
    """Run ``fn`` once; return weights + the peak extra memory it needed, in MiB (see MEMORY_NOTE).

    Explained in book/07_speed.ipynb.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        extra = torch.cuda.max_memory_allocated(device) - before
    else:
        try:  # give freed heap pages back, so reuse of another model's buffers does not hide growth
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
            before = _status_kb("VmRSS")
        except OSError:
            fn()
            return None
        fn()
        extra = (_status_kb("VmHWM") - before) * 1024
    return (weight_bytes + max(extra, 0)) / 2**20


def _record_time(store: list[float], fn: Callable[[], object], device: torch.device) -> None:
    store.append(time_call(fn, device))


def measure_group(fns: dict[str, Callable[[], object]], timing: Timing, device: torch.device,
                  seed: int = 0, weight_bytes: dict[str, int] | None = None,
                  desc: str = "bench") -> dict[str, dict]:
    """Warm up each function, then time them interleaved; ``{name: {times_ms, peak_mem_mb,
    warm_ms}}``.

    The first warm-up run also measures memory (when ``weight_bytes`` is given) and estimates
    the cost that sets each name's repeat count. Explained in book/07_speed.ipynb.
    """
    if timing.warmup < 1:
        raise ValueError("timing.warmup must be >= 1: the first run estimates the repeat count")
    out = {name: {"times_ms": [], "peak_mem_mb": None} for name in fns}
    targets = {}
    for name, fn in fns.items():
        warm: list[float] = []
        record = partial(_record_time, warm, fn, device)
        if weight_bytes is None:
            record()
        else:
            out[name]["peak_mem_mb"] = peak_memory_mb(record, device, weight_bytes[name])
        for _ in range(timing.warmup - 1):
            record()
        targets[name] = repeats_for(warm[-1], timing)
        out[name]["warm_ms"] = warm[-1]
    expected_s = sum(targets[name] * out[name]["warm_ms"] for name in fns) / 1e3
    desc = f"{desc} (~{expected_s:.0f} s)"
    with tqdm(total=sum(targets.values()), desc=desc, leave=False) as bar:
        for round_ in interleaved_schedule(list(fns), targets, seed):
            for name in round_:
                out[name]["times_ms"].append(time_call(fns[name], device))
                bar.update()
    return out


def make_inputs(batch_size: int, seq_len: int, vocab_size: int = 30522,
                device: torch.device | str = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed random batch shaped like SQuAD windows: a question segment, then the context.

    Explained in book/07_speed.ipynb.
    """
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab_size, (batch_size, seq_len), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)  # (batch, seq)
    token_type_ids[:, seq_len // 4:] = 1  # the first quarter is the question
    batch = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                 token_type_ids=token_type_ids)
    return {k: v.to(device) for k, v in batch.items()}


def build_model(spec: str, **overrides) -> nn.Module:
    """A randomly initialised model from a name, optionally with config overrides.

    ``"waldorf:downsample=1,num_transformer_layers=4"`` builds a WaLDORf variant; ``"teacher"``
    is the MiniLM-L6-H384 shape; keyword ``overrides`` come after the spec's.
    Explained in book/07_speed.ipynb.
    """
    from waldorf.models import build_student

    name, _, args = spec.partition(":")
    parsed = {}
    for item in filter(None, args.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"model spec {spec!r}: expected key=value after ':', got {item!r}")
        try:
            parsed[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed[key.strip()] = value.strip()  # a bare word such as pool
    torch.manual_seed(0)
    return build_student(ALIASES.get(name, name), **{**parsed, **overrides}).eval()


def _measure_cells(models: dict[str, nn.Module], seq_lens: Sequence[int],
                   batch_sizes: Sequence[int], timing: Timing, device: torch.device,
                   seed: int) -> list[dict]:
    """One result row per model, sequence length and batch size (the SCHEMA's ``results``)."""
    weight_bytes = {name: sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers()))
                    for name, m in models.items()}
    vocab = min(getattr(m.config, "vocab_size", 30522) for m in models.values())
    with torch.inference_mode():  # load code pages and thread pools before memory is measured
        for model in models.values():
            model(**make_inputs(1, 8, vocab, device, seed))
    results = []
    for seq_len in seq_lens:
        for batch_size in batch_sizes:
            inputs = make_inputs(batch_size, seq_len, vocab, device, seed)
            fns = {name: partial(m, **inputs) for name, m in models.items()}
            with torch.inference_mode():
                measured = measure_group(fns, timing, device, seed, weight_bytes,
                                         desc=f"seq {seq_len} batch {batch_size}")
            for name, cell in measured.items():
                stats = report.summarise(cell["times_ms"])
                results.append(dict(
                    model=name, seq_len=seq_len, batch_size=batch_size,
                    median_ms=stats["median"], iqr_ms=stats["iqr"],
                    throughput_seq_per_s=batch_size * 1e3 / stats["median"],
                    peak_mem_mb=cell["peak_mem_mb"], n=stats["n"], times_ms=cell["times_ms"],
                    warmup_ms=cell["warm_ms"],
                    parameters=sum(p.numel() for p in models[name].parameters())))
    return results


def run_benchmark(models: dict[str, nn.Module], seq_lens: Sequence[int],
                  batch_sizes: Sequence[int], timing: Timing = Timing(),
                  device: str | torch.device = "cpu", threads: int | None = None,
                  seed: int = 0, preset: str | None = None) -> dict:
    """Time every model at every sequence length and batch size; the JSON document (see SCHEMA).

    ``threads`` applies during the run only; the caller's torch thread count is restored.
    Explained in book/07_speed.ipynb.
    """
    started, device, load_before = time.time(), torch.device(device), report.load_average()
    for name, model in models.items():
        limit = getattr(model.config, "max_position_embeddings", max(seq_lens))
        if max(seq_lens) > limit:
            raise UserError(f"model {name!r} takes at most {limit} tokens, asked {max(seq_lens)}")
    models = {name: model.to(device).eval() for name, model in models.items()}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        results = _measure_cells(models, seq_lens, batch_sizes, timing, device, seed)
        settings = dict(
            preset=preset, device=str(device), threads=torch.get_num_threads(),
            seq_lens=list(seq_lens), batch_sizes=list(batch_sizes), models=list(models), seed=seed,
            weights=WEIGHTS, dtype="float32", inference_mode=True,
            timer="cuda events" if device.type == "cuda" else "time.perf_counter",
            memory=MEMORY_NOTE["cuda" if device.type == "cuda" else "cpu"], **asdict(timing))
        env = report.environment(device, started, load_before)
    finally:
        torch.set_num_threads(previous)
    doc = dict(environment=env, settings=settings, results=results,
               speedups=report.speedup_table(results))
    report.validate_result(doc)
    return doc


def run_bench(args: argparse.Namespace) -> int:
    """Run ``waldorf bench``: build the models, time them, print the table, write the JSON.

    Explained in book/07_speed.ipynb.
    """
    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[args.preset]
    timing = replace(preset.timing, **{k: getattr(args, k) for k in
                                       ("warmup", "min_repeats", "max_repeats", "cell_budget_s")
                                       if getattr(args, k) is not None})
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = [name for token in args.models or preset.models  # commas split plain names only
             for name in ([token] if ":" in token else token.split(","))]
    seq_lens, batch_sizes = args.seq_lens or preset.seq_lens, args.batch_sizes or preset.batch_sizes
    print(f"building {len(names)} models with {WEIGHTS.split(' ')[0]} weights ...", flush=True)
    models = {name: build_model(name) for name in names}
    doc = run_benchmark(models, seq_lens, batch_sizes, timing, device, args.threads, args.seed,
                        preset=args.preset)
    print(report.format_table(doc))
    if args.deploy:
        from waldorf.deploy import DEPLOY_PATHS, compare_paths, format_paths

        paths = list(DEPLOY_PATHS) if args.deploy == ["all"] else args.deploy
        doc["deploy"] = compare_paths(models, paths, seq_lens[0], batch_sizes[0], timing,
                                      device, args.seed)
        print("\n" + format_paths(doc["deploy"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0
