"""Stage 0 (a reconstruction): fit the convolutions to the teacher layers they replace.

A student initialised from the teacher holds the teacher's embeddings below and its top layers
above, joined by convolutional units that start as identities, a poor stand-in for the teacher's
lower layers. Stage 0 trains only the embeddings and those units, against the output of the
teacher layer below the first one the transformer units copy (stage 1's ``front`` target), so
that stage 1 starts from a student whose copied layers get the input they expect. It needs the
teacher's lower layers only, so a step costs a fraction of a stage-1 step. A student whose
units come from a pretrained model of its own width (a wide teacher, ``from_teacher.init_source``)
is fitted to the teacher layer below its mapped ones through a learned projection.
Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import PretrainedConfig

from waldorf import qa
from waldorf.distill import losses
from waldorf.distill.projections import to_teacher_width
from waldorf.models import WaldorfPreTrainedModel
from waldorf.teacher import teacher_states


def front_layer(student: nn.Module, teacher_config: PretrainedConfig, mapping: str,
                copied_from: PretrainedConfig | None = None) -> int:
    """How many teacher layers the student's convolutions stand in for (0: no stage 0).

    Positive only for a WaLDORf student with conv units below transformer units that its
    initialisation fills, i.e. of the shape of ``copied_from`` (the config of the model they are
    copied from: the teacher's by default, a pretrained model of the student's width where the
    teacher is wider), and whose teacher layers (``losses.layer_map``) start above the first.
    A student whose units nothing fills has nothing for stage 0 to join.
    Explained in book/04_distillation.ipynb.
    """
    if not isinstance(student, WaldorfPreTrainedModel) or not student.config.num_conv_layers:
        return 0
    config, source = student.config, copied_from or teacher_config
    if (config.hidden_size, config.intermediate_size) != (source.hidden_size,
                                                          source.intermediate_size):
        return 0
    units = losses.layer_map(student.config.num_transformer_layers,
                             teacher_config.num_hidden_layers, mapping)
    return units[0] if units else 0


class FrontModel(nn.Module):
    """Stage 0's view of a WaLDORf student: the output of its embeddings and conv units, mapped
    to the teacher's width by ``projection`` (an identity when the widths match).

    The rest of the student is carried along untrained. Saving saves the student: the
    projection is discarded. Explained in book/04_distillation.ipynb.
    """

    def __init__(self, student: WaldorfPreTrainedModel, teacher_hidden: int):
        super().__init__()
        self.student = student
        self.projection = to_teacher_width(student.config.hidden_size, teacher_hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        states, _ = self.student.base_model.front(input_ids, attention_mask, token_type_ids)
        return self.projection(states[-1])  # (batch, seq, teacher_hidden)

    def save_pretrained(self, path: str | Path, **kwargs) -> None:
        self.student.save_pretrained(path, **kwargs)


def front_loss(teacher: nn.Module, layers: int,
               ) -> Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]:
    """Stage 0's ``compute_loss``: MSE of the student's front against the teacher's ``layers``.

    Explained in book/04_distillation.ipynb.
    """
    def compute_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = {k: batch[k] for k in qa.MODEL_INPUTS if k in batch}
        mask = inputs["attention_mask"]  # (batch, seq)
        teacher.to(mask.device)
        target = teacher_states(teacher, inputs, layers)  # (batch, seq, teacher_hidden)
        loss = losses.hidden_mse(model(**inputs), target, mask)
        return loss, {"front": loss.item()}

    return compute_loss


__all__ = ["FrontModel", "front_layer", "front_loss"]
