"""The SQuAD 2.0 metric: hand-checked cases and the official numbers of real leaderboard files."""

from __future__ import annotations

import json

import datasets
import pytest

from waldorf import cli
from waldorf.metrics import (
    compute_exact,
    compute_f1,
    evaluate_files,
    normalize_answer,
    squad_evaluate,
)

SYSTEMS = ["bert-large-single", "bidaf-self-attention-elmo", "nlnet-single"]


@pytest.fixture
def run_cli(monkeypatch):
    """``waldorf.cli.main`` with only this module's sub-commands, so the test needs no others."""
    own = {k: v for k, v in cli.COMMANDS.items() if v[0] == "waldorf.metrics"}
    monkeypatch.setattr(cli, "COMMANDS", own)
    return cli.main


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
        "na_prob_hist_hasAns.html", "na_prob_hist_noAns.html",
        "pr_exact.html", "pr_f1.html", "pr_oracle.html",
    ]
