"""How training windows become batches: a resumable length-grouped order, batches that split
into equal slices over processes, and padding trimmed per batch.

Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate


class EpochSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a resumed run sees the same order.

    With ``lengths``, each block of 50 batches is sorted by length before it is cut into
    batches (then the batches are shuffled), so a batch holds windows of similar length and
    ``trim_padding`` can drop most padding. Accelerate calls ``set_epoch`` at each epoch.
    """

    def __init__(self, n: int, seed: int, lengths: torch.Tensor | None = None,
                 batch_size: int = 1):
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator)
        if self.lengths is None:
            return iter(order.tolist())
        blocks = [block[torch.argsort(self.lengths[block], descending=True, stable=True)]
                  for block in order.split(50 * self.batch_size)]
        batches = torch.cat(blocks).split(self.batch_size)
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return iter(torch.cat([batches[i] for i in shuffled]).tolist())


class EvenBatches(Sampler[list[int]]):
    """Batches of ``batch_size`` in ``sampler``'s order, the last one completed from the first
    to a multiple of ``processes``, so that every batch splits into one equal slice per
    process (on one process: the batches of a plain DataLoader).

    Explained in book/02_teacher.ipynb.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, processes: int = 1):
        self.sampler, self.batch_size, self.processes = sampler, batch_size, processes

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if batches:
            batches[-1] += batches[0][:-len(batches[-1]) % self.processes]
        return iter(batches)


def trim_padding(items: list[dict]) -> dict:
    """``default_collate``, then every (batch, seq, ...) tensor cut after the batch's longest
    window (rounded up to a multiple of 8, which down-sampling students need).

    Explained in book/02_teacher.ipynb.
    """
    batch = default_collate(items)
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    if mask is None:
        return batch
    full = mask.shape[1]
    keep = min(full, -(-int(mask.sum(1).max()) // 8) * 8)
    return {k: v[:, :keep] if v.ndim >= 2 and v.shape[1] == full else v
            for k, v in batch.items()}


def window_lengths(dataset: Dataset) -> torch.Tensor | None:
    """Real tokens per window of a ``datasets.Dataset`` of windows, else None (plain shuffle).

    Explained in book/02_teacher.ipynb.
    """
    try:
        mask = dataset.with_format("numpy", columns=["attention_mask"])["attention_mask"]
    except (AttributeError, KeyError, ValueError):
        return None  # not a datasets.Dataset of windows: plain shuffle
    return torch.as_tensor(np.asarray(mask).sum(axis=1))
