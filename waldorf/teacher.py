"""The fine-tuned SQuAD 2.0 teacher and its output cache, the "wasteless" part of WaLDORf.

``get_teacher`` fine-tunes a pretrained encoder once per configuration and finds it again
afterwards. ``teacher_cache`` runs that teacher once over every training window and stores
its start/end logits next to the windows, so every student epoch and every ablation reads
them from disk instead of paying a teacher forward pass again.
Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from accelerate import PartialState
from accelerate.utils import set_seed
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from waldorf import data, qa
from waldorf.artifacts import artifact_dir, build_artifact, complete_metadata
from waldorf.config import Profile, get_profile, resolve_checkpoint
from waldorf.files import staged_folder
from waldorf.precision import autocast, resolve_mixed_precision
from waldorf.train import History, TrainArgs, train

logger = logging.getLogger(__name__)

TRAIN_COLUMNS = ["input_ids", "attention_mask", "token_type_ids", "start_positions",
                 "end_positions"]
NEW_HEAD = "qa_outputs"  # the span head a pretrained encoder does not have yet


@dataclass
class TeacherRun:
    """A finished teacher: where it is saved, how it was made, and its training curves.

    Explained in book/02_teacher.ipynb.
    """

    model_dir: Path
    metadata: dict
    history: History

    def load(self):
        """``(model, tokenizer)`` in eval mode."""
        return qa.load_qa(self.model_dir)

    def tokenizer(self):
        """The teacher's tokenizer alone (every student shares its vocabulary)."""
        return AutoTokenizer.from_pretrained(self.model_dir)


def _preprocessing(profile: Profile, examples: datasets.Dataset) -> dict:
    d = profile.data
    ids = "\n".join(examples["id"]).encode()
    return dict(source=d.source, train_files=list(d.train_files),
                max_train_examples=d.max_train_examples, max_seq_length=d.max_seq_length,
                doc_stride=d.doc_stride,
                # which questions were read: the packaged sample and the real files differ
                questions_sha=hashlib.sha256(ids).hexdigest()[:12])


def teacher_key(profile: Profile, examples: datasets.Dataset) -> dict:
    """Everything the fine-tuned teacher depends on. Explained in book/02_teacher.ipynb."""
    return dict(teacher=asdict(profile.teacher), data=_preprocessing(profile, examples),
                seed=profile.seed, mixed_precision=profile.mixed_precision)


def load_backbone(checkpoint: str):
    """Tokenizer and QA model from a pretrained encoder; only the span head may be new.

    transformers prints a load report listing the new span head; that is expected for a
    backbone, so it is replaced by a check that nothing *else* is missing.
    Explained in book/02_teacher.ipynb.
    """
    name = resolve_checkpoint(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model, info = AutoModelForQuestionAnswering.from_pretrained(
            name, output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing = [k for k in info["missing_keys"] if not k.startswith(NEW_HEAD)]
    if missing:
        raise ValueError(f"{checkpoint}: backbone weights missing from the checkpoint: {missing}")
    if info["missing_keys"]:
        logger.info("%s: new span head %s initialised randomly (fine-tuning trains it)",
                    checkpoint, NEW_HEAD)
    return model, tokenizer


def _train_features(examples, tokenizer, profile: Profile) -> datasets.Dataset:
    features = data.tokenize_squad(examples, tokenizer, profile, train=True)
    features = data.subsample_negative_windows(
        features, profile.teacher.negative_window_keep, seed=profile.seed)
    columns = [c for c in TRAIN_COLUMNS if c in features.column_names]
    return features.with_format("torch", columns=columns)


def _scalars(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k not in ("step", "epoch")}


def get_teacher(profile: Profile | None = None, *, progress: bool = True,
                reuse_only: bool = False) -> TeacherRun | None:
    """The fine-tuned teacher of ``profile``: found if finished, else trained or resumed
    (``reuse_only``: None instead).

    Trains on the profile's train files only; dev scores (official metrics with the
    teacher's own no-answer probabilities) are measured at the end of every epoch. A saved
    teacher whose files fail their checksums is reported, set aside and trained again.
    Explained in book/02_teacher.ipynb.
    """
    profile = profile or get_profile()
    examples = data.load_squad("train", profile)
    key = teacher_key(profile, examples)
    path = artifact_dir("teacher", profile.name, key)
    if reuse_only:
        meta = complete_metadata(path)
        return TeacherRun(path / "model", meta, History.saved(path)) if meta else None
    trained: list[History] = []

    def fine_tune(folder: Path) -> dict:
        set_seed(profile.seed)  # the new span head's initial weights are part of the result
        model, tokenizer = load_backbone(profile.teacher.checkpoint)
        features = _train_features(examples, tokenizer, profile)
        dev = data.load_squad("dev", profile)
        t = profile.teacher
        args = TrainArgs(epochs=t.epochs, learning_rate=t.learning_rate, batch_size=t.batch_size,
                         warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay,
                         mixed_precision=profile.mixed_precision, seed=profile.seed)
        history = train(model, features, args, folder, tokenizer=tokenizer, progress=progress,
                        evaluate=lambda m: qa.evaluate_qa(m, tokenizer, dev, profile))
        trained.append(history)
        return dict(duration_s=history.elapsed_s,
                    dev_scores=_scalars(history.evals[-1]) if history.evals else {},
                    train_questions=len(examples), train_windows=len(features),
                    dev_questions=len(dev), optimizer_steps=history.step,
                    mixed_precision=resolve_mixed_precision(profile.mixed_precision))

    meta = build_artifact(path, "teacher", profile.name, key, fine_tune)
    return TeacherRun(path / "model", meta, trained[0] if trained else History.saved(path))


def teacher_logits(model, features: datasets.Dataset, profile: Profile,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Teacher start/end logits ``(windows, seq_len)`` float32, in the profile's precision.

    Explained in book/02_teacher.ipynb.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    with autocast(profile.mixed_precision):
        return qa.predict_logits(model, features, profile.eval_batch_size, progress=progress)


def logit_columns(start: np.ndarray, end: np.ndarray) -> datasets.Dataset:
    length = start.shape[1]
    row = datasets.List(datasets.Value("float32"), length=length)
    features = datasets.Features(teacher_start_logits=row, teacher_end_logits=row,
                                 teacher_null_score=datasets.Value("float32"))
    return datasets.Dataset.from_dict(
        dict(teacher_start_logits=start, teacher_end_logits=end,
             teacher_null_score=start[:, 0] + end[:, 0]), features=features)


def cache_key(profile: Profile, run: TeacherRun) -> dict:
    """What the cached logits depend on: the teacher, its tokenizer, the windows, the precision.

    Explained in book/02_teacher.ipynb.
    """
    return dict(teacher=run.metadata["hash"], tokenizer=profile.teacher.checkpoint,
                data=run.metadata["key"]["data"],
                precision=resolve_mixed_precision(profile.mixed_precision))


def teacher_cache(profile: Profile | None = None, *, run: TeacherRun | None = None,
                  progress: bool = True) -> datasets.Dataset:
    """Every training window plus the teacher's ``teacher_start_logits``/``teacher_end_logits``
    (float32, ``max_seq_length`` each) and ``teacher_null_score`` (start + end logit of CLS).

    Computed once per (teacher, tokenizer, preprocessing) and memory-mapped afterwards:
    4 bytes x 2 x 192 positions = 1.5 kB of logits per window; the cpu profile's 16.8k
    windows take ~26 MB of logits, ~46 MB on disk with the token ids.
    ``run``: the teacher to label with (default: ``get_teacher(profile)``), so that a caller
    holding a teacher never gets another one's logits. Under ``accelerate launch`` the main
    process labels and writes while the others wait for it. Explained in book/02_teacher.ipynb.
    """
    profile = profile or get_profile()
    run = run or get_teacher(profile, progress=progress)
    key = cache_key(profile, run)
    path = artifact_dir("teacher-cache", profile.name, key)

    def label(folder: Path) -> dict:
        if not PartialState().is_main_process:
            return {}  # build_artifact keeps the main process's result only
        started = time.time()
        model, tokenizer = run.load()
        examples = data.load_squad("train", profile)
        windows = data.tokenize_squad(examples, tokenizer, profile, train=True)  # all of them
        forward_started = time.time()
        start, end = teacher_logits(model, windows, profile, progress=progress)
        forward_s = time.time() - forward_started
        cache = datasets.concatenate_datasets([windows, logit_columns(start, end)], axis=1)
        with staged_folder(folder / "windows") as staged:
            cache.save_to_disk(str(staged))
        return dict(duration_s=time.time() - started, dev_scores=run.metadata.get("dev_scores"),
                    windows=len(cache), teacher_forward_s=forward_s,  # what each reuse saves
                    teacher_seconds_per_window=forward_s / max(len(cache), 1),
                    logits_bytes=int(start.nbytes + end.nbytes))

    build_artifact(path, "teacher-cache", profile.name, key, label)
    return datasets.load_from_disk(str(path / "windows"))


def teacher_features(model, batch: dict, layers: tuple[int, ...] = (-1,)) -> dict:
    """Live teacher outputs for stage-1 distillation: logits, hidden states and attention maps
    of ``layers`` for one batch, without gradients.

    These are computed on demand, not cached: attention maps of 20k windows x 12 heads x
    192^2 positions take ~17 GB per layer in float16 (hidden states ~3 GB per layer), far
    more than a forward pass of a small teacher costs. Explained in book/04_distillation.ipynb.
    """
    if model.config._attn_implementation != "eager":
        model.set_attn_implementation("eager")  # fused attention never materialises the maps
    inputs = {k: v for k, v in batch.items() if k in qa.MODEL_INPUTS}
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
    return dict(start_logits=out.start_logits,  # (batch, seq)
                end_logits=out.end_logits,  # (batch, seq)
                hidden_states=[out.hidden_states[i] for i in layers],  # each (batch, seq, hidden)
                attentions=[out.attentions[i] for i in layers])  # each (batch, heads, seq, seq)


def teacher_states(model: torch.nn.Module, batch: dict, layers: int) -> torch.Tensor:
    """The output of the teacher's first ``layers`` layers for one batch, without gradients.

    Stage 0's target: it pays for those layers only, not the whole teacher.
    Explained in book/04_distillation.ipynb.
    """
    bert, mask = model.base_model, batch["attention_mask"]  # mask: (batch, seq)
    with torch.no_grad():
        x = bert.embeddings(input_ids=batch["input_ids"],
                            token_type_ids=batch.get("token_type_ids"))  # (batch, seq, hidden)
        bias = ((mask[:, None, None, :] == 0) * torch.finfo(x.dtype).min).to(x.dtype)
        for layer in bert.encoder.layer[:layers]:  # bias: (batch, 1, 1, seq)
            x = layer(x, attention_mask=bias)  # (batch, seq, hidden)
    return x


def evaluate_teacher(model, tokenizer, examples: datasets.Dataset,
                     profile: Profile | None = None) -> dict:
    """``qa.evaluate_qa`` in the precision the teacher was trained and evaluated in, so the
    scores match the ones recorded at the end of its last epoch.

    Explained in book/02_teacher.ipynb.
    """
    profile = profile or get_profile()
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    with autocast(profile.mixed_precision):
        return qa.evaluate_qa(model, tokenizer, examples, profile)


def window_kinds(features: datasets.Dataset) -> np.ndarray:
    """Label each training window ``answer`` (holds the gold span), ``elsewhere`` (its question
    is answered in another window) or ``unanswerable`` (its question has no answer).

    ``TeacherConfig.negative_window_keep`` thins out the ``elsewhere`` windows.
    Explained in book/02_teacher.ipynb.
    """
    ids = np.asarray(features["example_id"])
    has_span = np.asarray(features["start_positions"]) > 0
    answerable = np.isin(ids, ids[has_span])
    return np.where(has_span, "answer", np.where(answerable, "elsewhere", "unanswerable"))


def null_score_gap(na_prob: np.ndarray) -> np.ndarray:
    """Null score minus best span score, recovered from ``na_prob`` (its sigmoid): the logit.

    It spreads out what ``na_prob`` squeezes against 0 and 1; where float64 saturates
    (``na_prob`` of exactly 0 or 1) it stops at about +-30. Explained in book/02_teacher.ipynb.
    """
    p = np.clip(np.asarray(na_prob, dtype=float), 1e-13, 1 - 1e-13)
    return np.log(p) - np.log1p(-p)


def token_range(offsets: np.ndarray, first: int, last: int) -> tuple[int, int] | None:
    """The first and last token whose characters overlap ``[first, last)``, or None.

    ``offsets``: (tokens, 2) character offsets, e.g. ``qa.span_probabilities``'s. It places a
    gold answer or a predicted span on the token axis of a chart.
    Explained in book/02_teacher.ipynb.
    """
    offsets = np.asarray(offsets)
    inside = np.flatnonzero((offsets[:, 1] > first) & (offsets[:, 0] < last))
    return (int(inside[0]), int(inside[-1])) if len(inside) else None
