"""Tests of the exercises of chapters 5 to 9: for every exercise a right answer, made by hand,
passes, and the usual wrong answers fail with a hint that names what went wrong."""

from __future__ import annotations

import pytest
import torch

from waldorf.exercises import EXERCISES, check
from waldorf.exercises.ablations import PRACTICE_INTERVALS, interval_verdict
from waldorf.exercises.speed import TIMINGS_MS

CHAPTERS = ("book/05_baselines.ipynb", "book/06_ablations.ipynb", "book/07_speed.ipynb",
            "book/08_student_shape.ipynb", "book/09_front.ipynb")

RIGHT = {
    "5.1": {"top": [2, 3, 4, 5], "uniform": [1, 2, 4, 5]},
    "5.2": 2.394,  # teacher4's MACs over WaLDORf's at 384 tokens, from count_macs by hand
    "5.3": "embeddings",
    "6.1": ["A ahead", "within noise", "B ahead", "within noise"],
    "7.1": {"median": 31.15, "iqr": 0.375},  # the middle two of the sorted list; Q3 - Q1
    "7.2": 38.75 / 31.15,
    "7.3": "b",
    "8.1": torch.tensor([[1, 1, 1, 0]]),
    "8.2": {"attention_scores": 4, "ffn": 2},
    "8.3": {"position": 3, "partner": 6},
    "9.1": ["d1", "d2", "d3", "d5"],  # each more accurate than every faster one
    "9.2": False,  # fast enough, but the forced HasAns F1 interval lies below zero
}

# exercise id, a typical wrong answer, a word the hint must contain
WRONG = [
    ("5.1", {"top": [3, 4, 5, 6], "uniform": [2, 3, 5, 6]}, "from 0"),
    ("5.1", {"top": [1, 2, 4, 5], "uniform": [2, 3, 4, 5]}, "swapped"),
    ("5.1", [2, 3, 4, 5], "dict"),
    ("5.2", 1 / 2.394, "divide"),
    ("5.2", 19_017_218 / 9_952_130, "parameters"),  # the totals of count_parameters
    ("5.3", "head", "same"),
    ("5.3", "conv", "WaLDORf has more"),
    ("6.1", ["A ahead", "B ahead", "B ahead", "A ahead"], "contains 0"),
    ("6.1", ["B ahead", "within noise", "A ahead", "within noise"], "minus"),
    ("6.1", ["within noise"] * 4, "does not contain 0"),
    ("7.1", (sum(TIMINGS_MS["waldorf"]) / 8, 0.375), "mean"),
    ("7.1", (31.15, 64.0 - 30.8), "range"),
    ("7.2", 31.15 / 38.75, "slower"),
    ("7.2", (sum(TIMINGS_MS["tinybert4"]) / 8) / (sum(TIMINGS_MS["waldorf"]) / 8), "means"),
    ("7.3", "a", "symmetric"),
    ("8.1", [1, 1, 0, 0], "ANY"),
    ("8.1", [1, 1, 1], "padded"),
    ("8.2", {"attention_scores": 2, "ffn": 2}, "length x length"),
    ("8.2", {"attention_scores": 4, "ffn": 4}, "linearly"),
    ("8.3", {"position": 3, "partner": 8}, "tokens 6 and 7"),
    ("8.3", {"position": 7, "partner": 6}, "from 0"),
    ("9.1", ["d1", "d2", "d3", "d4", "d5"], "d4: a faster student"),
    ("9.1", ["d5", "d3", "d2", "d1"], "fastest first"),
    ("9.2", True, "both halves"),
]


def comparison(low: float, high: float) -> dict:
    """What waldorf.metrics.compare returns, for "no attention maps" minus the default."""
    return {"metric": "best_f1", "values": {"no attention maps": 59.5, "default": 60.3},
            "difference": (low + high) / 2, "difference_ci": [low, high], "n": 200}


def test_every_exercise_of_chapters_5_to_9_has_a_right_answer_here():
    ids = {i for i, e in EXERCISES.items() if e.chapter in CHAPTERS}
    assert ids == set(RIGHT) | {"6.2"}


@pytest.mark.parametrize("exercise_id", sorted(RIGHT))
def test_a_right_answer_passes(exercise_id):
    assert check(exercise_id, RIGHT[exercise_id], strict=True).ok


@pytest.mark.parametrize(("exercise_id", "answer", "hint"), WRONG)
def test_a_typical_wrong_answer_fails_with_a_hint(exercise_id, answer, hint):
    verdict = check(exercise_id, answer)
    assert not verdict.ok and hint in verdict.message
    with pytest.raises(AssertionError, match=exercise_id):
        check(exercise_id, answer, strict=True)


def test_the_practice_intervals_have_every_verdict():
    verdicts = {interval_verdict(low, high) for _, (low, high) in PRACTICE_INTERVALS}
    assert verdicts == {"A ahead", "B ahead", "within noise"}


@pytest.mark.parametrize(("low", "high", "right"), [
    (-2.1, 0.4, "within noise"), (-2.1, -0.4, "default ahead"), (0.2, 1.0, "A ahead")])
def test_an_ablation_verdict_is_read_from_its_interval_in_names_or_letters(low, high, right):
    assert check("6.2", (comparison(low, high), right)).ok


@pytest.mark.parametrize(("low", "high", "wrong", "hint"), [
    (-2.1, 0.4, "default ahead", "contains 0"),
    (-2.1, -0.4, "no attention maps ahead", "minus"),
    (-2.1, -0.4, "within noise", "does not contain 0"),
])
def test_a_misread_ablation_interval_gets_a_hint(low, high, wrong, hint):
    verdict = check("6.2", (comparison(low, high), wrong))
    assert not verdict.ok and hint in verdict.message


def test_an_answer_that_is_not_a_comparison_is_named():
    verdict = check("6.2", ({"difference": -0.8}, "within noise"))
    assert not verdict.ok and "compare" in verdict.message
