"""One training loop for the teacher and every student, on HF Accelerate.

The same loop runs on a 2-core CPU (bf16 autocast where the CPU has AVX512-BF16), one GPU, or
several GPUs under ``accelerate launch``. It checkpoints (``waldorf.checkpoint``) every
``checkpoint_every`` steps and at each epoch's end, so an interrupted run resumes from its last
checkpoint with the same data order and random state, to the same weights as a run that was
never interrupted; it keeps a ``History`` that the chapters plot.
Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    broadcast_object_list,
    set_seed,
)
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from waldorf.batches import EpochSampler, EvenBatches, trim_padding, window_lengths
from waldorf.checkpoint import load_checkpoint, save_checkpoint
from waldorf.files import staged_folder, write_atomic
from waldorf.precision import resolve_mixed_precision

LossFn = Callable[[torch.nn.Module, dict], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainArgs:
    """Optimisation settings of one run. Explained in book/02_teacher.ipynb."""

    epochs: float = 1.0  # fractions allowed: 1.5 runs one and a half passes
    learning_rate: float = 5e-5
    # windows per micro-batch over all processes: under `accelerate launch` each of N processes
    # takes batch_size / N of every batch, so a recipe means the same on any number of devices
    batch_size: int = 32
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # "no", "bf16" or "fp16"; resolved by waldorf.precision
    seed: int = 42
    checkpoint_every: int = 100  # optimizer steps; also at the end of every epoch
    log_every: int = 10  # optimizer steps per history row
    max_steps: int | None = None  # stop as if interrupted after this many steps; resumable
    # several GPUs only: let DistributedDataParallel skip parameters a loss does not reach
    # (stage 1 of distillation never touches the span head)
    find_unused_parameters: bool = False
    # batches of similar length with padding trimmed: ~20% less compute at length 192,
    # where the average training window holds 155 real tokens
    group_by_length: bool = True


@dataclass
class History:
    """Loss curve, per-epoch evaluations and the position a resumed run continues from.

    Explained in book/02_teacher.ipynb.
    """

    rows: list[dict] = field(default_factory=list)  # step, epoch, loss, parts, lr, seq_per_s
    evals: list[dict] = field(default_factory=list)  # step, epoch and the evaluate() scores
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch being run
    batch_in_epoch: int = 0  # micro-batches of that epoch already consumed
    elapsed_s: float = 0.0  # wall time inside train(), over all sessions
    finished: bool = False

    def to_json(self) -> str:
        """Serialise, e.g. into ``history.json``."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> History:
        """Inverse of ``to_json``."""
        return cls(**json.loads(text))

    @classmethod
    def saved(cls, run_dir: Path) -> History:
        """The history a finished run saved in ``run_dir``."""
        return cls.from_json((Path(run_dir) / "history.json").read_text())


def default_loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The model's own loss (span cross-entropy for QA models).

    Explained in book/02_teacher.ipynb.
    """
    loss = model(**batch).loss
    return loss, {}


def _optimizer(model: torch.nn.Module, args: TrainArgs) -> torch.optim.AdamW:
    # Matrices decay; biases and LayerNorm weights (all 1-d) do not, as in BERT.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.learning_rate)


def _accelerator(args: TrainArgs) -> Accelerator:
    # Each run picks its own precision; Accelerate keeps one process-wide state, so reset it.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    ddp = DistributedDataParallelKwargs(find_unused_parameters=args.find_unused_parameters)
    # Several processes: the main one loads each batch as one process would (padding trimmed
    # to its longest window; EvenBatches) and sends every process its slice, so the global
    # batch, its padding and the schedule are those of a single-process run.
    several = PartialState().num_processes > 1
    loading = DataLoaderConfiguration(split_batches=True, dispatch_batches=several)
    return Accelerator(mixed_precision=resolve_mixed_precision(args.mixed_precision),
                       gradient_accumulation_steps=args.grad_accum_steps, kwargs_handlers=[ddp],
                       dataloader_config=loading)


def _evaluate(accelerator: Accelerator, model, evaluate: Callable, history: History) -> None:
    # Evaluation runs on the main process only; the scores are broadcast to the others.
    scores = [None]
    if accelerator.is_main_process:
        model.eval()
        with accelerator.autocast():  # the run's precision, also for the dev pass
            raw = evaluate(accelerator.unwrap_model(model))
        scores = [{k: v for k, v in raw.items() if isinstance(v, (int, float, str))}]
        model.train()
    scores = broadcast_object_list(scores) if accelerator.num_processes > 1 else scores
    history.evals.append(dict(step=history.step, epoch=history.epoch, **scores[0]))
    accelerator.wait_for_everyone()


def train(model: torch.nn.Module, train_dataset, args: TrainArgs, run_dir: str | Path,
          compute_loss: LossFn | None = None, evaluate: Callable | None = None,
          collate_fn: Callable | None = None, tokenizer=None, progress: bool = True) -> History:
    """Train ``model`` on ``train_dataset`` (items: dicts of tensors), resuming from ``run_dir``.

    ``compute_loss(model, batch) -> (loss, {part: float})`` defaults to ``model(**batch).loss``;
    ``evaluate(model) -> dict`` runs at the end of every epoch. The finished model (and
    ``tokenizer``) is saved with ``save_pretrained`` to ``run_dir/model``.
    Explained in book/02_teacher.ipynb.
    """
    run_dir, compute_loss = Path(run_dir), compute_loss or default_loss
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = _accelerator(args)
    if args.batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size {args.batch_size} does not split evenly over "
                         f"{accelerator.num_processes} processes")
    set_seed(args.seed)
    lengths = window_lengths(train_dataset) if args.group_by_length else None
    grouped = lengths is not None
    sampler = EpochSampler(len(train_dataset), args.seed, lengths, args.batch_size)
    loader = DataLoader(train_dataset,
                        batch_sampler=EvenBatches(sampler, args.batch_size,
                                                  accelerator.num_processes),
                        collate_fn=collate_fn or (trim_padding if grouped else default_collate),
                        generator=torch.Generator().manual_seed(args.seed))
    # Every process sees every batch (its slice of it), so the count is the single process's.
    steps_per_epoch = math.ceil(len(loader) / args.grad_accum_steps)
    total_steps = math.ceil(args.epochs * steps_per_epoch)
    optimizer = _optimizer(model, args)
    # With split batches a prepared scheduler steps once per optimizer step.
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(args.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    saved = load_checkpoint(accelerator, run_dir)
    history = History.from_json(saved) if saved else History()
    if history.finished:  # stopped between the last checkpoint and saving the model
        return _finish(accelerator, model, history, run_dir, tokenizer)
    return _run(accelerator, model, optimizer, loader, scheduler, args, run_dir, history,
                total_steps, steps_per_epoch, compute_loss, evaluate, tokenizer, progress)


def _run(accelerator, model, optimizer, loader, scheduler, args, run_dir, history,
         total_steps, steps_per_epoch, compute_loss, evaluate, tokenizer, progress) -> History:
    started = time.time() - history.elapsed_s
    model.train()
    bar = tqdm(total=total_steps, initial=history.step, desc="train", unit="step",
               disable=not (progress and accelerator.is_local_main_process), dynamic_ncols=True)
    window = dict(loss=0.0, parts={}, batches=0, sequences=0, t=time.time())
    stop = False
    for epoch in range(history.epoch, math.ceil(args.epochs)):
        history.epoch = epoch
        epoch_loader = (accelerator.skip_first_batches(loader, history.batch_in_epoch)
                        if history.batch_in_epoch else loader)
        epoch_loader.set_epoch(epoch)
        for batch in epoch_loader:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss, parts = compute_loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            history.batch_in_epoch += 1
            _accumulate(window, loss, parts, batch)
            if not accelerator.sync_gradients:
                continue
            history.step += 1
            bar.update(1)
            if history.step % args.log_every == 0 or history.step == total_steps:
                _log(accelerator, history, window, scheduler, steps_per_epoch, bar)
            if history.step >= total_steps:
                break
            if args.max_steps and history.step >= args.max_steps:
                stop = True
                break
            if args.checkpoint_every and history.step % args.checkpoint_every == 0:
                paused = time.time()
                history.elapsed_s = paused - started
                save_checkpoint(accelerator, run_dir, history.to_json())
                window["t"] += time.time() - paused  # throughput counts training time only
        if stop:
            break
        paused = time.time()
        history.epoch, history.batch_in_epoch = epoch + 1, 0
        if evaluate is not None:
            _evaluate(accelerator, model, evaluate, history)
        history.finished = history.step >= total_steps
        history.elapsed_s = time.time() - started
        save_checkpoint(accelerator, run_dir, history.to_json())
        window["t"] += time.time() - paused
        if history.finished:
            break
    bar.close()
    history.elapsed_s = time.time() - started
    if stop:
        save_checkpoint(accelerator, run_dir, history.to_json())
        return history
    return _finish(accelerator, model, history, run_dir, tokenizer)


def _accumulate(window: dict, loss: torch.Tensor, parts: dict, batch: dict) -> None:
    window["loss"] += loss.detach().float()
    for name, value in parts.items():
        window["parts"][name] = window["parts"].get(name, 0.0) + float(value)
    window["batches"] += 1
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    window["sequences"] += len(first)


def _log(accelerator, history: History, window: dict, scheduler, steps_per_epoch, bar) -> None:
    # One reduce per logged row (not per step) keeps multi-GPU runs fast.
    n = max(window["batches"], 1)
    loss = accelerator.reduce(torch.as_tensor(window["loss"], device=accelerator.device),
                              "mean").item() / n
    seconds = max(time.time() - window["t"], 1e-9)
    row = dict(step=history.step, epoch=round(history.step / steps_per_epoch, 4), loss=loss,
               parts={k: v / n for k, v in window["parts"].items()},
               lr=scheduler.get_last_lr()[0],
               seq_per_s=window["sequences"] * accelerator.num_processes / seconds)
    history.rows.append(row)
    bar.set_postfix(loss=f"{loss:.3f}", seq_s=f"{row['seq_per_s']:.1f}")
    window.update(loss=0.0, parts={}, batches=0, sequences=0, t=time.time())


def _finish(accelerator, model, history: History, run_dir: Path, tokenizer) -> History:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with staged_folder(run_dir / "model") as folder:
            accelerator.unwrap_model(model).save_pretrained(folder)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
        write_atomic(run_dir / "history.json", history.to_json())
    accelerator.wait_for_everyone()
    return history
