"""Down- and up-sampling: the transformer units of WaLDORf run on a sequence ``downsample`` times
shorter, and the span head reads full-length states again.

Which tokens a reduced position covers is defined once, by ``ReducedLayout``: the down-sampling,
its mask, the up-sampling and stage 1's pooling of the teacher all group tokens through it.
Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from waldorf.models.configuration_waldorf import WaldorfConfig


@dataclass(frozen=True)
class ReducedLayout:
    """Token ``t`` lies in reduced position ``(t + lead) // factor``.

    ``lead`` masked zeros put before token 0 turn every grouping into plain runs of ``factor``
    consecutive positions: 0 by default (reduced position ``i`` covers tokens
    ``[factor * i, factor * (i + 1))``); ``factor - 1`` with ``separate_cls``, so that token 0
    ([CLS]) fills the first run alone and the runs of real tokens start at token 1. The last
    run may be short (ceil), filled up with masked zeros too.
    Explained in book/03_architecture.ipynb.
    """

    factor: int = 1
    separate_cls: bool = False

    @property
    def lead(self) -> int:
        return self.factor - 1 if self.separate_cls else 0

    def length(self, seq: int) -> int:
        """Reduced positions for ``seq`` tokens: ``ceil((seq + lead) / factor)``."""
        # no floor division of a negative number: exported to ONNX, it rounds towards zero
        return (seq + self.lead + self.factor - 1) // self.factor

    def positions(self, seq: int) -> torch.Tensor:
        """The reduced position of each of ``seq`` tokens, (seq,) integers."""
        return (torch.arange(seq) + self.lead) // self.factor  # (seq,)

    def pad(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Zeros before and after ``dim`` so that its runs of ``factor`` are the reduced positions.

        The length along ``dim`` goes from ``seq`` to ``factor * length(seq)``.
        """
        dim, seq = dim % x.dim(), x.shape[dim]
        tail = self.factor * self.length(seq) - seq - self.lead
        return F.pad(x, (0, 0) * (x.dim() - 1 - dim) + (self.lead, tail))  # (..., f * seq', ...)

    def stretch(self, x: torch.Tensor, seq: int, dim: int = 1) -> torch.Tensor:
        """Repeat each reduced position over its tokens: ``length(seq)`` -> ``seq`` on ``dim``."""
        return x.repeat_interleave(self.factor, dim).narrow(dim, self.lead, seq)  # (..., seq, ...)


def downsample_mask(attention_mask: torch.Tensor, factor: int,
                    separate_cls: bool = False) -> torch.Tensor:
    """Mask of the reduced sequence: a reduced position is real if any token it covers is real.

    Takes and returns ``(batch, seq)`` -> ``(batch, seq')`` in the input's dtype, ``seq'`` being
    ``ReducedLayout(factor, separate_cls).length(seq)``.
    Explained in book/03_architecture.ipynb.
    """
    layout = ReducedLayout(factor, separate_cls)
    mask = layout.pad(attention_mask[:, None].float(), -1)  # (batch, 1, factor * seq')
    pooled = F.max_pool1d(mask, factor, factor)  # (batch, 1, seq')
    return pooled[:, 0].to(attention_mask.dtype)  # (batch, seq')


def key_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive attention bias hiding padded keys: mask (batch, seq, 1) -> (batch, 1, 1, seq).

    None for None (no padding). Explained in book/03_architecture.ipynb.
    """
    if mask is None:
        return None
    keys = mask.transpose(1, 2)[:, None]  # (batch, 1, 1, seq)
    return (1.0 - keys) * torch.finfo(dtype).min  # (batch, 1, 1, seq)


class WaldorfDownsample(nn.Module):
    """Shorten the sequence ``downsample`` times (``ReducedLayout``); gaps are masked zeros.

    ``conv``: strided depthwise conv + pointwise projection + LayerNorm (learned);
    ``pool``: mean over the real tokens of each group (no parameters). With ``separate_cls``
    token 0 is a group of its own: the pool keeps it as it is, the conv projects it alone.
    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        hidden, self.factor = config.hidden_size, config.downsample
        self.layout = ReducedLayout(config.downsample, config.separate_cls)
        self.mode = config.downsample_mode
        if self.mode == "conv":
            self.depthwise = nn.Conv1d(hidden, hidden, self.factor, self.factor, groups=hidden)
            self.pointwise = nn.Linear(hidden, hidden)
            self.layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None):
        """(batch, seq, hidden) and mask (batch, seq, 1) or None -> (batch, seq', hidden), mask."""
        real = x.new_ones(x.shape[:2] + (1,)) if mask is None else mask  # (batch, seq, 1)
        x = self.layout.pad(x * real, 1)  # (batch, factor * seq', hidden)
        small_mask = None
        if mask is not None:
            small = downsample_mask(mask[..., 0], self.factor, self.layout.separate_cls)
            small_mask = small[..., None]  # (batch, seq', 1)
        if self.mode == "conv":
            h = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # (batch, seq', hidden)
            return self.layer_norm(self.pointwise(h)), small_mask  # (batch, seq', hidden)
        total = F.avg_pool1d(x.transpose(1, 2), self.factor)  # (batch, hidden, seq')
        real = self.layout.pad(real, 1).transpose(1, 2)  # (batch, 1, factor * seq')
        count = F.avg_pool1d(real, self.factor)  # (batch, 1, seq')
        return (total / count.clamp(min=1e-6)).transpose(1, 2), small_mask  # (batch, seq', hidden)


class WaldorfUpsample(nn.Module):
    """Repeat each reduced position over its tokens, add the full-length skip, LayerNorm.

    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        self.layout = ReducedLayout(config.downsample, config.separate_cls)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def stretch(self, x: torch.Tensor, seq: int) -> torch.Tensor:
        """Repeat reduced positions back to ``seq`` tokens (also used to report hidden states)."""
        return self.layout.stretch(x, seq)  # (batch, seq, hidden)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.stretch(x, skip.shape[1])  # (batch, seq, hidden)
        return self.layer_norm(x + skip)  # (batch, seq, hidden)


__all__ = ["ReducedLayout", "WaldorfDownsample", "WaldorfUpsample", "downsample_mask", "key_bias"]
