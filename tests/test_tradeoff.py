"""The front and the paper's verdicts on hand-made points and per-question scores."""

from __future__ import annotations

import numpy as np
import pytest

from waldorf.errors import UserError
from waldorf.metrics import QuestionScores
from waldorf.tradeoff import (
    Point,
    claim,
    front,
    front_speeds,
    front_verdict,
    seed_mean_scores,
    study_points,
    tradeoff_figure,
)

N = 400


def scores(f1: np.ndarray, forced: np.ndarray | None = None) -> QuestionScores:
    """Hand-made per-question scores: every question answerable, answered at threshold 1."""
    f1 = np.asarray(f1, dtype=float)
    forced = f1 if forced is None else np.asarray(forced, dtype=float)
    ones = np.ones(N, dtype=bool)
    return QuestionScores([f"q{i}" for i in range(N)], has_answer=ones, na_prob=np.zeros(N),
                          answered=ones, exact=f1, f1=f1, exact_at_threshold=f1,
                          f1_at_threshold=f1, forced_f1=forced, predicted=ones, threshold=1.0)


RNG = np.random.default_rng(0)
GOOD = scores(RNG.random(N) < 0.7)
WORSE = scores(np.where(np.arange(N) < 120, 0.0, GOOD.f1))  # loses every one of 120 questions


def test_front_keeps_the_fastest_point_for_each_accuracy():
    points = [Point("t1", 5, 50, 49, 51, True), Point("t2", 9, 58, 57, 59, True),
              Point("t2-slow", 12, 55, 54, 56, True), Point("t4", 20, 62, 61, 63, True),
              Point("waldorf", 7, 60, 59, 61, False)]
    assert [p.name for p in front(points)] == ["t1", "t2", "t4"]  # dominated and WaLDORf out
    fig = tradeoff_figure(points, "F1", "front")
    assert list(fig.data[0].x) == [5, 9, 20] and fig.layout.xaxis.type == "log"


def test_claim_needs_both_the_speed_and_no_rival_ahead():
    held = claim("waldorf", GOOD, 8.0, "tinybert4", WORSE, 10.0, paper_speedup=1.24)
    assert held["speedup"] == pytest.approx(1.25) and held["fast_enough"]
    assert held["as_accurate"] and held["holds"]
    assert held["comparisons"]["f1"]["verdict"] == "waldorf ahead"
    assert "holds" in held["line"] and "at least as accurate: yes" in held["line"]
    slow = claim("waldorf", GOOD, 9.0, "tinybert4", WORSE, 10.0, paper_speedup=1.24)
    assert not slow["fast_enough"] and not slow["holds"] and "falls short" in slow["line"]
    beaten = claim("waldorf", WORSE, 5.0, "tinybert4", GOOD, 10.0, paper_speedup=1.24)
    assert beaten["fast_enough"] and not beaten["as_accurate"] and not beaten["holds"]
    tie = claim("waldorf", GOOD, 5.0, "copy", GOOD, 10.0, paper_speedup=1.24)
    assert tie["as_accurate"]  # identical scores: within noise counts as "at least as accurate"
    assert tie["comparisons"]["f1"]["difference"] == 0.0


def test_front_verdict_compares_only_students_at_least_as_fast():
    students = {"t1": (WORSE, 4.0), "t4": (GOOD, 20.0)}  # t4 is better but slower
    verdict = front_verdict("waldorf", WORSE, 8.0, students)
    assert verdict["holds"] and list(verdict["compared"]) == ["t1"]
    faster_and_better = front_verdict("waldorf", WORSE, 8.0, {"t2": (GOOD, 6.0)})
    assert not faster_and_better["holds"] and faster_and_better["ahead"] == ["t2"]
    none = front_verdict("waldorf", GOOD, 1.0, students)
    assert none["holds"] and "does not reach" in none["line"]


def test_seed_means_average_per_question():
    a, b = scores(np.ones(N)), scores(np.zeros(N), forced=np.ones(N))
    mean = seed_mean_scores([a.to_json(), b.to_json()])
    assert np.allclose(mean.f1, 0.5) and np.allclose(mean.forced_f1, 1.0)
    reordered = b.take(list(reversed(b.ids))).to_json()
    assert np.allclose(seed_mean_scores([a.to_json(), reordered]).f1, 0.5)  # aligned by id
    with pytest.raises(UserError, match="at least one seed"):
        seed_mean_scores([])


def test_study_points_average_seeds_and_take_the_measured_speed():
    docs = [{"model": "cut2", "seed": s, "questions": GOOD.to_json()} for s in (42, 1)]
    docs += [{"model": "waldorf", "seed": 42, "questions": WORSE.to_json()},
             {"model": "not-timed", "seed": 42, "questions": GOOD.to_json()}]
    points, mean_scores = study_points(docs, {"cut2": 12.0, "waldorf": 9.0})
    by_name = {p.name: p for p in points}
    assert set(by_name) == {"cut2", "waldorf"}  # a model without a speed is no point
    assert by_name["cut2"].transformer_only and not by_name["waldorf"].transformer_only
    assert by_name["cut2"].ms == 12.0
    assert by_name["cut2"].score == pytest.approx(100 * GOOD.f1.mean())
    assert by_name["cut2"].low < by_name["cut2"].score < by_name["cut2"].high
    assert by_name["waldorf"].score < by_name["cut2"].score
    assert np.array_equal(mean_scores["cut2"].f1, GOOD.f1)


def test_front_speeds_times_every_model_in_one_run():
    from transformers import BertConfig

    from waldorf.bench import Timing
    from waldorf.config import get_profile

    teacher = BertConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128,
                         num_hidden_layers=4)
    profile = get_profile("smoke")
    timing = Timing(warmup=1, min_repeats=2, max_repeats=2, cell_budget_s=0.1)
    speeds = front_speeds(["cut1", "cut2", "cut1"], teacher, profile, seq_len=32,
                          batch_sizes=(1, 2), timing=timing)
    assert set(speeds) == {1, 2} and set(speeds[1]) == {"cut1", "cut2"}
    assert all(ms > 0 for row in speeds.values() for ms in row.values())
