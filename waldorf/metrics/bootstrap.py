"""Every split-level score as a function of resample counts, for all resamples at once.

A bootstrap resample of n questions is a row of counts (how often each question was drawn);
the full split is a row of ones. Each metric below takes a ``(rows, questions)`` count matrix
and returns one value per row, so the point estimate and 1000 resamples share one code path,
and two models resampled with the same matrix give a *paired* comparison. Everything is
vectorised numpy: 1000 resamples of 2,500 questions take a fraction of a second.
Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from waldorf.metrics.scores import QuestionScores

# Every metric metric_values knows, in the order reports show them.
METRICS = ("exact", "f1", "best_exact", "best_f1", "forced_HasAns_f1", "auc",
           "all_no_answer_f1")


def bootstrap_counts(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` counts: row b says how often resample b drew each of the n questions.

    Seeded, so a report is the same on every run; share one matrix between models to pair them.
    Explained in book/01_data_and_metric.ipynb.
    """
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # (n_boot, n)
    flat = (draws + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n)


def _mean(counts: np.ndarray, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Percent mean of ``values`` per row of counts, over the questions in ``mask``; NaN if none."""
    weights = counts if mask is None else counts * mask
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (weights @ values) / total


def oracle_sweep(scores: QuestionScores, counts: np.ndarray,
                 raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official best-threshold sweep (``find_best_thresh``) for every row of counts.

    Start from "abstain everywhere" and answer one question at a time in rising ``na_prob``;
    the best running total is the oracle score. Returns that score in percent and the position
    (in ``na_prob`` order, -1 = abstain everywhere) where it is first reached. Ties in
    ``na_prob`` are passed in the order of ``scores.ids``, as the official script passes them
    in the order of the no-answer probability file. Explained in book/01_data_and_metric.ipynb.
    """
    order = np.argsort(scores.na_prob, kind="stable")
    credit = (~scores.has_answer & scores.predicted).astype(float)  # abstaining where right
    # what answering instead of abstaining adds: the raw score of an answerable question; -1
    # for any non-empty answer to an unanswerable one (even one that normalises to "", as
    # in the official script); 0 without a prediction
    gain = np.where(scores.has_answer, raw, -scores.answered.astype(float))
    running = np.cumsum(counts[:, order] * gain[order], axis=1)  # (rows, questions)
    last = running.argmax(axis=1)  # first position of the maximum, like the strict ">"
    best = np.maximum(running[np.arange(len(running)), last], 0.0)
    last = np.where(best > 0, last, -1)
    return 100.0 * (counts @ credit + best) / counts.sum(axis=1), last


def answer_auc(scores: QuestionScores, counts: np.ndarray) -> np.ndarray:
    """ROC AUC of the answer/abstain decision per row of counts.

    The chance that an answerable question gets a lower ``na_prob`` (a higher 1 - na_prob)
    than an unanswerable one, ties counting half; NaN where a row lacks either kind.
    Explained in book/01_data_and_metric.ipynb.
    """
    order = np.argsort(scores.na_prob, kind="stable")
    values, has = scores.na_prob[order], scores.has_answer[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # groups of equal na_prob
    sorted_counts = counts[:, order]
    pos = np.add.reduceat(sorted_counts * has, starts, axis=1)  # (rows, groups)
    neg = np.add.reduceat(sorted_counts * ~has, starts, axis=1)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    neg_above = total_neg[:, None] - np.cumsum(neg, axis=1)  # negatives with a higher na_prob
    wins = (pos * (neg_above + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins / (total_pos * total_neg)


def metric_values(scores: QuestionScores, counts: np.ndarray,
                  metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Each metric (percent, AUC as a fraction) for every row of a ``(rows, n)`` count matrix.

    ``exact``/``f1`` at the scores' threshold; ``best_*`` with the oracle threshold re-chosen
    per row; ``forced_HasAns_f1`` over answerable questions; ``all_no_answer_f1`` the floor of
    never answering. A row of ones gives the official numbers of the split.
    Explained in book/01_data_and_metric.ipynb.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[1] != len(scores):
        raise ValueError(f"counts must be (rows, {len(scores)}), got {counts.shape}")
    compute = {
        "exact": lambda: _mean(counts, scores.exact_at_threshold),
        "f1": lambda: _mean(counts, scores.f1_at_threshold),
        "best_exact": lambda: oracle_sweep(scores, counts, scores.exact)[0],
        "best_f1": lambda: oracle_sweep(scores, counts, scores.f1)[0],
        "forced_HasAns_f1": lambda: _mean(counts, scores.forced_f1, scores.has_answer),
        "auc": lambda: answer_auc(scores, counts),
        "all_no_answer_f1": lambda: _mean(counts, (~scores.has_answer).astype(float)),
    }
    return {name: compute[name]() for name in metrics}


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> list[float]:
    """``[low, high]``: the central ``confidence`` share of bootstrap values, NaNs ignored.

    Explained in book/01_data_and_metric.ipynb.
    """
    tail = 100.0 * (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: an undefined metric
        low, high = np.nanpercentile(np.asarray(values, dtype=float), [tail, 100.0 - tail])
    return [float(low), float(high)]
