"""The two distillation stages, run through the book's one training loop.

Stage 1 (``intermediate``) runs the teacher live and matches the student's final hidden states
(through a learned linear projection to the teacher's width) and the attention maps of its
transformer units to the teacher's (``losses.layer_map``: unit i <- teacher layer
ceil((i + 1) * N_t / N_s) - 1, so 3 units learn from MiniLM's 2nd, 4th and 6th layers). Stage 2
(``prediction``) matches start/end distributions to the cached teacher logits of the transfer
set, plus a little gold. Any student the project builds works: attention maps are pooled to
a down-sampled student's length and teacher heads are grouped into the student's.
Every run is an artifact keyed by its whole recipe and reused when complete.
Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from torch import nn

import waldorf.models  # noqa: F401  (registers WaLDORf with the Auto classes for loading)
from waldorf import data, qa
from waldorf import teacher as teachers
from waldorf.artifacts import artifact_dir, read_metadata, write_metadata
from waldorf.augment import transfer_windows
from waldorf.config import Profile, get_profile
from waldorf.distill import losses
from waldorf.models import WaldorfPreTrainedModel, build_student
from waldorf.teacher import TeacherRun, teacher_features
from waldorf.train import History, TrainArgs, resolve_mixed_precision, train

logger = logging.getLogger(__name__)

STAGES = ("intermediate", "prediction", "both")
TARGETS = ("teacher_start_logits", "teacher_end_logits", "has_gold", "start_positions",
           "end_positions")
VOLATILE = ("transformers_version", "_name_or_path", "architectures", "torch_dtype", "dtype")


@dataclass
class StudentRun:
    """A finished student: where it is saved, its recipe, its curves, and the stage before it.

    Explained in book/04_distillation.ipynb.
    """

    model_dir: Path
    metadata: dict
    history: History
    previous: StudentRun | None = None

    def load(self):
        """``(model, tokenizer)`` in eval mode."""
        return qa.load_qa(self.model_dir)


class DistillModel(nn.Module):
    """The student plus stage 1's projection to the teacher's width, trained together.

    Saving saves the student only: the projection is scaffolding for stage 1.
    Explained in book/04_distillation.ipynb.
    """

    def __init__(self, student: nn.Module, teacher_hidden: int):
        super().__init__()
        self.student = student
        self.projection = nn.Linear(student.config.hidden_size, teacher_hidden)

    def forward(self, **inputs):
        out = self.student(**inputs, output_hidden_states=True, output_attentions=True)
        return out, self.projection(out.hidden_states[-1])  # (batch, seq, teacher_hidden)

    def save_pretrained(self, path, **kwargs) -> None:
        self.student.save_pretrained(path, **kwargs)


def _inputs(model: nn.Module, batch: dict) -> dict:
    core = getattr(model, "module", model)  # unwrap DistributedDataParallel
    accepted = inspect.signature(getattr(core, "student", core).forward).parameters
    return {k: batch[k] for k in qa.MODEL_INPUTS if k in batch and k in accepted}


def intermediate_loss(teacher: nn.Module, factor: int):
    """Stage 1's ``compute_loss``: hidden MSE (last layer) + mean attention KL (mapped layers).

    ``factor``: how much shorter the student's attention sequence is. Students whose maps do
    not line up (or that return none) are taught from hidden states only.
    Explained in book/04_distillation.ipynb.
    """
    layers = tuple(range(-teacher.config.num_hidden_layers, 0))  # hidden[i], attention[i] aligned

    def compute_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = _inputs(model, batch)
        mask = batch["attention_mask"]  # (batch, seq)
        teacher.to(mask.device)
        target = teacher_features(teacher, inputs, layers)
        out, projected = model(**inputs)  # projected: (batch, seq, teacher_hidden)
        parts = {"hidden": losses.hidden_mse(projected, target["hidden_states"][-1], mask)}
        attention = losses.attention_transfer(out.attentions or (), target["attentions"], mask,
                                              factor)
        if attention is not None:
            parts["attention"] = attention
        total = sum(parts.values())
        return total, {k: v.item() for k, v in parts.items()}

    return compute_loss


def prediction_loss(temperature: float, hard_weight: float):
    """Stage 2's ``compute_loss``: soft start/end cross-entropy at ``temperature`` + gold.

    Explained in book/04_distillation.ipynb.
    """
    def compute_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(**_inputs(model, batch))
        total, parts = losses.prediction_loss(
            out, batch["teacher_start_logits"], batch["teacher_end_logits"],
            batch["start_positions"], batch["end_positions"], batch["has_gold"].bool(),
            temperature, hard_weight, batch["attention_mask"])
        return total, {k: v.item() for k, v in parts.items()}

    return compute_loss


def copy_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy what fits from the teacher; return the names of the parts copied.

    Embedding tables: copied when the widths match; when the student embeds narrower
    (WaLDORf's factorised 128 vs 384), each table is projected onto the top right-singular
    vectors V of the teacher's word table (the best rank-k linear summary of it), and the
    student's up-projection becomes V^T when it maps back to the teacher's width. Transformer
    units of the teacher's exact shape get the mapped teacher layer; the span head its head.
    Explained in book/04_distillation.ipynb.
    """
    t_emb, s_emb = teacher.base_model.embeddings, student.base_model.embeddings
    tables = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    width, t_width = s_emb.word_embeddings.embedding_dim, t_emb.word_embeddings.embedding_dim
    copied = []
    with torch.no_grad():
        basis = torch.eye(t_width)  # (t_width, width)
        if width < t_width:
            basis = torch.linalg.svd(t_emb.word_embeddings.weight.float(), full_matrices=False)[2]
            basis = basis[:width].T  # (t_width, width)
        if width <= t_width:
            for name in tables:
                source = getattr(t_emb, name).weight.float() @ basis  # (rows, width)
                target = getattr(s_emb, name).weight
                rows = min(len(source), len(target))
                target[:rows] = source[:rows].to(target.dtype)
                copied.append(f"embeddings.{name}")
            norm = getattr(s_emb, "LayerNorm", getattr(s_emb, "layer_norm", None))
            if width == t_width and norm is not None:
                norm.load_state_dict(t_emb.LayerNorm.state_dict())
            projection = getattr(s_emb, "projection", None)
            if isinstance(projection, nn.Linear) and projection.out_features == t_width:
                projection.weight.copy_(basis)  # (t_width, width): back to the teacher's axes
                projection.bias.zero_()
                copied.append("embeddings.projection")
        copied += _copy_layers(student, teacher)
        if student.qa_outputs.weight.shape == teacher.qa_outputs.weight.shape:
            student.qa_outputs.load_state_dict(teacher.qa_outputs.state_dict())
            copied.append("qa_outputs")
    return copied


# WaLDORf transformer unit parameter prefix <- BERT layer parameter prefix (same post-LN layout).
FROM_BERT_LAYER = {"attention.output.": "attention.output.dense.", "ffn.up.": "intermediate.dense.",
                   "attention_norm.": "attention.output.LayerNorm.", "ffn.down.": "output.dense.",
                   "ffn_norm.": "output.LayerNorm."}


def _copy_layers(student: nn.Module, teacher: nn.Module) -> list[str]:
    t_layers = teacher.base_model.encoder.layer
    waldorf = isinstance(student, WaldorfPreTrainedModel)
    units = student.base_model.transformer_units if waldorf else student.base_model.encoder.layer
    copied = []
    for i, t in enumerate(losses.layer_map(len(units), len(t_layers))):
        state, own = t_layers[t].state_dict(), units[i].state_dict()
        if waldorf:
            state = {new + k[len(old):]: v for new, old in FROM_BERT_LAYER.items()
                     for k, v in state.items() if k.startswith(old)} | {
                f"attention.qkv.{end}": torch.cat([state[f"attention.self.{n}.{end}"]
                                                   for n in ("query", "key", "value")])
                for end in ("weight", "bias")}
        if state.keys() == own.keys() and all(v.shape == own[k].shape for k, v in state.items()):
            units[i].load_state_dict(state)
            copied.append(f"unit {i} <- teacher layer {t}")
    return copied


def _student_key(model: nn.Module, name: str | None, seed: int) -> dict:
    config = {k: v for k, v in model.config.to_dict().items() if k not in VOLATILE}
    if name is not None:
        return dict(name=name, config=config, init=f"random seed {seed}")
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + value.detach().float().cpu().numpy().tobytes())
    return dict(name=None, config=config, init=f"weights {digest.hexdigest()[:12]}")


def _build(student: str | nn.Module, profile: Profile) -> tuple[nn.Module, str | None]:
    if not isinstance(student, str):
        return student, None
    torch.manual_seed(profile.seed)
    overrides = dict(profile.student.model_overrides) if student == "waldorf" else {}
    return build_student(student, **overrides), student


def _stage(stage: str, model: nn.Module, windows: datasets.Dataset, run: TeacherRun,
           profile: Profile, key: dict, args: dict, progress: bool) -> StudentRun:
    """Train one stage ("intermediate", "prediction" or "gold") and record it as an artifact."""
    s, role = profile.student, f"student-{stage}"
    path = artifact_dir(role, profile.name, key)
    teacher, tokenizer = run.load()
    if teacher.config.vocab_size != model.config.vocab_size:
        raise ValueError(f"student vocabulary ({model.config.vocab_size}) differs from the "
                         f"teacher's ({teacher.config.vocab_size}) at {run.model_dir}")
    write_metadata(path, role, profile.name, key, complete=False)
    targets = TARGETS if stage == "prediction" else ("start_positions", "end_positions")
    columns = [c for c in (*qa.MODEL_INPUTS, *targets) if c in windows.column_names]
    windows = windows.with_format("torch", columns=columns)
    wrapped, compute_loss, epochs = model, None, s.intermediate_epochs + s.prediction_epochs
    if stage == "intermediate":
        if not isinstance(model, WaldorfPreTrainedModel):
            model.set_attn_implementation("eager")  # fused kernels return no attention maps
        wrapped = DistillModel(model, teacher.config.hidden_size)
        compute_loss = intermediate_loss(teacher, getattr(model.config, "downsample", 1))
        epochs = s.intermediate_epochs
    elif stage == "prediction":
        compute_loss = prediction_loss(s.temperature, s.hard_label_weight)
        epochs = s.prediction_epochs
    dev = data.load_squad("dev", profile)
    train_args = TrainArgs(**{**dict(epochs=epochs, learning_rate=s.learning_rate,
                                     batch_size=s.batch_size, seed=profile.seed,
                                     mixed_precision=profile.mixed_precision), **args})
    history = train(wrapped, windows, train_args, path, compute_loss=compute_loss,
                    tokenizer=tokenizer, progress=progress,
                    evaluate=lambda m: qa.evaluate_qa(getattr(m, "student", m), tokenizer, dev,
                                                      profile))
    if not history.finished:  # stopped by max_steps: resumable, not complete
        return StudentRun(path / "model", read_metadata(path), history)
    scores = {k: v for k, v in history.evals[-1].items() if k not in ("step", "epoch")}
    meta = write_metadata(path, role, profile.name, key, complete=True,
                          duration_s=history.elapsed_s, dev_scores=scores,
                          train_windows=len(windows), optimizer_steps=history.step,
                          mixed_precision=resolve_mixed_precision(profile.mixed_precision))
    shutil.rmtree(path / "checkpoint", ignore_errors=True)
    return StudentRun(path / "model", meta, history)


def _found(stage: str, profile: Profile, key: dict) -> StudentRun | None:
    path = artifact_dir(f"student-{stage}", profile.name, key)
    meta = read_metadata(path)
    if meta and meta.get("complete"):
        return StudentRun(path / "model", meta,
                          History.from_json((path / "history.json").read_text()))
    return None


def distill(student: str | nn.Module = "waldorf", profile: Profile | None = None,
            stage: str = "both", *, teacher: TeacherRun | None = None,
            cache: datasets.Dataset | None = None, init_from_teacher: bool = False,
            augment: bool = True, augment_options: dict | None = None,
            train_args: dict | None = None, progress: bool = True) -> StudentRun:
    """Distil the teacher into ``student`` (a ``build_student`` name, or a model).

    ``stage``: "intermediate", "prediction" or "both" (stage 2 then starts from stage 1's
    result, kept in ``StudentRun.previous``). ``cache``: the teacher cache, if already loaded.
    ``augment``: use the transfer set (``augment_options`` override ``build_transfer_set``'s
    defaults and the profile's ``augment_variants``). ``train_args``: ``TrainArgs`` overrides.
    Explained in book/04_distillation.ipynb.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    profile = profile or get_profile()
    s, args = profile.student, train_args or {}
    run = teacher or teachers.get_teacher(profile, progress=progress)
    model, name = _build(student, profile)
    options = s.augment_options() | (augment_options or {}) if augment else None
    recipe = dict(student=_student_key(model, name, profile.seed), teacher=run.metadata["hash"],
                  init_from_teacher=init_from_teacher, augment=options, seed=profile.seed,
                  learning_rate=s.learning_rate, batch_size=s.batch_size, train_args=args,
                  precision=resolve_mixed_precision(profile.mixed_precision))
    prepared: dict = {}

    def windows() -> datasets.Dataset:  # built on first need only: reused runs skip it
        if not prepared:
            prepared["windows"] = transfer_windows(profile, run, cache, options, progress)
        return prepared["windows"]

    if init_from_teacher:
        copied = copy_from_teacher(model, run.load()[0])
        logger.info("initialised from the teacher: %s", ", ".join(copied) or "nothing")
    previous, after = None, None
    if stage != "prediction":
        key = {**recipe, "epochs": s.intermediate_epochs}
        previous = _found("intermediate", profile, key) or _stage(
            "intermediate", model, windows(), run, profile, key, args, progress)
        if stage == "intermediate" or not previous.metadata.get("complete"):
            return previous
        model, after = previous.load()[0].train(), previous.metadata["hash"]
    key = {**recipe, "epochs": s.prediction_epochs, "temperature": s.temperature,
           "hard_label_weight": s.hard_label_weight, "after": after}
    final = _found("prediction", profile, key) or _stage(
        "prediction", model, windows(), run, profile, key, args, progress)
    final.previous = previous
    return final


def train_without_teacher(student: str | nn.Module = "waldorf", profile: Profile | None = None,
                          *, epochs: float | None = None, init_from_teacher: bool = False,
                          teacher: TeacherRun | None = None, train_args: dict | None = None,
                          progress: bool = True) -> StudentRun:
    """The same student trained on gold labels alone: original questions, every window.

    ``epochs`` defaults to both stages' epochs together, as many passes as the distilled
    student makes. The teacher supplies only its tokenizer (and weights if
    ``init_from_teacher``). Explained in book/04_distillation.ipynb.
    """
    profile = profile or get_profile()
    s, args = profile.student, {**(train_args or {})}
    run = teacher or teachers.get_teacher(profile, progress=progress)
    model, name = _build(student, profile)
    if epochs is not None:
        args["epochs"] = epochs
    key = dict(student=_student_key(model, name, profile.seed), data=run.metadata["key"]["data"],
               teacher=run.metadata["hash"] if init_from_teacher else None,
               init_from_teacher=init_from_teacher, seed=profile.seed,
               epochs=s.intermediate_epochs + s.prediction_epochs,
               learning_rate=s.learning_rate, batch_size=s.batch_size, train_args=args,
               precision=resolve_mixed_precision(profile.mixed_precision))
    found = _found("gold", profile, key)
    if found is not None:
        return found
    teacher_model, tokenizer = run.load()
    if init_from_teacher:
        copy_from_teacher(model, teacher_model)
    windows = data.tokenize_squad(data.load_squad("train", profile), tokenizer, profile)
    return _stage("gold", model, windows, run, profile, key, args, progress)
