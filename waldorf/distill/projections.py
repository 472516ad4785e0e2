"""The learned maps from the student's width to its teacher's: scaffolding of stages 0 and 1.

A student narrower than its teacher (WaLDORf's 384 against BERT-Large's 1,024) cannot be
compared with the teacher's hidden states directly. Each comparison goes through a linear map
``nn.Linear(student width, teacher width)``, trained with the student during the stage and
discarded after it: saving a wrapped model saves the student alone. Attention maps need no
learned map: the teacher's heads are averaged into the student's head count
(``losses.group_heads``) and pooled to a down-sampled student's length
(``losses.pool_attention``). Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


def to_teacher_width(width: int, teacher_width: int) -> nn.Module:
    """An identity where the widths match (copied units already live in the teacher's space),
    else a learned ``nn.Linear(width, teacher_width)``.

    Explained in book/04_distillation.ipynb.
    """
    return nn.Identity() if width == teacher_width else nn.Linear(width, teacher_width)


class DistillModel(nn.Module):
    """The student plus stage 1's projections to the teacher's width, trained together.

    ``projection`` maps the final hidden states; ``unit_projection`` every reported state
    (``to_teacher_width``), of which stage 1 compares the units' and the conv front's. Both
    run inside ``forward``: DistributedDataParallel counts a parameter's gradient only when it
    is used there. Saving saves the student only. Explained in book/04_distillation.ipynb.
    """

    def __init__(self, student: nn.Module, teacher_hidden: int):
        super().__init__()
        self.student = student
        width = student.config.hidden_size
        self.projection = nn.Linear(width, teacher_hidden)
        self.unit_projection = to_teacher_width(width, teacher_hidden)

    def forward(self, **inputs):
        out = self.student(**inputs, output_hidden_states=True, output_attentions=True)
        states = tuple(self.unit_projection(h) for h in out.hidden_states)  # (b, s, t_hidden)
        return out, self.projection(out.hidden_states[-1]), states  # (batch, seq, t_hidden)

    def save_pretrained(self, path: str | Path, **kwargs) -> None:
        self.student.save_pretrained(path, **kwargs)


__all__ = ["DistillModel", "to_teacher_width"]
