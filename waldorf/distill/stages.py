"""The distillation stages, run through the book's one training loop.

Stage 0 (``front``, in ``front.py``) fits a teacher-initialised WaLDORf's convolutions to the
teacher layers they replace. A teacher wider than the student initialises nothing: the student
then starts from the profile's ``student.init_checkpoint`` (``from_teacher.init_source``), and
stages 0 and 1 reach the teacher's width through learned projections (``projections.py``).
Stage 1 (``intermediate``) runs the teacher live and matches the student's final hidden states
(through a learned linear projection to the teacher's width), the output and attention maps of
each transformer unit to those of its teacher layer (``losses.layer_map``; the cpu profile maps
3 units to MiniLM's top 3 layers, 3-5 counted from 0), and the output of the units below them
(WaLDORf's convolutions) to the teacher layer below the first mapped one. Stage 2
(``prediction``) matches start/end distributions to the cached teacher logits of the transfer
set, plus a little gold. Any student the project builds works: attention maps are pooled to
a down-sampled student's length and teacher heads are grouped into the student's.
``stage1_terms`` chooses which of these stage 1 matches (chapter 6 drops the attention maps).
Every run is an artifact keyed by its whole recipe and reused when complete.
Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from torch import nn
from transformers import AutoConfig

import waldorf.models  # noqa: F401  (registers WaLDORf with the Auto classes for loading)
from waldorf import data, qa
from waldorf import teacher as teachers
from waldorf.artifacts import artifact_dir, build_artifact, complete_metadata
from waldorf.augment import transfer_windows
from waldorf.config import Profile, get_profile
from waldorf.distill import losses
from waldorf.distill.from_teacher import init_source, initialise_student, source_config
from waldorf.distill.front import FrontModel, front_layer, front_loss
from waldorf.distill.projections import DistillModel
from waldorf.models import WaldorfPreTrainedModel, build_student
from waldorf.precision import resolve_mixed_precision
from waldorf.teacher import TeacherRun, teacher_features
from waldorf.train import History, TrainArgs, train

logger = logging.getLogger(__name__)

STAGES = ("intermediate", "prediction", "both")  # stage 0 ("front") comes with stage 1
TARGETS = ("teacher_start_logits", "teacher_end_logits", "has_gold", "start_positions",
           "end_positions")
STAGE1_TERMS = ("hidden", "units", "front", "attention")  # in artifact keys: what stage 1 matches
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


def _inputs(model: nn.Module, batch: dict) -> dict:
    core = getattr(model, "module", model)  # unwrap DistributedDataParallel
    accepted = inspect.signature(getattr(core, "student", core).forward).parameters
    return {k: batch[k] for k in qa.MODEL_INPUTS if k in batch and k in accepted}


def intermediate_loss(teacher: nn.Module, factor: int, mapping: str = "uniform",
                      terms: Sequence[str] = STAGE1_TERMS,
                      ) -> Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]:
    """Stage 1's ``compute_loss``: the sum of the ``terms`` below, each logged as a part.

    ``hidden``: MSE of the projected final states against the teacher's last layer;
    ``units``: mean MSE of each transformer unit's output against its mapped teacher layer
    (``losses.layer_map`` with ``mapping``), per reduced position when the unit runs
    down-sampled ``factor`` times (the student's ``ReducedLayout``, ``separate_cls`` read from
    its config); ``front``: MSE of the last unit below them (a WaLDORf conv unit) against the
    teacher layer below the first mapped one; ``attention``: mean attention KL of the mapped
    layers (a pool-query-only unit's keys stay full length). Students without attention maps
    learn from hidden states only. Explained in book/04_distillation.ipynb.
    """
    n_teacher = teacher.config.num_hidden_layers
    layers = tuple(range(-n_teacher, 0))  # hidden[i] is layer i's output; attention[i] its map

    def compute_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = _inputs(model, batch)
        mask = batch["attention_mask"]  # (batch, seq)
        teacher.to(mask.device)
        target = teacher_features(teacher, inputs, layers)
        out, projected, states = model(**inputs)  # each (batch, seq, teacher_hidden)
        t_states = target["hidden_states"]  # each (batch, seq, teacher_hidden)
        parts = {}
        if "hidden" in terms:
            parts["hidden"] = losses.hidden_mse(projected, t_states[-1], mask)
        core = getattr(model, "module", model)  # unwrap DistributedDataParallel
        below = getattr(core.student.config, "num_conv_layers", 0)  # units before the mapped
        separate_cls = getattr(core.student.config, "separate_cls", False)  # [CLS] unmerged
        maps = out.attentions or ()
        units = losses.layer_map(len(maps), n_teacher, mapping)
        if units and "units" in terms:  # unit i reports hidden_states[below + 1 + i]
            per_unit = [losses.pooled_hidden_mse(states[below + 1 + i], t_states[t], mask,
                                                 factor, separate_cls)
                        for i, t in enumerate(units)]  # ()
            parts["units"] = torch.stack(per_unit).mean()
        if units and below and units[0] > 0 and "front" in terms:
            parts["front"] = losses.hidden_mse(states[below], t_states[units[0] - 1], mask)
        attention = (losses.attention_transfer(maps, target["attentions"], mask, factor, units,
                                               separate_cls) if "attention" in terms else None)
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
    """Train one stage ("front", "intermediate", "prediction" or "gold"); record its artifact."""
    s, role = profile.student, f"student-{stage}"
    teacher, tokenizer = run.load()
    if teacher.config.vocab_size != model.config.vocab_size:
        raise ValueError(f"student vocabulary ({model.config.vocab_size}) differs from the "
                         f"teacher's ({teacher.config.vocab_size}) at {run.model_dir}")
    targets = TARGETS if stage == "prediction" else ("start_positions", "end_positions")
    columns = [c for c in (*qa.MODEL_INPUTS, *targets) if c in windows.column_names]
    windows = windows.with_format("torch", columns=columns)
    wrapped, compute_loss, epochs = model, None, s.intermediate_epochs + s.prediction_epochs
    if stage == "intermediate":
        if not isinstance(model, WaldorfPreTrainedModel):
            model.set_attn_implementation("eager")  # fused kernels return no attention maps
        wrapped = DistillModel(model, teacher.config.hidden_size)
        compute_loss = intermediate_loss(teacher, getattr(model.config, "downsample", 1),
                                         s.layer_mapping, key["stage1_terms"])
        epochs = s.intermediate_epochs
        args = {"find_unused_parameters": True, **args}  # stage 1 never reaches the span head
    elif stage == "front":
        wrapped = FrontModel(model, teacher.config.hidden_size)
        layers = front_layer(model, teacher.config, s.layer_mapping,
                             source_config(key.get("init_source")))
        compute_loss = front_loss(teacher, layers)
        epochs = s.front_epochs
        args = {"find_unused_parameters": True, **args}  # only the front trains
    elif stage == "prediction":
        compute_loss = prediction_loss(s.temperature, s.hard_label_weight)
        epochs = s.prediction_epochs
    dev = data.load_squad("dev", profile)
    train_args = TrainArgs(**{**dict(epochs=epochs, learning_rate=s.learning_rate,
                                     batch_size=s.batch_size, seed=profile.seed,
                                     mixed_precision=profile.mixed_precision), **args})
    trained: list[History] = []

    def fit(folder: Path) -> dict | None:
        trained.append(train(wrapped, windows, train_args, folder, compute_loss=compute_loss,
                             tokenizer=tokenizer, progress=progress,
                             evaluate=lambda m: qa.evaluate_qa(getattr(m, "student", m),
                                                               tokenizer, dev, profile)))
        history = trained[0]
        if not history.finished:  # stopped by max_steps: resumable, not complete
            return None
        scores = {k: v for k, v in history.evals[-1].items() if k not in ("step", "epoch")}
        return dict(duration_s=history.elapsed_s, dev_scores=scores, train_windows=len(windows),
                    optimizer_steps=history.step,
                    mixed_precision=resolve_mixed_precision(profile.mixed_precision))

    path = artifact_dir(role, profile.name, key)
    meta = build_artifact(path, role, profile.name, key, fit)
    return StudentRun(path / "model", meta, trained[0] if trained else History.saved(path))


def _check_terms(terms: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(terms) - set(STAGE1_TERMS))
    if unknown or not terms:
        raise ValueError(f"stage1_terms must be a non-empty subset of {STAGE1_TERMS}, "
                         f"got {tuple(terms)}")
    return tuple(t for t in STAGE1_TERMS if t in terms)  # canonical order: one artifact key


def _found(stage: str, profile: Profile, key: dict) -> StudentRun | None:
    path = artifact_dir(f"student-{stage}", profile.name, key)
    meta = complete_metadata(path)
    return StudentRun(path / "model", meta, History.saved(path)) if meta else None


def distill(student: str | nn.Module = "waldorf", profile: Profile | None = None,
            stage: str = "both", *, teacher: TeacherRun | None = None,
            cache: datasets.Dataset | None = None, init_from_teacher: bool = False,
            augment: bool = True, augment_options: dict | None = None,
            train_args: dict | None = None, stage1_terms: Sequence[str] = STAGE1_TERMS,
            progress: bool = True, reuse_only: bool = False) -> StudentRun | None:
    """Distil the teacher into ``student`` (a ``build_student`` name, or a model).

    ``stage``: "intermediate", "prediction" or "both" (stage 2 then starts from stage 1's
    result, kept in ``StudentRun.previous``); a student initialised from the teacher whose
    convolutions stand in for teacher layers first gets stage 0 (``front``) when the profile's
    ``front_epochs`` > 0, kept as stage 1's ``previous`` (returned itself if it stopped early).
    ``init_from_teacher``: start from the teacher's weights, or, where the teacher is wider
    than the student, from the profile's ``student.init_checkpoint`` (``init_source``).
    ``cache``: the teacher cache, if already loaded.
    ``augment``: use the transfer set (``augment_options`` override ``build_transfer_set``'s
    defaults and the profile's ``augment_variants``). ``train_args``: ``TrainArgs`` overrides.
    ``stage1_terms``: what stage 1 matches (``intermediate_loss``; chapter 6 drops one).
    ``reuse_only``: only look the finished run up, train nothing; None where a stage is missing.
    Explained in book/04_distillation.ipynb.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    profile = profile or get_profile()
    s, args = profile.student, train_args or {}
    run = teacher or teachers.get_teacher(profile, progress=progress)
    model, name = _build(student, profile)
    options = s.augment_options() | (augment_options or {}) if augment else None
    t_config = AutoConfig.from_pretrained(run.model_dir) if init_from_teacher else None
    source = init_source(model, t_config, s.init_checkpoint) if init_from_teacher else None
    recipe = dict(student=_student_key(model, name, profile.seed), teacher=run.metadata["hash"],
                  init_from_teacher=init_from_teacher, layer_mapping=s.layer_mapping,
                  stage1_terms=_check_terms(stage1_terms), augment=options, seed=profile.seed,
                  learning_rate=s.learning_rate, batch_size=s.batch_size, train_args=args,
                  precision=resolve_mixed_precision(profile.mixed_precision),
                  **({"init_source": source} if source else {}))  # absent: the teacher's
    prepared: dict = {}

    def windows() -> datasets.Dataset:  # built on first need only: reused runs skip it
        if not prepared:
            prepared["windows"] = transfer_windows(profile, run, cache, options, progress)
        return prepared["windows"]

    def found_or_trained(stage: str, model: nn.Module, key: dict) -> StudentRun | None:
        found = _found(stage, profile, key)
        if found is None and not reuse_only:
            found = _stage(stage, model, windows(), run, profile, key, args, progress)
        return found

    if init_from_teacher and not reuse_only:
        copied = initialise_student(model, run.load()[0], s.layer_mapping, source)
        logger.info("initialised from %s: %s", source or "the teacher",
                    ", ".join(copied) or "nothing")
    previous, after, front = None, None, None
    if stage != "prediction":
        key = {**recipe, "epochs": s.intermediate_epochs}
        if init_from_teacher and s.front_epochs > 0 and front_layer(  # joins copied parts
                model, t_config, s.layer_mapping, source_config(source)):
            front_key = {k: v for k, v in recipe.items() if k != "stage1_terms"}
            front = found_or_trained("front", model, {**front_key, "epochs": s.front_epochs})
            if front is None or not front.metadata.get("complete"):
                return front
            model, key["front"] = front.load()[0].train(), front.metadata["hash"]
        previous = found_or_trained("intermediate", model, key)
        if previous is not None:
            previous.previous = front
        if stage == "intermediate" or previous is None or not previous.metadata.get("complete"):
            return previous
        model, after = previous.load()[0].train(), previous.metadata["hash"]
    key = {**recipe, "epochs": s.prediction_epochs, "temperature": s.temperature,
           "hard_label_weight": s.hard_label_weight, "after": after}
    final = found_or_trained("prediction", model, key)
    if final is not None:
        final.previous = previous
    return final


def train_without_teacher(student: str | nn.Module = "waldorf", profile: Profile | None = None,
                          *, epochs: float | None = None, init_from_teacher: bool = False,
                          teacher: TeacherRun | None = None, train_args: dict | None = None,
                          progress: bool = True) -> StudentRun:
    """The same student trained on gold labels alone: original questions, every window.

    Its schedule is the profile's ``gold_schedules`` entry for the student's name (tuned on
    dev), else the distillation's rate for stage 1's and stage 2's epochs together; ``epochs``
    overrides either. The teacher supplies only its tokenizer (and weights if
    ``init_from_teacher``, as in ``distill``). Explained in book/04_distillation.ipynb.
    """
    profile = profile or get_profile()
    s, args = profile.student, {**(train_args or {})}
    run = teacher or teachers.get_teacher(profile, progress=progress)
    model, name = _build(student, profile)
    if name in s.gold_schedules:
        learning_rate, tuned_epochs = s.gold_schedules[name]
        args = {"learning_rate": learning_rate, "epochs": tuned_epochs, **args}
    if epochs is not None:
        args["epochs"] = epochs
    source = (init_source(model, AutoConfig.from_pretrained(run.model_dir), s.init_checkpoint)
              if init_from_teacher else None)
    key = dict(student=_student_key(model, name, profile.seed), data=run.metadata["key"]["data"],
               teacher=run.metadata["hash"] if init_from_teacher else None,
               init_from_teacher=init_from_teacher,
               layer_mapping=s.layer_mapping if init_from_teacher else None, seed=profile.seed,
               epochs=s.intermediate_epochs + s.prediction_epochs,
               learning_rate=s.learning_rate, batch_size=s.batch_size, train_args=args,
               precision=resolve_mixed_precision(profile.mixed_precision),
               **({"init_source": source} if source else {}))
    found = _found("gold", profile, key)
    if found is not None:
        return found
    teacher_model, tokenizer = run.load()
    if init_from_teacher:
        initialise_student(model, teacher_model, s.layer_mapping, source)
    windows = data.tokenize_squad(data.load_squad("train", profile), tokenizer, profile)
    return _stage("gold", model, windows, run, profile, key, args, progress)
