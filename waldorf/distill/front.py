"""Stage 0 (a reconstruction): fit the convolutions to the teacher layers they replace.

A student initialised from the teacher holds the teacher's embeddings below and its top layers
above, joined by convolutional units that start as identities, a poor stand-in for the teacher's
lower layers. Stage 0 trains only the embeddings and those units, against the output of the
teacher layer below the first one the transformer units copy (stage 1's ``front`` target), so
that stage 1 starts from a student whose copied layers get the input they expect. It needs the
teacher's lower layers only, so a step costs a fraction of a stage-1 step.
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
from waldorf.models import WaldorfPreTrainedModel
from waldorf.teacher import teacher_states


def front_layer(student: nn.Module, teacher_config: PretrainedConfig, mapping: str) -> int:
    """How many teacher layers the student's convolutions stand in for (0: no stage 0).

    Positive only for a WaLDORf student with conv units below transformer units of the
    teacher's shape (so ``copy_from_teacher`` fills them) that copy teacher layers from above
    the first. A narrower student copies no layers: there is nothing for stage 0 to join.
    Explained in book/04_distillation.ipynb.
    """
    if not isinstance(student, WaldorfPreTrainedModel) or not student.config.num_conv_layers:
        return 0
    config = student.config
    if (config.hidden_size, config.intermediate_size) != (teacher_config.hidden_size,
                                                          teacher_config.intermediate_size):
        return 0
    units = losses.layer_map(student.config.num_transformer_layers,
                             teacher_config.num_hidden_layers, mapping)
    return units[0] if units else 0


class FrontModel(nn.Module):
    """Stage 0's view of a WaLDORf student: the output of its embeddings and conv units.

    The student has the teacher's width (``front_layer``), so no projection is needed; the rest
    of it is carried along untrained. Saving saves the student.
    Explained in book/04_distillation.ipynb.
    """

    def __init__(self, student: WaldorfPreTrainedModel):
        super().__init__()
        self.student = student

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        states, _ = self.student.base_model.front(input_ids, attention_mask, token_type_ids)
        return states[-1]  # (batch, seq, hidden)

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
