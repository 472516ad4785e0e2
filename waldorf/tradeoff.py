"""The paper's two-sided claim as code: faster *and* at least as accurate, with intervals.

WaLDORf claims to be faster than the distilled transformer students and more accurate. Neither
half means anything alone: a student can always be made faster by making it smaller. So the
book draws the speed-accuracy front of transformer-only students distilled with the same recipe
(the fastest student for each accuracy) and asks where WaLDORf lies against it. Accuracy
comes from recorded studies (several seeds, per-question test scores), speed from the bench
harness; every verdict is computed from a paired bootstrap interval, so "at least as accurate"
means "no interval says the other model is ahead". Explained in book/05_baselines.ipynb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from waldorf.errors import UserError
from waldorf.metrics import QuestionScores, compare, report_scores
from waldorf.metrics.scores import VECTORS

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from waldorf.bench import Timing
    from waldorf.config import Profile

FLAGS = ("has_answer", "answered", "predicted")  # the boolean vectors of QuestionScores


def seed_mean_scores(records: Sequence[Mapping]) -> QuestionScores:
    """Per-question scores averaged over the seeds of one model (``QuestionScores.to_json``
    records, e.g. the ``questions`` of a study's result files).

    The mean F1 of a question over seeds is what "a run of this recipe" scores on it on
    average, so a paired bootstrap over these means compares recipes rather than single runs.
    Only the averages (``f1``, ``exact``, their ``*_at_threshold``, ``forced_f1``) are meant to
    be read; ``answered`` is True where any seed answered. Explained in book/05_baselines.ipynb.
    """
    if not records:
        raise UserError("seed_mean_scores needs at least one seed's scores")
    runs = [QuestionScores.from_json(record) for record in records]
    ids = runs[0].ids
    runs = [run.take(ids) if run.ids != ids else run for run in runs]
    if any(not np.array_equal(run.has_answer, runs[0].has_answer) for run in runs):
        raise UserError("seed_mean_scores: the seeds were scored on different gold answers")
    vectors = {}
    for name in VECTORS:
        stacked = np.stack([getattr(run, name) for run in runs])  # (seeds, questions)
        vectors[name] = stacked.any(axis=0) if name in FLAGS else stacked.mean(axis=0)
    vectors["has_answer"] = runs[0].has_answer
    return QuestionScores(list(ids), **vectors,
                          threshold=float(np.mean([run.threshold for run in runs])))


@dataclass(frozen=True)
class Point:
    """One model on the speed-accuracy plane: milliseconds per batch and a score with interval.

    Explained in book/05_baselines.ipynb.
    """

    name: str
    ms: float  # median latency at the chapter's length and batch size (lower is faster)
    score: float
    low: float
    high: float
    transformer_only: bool  # True: part of the front WaLDORf is judged against


def front(points: Sequence[Point]) -> list[Point]:
    """The transformer-only points that no faster-or-equal one beats, fastest first.

    Explained in book/05_baselines.ipynb.
    """
    best, kept = -np.inf, []
    for point in sorted((p for p in points if p.transformer_only), key=lambda p: p.ms):
        if point.score > best:
            kept.append(point)
            best = point.score
    return kept


def claim(name: str, scores: QuestionScores, ms: float, other: str,
          other_scores: QuestionScores, other_ms: float, paper_speedup: float,
          metrics: Sequence[str] = ("f1", "forced_HasAns_f1"), seed: int = 0) -> dict:
    """"``name`` is at least ``paper_speedup`` x faster than ``other`` and at least as accurate".

    Speed holds when the measured ratio reaches the paper's; accuracy holds when, for every
    metric, the paired bootstrap interval of the difference does not put ``other`` ahead.
    Returns both halves, the comparisons and one printable line. Explained in
    book/05_baselines.ipynb.
    """
    speedup = other_ms / ms
    comparisons = {m: compare(scores, other_scores, m, seed=seed, names=(name, other))
                   for m in metrics}
    as_accurate = all(c["verdict"] != f"{other} ahead" for c in comparisons.values())
    fast = speedup >= paper_speedup
    parts = "; ".join(
        f"{m} {c['difference']:+.2f} [{c['difference_ci'][0]:+.2f}, {c['difference_ci'][1]:+.2f}]"
        f" ({c['verdict']})" for m, c in comparisons.items())
    line = (f"{name} vs {other}: {speedup:.2f}x faster (paper {paper_speedup:.2f}x): "
            f"{'holds' if fast else 'falls short'}; {parts}; at least as accurate: "
            f"{'yes' if as_accurate else 'no'}")
    return {"speedup": speedup, "fast_enough": fast, "as_accurate": as_accurate,
            "holds": fast and as_accurate, "comparisons": comparisons, "line": line}


def front_verdict(name: str, scores: QuestionScores, ms: float,
                  students: Mapping[str, tuple[QuestionScores, float]], metric: str = "f1",
                  seed: int = 0) -> dict:
    """"At ``name``'s speed no transformer-only student is more accurate": every student at
    least as fast (``students``: name -> (scores, ms)) is compared, paired, on ``metric``.

    Explained in book/05_baselines.ipynb.
    """
    rivals = {other: compare(scores, s, metric, seed=seed, names=(name, other))
              for other, (s, other_ms) in students.items() if other_ms <= ms}
    ahead = [other for other, c in rivals.items() if c["verdict"] == f"{other} ahead"]
    if not rivals:
        line = f"no transformer-only student is as fast as {name}: the front does not reach it"
    elif ahead:
        line = f"at {name}'s speed, more accurate on {metric}: {', '.join(ahead)}"
    else:
        line = (f"at {name}'s speed no transformer-only student is more accurate on {metric} "
                f"({len(rivals)} compared: {', '.join(rivals)})")
    return {"holds": not ahead, "compared": rivals, "ahead": ahead, "line": line}


def study_points(documents: Sequence[Mapping], speeds: Mapping[str, float],
                 metric: str = "f1") -> tuple[list[Point], dict[str, QuestionScores]]:
    """One ``Point`` per model of a study's result documents: its seeds' mean per-question
    scores, ``metric`` with its bootstrap interval, and its latency from ``speeds`` (ms).

    Returns the points and each model's seed-mean scores (for ``claim``/``front_verdict``).
    Explained in book/05_baselines.ipynb.
    """
    from waldorf.study import MODELS

    by_model: dict[str, list] = {}
    for doc in documents:
        if doc["model"] in speeds:
            by_model.setdefault(doc["model"], []).append(doc["questions"])
    points, scores = [], {}
    for model, records in by_model.items():
        scores[model] = seed_mean_scores(records)
        summary = report_scores(scores[model])
        low, high = summary[f"{metric}_ci"]
        points.append(Point(model, speeds[model], summary[metric], low, high,
                            MODELS[model].transformer_only if model in MODELS else False))
    return points, scores


def front_speeds(models: Sequence[str], teacher_config: PretrainedConfig, profile: Profile,
                 seq_len: int = 384, batch_sizes: Sequence[int] = (1, 32),
                 timing: Timing | None = None) -> dict[int, dict[str, float]]:
    """Median ms per batch of every study model, timed in one interleaved run of the bench
    harness (random weights: speed does not depend on them): ``{batch_size: {model: ms}}``.

    Explained in book/05_baselines.ipynb.
    """
    from waldorf.bench import Timing, run_benchmark
    from waldorf.study import build_study_model

    built = {m: build_study_model(m, teacher_config, profile) for m in dict.fromkeys(models)}
    doc = run_benchmark(built, (seq_len,), batch_sizes, timing or Timing())
    out: dict[int, dict[str, float]] = {b: {} for b in batch_sizes}
    for row in doc["results"]:
        out[row["batch_size"]][row["model"]] = row["median_ms"]
    return out


def tradeoff_figure(points: Sequence[Point], metric: str, title: str) -> go.Figure:
    """Score against latency (log axis) with interval bars and the transformer-only front.

    Explained in book/05_baselines.ipynb.
    """
    fig = go.Figure()
    line = front(points)
    fig.add_scatter(x=[p.ms for p in line], y=[p.score for p in line], mode="lines",
                    line_dash="dash", name="transformer-only front")
    for transformer_only, label in ((True, "transformer-only"), (False, "WaLDORf")):
        group = [p for p in points if p.transformer_only is transformer_only]
        fig.add_scatter(
            x=[p.ms for p in group], y=[p.score for p in group], mode="markers+text",
            text=[p.name for p in group], textposition="top center", name=label,
            error_y=dict(type="data", symmetric=False, array=[p.high - p.score for p in group],
                         arrayminus=[p.score - p.low for p in group]))
    fig.update_layout(title=title, xaxis_title="latency (ms per batch, log scale; left is faster)",
                      yaxis_title=metric, xaxis_type="log")
    return fig
