"""Exercises of chapter 9: reading a speed-accuracy front and a two-sided claim."""

from __future__ import annotations

from waldorf.exercises import Verdict, exercise
from waldorf.tradeoff import Point, front

CHAPTER = "book/09_front.ipynb"

# (name, ms, F1): hand-made transformer-only students for exercise 9.1
POINTS = (("d1", 6.0, 52.0), ("d2", 12.0, 57.5), ("d2-wide", 14.0, 56.0), ("d3", 18.0, 59.0),
          ("d4", 25.0, 58.5), ("d5", 31.0, 61.0))


def _front_names() -> list[str]:
    points = [Point(name, ms, f1, f1, f1, True) for name, ms, f1 in POINTS]
    return [p.name for p in front(points)]


@exercise("9.1", CHAPTER, "which students draw the front")
def students_on_the_front(answer: object) -> Verdict:
    names = list(answer)
    right = _front_names()
    if names == right:
        return Verdict(True, "each of them is more accurate than every faster student")
    if sorted(names) == sorted(right):
        return Verdict(False, "the right students, but list them fastest first")
    slower = [n for n in names if n not in right]
    if slower:
        return Verdict(False, f"{', '.join(slower)}: a faster student is at least as accurate, "
                              "so no one would choose it")
    return Verdict(False, "a student is on the front when no faster student is at least as "
                          "accurate; walk the list from the fastest, keeping each new best")


@exercise("9.2", CHAPTER, "does the two-sided claim hold?")
def two_sided_claim(answer: object) -> Verdict:
    # WaLDORf 15.3 ms, TinyBERT-4 19.0 ms; F1 difference +0.4 [-0.9, +1.7]; forced HasAns F1
    # difference -2.6 [-3.9, -1.3]: fast enough (1.24x), but the rival finds spans better.
    if answer is False:
        return Verdict(True, "1.24x is fast enough, but the forced HasAns F1 interval lies below "
                             "zero: TinyBERT-4 is ahead on span quality")
    return Verdict(False, "the claim needs both halves, and 'at least as accurate' on every "
                          "metric: look for an interval that lies entirely below zero")
