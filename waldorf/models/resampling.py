"""Down- and up-sampling: the transformer units of WaLDORf run on a sequence ``downsample`` times
shorter, and the span head reads full-length states again.

A reduced position ``i`` covers tokens ``[downsample * i, downsample * (i + 1))``.
Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from waldorf.models.configuration_waldorf import WaldorfConfig


def downsample_mask(attention_mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Mask of the reduced sequence: a reduced position is real if any token it covers is real.

    Takes and returns ``(batch, seq)`` -> ``(batch, ceil(seq / factor))`` in the input's dtype.
    Explained in book/03_architecture.ipynb.
    """
    mask = attention_mask[:, None].float()  # (batch, 1, seq)
    pooled = F.max_pool1d(mask, factor, factor, ceil_mode=True)  # (batch, 1, seq')
    return pooled[:, 0].to(attention_mask.dtype)  # (batch, seq')


class WaldorfDownsample(nn.Module):
    """Shorten the sequence ``downsample`` times; odd lengths are right-padded with masked zeros.

    ``conv``: strided depthwise conv + pointwise projection + LayerNorm (learned);
    ``pool``: mean over the real tokens of each window (no parameters).
    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        hidden, self.factor = config.hidden_size, config.downsample
        self.mode = config.downsample_mode
        if self.mode == "conv":
            self.depthwise = nn.Conv1d(hidden, hidden, self.factor, self.factor, groups=hidden)
            self.pointwise = nn.Linear(hidden, hidden)
            self.layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None):
        """(batch, seq, hidden) and mask (batch, seq, 1) or None -> (batch, seq', hidden), mask."""
        extra = (-x.shape[1]) % self.factor
        real = x.new_ones(x.shape[:2] + (1,)) if mask is None else mask  # (batch, seq, 1)
        x = F.pad(x * real, (0, 0, 0, extra))  # (batch, seq_padded, hidden)
        small_mask = None if mask is None else downsample_mask(mask[..., 0], self.factor)[..., None]
        if self.mode == "conv":
            h = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # (batch, seq', hidden)
            return self.layer_norm(self.pointwise(h)), small_mask  # (batch, seq', hidden)
        total = F.avg_pool1d(x.transpose(1, 2), self.factor)  # (batch, hidden, seq')
        real = F.pad(real, (0, 0, 0, extra)).transpose(1, 2)  # (batch, 1, seq_padded)
        count = F.avg_pool1d(real, self.factor)  # (batch, 1, seq')
        return (total / count.clamp(min=1e-6)).transpose(1, 2), small_mask  # (batch, seq', hidden)


class WaldorfUpsample(nn.Module):
    """Repeat each reduced position ``downsample`` times, add the full-length skip, LayerNorm.

    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        self.factor = config.downsample
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def stretch(self, x: torch.Tensor, seq: int) -> torch.Tensor:
        """Repeat reduced positions back to ``seq`` tokens (also used to report hidden states)."""
        return x.repeat_interleave(self.factor, dim=1)[:, :seq]  # (batch, seq, hidden)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.stretch(x, skip.shape[1])  # (batch, seq, hidden)
        return self.layer_norm(x + skip)  # (batch, seq, hidden)


__all__ = ["WaldorfDownsample", "WaldorfUpsample", "downsample_mask"]
