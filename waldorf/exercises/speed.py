"""Exercises of chapter 7: summarise timings by median and interquartile range, turn two
medians into a speed-up, and say why the mean misleads. The timings are made up, shaped like
the harness's ``times_ms``: one slow run, as another job on the machine would cause.
Explained in book/07_speed.ipynb.
"""

from __future__ import annotations

import math

import numpy as np

from waldorf.bench_report import summarise
from waldorf.exercises import Verdict, exercise

CHAPTER = "book/07_speed.ipynb"
# Made up, not measured: milliseconds per forward pass of two models, timed interleaved.
TIMINGS_MS: dict[str, list[float]] = {
    "waldorf": [31.2, 30.8, 31.0, 31.5, 30.9, 31.1, 64.0, 31.3],
    "tinybert4": [38.9, 38.5, 38.7, 39.2, 38.6, 38.8, 39.0, 38.4],
}
# Exercise 7.3: why the mean misleads. The letter of the right reason and a hint for each other.
REASONS = {
    "a": "The mean is always larger than the median.",
    "b": "Timings have a long right tail: one run slowed by another job moves the mean far and "
         "the median hardly at all.",
    "c": "A mean needs more timed runs than a median.",
    "d": "Means of two models cannot be divided into a speed-up.",
}
RIGHT_REASON = "b"
REASON_HINTS = {
    "a": "not always: on a symmetric list they agree; what made them differ here?",
    "c": "both use every timed run; look at what one slow run does to each",
    "d": "they can be divided; the question is which of the two the slow run moves",
}


def _close(value: float, want: float) -> bool:
    return math.isclose(value, want, rel_tol=1e-3, abs_tol=1e-6)


def _pair(answer: object) -> tuple[float, float]:
    if isinstance(answer, dict):
        return float(answer["median"]), float(answer["iqr"])
    median, iqr = answer
    return float(median), float(iqr)


@exercise("7.1", CHAPTER, "median and interquartile range")
def median_and_iqr(answer: object) -> Verdict:
    """Answer: ``(median, iqr)`` or ``{"median": ..., "iqr": ...}`` of ``TIMINGS_MS["waldorf"]``,
    quartiles by linear interpolation (``np.percentile``). Explained in book/07_speed.ipynb.
    """
    times = np.asarray(TIMINGS_MS["waldorf"])
    median, iqr = _pair(answer)
    want = summarise(times)
    if not _close(median, want["median"]):
        if _close(median, times.mean()):
            return Verdict(False, "that is the mean, pulled up by the one slow run: sort the "
                                  "times and take the middle (np.median)")
        return Verdict(False, "the median of an even count is the mean of the two middle times")
    if _close(iqr, want["iqr"]):
        return Verdict(True, f"median {want['median']:.2f} ms, IQR {want['iqr']:.2f} ms: the "
                             "slow run changes neither")
    if _close(iqr, times.std()) or _close(iqr, times.std(ddof=1)):
        return Verdict(False, "that is the standard deviation; the IQR is the third quartile "
                              "minus the first")
    if _close(iqr, times.max() - times.min()):
        return Verdict(False, "that is the range (max - min); the IQR spans the middle half")
    return Verdict(False, "IQR = np.percentile(times, 75) - np.percentile(times, 25), with "
                          "numpy's default linear interpolation")


@exercise("7.2", CHAPTER, "a speed-up from two medians")
def median_speedup(answer: object) -> Verdict:
    """Answer: how many times faster WaLDORf is than TinyBERT-4 by the medians of
    ``TIMINGS_MS``. Explained in book/07_speed.ipynb.
    """
    value = float(answer)
    medians = {name: float(np.median(t)) for name, t in TIMINGS_MS.items()}
    means = {name: float(np.mean(t)) for name, t in TIMINGS_MS.items()}
    want = medians["tinybert4"] / medians["waldorf"]
    if _close(value, want):
        return Verdict(True, f"{want:.2f}x by the medians; the means would say "
                             f"{means['tinybert4'] / means['waldorf']:.2f}x")
    if _close(value, 1 / want):
        return Verdict(False, "times faster = the slower model's time / the faster model's time")
    if _close(value, means["tinybert4"] / means["waldorf"]):
        return Verdict(False, "that is the ratio of the means, which WaLDORf's one slow run "
                              "drags down: divide the medians")
    return Verdict(False, "divide TinyBERT-4's median time by WaLDORf's")


@exercise("7.3", CHAPTER, "why the mean misleads")
def mean_misleads(answer: object) -> Verdict:
    """Answer: the letter of the right reason in ``REASONS``. Explained in book/07_speed.ipynb."""
    letter = str(answer).strip().lower().strip("()")
    if letter == RIGHT_REASON:
        return Verdict(True, "a slow run is never balanced by a fast one: medians and IQRs "
                             "report the typical run and its stability")
    if letter in REASON_HINTS:
        return Verdict(False, REASON_HINTS[letter])
    return Verdict(False, f"answer one letter: {', '.join(REASONS)}")
