"""Exercises of chapter 8: what the down-sampling does to a window's mask, what halving the
sequence saves in arithmetic, and which merged position a boundary token falls in. The
checkers compute the right answer from the model's own code (``downsample_mask``,
``count_macs``). Explained in book/08_student_shape.ipynb.
"""

from __future__ import annotations

import math

import torch

from waldorf.exercises import Verdict, exercise
from waldorf.models import WaldorfConfig, count_macs, downsample_mask

CHAPTER = "book/08_student_shape.ipynb"
FACTOR = 2  # the default student's down-sampling
WINDOW_MASK = [1, 1, 1, 1, 1, 0, 0]  # five real tokens, two of padding
SEQ_LEN = 384  # the paper's window length
GOLD_START = 7  # a token index in exercise 8.3


def _ints(value: object) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    return [int(v) for v in value]


@exercise("8.1", CHAPTER, "the mask after down-sampling")
def reduced_mask(answer: object) -> Verdict:
    """Answer: the mask the transformer units see for ``WINDOW_MASK`` down-sampled by
    ``FACTOR``. Explained in book/08_student_shape.ipynb.
    """
    got = _ints(answer)
    want = _ints(downsample_mask(torch.tensor([WINDOW_MASK]), FACTOR))
    if got == want:
        return Verdict(True, f"{want}: a merged position is real if any token it covers is; the "
                             "odd last token gets a padded partner")
    if len(got) == len(WINDOW_MASK) // FACTOR:
        return Verdict(False, f"{len(WINDOW_MASK)} tokens in pairs give "
                              f"ceil({len(WINDOW_MASK)} / {FACTOR}) positions: the last token "
                              "is padded, not dropped")
    if len(got) != len(want):
        return Verdict(False, f"one entry per merged position: {len(want)} of them")
    return Verdict(False, "a merged position is real if ANY of the tokens it covers is real "
                          "(a pair of a real token and padding is real)")


def _ratio(part: str) -> float:
    full = count_macs(WaldorfConfig(downsample=1), SEQ_LEN)[part]
    return full / count_macs(WaldorfConfig(), SEQ_LEN)[part]


@exercise("8.2", CHAPTER, "attention's cost at half length")
def half_length_cost(answer: object) -> Verdict:
    """Answer: ``{"attention_scores": r1, "ffn": r2}``, how many times more multiply-accumulates
    each costs without the down-sampling than with it, at 384 tokens.
    Explained in book/08_student_shape.ipynb.
    """
    got = {part: float(answer[part]) for part in ("attention_scores", "ffn")}
    want = {part: _ratio(part) for part in got}
    wrong = [part for part in got if not math.isclose(got[part], want[part], rel_tol=0.01)]
    if not wrong:
        return Verdict(True, f"attention scores {want['attention_scores']:.0f}x (they grow with "
                             f"the square of the length), feed-forward {want['ffn']:.0f}x "
                             "(linear)")
    part = wrong[0]
    if math.isclose(got[part], 1 / want[part], rel_tol=0.01):
        return Verdict(False, f"{part}: the ratio is the cost at full length over the cost at "
                              "half length, so larger than 1")
    if part == "attention_scores":
        return Verdict(False, "attention scores compare every position with every other: "
                              "length x length products")
    return Verdict(False, "the feed-forward layers do the same work at every position: their "
                          "cost grows linearly with the length")


@exercise("8.3", CHAPTER, "the merged position of a boundary token")
def merged_position(answer: object) -> Verdict:
    """Answer: ``{"position": p, "partner": t}``, the merged position that holds token
    ``GOLD_START`` and the other token merged with it. Explained in book/08_student_shape.ipynb.
    """
    position, partner = int(answer["position"]), int(answer["partner"])
    want_position = GOLD_START // FACTOR
    want_partner = next(t for t in range(want_position * FACTOR, (want_position + 1) * FACTOR)
                        if t != GOLD_START)
    if position != want_position:
        return Verdict(False, "positions count from 0 and pairs are tokens 0-1, 2-3, ...: "
                              "position p holds tokens 2p and 2p + 1")
    if partner != want_partner:
        return Verdict(False, f"position {want_position} holds tokens {want_position * FACTOR} "
                              f"and {want_position * FACTOR + 1}: which one is not "
                              f"{GOLD_START}?")
    return Verdict(True, f"position {want_position}, with token {want_partner}: a start at "
                         f"{want_partner} lands in the gold pair without being the gold token")
