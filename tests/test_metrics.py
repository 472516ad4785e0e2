"""The SQuAD 2.0 metric: hand-checked cases, the official numbers of real leaderboard files,
properties over random inputs, and the report around it (intervals, comparisons, transfer)."""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import datasets
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import waldorf_cli
from waldorf.errors import UserError
from waldorf.metrics import (
    METRICS,
    QuestionScores,
    bootstrap_counts,
    choose_threshold,
    compare,
    compute_exact,
    compute_f1,
    evaluate_files,
    format_report,
    metric_values,
    normalize_answer,
    percentile_interval,
    question_scores,
    report,
    report_scores,
    run_evaluate,
    seed_summary,
    squad_evaluate,
)
from waldorf.postprocess import QAPredictions

SYSTEMS = ["bert-large-single", "bidaf-self-attention-elmo", "nlnet-single"]


@pytest.fixture
def run_cli():
    """``waldorf ...`` in this process: the console script's own entry point."""
    return waldorf_cli.main


def tiny_squad() -> list[dict]:
    """Two answerable and two unanswerable questions, in the official nested format."""
    qas = [
        {"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "q2", "question": "Largest animal?",
         "answers": [{"text": "the blue whale", "answer_start": 10}]},
        {"id": "q3", "question": "Moon capital?", "answers": [], "is_impossible": True},
        {"id": "q4", "question": "Mars capital?", "answers": [], "is_impossible": True},
    ]
    return [{"title": "T", "paragraphs": [{"context": "Paris ... the blue whale", "qas": qas}]}]


# q1 exact, q2 half right (F1 2/3), q3 correctly abstains, q4 answers an unanswerable question.
PREDS = {"q1": "Paris", "q2": "a whale", "q3": "", "q4": "London"}
NA_PROBS = {"q1": 0.1, "q2": 0.4, "q3": 0.6, "q4": 0.5}


@pytest.mark.parametrize("text, normalized", [
    ("The Quick, Brown Fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("theater of the others", "theater of others"),  # only whole-word articles go
    ("  A   cat\t\n", "cat"),
    ("U.S.A.", "usa"),
    ("café–bar", "café–bar"),  # string.punctuation is ASCII only, as in the official script
    ("", ""),
])
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_and_f1_by_hand():
    assert compute_exact("The Eiffel Tower", "eiffel tower.") == 1
    assert compute_exact("Eiffel Tower", "the tower") == 0
    assert compute_f1("the cat sat", "cat sat down") == pytest.approx(0.8)  # P 2/3, R 1
    assert compute_f1("red red blue", "red blue blue") == pytest.approx(2 / 3)  # counts clip
    assert compute_f1("cat", "dog") == 0
    assert compute_f1("", "") == 1  # both abstain
    assert compute_f1("", "something") == 0
    assert compute_f1("a", "") == 1  # "a" normalises to nothing


def test_scores_and_best_threshold_by_hand():
    out = squad_evaluate(tiny_squad(), PREDS, NA_PROBS)
    assert list(out) == [
        "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
        "NoAns_exact", "NoAns_f1", "NoAns_total",
        "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh",
    ]
    assert out["exact"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert out["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out["NoAns_exact"] == pytest.approx(50.0)
    assert (out["total"], out["HasAns_total"], out["NoAns_total"]) == (4, 2, 2)
    # Abstaining everywhere scores 2/4. Answer q1 (0.1): 3. + q2 (0.4): 3 exact, 3 2/3 F1.
    # + q4 (0.5): minus one. + q3 (0.6): unchanged. Best exact stops at 0.1, best F1 at 0.4.
    assert (out["best_exact"], out["best_exact_thresh"]) == (pytest.approx(75.0), 0.1)
    assert out["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4)
    assert out["best_f1_thresh"] == 0.4


def test_na_prob_threshold_turns_answers_into_abstentions():
    out = squad_evaluate(tiny_squad(), PREDS, NA_PROBS, na_prob_thresh=0.45)
    assert out["NoAns_exact"] == pytest.approx(100.0)  # q4 (0.5) now abstains
    assert out["HasAns_exact"] == pytest.approx(50.0)  # q1, q2 below the threshold keep answers


def test_no_na_probs_means_no_best_keys():
    out = squad_evaluate(tiny_squad(), PREDS)
    assert "best_f1" not in out and out["total"] == 4


def test_missing_prediction_scores_zero_and_is_reported(capsys):
    preds = {k: v for k, v in PREDS.items() if k != "q1"}
    out = squad_evaluate(tiny_squad(), preds)
    assert "Missing prediction for q1" in capsys.readouterr().err
    assert out["total"] == 4 and out["HasAns_exact"] == pytest.approx(0.0)


def test_missing_na_prob_names_the_ids():
    with pytest.raises(ValueError, match="q3"):
        squad_evaluate(tiny_squad(), PREDS, {"q1": 0.1, "q2": 0.2, "q4": 0.3})


def test_bad_prediction_file_names_the_file(tmp_path):
    data_file, pred_file = tmp_path / "data.json", tmp_path / "pred.json"
    data_file.write_text(json.dumps({"version": "v2.0", "data": tiny_squad()}))
    pred_file.write_text("[1, 2]")
    with pytest.raises(ValueError, match="pred.json"):
        evaluate_files(data_file, pred_file)


@pytest.mark.parametrize("system", SYSTEMS)
def test_leaderboard_predictions_match_official_scores(squad_dir, system, run_cli, capsys):
    official = json.loads((squad_dir / "official-scores.dev.json").read_text())[system]
    pred_file = squad_dir / f"predictions-{system}.dev.json"
    assert run_cli(["evaluate", str(squad_dir / "dev.json"), str(pred_file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(official)
    for key, value in official.items():
        assert out[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("system", SYSTEMS)
def test_per_question_scores_give_the_official_numbers_on_real_files(squad_dir, system):
    data = json.loads((squad_dir / "dev.json").read_text())["data"]
    preds = json.loads((squad_dir / f"predictions-{system}.dev.json").read_text())
    rng = np.random.default_rng(0)  # made-up no-answer probabilities, some of them tied
    na_probs = {k: 0.9 if v == "" else float(rng.choice([0.1, 0.2, rng.random() / 2]))
                for k, v in preds.items()}
    official = squad_evaluate(data, preds, na_probs, na_prob_thresh=0.3)
    out = report_scores(question_scores(data, preds, 0.3, na_probs), n_boot=10)
    for key in ("exact", "f1", "best_exact", "best_f1", "best_f1_thresh"):
        assert out[key] == pytest.approx(official[key], abs=1e-9), key


def hub_dataset(data: list[dict]) -> datasets.Dataset:
    """The official nested JSON flattened to the rajpurkar/squad_v2 columns."""
    rows = [
        {"id": qa["id"], "title": article["title"], "context": p["context"],
         "question": qa["question"],
         "answers": {"text": [a["text"] for a in qa["answers"]],
                     "answer_start": [a["answer_start"] for a in qa["answers"]]}}
        for article in data for p in article["paragraphs"] for qa in p["qas"]
    ]
    return datasets.Dataset.from_list(rows)


def test_dataset_input_gives_the_json_numbers(squad_dir):
    data = json.loads((squad_dir / "dev.json").read_text())["data"]
    preds = json.loads((squad_dir / "predictions-nlnet-single.dev.json").read_text())
    na_probs = {k: float(v == "") for k, v in preds.items()}
    assert squad_evaluate(hub_dataset(data), preds, na_probs) == squad_evaluate(
        data, preds, na_probs)


def test_cli_out_file_na_probs_and_plots(tmp_path, run_cli, capsys):
    data_file, pred_file = tmp_path / "data.json", tmp_path / "pred.json"
    na_file, out_file, image_dir = tmp_path / "na.json", tmp_path / "eval.json", tmp_path / "img"
    data_file.write_text(json.dumps({"version": "v2.0", "data": tiny_squad()}))
    pred_file.write_text(json.dumps(PREDS))
    na_file.write_text(json.dumps(NA_PROBS))
    argv = ["evaluate", str(data_file), str(pred_file), "-n", str(na_file),
            "-o", str(out_file), "-p", str(image_dir)]
    assert run_cli(argv) == 0
    assert capsys.readouterr().out == ""  # with --out-file the official script prints nothing
    out = json.loads(out_file.read_text())
    assert out["best_f1_thresh"] == 0.4
    assert {"pr_exact_ap", "pr_f1_ap", "pr_oracle_ap"} <= set(out)
    # Ranked q1, q2, q4, q3: recall steps of 1/2 at q1 and q2, precision (F1) 1 then 5/6.
    assert out["pr_oracle_ap"] == pytest.approx(100.0)
    assert out["pr_exact_ap"] == pytest.approx(50.0)
    assert out["pr_f1_ap"] == pytest.approx(100 * (1 * 1 / 2 + 5 / 6 * 1 / 3))
    assert sorted(p.name for p in image_dir.iterdir()) == [
        "na_prob_hist_hasAns.html", "na_prob_hist_noAns.html", "plotly.min.js",
        "pr_exact.html", "pr_f1.html", "pr_oracle.html",
    ]


# --- properties over random inputs ---------------------------------------------------------

WORDS = ["a", "an", "the", "cat", "Cat!", "dog", "red", "blue", "sat", "U.S.", "café", " "]
texts = st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join)
RANDOM = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def squad_inputs(draw):
    """Gold answers, predictions (some missing) and no-answer probabilities (some tied)."""
    n = draw(st.integers(1, 8))
    qas, preds, na_probs = [], {}, {}
    for i in range(n):
        answers = draw(st.lists(texts.filter(lambda t: t.strip()), max_size=3))
        qas.append({"id": f"q{i}", "answers": [{"text": a, "answer_start": 0} for a in answers]})
        if draw(st.integers(0, 9)):  # one prediction in ten is missing
            preds[f"q{i}"] = draw(texts)
            na_probs[f"q{i}"] = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1))
    return [{"title": "T", "paragraphs": [{"context": "", "qas": qas}]}], preds, na_probs


@RANDOM
@given(st.text(max_size=30))
def test_normalize_answer_is_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@RANDOM
@given(texts, texts)
def test_per_question_scores_lie_in_zero_one(gold, pred):
    assert compute_exact(gold, pred) in (0, 1)
    assert 0.0 <= compute_f1(gold, pred) <= 1.0
    assert compute_f1(gold, gold) == 1 and compute_exact(gold, gold) == 1


@RANDOM
@given(squad_inputs(), st.floats(0, 1))
def test_every_official_score_lies_in_zero_hundred(inputs, threshold):
    data, preds, na_probs = inputs
    out = squad_evaluate(data, preds, na_probs, na_prob_thresh=threshold)
    for key, value in out.items():
        if not key.endswith(("total", "thresh")):
            assert 0.0 <= value <= 100.0, key


@RANDOM
@given(squad_inputs(), st.floats(0, 1))
def test_vectorised_scores_equal_the_official_ones(inputs, threshold):
    """A row of ones gives the official exact, f1 and oracle (best_*) numbers exactly."""
    data, preds, na_probs = inputs
    official = squad_evaluate(data, preds, na_probs, na_prob_thresh=threshold)
    scores = question_scores(data, preds, threshold, na_probs)
    point = metric_values(scores, np.ones((1, len(scores))))
    for key in ("exact", "f1", "best_exact", "best_f1"):
        assert point[key][0] == pytest.approx(official[key], abs=1e-9), key
    rep = report_scores(scores, n_boot=20)
    assert rep["best_f1_thresh"] == official["best_f1_thresh"]


@RANDOM
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.1, 0.5, 0.9]), st.integers(0, 3)),
                min_size=1, max_size=10))
def test_auc_equals_the_pairwise_count_with_ties_half(rows):
    has = np.array([r[0] for r in rows])
    na = np.array([r[1] for r in rows])
    counts = np.array([[r[2] for r in rows]])
    wins = pairs = 0.0
    for i in range(len(rows)):
        for j in range(len(rows)):
            if has[i] and not has[j]:
                weight = counts[0, i] * counts[0, j]
                wins += weight * (1.0 if na[i] < na[j] else 0.5 if na[i] == na[j] else 0.0)
                pairs += weight
    auc = metric_values(hand_scores(has, na), counts, ["auc"])["auc"][0]
    assert (math.isnan(auc) and pairs == 0) or auc == pytest.approx(wins / pairs)


# --- per-question scores and the bootstrap, by hand ----------------------------------------


def hand_scores(has, na, exact=None, f1=None, threshold=0.5, forced=None) -> QuestionScores:
    """QuestionScores built by hand (not by the official code): abstain where na > threshold."""
    has, na = np.asarray(has, dtype=bool), np.asarray(na, dtype=float)
    exact = np.zeros(len(has)) if exact is None else np.asarray(exact, dtype=float)
    f1 = exact if f1 is None else np.asarray(f1, dtype=float)
    abstain = na > threshold
    return QuestionScores(
        [f"q{i}" for i in range(len(has))], has_answer=has, na_prob=na,
        answered=np.where(has, True, exact == 0), exact=exact, f1=f1,
        exact_at_threshold=np.where(abstain, ~has, exact),
        f1_at_threshold=np.where(abstain, ~has, f1),
        forced_f1=f1 if forced is None else np.asarray(forced, dtype=float),
        predicted=np.ones(len(has), dtype=bool), threshold=threshold)


# q0 answerable, answered right (na 0.2); q1 answerable, half right but abstains (na 0.6);
# q2 unanswerable but answered (na 0.4).
THREE = dict(has=[True, True, False], na=[0.2, 0.6, 0.4], exact=[1, 0, 0], f1=[1, 0.5, 0])
COUNTS = np.array([[1, 1, 1], [3, 0, 0], [0, 2, 1], [1, 2, 0]])


def test_metrics_of_a_fixed_resample_matrix_by_hand():
    values = metric_values(hand_scores(**THREE), COUNTS)
    third = 100 / 3
    # at the threshold 0.5 only q0 scores; q1 abstains (0), q2 answers wrongly (0)
    assert values["exact"] == pytest.approx([third, 100, 0, third])
    assert values["f1"] == pytest.approx([third, 100, 0, third])
    # oracle sweep in na order q0, q2, q1 from "abstain everywhere" (q2 right):
    # row 0: 1 -> +1 (q0) -> -1 (q2) -> +0.5 (q1): best 2 of 3
    # row 2: 1 -> +0 -> -1 -> +1 (2 x q1's 0.5): best stays 1 of 3
    # row 3: 0 -> +1 -> 0 (no q2) -> +1 (2 x 0.5): 2 of 3
    assert values["best_f1"] == pytest.approx([2 * third, 100, third, 2 * third])
    assert values["best_exact"] == pytest.approx([2 * third, 100, third, third])
    assert values["forced_HasAns_f1"] == pytest.approx([75, 100, 50, 200 / 3])
    assert values["all_no_answer_f1"] == pytest.approx([third, 0, third, 0])
    # q0 (0.2) ranks above q2 (0.4), q1 (0.6) below: 1/2; rows without q2 have no AUC
    auc = values["auc"]
    assert auc[0] == 0.5 and auc[2] == 0.0 and np.isnan(auc[1]) and np.isnan(auc[3])


def test_auc_by_hand_with_a_tie():
    # answerable 0.1 and 0.5, unanswerable 0.5 and 0.9: 3 wins and one tie of 4 pairs
    scores = hand_scores([True, True, False, False], [0.1, 0.5, 0.5, 0.9])
    assert metric_values(scores, np.ones((1, 4)), ["auc"])["auc"][0] == 3.5 / 4


def test_bootstrap_counts_are_seeded_resamples():
    counts = bootstrap_counts(50, n_boot=200, seed=7)
    assert counts.shape == (200, 50) and (counts.sum(axis=1) == 50).all()
    assert (counts == bootstrap_counts(50, n_boot=200, seed=7)).all()
    assert (counts != bootstrap_counts(50, n_boot=200, seed=8)).any()
    assert 0.6 < (counts > 0).mean() < 0.665  # a resample holds 1 - 1/e of the questions


def test_percentile_interval_by_hand():
    assert percentile_interval(np.arange(101.0)) == pytest.approx([2.5, 97.5])
    assert percentile_interval(np.r_[np.arange(101.0), np.nan], 0.5) == pytest.approx([25, 75])
    assert np.isnan(percentile_interval(np.full(3, np.nan))).all()


def test_unknown_metric_and_wrong_counts_are_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        metric_values(hand_scores(**THREE), COUNTS, ["f2"])
    with pytest.raises(ValueError, match="counts must be"):
        metric_values(hand_scores(**THREE), np.ones((2, 4)))


# --- compare and seeds ---------------------------------------------------------------------


def random_scores(n: int, seed: int, shift: float = 0.0) -> QuestionScores:
    rng = np.random.default_rng(seed)
    f1 = np.clip(rng.random(n) + shift, 0, 1)
    return hand_scores(rng.random(n) < 0.5, rng.random(n), exact=(f1 > 0.5), f1=f1,
                       threshold=1.0, forced=f1)


def test_a_model_against_itself_is_exactly_within_noise():
    a = random_scores(300, 0)
    for metric in METRICS:
        out = compare(a, a, metric, n_boot=200, names=("student", "teacher"))
        assert out["difference"] == 0 and out["verdict"] == "within noise", metric
        assert out["difference_ci"] == [0.0, 0.0], metric


def test_a_model_better_on_every_question_is_ahead():
    worse = random_scores(300, 1)
    better = hand_scores(worse.has_answer, worse.na_prob, exact=np.ones(300),
                         f1=np.minimum(worse.f1 + 0.2, 1.0), threshold=1.0)
    out = compare(better, worse, "f1", n_boot=500, names=("student", "teacher"))
    assert out["verdict"] == "student ahead" and out["difference_ci"][0] > 0
    assert out["difference"] == pytest.approx(100 * (better.f1.mean() - worse.f1.mean()))
    assert compare(worse, better, names=("student", "teacher"))["verdict"] == "teacher ahead"
    json.dumps(out)


def test_within_noise_whatever_the_sign():
    a = random_scores(40, 2)
    b = hand_scores(a.has_answer, a.na_prob, f1=np.r_[a.f1[:-1], a.f1[-1] * 0.5], threshold=1.0)
    out = compare(a, b, n_boot=500)
    assert out["difference"] > 0 and out["difference_ci"][0] <= 0 <= out["difference_ci"][1]
    assert out["verdict"] == "within noise"


def test_compare_pairs_the_resamples():
    """The interval is that of per-resample differences with one shared count matrix, and
    much narrower than if the two models were resampled independently."""
    a = random_scores(500, 3)
    b = hand_scores(a.has_answer, a.na_prob, f1=np.clip(a.f1 - 0.02, 0, 1), threshold=1.0)
    out = compare(a, b, n_boot=400, seed=5)
    counts = bootstrap_counts(500, 400, seed=5)
    paired = metric_values(a, counts, ["f1"])["f1"] - metric_values(b, counts, ["f1"])["f1"]
    assert out["difference_ci"] == percentile_interval(paired)
    other = bootstrap_counts(500, 400, seed=6)
    unpaired = metric_values(a, counts, ["f1"])["f1"] - metric_values(b, other, ["f1"])["f1"]
    width = out["difference_ci"][1] - out["difference_ci"][0]
    assert width < 0.25 * np.subtract(*percentile_interval(unpaired)[::-1])
    assert out["verdict"] == "A ahead"


def test_compare_aligns_question_order_and_refuses_other_questions():
    a = random_scores(30, 4)
    reordered = a.take(a.ids[::-1])
    assert compare(a, reordered, n_boot=50)["difference_ci"] == [0.0, 0.0]
    other = hand_scores(a.has_answer, a.na_prob, threshold=1.0)
    other.ids = [f"x{i}" for i in range(30)]
    with pytest.raises(UserError, match=r"different questions \(30 only in A"):
        compare(a, other)


def test_seed_summary_by_hand():
    out = seed_summary({0: 70.0, 1: 72.0, 2: 74.0})
    assert out["mean"] == pytest.approx(72.0) and out["std"] == pytest.approx(2.0)  # ddof=1
    assert out["n"] == 3 and out["values"] == {0: 70.0, 1: 72.0, 2: 74.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = seed_summary({42: 70.0})
    assert one["mean"] == 70.0 and math.isnan(one["std"])
    with pytest.raises(UserError):
        seed_summary({})


# --- reports and threshold transfer ---------------------------------------------------------


def squad_file(tmp_path, name: str, data: list[dict]):
    path = tmp_path / name
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path


def second_split() -> list[dict]:
    """A second split: q5, q6 answerable, q7, q8 not."""
    qas = [
        {"id": "q5", "question": "Which city?", "answers": [{"text": "Rome", "answer_start": 0}]},
        {"id": "q6", "question": "What?", "answers": [{"text": "red car", "answer_start": 11}]},
        {"id": "q7", "question": "Who?", "answers": [], "is_impossible": True},
        {"id": "q8", "question": "When?", "answers": [], "is_impossible": True},
    ]
    return [{"title": "U", "paragraphs": [{"context": "Rome has a red car.", "qas": qas}]}]


TEST_PREDS = {"q5": "Rome", "q6": "car", "q7": "Oslo", "q8": "Oslo"}
TEST_NA_PROBS = {"q5": 0.3, "q6": 0.45, "q7": 0.35, "q8": 0.7}


def predictions(answers: dict, na_probs: dict) -> QAPredictions:
    spans = {k: v or "Paris" for k, v in answers.items()}
    return QAPredictions(answers, na_probs, spans, {k: (0, 0) for k in answers})


def test_threshold_chosen_on_dev_applied_to_test_by_hand():
    threshold = choose_threshold(tiny_squad(), predictions(PREDS, NA_PROBS))
    assert threshold == 0.4  # best_f1_thresh of the dev split (test_scores_and_best_...)
    out = report(second_split(), predictions(TEST_PREDS, TEST_NA_PROBS), threshold, n_boot=200)
    # at 0.4: q5 answered right (1), q6 abstains (0), q7 answered wrongly (0), q8 abstains (1)
    assert (out["exact"], out["f1"]) == (pytest.approx(50.0), pytest.approx(50.0))
    # the oracle on test: answer only q5 (0.3) -> 3 of 4, at the threshold 0.3
    assert out["best_f1"] == pytest.approx(75.0) and out["best_f1_thresh"] == 0.3
    assert out["forced_HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out["all_no_answer_f1"] == pytest.approx(50.0)
    assert out["auc"] == pytest.approx(0.75)  # q5 beats both, q6 beats q8 only
    assert (out["n"], out["n_has_answer"], out["threshold"]) == (4, 2, 0.4)


def test_report_is_json_with_an_interval_around_every_number():
    out = report(second_split(), predictions(TEST_PREDS, TEST_NA_PROBS), 0.4, n_boot=300, seed=3)
    assert json.loads(json.dumps(out)) == out
    for name in METRICS:
        low, high = out[f"{name}_ci"]
        assert low <= out[name] <= high, name
    assert out == report(second_split(), predictions(TEST_PREDS, TEST_NA_PROBS), 0.4, n_boot=300,
                         seed=3)
    table = format_report({"student": out})
    assert table.loc["student", "f1"] == f"50.0 [{out['f1_ci'][0]:.1f}, {out['f1_ci'][1]:.1f}]"
    assert table.loc["student", "auc"].startswith("0.750 [")
    assert list(table.columns) == ["n", "threshold", *METRICS]


def test_report_of_2500_questions_with_1000_resamples_is_fast():
    scores = random_scores(2500, 9)
    start = time.perf_counter()
    out = report_scores(scores, n_boot=1000)
    assert time.perf_counter() - start < 5.0  # ~0.4 s on two busy cores
    assert out["n_boot"] == 1000 and out["f1_ci"][0] < out["f1"] < out["f1_ci"][1]


def test_question_scores_travel_as_compact_json():
    scores = question_scores(tiny_squad(), predictions(PREDS, {**NA_PROBS, "q2": 0.123456}), 0.5)
    record = json.loads(json.dumps(scores.to_json()))
    assert record["exact"] == [1, 0, 1, 0] and record["na_prob"][1] == 0.1235
    assert record["f1"][1] == round(2 / 3, 4) and "predicted" not in record
    back = QuestionScores.from_json(record)
    assert back.ids == scores.ids and back.threshold == 0.5
    assert (back.has_answer == scores.has_answer).all() and back.predicted.all()
    assert np.allclose(back.f1, scores.f1, atol=5e-5)
    missing = question_scores(tiny_squad(), {"q1": "Paris"})
    assert QuestionScores.from_json(missing.to_json()).predicted.tolist() == [1, 0, 0, 0]
    with pytest.raises(UserError, match="one value per id"):
        QuestionScores.from_json({**record, "f1": [1]})


def test_forced_f1_scores_the_best_span_where_the_model_abstains():
    preds = predictions({**PREDS, "q2": ""}, NA_PROBS)
    preds.best_spans["q2"] = "blue whale"
    scores = question_scores(tiny_squad(), preds)
    assert scores.f1.tolist()[1] == 0 and scores.forced_f1.tolist()[1] == 1


# --- the evaluate command: transfer, intervals, bad input -----------------------------------


def evaluate_args(data_file, pred_file, **options) -> argparse.Namespace:
    """What waldorf_cli parses for ``waldorf evaluate``, with the added options."""
    defaults = dict(out_file=None, na_prob_file=None, na_prob_thresh=1.0, out_image_dir=None,
                    verbose=False, threshold_from=None, bootstrap=0, seed=0)
    return argparse.Namespace(data_file=str(data_file), pred_file=str(pred_file),
                              **(defaults | options))


def write_json(tmp_path, name: str, value) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def test_threshold_from_dev_evaluation_applies_to_the_test_file(tmp_path, capsys):
    dev_eval = tmp_path / "dev-eval.json"
    args = evaluate_args(squad_file(tmp_path, "dev.json", tiny_squad()),
                         write_json(tmp_path, "dev-pred.json", PREDS),
                         na_prob_file=write_json(tmp_path, "dev-na.json", NA_PROBS),
                         out_file=str(dev_eval))
    assert run_evaluate(args) == 0
    args = evaluate_args(squad_file(tmp_path, "test.json", second_split()),
                         write_json(tmp_path, "test-pred.json", TEST_PREDS),
                         na_prob_file=write_json(tmp_path, "test-na.json", TEST_NA_PROBS),
                         threshold_from=str(dev_eval))
    assert run_evaluate(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["na_prob_thresh"] == 0.4
    assert out["f1"] == pytest.approx(50.0) and out["best_f1"] == pytest.approx(75.0)
    assert list(out)[:13] == list(squad_evaluate(second_split(), TEST_PREDS, TEST_NA_PROBS))


def test_bootstrap_adds_intervals_and_keeps_the_official_keys(tmp_path, capsys):
    data_file = squad_file(tmp_path, "dev.json", tiny_squad())
    pred_file = write_json(tmp_path, "pred.json", PREDS)
    na_file = write_json(tmp_path, "na.json", NA_PROBS)
    plain = evaluate_files(data_file, pred_file)
    out = evaluate_files(data_file, pred_file, n_boot=100, seed=1)
    assert list(out) == [*plain, "exact_ci", "f1_ci"]
    assert {k: out[k] for k in plain} == plain
    with_na = evaluate_files(data_file, pred_file, na_file, n_boot=100, seed=1)
    assert list(with_na)[-4:] == ["exact_ci", "f1_ci", "best_exact_ci", "best_f1_ci"]
    assert with_na["f1_ci"] == out["f1_ci"]  # same seed, same resamples
    assert run_evaluate(evaluate_args(data_file, pred_file, bootstrap=100, seed=1)) == 0
    assert json.loads(capsys.readouterr().out) == out
    for key in ("exact", "f1", "best_exact", "best_f1"):
        low, high = with_na[f"{key}_ci"]
        assert 0 <= low <= with_na[key] <= high <= 100, key


def test_real_test_split_intervals_contain_the_official_scores(squad_dir):
    official = json.loads((squad_dir / "official-scores.test.json").read_text())
    system = "nlnet-single"
    pred_file = squad_dir / f"predictions-{system}.test.json"
    start = time.perf_counter()
    out = evaluate_files(squad_dir / "test.json", pred_file, n_boot=1000)
    assert time.perf_counter() - start < 30.0
    for key in ("exact", "f1"):
        assert out[key] == pytest.approx(official[system][key], abs=1e-9)
        low, high = out[f"{key}_ci"]
        assert low < out[key] < high and 1.0 < high - low < 8.0, key  # 2,543 questions


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    ("{not json", "SQuAD file is not JSON"),
    ('{"version": "v2.0"}', "'data' list"),
    (json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Paris", "qas": [
        {"question": "Where?", "answers": []}]}]}]}), "missing key 'id'"),
    (json.dumps({"data": [{"title": "T", "paragraphs": [{"context": 42, "qas": []}]}]}),
     "'context' should be str"),
    (json.dumps({"data": tiny_squad() + [{**tiny_squad()[0], "title": "T2"}]}),
     "question 'q1': duplicate id"),
])
def test_malformed_data_files_are_user_errors_naming_the_file(tmp_path, content, needle):
    data_file = tmp_path / "gold.json"
    data_file.write_text(content)
    pred_file = write_json(tmp_path, "pred.json", PREDS)
    with pytest.raises(UserError, match=f"gold.json: .*{needle}"):
        evaluate_files(data_file, pred_file)


def test_missing_data_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nowhere.json: cannot read"):
        evaluate_files(tmp_path / "nowhere.json", write_json(tmp_path, "pred.json", PREDS))


@pytest.mark.parametrize("preds, needle", [
    (["Paris"], "should be a JSON object, got a list"),
    ({"q1": 3}, "question 'q1': the answer should be a string"),
    ("", "is empty"),
])
def test_malformed_prediction_files_are_user_errors(tmp_path, preds, needle):
    data_file = squad_file(tmp_path, "dev.json", tiny_squad())
    pred_file = tmp_path / "pred.json"
    pred_file.write_text(json.dumps(preds) if preds != "" else "")
    with pytest.raises(UserError, match=f"pred.json: .*{needle}"):
        evaluate_files(data_file, pred_file)


@pytest.mark.parametrize("na_probs, needle", [
    ({"q1": 0.1}, r"missing for 3 predicted question\(s\)"),
    ({**NA_PROBS, "q2": "high"}, "question 'q2': the no-answer probability should be"),
    ([0.1], "got a list"),
])
def test_malformed_na_prob_files_are_user_errors(tmp_path, na_probs, needle):
    data_file = squad_file(tmp_path, "dev.json", tiny_squad())
    pred_file = write_json(tmp_path, "pred.json", PREDS)
    na_file = write_json(tmp_path, "na.json", na_probs)
    with pytest.raises(UserError, match=f"na.json: .*{needle}"):
        evaluate_files(data_file, pred_file, na_file)


def test_threshold_from_needs_na_probs_and_a_recorded_threshold(tmp_path):
    data_file = squad_file(tmp_path, "dev.json", tiny_squad())
    pred_file = write_json(tmp_path, "pred.json", PREDS)
    na_file = write_json(tmp_path, "na.json", NA_PROBS)
    plain_eval = write_json(tmp_path, "plain-eval.json", evaluate_files(data_file, pred_file))
    with pytest.raises(UserError, match="--threshold-from needs --na-prob-file"):
        evaluate_files(data_file, pred_file, threshold_file=plain_eval)
    with pytest.raises(UserError, match="plain-eval.json: no numeric 'best_f1_thresh'"):
        evaluate_files(data_file, pred_file, na_file, threshold_file=plain_eval)
    with pytest.raises(UserError, match="either --threshold-from or --na-prob-thresh"):
        evaluate_files(data_file, pred_file, na_file, na_prob_thresh=0.3,
                       threshold_file=plain_eval)
    with pytest.raises(UserError, match="--bootstrap must be"):
        evaluate_files(data_file, pred_file, n_boot=-1)


def test_cli_threshold_from_another_file_and_bootstrap(tmp_path, run_cli, capsys):
    data_file = squad_file(tmp_path, "dev.json", tiny_squad())
    pred_file = write_json(tmp_path, "pred.json", PREDS)
    na_file = write_json(tmp_path, "na.json", NA_PROBS)
    dev_eval = tmp_path / "dev-eval.json"
    assert run_cli(["evaluate", str(data_file), str(pred_file), "-n", str(na_file),
                    "-o", str(dev_eval)]) == 0
    argv = ["evaluate", str(data_file), str(pred_file), "-n", str(na_file),
            "--threshold-from", str(dev_eval), "--bootstrap", "200", "--seed", "3"]
    assert run_cli(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["na_prob_thresh"] == json.loads(dev_eval.read_text())["best_f1_thresh"]
    assert out["f1"] == pytest.approx(out["best_f1"])  # the same file: the chosen threshold
    low, high = out["f1_ci"]
    assert low <= out["f1"] <= high and "best_f1_ci" in out
