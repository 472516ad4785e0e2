"""Recorded studies: many (model, seed) runs that no chapter's 45 minutes can hold.

A study is a named list of runs. ``waldorf study NAME`` trains what is missing (through the
same resumable artifacts the chapters use), chooses each model's no-answer threshold on
``dev.json``, scores ``test.json`` once with :func:`waldorf.metrics.report`, and writes one
small JSON per run, with its provenance (profile, hardware, git revision, minutes) and the
per-question scores that paired comparisons need. A finished run's file is never redone, so
the command can be stopped and started again across sessions, in the background:

    nohup waldorf study headline > study.log 2>&1 &

The files under ``waldorf/recorded/studies/NAME/PROFILE/`` are committed; chapters load them
with :func:`load_study` and label them as recorded by this command at their revision.
Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from waldorf.config import Profile, get_profile
from waldorf.errors import CorruptArtifactError, UserError
from waldorf.files import write_atomic

if TYPE_CHECKING:
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).parent / "recorded" / "studies"
SEEDS = (42, 1, 2)  # 42 is the book's own run, so its artifacts are reused, not retrained


@dataclass(frozen=True)
class Recipe:
    """How a study's model is made: a ``build_student`` name distilled from the book's teacher
    by the book's recipe, or its gold-only control.

    ``student`` "cut4" is the four-layer cut at the teacher's width (chapter 5's baseline);
    ``overrides`` are ``WaldorfConfig`` fields of a WaLDORf shape variant, as (field, value)
    pairs. Explained in book/05_baselines.ipynb.
    """

    student: str
    overrides: tuple[tuple[str, object], ...] = ()
    gold_only: bool = False  # the same architecture on gold labels alone, its schedule tuned on dev
    transformer_only: bool = False  # draws the speed-accuracy front WaLDORf is judged against
    layer_mapping: str | None = None  # which teacher layers it copies; None: the profile's


# Every model a study may name. The cuts copy every other teacher layer (the "uniform" map), as
# DistilBERT's and BERT-PKD's students do: on dev it beat the top layers by far for two and three
# layers (book/development.md, "At TinyBERT-4's speed"). TinyBERT-4's shape is narrower than the
# teacher, so it copies projected embeddings only and fits the teacher through learned
# projections (stage 1), without the general distillation on a large corpus that the paper's
# TinyBERT-4 had. WaLDORf's two shape variants:
# four transformer units (the default until the speed condition moved it to three) and no merge
# of token pairs (chapter 8's).
MODELS: dict[str, Recipe] = {
    "waldorf": Recipe("waldorf"),
    "waldorf-4units": Recipe("waldorf", (("num_transformer_layers", 4),)),
    "waldorf-nomerge": Recipe("waldorf", (("downsample", 1),)),
    **{f"cut{depth}": Recipe(f"teacher{depth}", transformer_only=True, layer_mapping="uniform")
       for depth in (1, 2, 3)},
    "cut4": Recipe("cut4", transformer_only=True, layer_mapping="uniform"),
    "tinybert4": Recipe("tinybert4", transformer_only=True),
    "gold-waldorf": Recipe("waldorf", gold_only=True),
    "gold-cut4": Recipe("cut4", gold_only=True, layer_mapping="uniform"),  # cut4's own start
}


@dataclass(frozen=True)
class Run:
    """One (model, seed) of a study: ``teacher`` or a ``MODELS`` name.

    Students distil from the book's teacher (the profile's seed); only their own seed changes.
    Explained in book/04_distillation.ipynb.
    """

    model: str
    seed: int

    @property
    def name(self) -> str:
        """File name of the run's result, e.g. ``waldorf-seed1``."""
        return f"{self.model}-seed{self.seed}"


def _runs(*models: str) -> tuple[Run, ...]:
    return tuple(Run(model, seed) for model in models for seed in SEEDS)


STUDIES: dict[str, tuple[Run, ...]] = {
    # The book's headline rows, three seeds each: the teacher, WaLDORf, the 4-layer student.
    "headline": _runs("teacher", "waldorf", "cut4"),
    # The speed-accuracy front (chapter 9): transformer-only cuts of the teacher at every depth,
    # TinyBERT-4's shape, WaLDORf and its shape variants, and the tuned gold-only controls of
    # WaLDORf and the cut4.
    "front": _runs("cut1", "cut2", "cut3", "cut4", "tinybert4", "waldorf", "waldorf-4units",
                   "waldorf-nomerge", "gold-waldorf", "gold-cut4"),
}


def build_study_model(model: str, teacher_config: PretrainedConfig, profile: Profile):
    """A freshly initialised model of ``MODELS[model]`` (for speed: weights do not matter).

    Explained in book/05_baselines.ipynb.
    """
    from waldorf.models import build_student

    name = _student_name(_recipe(model), teacher_config)
    overrides = recipe_profile(model, profile).student.model_overrides
    return build_student(name, **(overrides if name == "waldorf" else {}))


def model_table(models: dict, seq_len: int) -> pd.DataFrame:
    """Parameters, multiply-accumulates for one ``seq_len``-token window, and recipe of each
    study model (``build_study_model``'s). Explained in book/09_front.ipynb.
    """
    from waldorf.models import count_macs, count_parameters

    rows = {}
    for name, model in models.items():
        recipe = _recipe(name)
        rows[name] = {
            "parameters (M)": count_parameters(model)["total"] / 1e6,
            f"GMACs, {seq_len} tokens": count_macs(model.config, seq_len)["total"] / 1e9,
            "trained on": "gold labels only" if recipe.gold_only else "the teacher (distilled)",
            "on the front": "yes" if recipe.transformer_only else "no"}
    return pd.DataFrame.from_dict(rows, orient="index")


def _recipe(model: str) -> Recipe:
    if model not in MODELS:
        raise UserError(f"unknown study model {model!r}; choose one of {sorted(MODELS)}")
    return MODELS[model]


def _student_name(recipe: Recipe, teacher_config: PretrainedConfig) -> str:
    from waldorf.models.baselines import four_layer_baseline

    return four_layer_baseline(teacher_config) if recipe.student == "cut4" else recipe.student


def recipe_profile(model: str, profile: Profile) -> Profile:
    """``profile`` with a study model's shape overrides and layer map applied (what chapter 5's
    baseline trains with too, so it shares its artifacts with the study). Explained in
    book/05_baselines.ipynb.
    """
    recipe, student = _recipe(model), profile.student
    if recipe.overrides:
        student = replace(student, model_overrides={**student.model_overrides,
                                                    **dict(recipe.overrides)})
    if recipe.layer_mapping:
        student = replace(student, layer_mapping=recipe.layer_mapping)
    return replace(profile, student=student)


def trained_model_dir(run: Run, profile: Profile) -> tuple[Path, float]:
    """Train (or find) the run's model; its folder and the minutes its artifacts took.

    Explained in book/04_distillation.ipynb.
    """
    from transformers import AutoConfig

    from waldorf import teacher
    from waldorf.distill import distill, train_without_teacher

    seeded = replace(profile, seed=run.seed)
    if run.model == "teacher":
        found = teacher.get_teacher(seeded)
        return found.model_dir, (found.metadata.get("duration_s") or 0) / 60
    recipe, book_teacher = _recipe(run.model), teacher.get_teacher(profile)
    teacher_config = AutoConfig.from_pretrained(book_teacher.model_dir)  # no weights needed
    name = _student_name(recipe, teacher_config)
    seeded = recipe_profile(run.model, seeded)
    train = train_without_teacher if recipe.gold_only else distill
    student = train(name, seeded, init_from_teacher=True, teacher=book_teacher)
    minutes, stage = 0.0, student
    while stage is not None:  # stage 2, then the stages before it
        minutes += (stage.metadata.get("duration_s") or 0) / 60
        stage = stage.previous
    return student.model_dir, minutes


def score_run(study: str, run: Run, profile: Profile) -> dict:
    """Train (or find) one run, choose its threshold on dev, report it on test.

    Explained in book/04_distillation.ipynb.
    """
    from waldorf import data, metrics, provenance, qa

    started = time.time()
    model_dir, train_minutes = trained_model_dir(run, profile)
    model, tokenizer = qa.load_qa(model_dir)
    dev, test = data.load_squad("dev", profile), data.load_squad("test", profile)
    scores, dev_predictions = qa.protocol_scores(model, tokenizer, profile, dev, test)
    return dict(study=study, run=run.name, model=run.model, seed=run.seed,
                model_dir=model_dir.name, train_minutes=round(train_minutes, 2),
                dev=metrics.report(dev, dev_predictions, scores.threshold, n_boot=1),
                test=metrics.report_scores(scores), questions=scores.to_json(),
                provenance=provenance.collect(profile, started))


def _digest(document: dict) -> str:
    body = {k: v for k, v in document.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_result(path: Path, document: dict) -> None:
    """Save one run's result atomically, with a checksum of its content.

    Explained in book/04_distillation.ipynb.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({**document, "sha256": _digest(document)}, indent=1) + "\n")


def read_result(path: Path) -> dict:
    """One run's result; a file that is not valid JSON or fails its checksum is refused.

    Explained in book/04_distillation.ipynb.
    """
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifactError(f"{path}: not a readable result file ({err})") from err
    if document.get("sha256") != _digest(document):
        raise CorruptArtifactError(f"{path}: content does not match its checksum")
    return document


def record_study(name: str, profile: Profile | None = None, results: Path = RESULTS,
                 score: Callable[[str, Run, Profile], dict] = score_run,
                 seeds: Sequence[int] | None = None,
                 models: Sequence[str] | None = None) -> list[Path]:
    """Run every missing run of study ``name`` (only those of ``seeds`` and ``models``, if
    given); the result files, finished ones included.

    Explained in book/04_distillation.ipynb.
    """
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    profile = profile or get_profile()
    folder = results / name / profile.name
    runs = tuple(run for run in STUDIES[name] if (seeds is None or run.seed in seeds)
                 and (models is None or run.model in models))
    for index, run in enumerate(runs, 1):
        path = folder / f"{run.name}.json"
        if path.exists():
            try:
                read_result(path)
                print(f"[{index}/{len(runs)}] {run.name}: recorded, skipped", flush=True)
                continue
            except CorruptArtifactError as err:
                logger.warning("%s; running it again", err)
        print(f"[{index}/{len(runs)}] {run.name}: running on {profile.name!r}", flush=True)
        write_result(path, score(name, run, profile))
    return [folder / f"{run.name}.json" for run in runs]


def load_study(name: str, profile: str = "cpu", results: Path = RESULTS) -> list[dict]:
    """The recorded result documents of a study (those that exist), in the study's order.

    Explained in book/04_distillation.ipynb.
    """
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    folder = results / name / profile
    paths = [folder / f"{run.name}.json" for run in STUDIES[name]]
    return [read_result(path) for path in paths if path.exists()]


def seed_table(documents: list[dict], metric: str = "f1") -> pd.DataFrame:
    """Mean, standard deviation and per-seed values of one test metric, one row per model.

    Explained in book/04_distillation.ipynb.
    """
    from waldorf.metrics import seed_summary

    by_model: dict[str, dict[int, float]] = {}
    for doc in documents:
        by_model.setdefault(doc["model"], {})[doc["seed"]] = doc["test"][metric]
    rows = []
    for model, values in by_model.items():
        summary = seed_summary(values)
        per_seed = ", ".join(f"{seed}: {value:.2f}" for seed, value in values.items())
        rows.append({"model": model, "seeds": summary["n"], f"{metric} mean": summary["mean"],
                     f"{metric} std": summary["std"], "per seed": per_seed})
    return pd.DataFrame(rows).set_index("model")


def run_study(args: argparse.Namespace) -> int:
    """``waldorf study``: run (or list) a recorded study.

    Explained in book/04_distillation.ipynb.
    """
    if args.list:
        for name, runs in STUDIES.items():
            print(f"{name}: " + ", ".join(run.name for run in runs))
        return 0
    if not args.name:
        raise UserError("name a study (or --list them)")
    profile = get_profile(args.profile)
    paths = record_study(args.name, profile, args.results or RESULTS, seeds=args.seeds,
                         models=args.models)
    documents = [read_result(path) for path in paths]
    print(seed_table(documents).round(2).to_string())
    return 0
