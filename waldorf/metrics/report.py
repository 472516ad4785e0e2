"""One report for every chapter: choose on dev, report on test, with intervals.

A score without its uncertainty invites reading noise as progress: on a few thousand
questions two models a point apart are often indistinguishable. ``report`` gives every number
with a 95% paired-bootstrap interval, ``compare`` says whether a difference between two models
on the same questions is more than noise, and ``seed_summary`` condenses reruns.
Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from waldorf.errors import UserError
from waldorf.metrics.bootstrap import (
    METRICS,
    bootstrap_counts,
    metric_values,
    oracle_sweep,
    percentile_interval,
)
from waldorf.metrics.scores import QuestionScores, question_scores
from waldorf.postprocess import QAPredictions

if TYPE_CHECKING:
    import datasets

CONFIDENCE = 0.95


def report(data: Mapping | list | datasets.Dataset, predictions: QAPredictions,
           threshold: float, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The scores of ``predictions`` on ``data`` (one split), each with a 95% interval.

    ``threshold`` should be chosen on dev (:func:`choose_threshold`); ``exact``/``f1`` at it
    are the headline. ``best_exact``/``best_f1`` re-choose the threshold on this split (an
    oracle, optimistic by construction). See :func:`report_scores` for every key.
    Explained in book/01_data_and_metric.ipynb.
    """
    return report_scores(question_scores(data, predictions, threshold), n_boot=n_boot,
                         seed=seed)


def report_scores(scores: QuestionScores, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The report of already computed (or recorded) per-question scores, as plain JSON.

    Keys: ``n``, ``n_has_answer``, ``threshold``; each of ``exact``, ``f1`` (at the threshold),
    ``best_exact``, ``best_f1`` (oracle threshold, re-chosen in every resample),
    ``forced_HasAns_f1`` (span quality), ``auc`` (answer/abstain ranking, 0-1) and
    ``all_no_answer_f1`` (the floor) with ``<key>_ci`` = [low, high] from a paired bootstrap
    over questions; ``best_f1_thresh`` (the oracle threshold); ``n_boot``, ``seed``.
    Explained in book/01_data_and_metric.ipynb.
    """
    if len(scores) == 0:
        raise UserError("cannot report on an empty split")
    if n_boot < 1:
        raise UserError(f"n_boot must be at least 1, got {n_boot}")
    n = len(scores)
    ones = np.ones((1, n))
    point = metric_values(scores, ones)
    resampled = metric_values(scores, bootstrap_counts(n, n_boot, seed))
    last = oracle_sweep(scores, ones, scores.f1)[1][0]
    order = np.argsort(scores.na_prob, kind="stable")
    out = {"n": n, "n_has_answer": int(scores.has_answer.sum()),
           "threshold": float(scores.threshold)}
    for name in METRICS:
        out[name] = float(point[name][0])
        out[f"{name}_ci"] = percentile_interval(resampled[name], CONFIDENCE)
    out["best_f1_thresh"] = float(scores.na_prob[order[last]]) if last >= 0 else 0.0
    out.update(n_boot=n_boot, seed=seed)
    return out


def _aligned(a: QuestionScores, b: QuestionScores, names: Sequence[str]) -> QuestionScores:
    """``b`` in the question order of ``a``; an error when they scored different questions."""
    if a.ids == b.ids:
        return b
    only_a, only_b = sorted(set(a.ids) - set(b.ids)), sorted(set(b.ids) - set(a.ids))
    if only_a or only_b or len(a) != len(b):
        raise UserError(
            f"cannot compare {names[0]} and {names[1]}: they were scored on different questions "
            f"({len(only_a)} only in {names[0]}, e.g. {only_a[:3]}; {len(only_b)} only in "
            f"{names[1]}, e.g. {only_b[:3]})")
    return b.take(a.ids)


def compare(a: QuestionScores, b: QuestionScores, metric: str = "f1", *, n_boot: int = 1000,
            seed: int = 0, names: Sequence[str] = ("A", "B")) -> dict:
    """Paired bootstrap of ``metric(a) - metric(b)`` over the questions both were scored on.

    Both models are resampled with the same questions, so what they share (hard questions,
    easy questions) cancels and only their difference varies. The verdict is "<A> ahead" or
    "<B> ahead" when the 95% interval excludes 0 and "within noise" when it contains it.
    Explained in book/01_data_and_metric.ipynb.
    """
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose from {list(METRICS)}")
    b = _aligned(a, b, names)
    n = len(a)
    ones = np.ones((1, n))
    value_a = float(metric_values(a, ones, [metric])[metric][0])
    value_b = float(metric_values(b, ones, [metric])[metric][0])
    counts = bootstrap_counts(n, n_boot, seed)
    diffs = metric_values(a, counts, [metric])[metric] - metric_values(b, counts, [metric])[metric]
    low, high = percentile_interval(diffs, CONFIDENCE)
    verdict = (f"{names[0]} ahead" if low > 0 else f"{names[1]} ahead" if high < 0
               else "within noise")
    return {"metric": metric, "values": {names[0]: value_a, names[1]: value_b},
            "difference": value_a - value_b, "difference_ci": [low, high], "verdict": verdict,
            "n": n, "n_boot": n_boot, "seed": seed}


def seed_summary(values: Mapping[Hashable, float]) -> dict:
    """Mean and sample standard deviation (ddof=1) of one score over training seeds.

    One seed has no spread: its std is NaN rather than a misleading 0.
    Explained in book/01_data_and_metric.ipynb.
    """
    if not values:
        raise UserError("seed_summary needs at least one seed")
    array = np.asarray(list(values.values()), dtype=float)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")
    return {"mean": float(array.mean()), "std": std, "n": len(array),
            "values": {seed: float(v) for seed, v in values.items()}}


def format_report(reports: Mapping[str, Mapping], metrics: Sequence[str] = METRICS,
                  digits: int = 1) -> pd.DataFrame:
    """A table the chapters print: one row per model, "value [low, high]" per metric.

    ``reports``: model name -> :func:`report` dict. AUC keeps three decimals (it is 0-1).
    Explained in book/01_data_and_metric.ipynb.
    """
    def cell(rep: Mapping, name: str) -> str:
        places = 3 if name == "auc" else digits
        low, high = rep[f"{name}_ci"]
        return f"{rep[name]:.{places}f} [{low:.{places}f}, {high:.{places}f}]"

    rows = {model: {"n": rep["n"], "threshold": round(rep["threshold"], 3),
                    **{name: cell(rep, name) for name in metrics}}
            for model, rep in reports.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def leaderboard_predictions(folder: Path | None, split: str,
                            ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """The answers of the leaderboard systems to the questions ``ids`` of ``split``.

    They live in the offline data folder (``WALDORF_DATA_DIR``) as ``predictions-<system>.
    <split>.json``, the systems named by ``official-scores.<split>.json``. Empty without the
    folder; a system whose file misses one of ``ids`` (another split, a cut one) is left out.
    Explained in book/01_data_and_metric.ipynb.
    """
    official = Path(folder) / f"official-scores.{split}.json" if folder else None
    if official is None or not official.exists():
        return {}
    ids = list(ids)
    systems = {}
    for system in json.loads(official.read_text(encoding="utf-8")):
        path = Path(folder) / f"predictions-{system}.{split}.json"
        answers = json.loads(path.read_text(encoding="utf-8"))
        if all(qid in answers for qid in ids):
            systems[system] = {qid: answers[qid] for qid in ids}
    return systems


def floor_margins(scores: Mapping[str, Mapping], floor: float) -> pd.DataFrame:
    """One row per model: its official scores and its margin over the all-no-answer ``floor``.

    A model with no-answer probabilities is judged by ``best_f1``, one without (a leaderboard
    file holds answers only) by its plain ``f1``; the ``judged by`` column says which.
    Explained in book/02_teacher.ipynb.
    """
    columns = ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "forced_HasAns_f1")
    table = pd.DataFrame({name: {c: s.get(c, np.nan) for c in columns}
                          for name, s in scores.items()}).T.astype(float)
    table["judged by"] = np.where(table["best_f1"].notna(), "best_f1", "f1")
    table["margin"] = table["best_f1"].fillna(table["f1"]) - floor
    return table
