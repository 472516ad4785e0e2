"""Exercises of chapter 3: what a convolutional unit costs, what factorised embeddings save,
and how far the convolutions see.

Each answer is a function of the sizes; the checker compares it, on several sizes, with the
book's own count (``count_macs``), with the real modules' parameters, or with a gradient
measurement through real convolutional units. Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from waldorf.exercises import Verdict, exercise
from waldorf.models import WaldorfConfig, count_macs
from waldorf.models.modeling_waldorf import WaldorfConvUnit

CHAPTER = "book/03_architecture.ipynb"


def _conv_only(hidden: int, kernel: int, layers: int = 1) -> WaldorfConfig:
    """A student of ``layers`` convolutional units and nothing else."""
    return WaldorfConfig(hidden_size=hidden, num_attention_heads=1, intermediate_size=hidden,
                         conv_kernel_size=kernel, num_conv_layers=layers,
                         num_post_conv_layers=0, num_transformer_layers=0)


def _matches(answer, cases: list[tuple], truth) -> bool:
    return all(int(answer(*case)) == int(truth(*case)) for case in cases)


def _diagnose(answer, cases: list[tuple], wrong: dict, fallback: str) -> Verdict:
    for hint, value in wrong.items():
        if _matches(answer, cases, value):
            return Verdict(False, hint)
    return Verdict(False, fallback)


MAC_CASES = [(384, 384, 7), (128, 64, 7), (192, 256, 5), (64, 32, 3)]


@exercise("3.1", CHAPTER, "Multiply-accumulates of a convolutional unit")
def check_conv_macs(answer: object) -> Verdict:
    """``answer(seq_len, hidden, kernel)`` -> MACs of one convolutional unit, as ``count_macs``
    counts them. Explained in book/03_architecture.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (seq_len, hidden, kernel)")

    def truth(length, hidden, kernel):
        return count_macs(_conv_only(hidden, kernel), length)["conv"]

    if _matches(answer, MAC_CASES, truth):
        return Verdict(True, "L (k H + H^2): k MACs per channel for the depthwise convolution, "
                             "an H x H matrix for the pointwise one, at every position")
    wrong = {
        "that is a full convolution (k x H x H weights); the unit is depthwise-separable: a "
        "depthwise k-tap filter per channel, then one H x H pointwise matrix":
            lambda length, h, k: length * k * h * h,
        "the pointwise (1 x 1) convolution is missing: it mixes the channels with an H x H "
        "matrix at every position": lambda length, h, k: length * k * h,
        "the depthwise convolution is missing: k MACs per channel at every position":
            lambda length, h, k: length * h * h,
        "that is one position; the unit runs at every position of the sequence":
            lambda length, h, k: k * h + h * h,
    }
    return _diagnose(answer, MAC_CASES, wrong, "count the weights one position multiplies: "
                                               "the depthwise filter and the pointwise matrix")


EMBEDDING_CASES = [(30522, 128, 384), (30522, 128, 1024), (1000, 32, 64), (50000, 256, 768)]


def embedding_saving(vocab_size: int, embedding_size: int, hidden_size: int) -> int:
    """Parameters the factorised word table saves: a ``vocab x hidden`` table against a
    ``vocab x embedding`` table plus its ``embedding -> hidden`` projection (with bias),
    counted on the real modules (on the meta device: shapes only).

    Explained in book/03_architecture.ipynb.
    """
    with torch.device("meta"):
        full = nn.Embedding(vocab_size, hidden_size)
        small = nn.Sequential(nn.Embedding(vocab_size, embedding_size),
                              nn.Linear(embedding_size, hidden_size))
    return (sum(p.numel() for p in full.parameters())
            - sum(p.numel() for p in small.parameters()))


@exercise("3.2", CHAPTER, "What factorised embeddings save")
def check_embedding_saving(answer: object) -> Verdict:
    """``answer(vocab_size, embedding_size, hidden_size)`` -> parameters saved on the word table.

    Explained in book/03_architecture.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (vocab_size, embedding_size, "
                              "hidden_size)")
    if _matches(answer, EMBEDDING_CASES, embedding_saving):
        return Verdict(True, "V H - (V E + E H + H): the table shrinks by V (H - E), the "
                             "projection costs back E H + H")
    wrong = {
        "the small table needs its projection up to hidden_size: E x H weights and H biases":
            lambda v, e, h: v * h - v * e,
        "don't forget the projection's bias: hidden_size more parameters":
            lambda v, e, h: v * h - v * e - e * h,
        "that is the size of the factorised table and its projection; the question asks how "
        "many parameters fewer than the full table": lambda v, e, h: v * e + e * h + h,
        "the sign: the full table is the larger one, so the saving is full minus factorised":
            lambda v, e, h: -embedding_saving(v, e, h),
    }
    return _diagnose(answer, EMBEDDING_CASES, wrong, "count the parameters of nn.Embedding(V, H) "
                                                     "and of nn.Embedding(V, E) followed by "
                                                     "nn.Linear(E, H), and subtract")


def measured_receptive_field(num_layers: int, kernel: int, length: int = 64) -> int:
    """How many input positions one output position of a stack of real convolutional units
    depends on: the positions where its gradient is not zero (random weights, width 8).

    Explained in book/03_architecture.ipynb.
    """
    config = _conv_only(8, kernel, num_layers)
    torch.manual_seed(0)
    units = [WaldorfConvUnit(config).eval() for _ in range(num_layers)]
    x = torch.randn(1, length, config.hidden_size, requires_grad=True)  # (batch, seq, hidden)
    h = x
    for unit in units:
        h = unit(h, None)  # (batch, seq, hidden)
    h[0, length // 2].sum().backward()
    return int((x.grad[0].abs().sum(-1) > 0).sum())


FIELD_CASES = [(1, 7), (2, 7), (3, 5), (2, 3), (4, 7)]


@exercise("3.3", CHAPTER, "Receptive field of the convolutions")
def check_receptive_field(answer: object) -> Verdict:
    """``answer(num_layers, kernel)`` -> how many tokens one output of the stack sees.

    Explained in book/03_architecture.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (num_layers, kernel)")
    if _matches(answer, FIELD_CASES, measured_receptive_field):
        return Verdict(True, "1 + n (k - 1): each unit widens the view by k - 1 tokens, "
                             "(k - 1) / 2 on each side")
    wrong = {
        "consecutive units share their centre token: each one adds k - 1 tokens, not k":
            lambda n, k: n * k,
        "count the centre token too: one unit of kernel k sees k tokens":
            lambda n, k: n * (k - 1),
        "every unit widens the view, not only the first": lambda n, k: k,
        "count both sides of the centre token": lambda n, k: 1 + n * (k - 1) // 2,
    }
    return _diagnose(answer, FIELD_CASES, wrong, "one unit of kernel k sees k tokens; what does "
                                                 "a second unit on top of it see?")


__all__ = ["check_conv_macs", "check_embedding_saving", "check_receptive_field",
           "embedding_saving", "measured_receptive_field"]
