"""Distillation of the fine-tuned teacher into a student: losses and the stages.

``losses`` holds the loss functions (pure tensor code); ``from_teacher`` initialises a student
from its teacher (or, for a wider teacher, from a pretrained model of the student's width);
``front`` is stage 0, which fits a WaLDORf's convolutions to the teacher layers they replace;
``projections`` maps student states to a wider teacher's; ``stages`` runs stages 0, 1 and 2
through the training loop. Explained in book/04_distillation.ipynb.
"""

from waldorf.distill.from_teacher import copy_from_teacher, init_source, initialise_student
from waldorf.distill.losses import (
    attention_kl,
    attention_transfer,
    hidden_mse,
    layer_map,
    pool_attention,
    prediction_loss,
    soft_cross_entropy,
)
from waldorf.distill.stages import (
    STAGE1_TERMS,
    StudentRun,
    distill,
    train_without_teacher,
)

__all__ = [
    "STAGE1_TERMS",
    "StudentRun",
    "attention_kl",
    "attention_transfer",
    "copy_from_teacher",
    "distill",
    "hidden_mse",
    "init_source",
    "initialise_student",
    "layer_map",
    "pool_attention",
    "prediction_loss",
    "soft_cross_entropy",
    "train_without_teacher",
]
