"""waldorf.distill.report: margins over the floor, agreement, and the reduced teacher; and the
leaderboard files and floor margins of waldorf.metrics.report."""

import json
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from waldorf.config import get_profile
from waldorf.data import SAMPLE_PATH, load_squad
from waldorf.distill.report import (
    ReducedTeacher,
    agreement,
    boundary_hits,
    decisions,
    difference_lines,
    margin_table,
    recorded_margins,
    scores_on_test,
    stage_table,
    verdict_lines,
    windows_per_second,
)
from waldorf.metrics import QuestionScores
from waldorf.metrics.report import floor_margins, leaderboard_predictions
from waldorf.postprocess import QAPredictions


def _preds(answers, na_probs, spans):
    return QAPredictions(answers, na_probs, spans, {k: (0, 0) for k in answers})


def test_margin_table_shares_of_the_teacher_margin():
    table = margin_table({"teacher": {"best_f1": 62.0, "forced_HasAns_f1": 70.0},
                          "student": {"best_f1": 59.5}}, floor=57.0)
    assert table.loc["teacher", "share of teacher margin (%)"] == pytest.approx(100.0)
    assert table.loc["student", "margin over floor"] == pytest.approx(2.5)
    assert table.loc["student", "share of teacher margin (%)"] == pytest.approx(50.0)
    assert table.loc["teacher", "forced_HasAns_f1"] == pytest.approx(70.0)
    assert np.isnan(table.loc["student", "best_exact"])  # not given: reported as missing


def test_recorded_margins_measure_from_the_splits_all_no_answer_floor():
    dev = load_squad("dev", get_profile("smoke"), path=SAMPLE_PATH)
    unanswerable = 100 * np.mean([not a["text"] for a in dev["answers"]])
    runs = {"teacher": SimpleNamespace(metadata={"dev_scores": {"best_f1": unanswerable + 4}}),
            "student": SimpleNamespace(metadata={"dev_scores": {"best_f1": unanswerable + 1}})}
    table, floor = recorded_margins(runs, dev)
    assert floor == pytest.approx(unanswerable)
    assert table.loc["student", "share of teacher margin (%)"] == pytest.approx(25.0)


def test_difference_lines_against_a_reference_row():
    table = margin_table({"teacher": {"best_f1": 62.0}, "base": {"best_f1": 58.0,
                          "forced_HasAns_f1": 40.0}, "big": {"best_f1": 59.5,
                          "forced_HasAns_f1": 50.0}}, floor=57.0)
    table["windows/s"] = [10.0, 100.0, 80.0]
    table["macs"] = [0.5, 1.6, 1.25]
    assert difference_lines(table, "base", ["big"], "WaLDORf") == [
        "big minus WaLDORf: best_f1 +1.50, forced HasAns F1 +10.0, speed x0.80"]
    assert difference_lines(table, "base", ["big"], "WaLDORf", arithmetic="macs")[0].endswith(
        ", arithmetic +28%")
    assert difference_lines(table.drop(columns="windows/s"), "base", ["big"], "WaLDORf") == [
        "big minus WaLDORf: best_f1 +1.50, forced HasAns F1 +10.0"]  # no timing, no speed


def test_decisions_follow_the_official_threshold_rule():
    preds = _preds({"a": "x", "b": "y", "c": ""}, {"a": 0.2, "b": 0.6, "c": 0.1},
                   {"a": "x", "b": "y", "c": "z"})
    assert decisions(preds, 0.5) == {"a": True, "b": False, "c": False}


def test_agreement_counts_spans_and_decisions():
    teacher = _preds({"a": "The cat", "b": ""}, {"a": 0.1, "b": 0.9}, {"a": "The cat", "b": "dog"})
    student = _preds({"a": "cat", "b": "dog"}, {"a": 0.2, "b": 0.3}, {"a": "cat", "b": "a dog"})
    result = agreement(teacher, student, 0.5, 0.5)
    assert result["span"] == pytest.approx(1.0)  # "The cat"~"cat", "dog"~"a dog" once normalised
    assert result["decision"] == pytest.approx(0.5)  # they disagree on b
    assert int(result["table"].values.sum()) == 2


def test_agreement_rejects_different_questions():
    one = _preds({"a": ""}, {"a": 0.9}, {"a": "x"})
    other = _preds({"b": ""}, {"b": 0.9}, {"b": "x"})
    with pytest.raises(ValueError, match="different questions"):
        agreement(one, other, 0.5, 0.5)


def test_margin_table_without_a_teacher_margin_gives_no_share():
    table = margin_table({"teacher": {"best_f1": 57.0}, "student": {"best_f1": 58.0}}, floor=57.0)
    assert table["share of teacher margin (%)"].isna().all()
    assert table.loc["student", "margin over floor"] == pytest.approx(1.0)


def test_reduced_teacher_is_the_teacher_with_all_layers_and_merges_pairs_when_downsampled():
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(BertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        vocab_size=100, attn_implementation="eager")).eval()
    ids = torch.randint(1, 100, (2, 7))  # (batch, seq)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        full = teacher(input_ids=ids, attention_mask=mask)
        same = ReducedTeacher(teacher, [0, 1, 2])(ids, mask)
        halved = ReducedTeacher(teacher, [2], downsample=2)(ids, mask)
        one_layer = ReducedTeacher(teacher, [2])(ids, mask)
    real = mask.bool()
    assert torch.allclose(same.start_logits[real], full.start_logits[real], atol=1e-5)
    assert not torch.allclose(one_layer.start_logits[real], full.start_logits[real], atol=1e-4)
    assert torch.equal(halved.start_logits[:, 0], halved.start_logits[:, 1])  # one merged pair
    bert = teacher.base_model  # row 1's pair (4, 5) holds one real token: its mean is token 4
    with torch.no_grad():
        x = bert.embeddings(input_ids=ids[1:])  # (1, 7, 32)
        pairs = torch.stack([x[0, 0:2].mean(0), x[0, 2:4].mean(0), x[0, 4], 0 * x[0, 6]])[None]
        bias = torch.tensor([0.0, 0.0, 0.0, torch.finfo(x.dtype).min])[None, None, None]
        by_hand = teacher.qa_outputs(bert.encoder.layer[2](pairs, attention_mask=bias))  # (1, 4, 2)
    assert torch.allclose(halved.start_logits[1, 4:6], by_hand[0, 2, 0].expand(2), atol=1e-5)
    assert halved.end_logits.shape == (2, 7)


def test_windows_per_second_counts_parameters_and_ranks_a_bigger_model_slower():
    torch.manual_seed(0)
    shape = dict(vocab_size=100, num_attention_heads=2, intermediate_size=64)
    small = BertForQuestionAnswering(BertConfig(hidden_size=16, num_hidden_layers=1, **shape))
    big = BertForQuestionAnswering(BertConfig(hidden_size=256, num_hidden_layers=6,
                                              **{**shape, "intermediate_size": 1024}))
    windows = datasets.Dataset.from_dict({"input_ids": [[1] * 128] * 32,
                                          "attention_mask": [[1] * 128] * 32})
    table = windows_per_second({"small": small, "big": big}, windows, batch_size=16,
                               reference="big")
    assert table.loc["small", "parameters (M)"] == pytest.approx(small.num_parameters() / 1e6)
    assert table.loc["small", "windows/s"] > table.loc["big", "windows/s"] > 0
    assert table.loc["big", "x big"] == pytest.approx(1.0) and table.loc["small", "x big"] > 1


def test_boundary_hits_score_tokens_and_groups_on_context_windows_with_answers():
    # window 0: [CLS] q [SEP] c c c c [SEP] (context at 3-6), gold span 4-5
    # window 1: same layout, unanswerable (gold at CLS): not scored
    # window 2: gold span 5-5; padding at position 8 (typed 1: only the mask excludes it)
    features = {"start_positions": [4, 0, 5], "end_positions": [5, 0, 5],
                "token_type_ids": [[0, 0, 0, 1, 1, 1, 1, 1, 1]] * 3,
                "attention_mask": [[1] * 8 + [0]] * 3}
    start = np.zeros((3, 9), dtype=np.float32)
    end = np.zeros((3, 9), dtype=np.float32)
    start[:, 0] = end[:, 0] = 50.0  # CLS and question tokens never win
    start[:, 1] = 40.0
    end[:, 7] = end[:, 8] = 30.0  # nor the closing [SEP] or padding
    start[0, 4] = end[0, 5] = 5.0  # window 0: both right
    start[1, 3] = end[1, 3] = 5.0  # window 1: ignored
    start[2, 4] = 5.0  # window 2: start in gold's group (4-5), wrong token
    end[2, 3] = 5.0  # end in another group (2-3)
    hits = boundary_hits(start, end, features)
    assert hits == {"start, token": 0.5, "start, 2-token group": 1.0,
                    "end, token": 0.5, "end, 2-token group": 0.5}
    assert boundary_hits(start, end, features, group=8)["end, 8-token group"] == 1.0
    with pytest.raises(ValueError, match="no window holds a gold answer"):
        boundary_hits(start, end, {**features, "start_positions": [0, 0, 0]})


def test_stage_table_lists_every_stage_of_each_run_in_minutes():
    def part(role, seconds, previous=None):
        meta = dict(role=role, train_windows=100, optimizer_steps=4, duration_s=seconds,
                    hardware="cpu", git_revision="abc", hash=f"{role}-{seconds}")
        return SimpleNamespace(metadata=meta, previous=previous)

    front = part("student-front", 15.0)
    both = part("student-prediction", 120.0, previous=part("student-intermediate", 60.0, front))
    other = part("student-intermediate", 45.0, front)  # another stage 1 on the same stage 0
    table = stage_table({"a": both, "gold": part("student-gold", 30.0), "b": other})
    assert list(table.index) == [("a", "stage 0"), ("a", "stage 1"), ("a", "stage 2"),
                                 ("gold", "gold labels"), ("b", "stage 0"), ("b", "stage 1")]
    assert table.loc[("a", "stage 0"), "artifact"] == table.loc[("b", "stage 0"), "artifact"]
    assert table.loc[("a", "stage 1"), "artifact"] != table.loc[("b", "stage 1"), "artifact"]
    assert table.loc[("a", "stage 1"), "minutes"] == pytest.approx(1.0)
    assert table.loc[("gold", "gold labels"), "minutes"] == pytest.approx(0.5)
    assert table["steps"].dtype.kind == "i" and table["minutes"].dtype.kind == "f"  # rounds


def test_leaderboard_predictions_keep_systems_that_answer_every_question(tmp_path):
    (tmp_path / "official-scores.dev.json").write_text(json.dumps({"full": {}, "partial": {}}))
    (tmp_path / "predictions-full.dev.json").write_text(json.dumps({"a": "x", "b": "", "c": "z"}))
    (tmp_path / "predictions-partial.dev.json").write_text(json.dumps({"a": "x"}))
    assert leaderboard_predictions(tmp_path, "dev", ["a", "b"]) == {"full": {"a": "x", "b": ""}}
    assert leaderboard_predictions(tmp_path, "test", ["a"]) == {}  # no official scores there
    assert leaderboard_predictions(None, "dev", ["a"]) == {}


def test_floor_margins_judge_by_best_f1_where_there_are_no_answer_probabilities():
    table = floor_margins({"model": {"f1": 45.0, "best_f1": 63.0},
                           "answers only": {"f1": 80.0}}, floor=57.0)
    assert table.loc["model", "judged by"] == "best_f1"
    assert table.loc["model", "margin"] == pytest.approx(6.0)
    assert table.loc["answers only", "judged by"] == "f1"
    assert table.loc["answers only", "margin"] == pytest.approx(23.0)
    assert np.isnan(table.loc["answers only", "forced_HasAns_f1"])


def _scores(f1: np.ndarray) -> QuestionScores:
    n = len(f1)
    ones = np.ones(n, dtype=bool)
    return QuestionScores([f"q{i}" for i in range(n)], has_answer=ones, na_prob=np.zeros(n),
                          answered=ones, exact=f1, f1=f1, exact_at_threshold=f1,
                          f1_at_threshold=f1, forced_f1=f1, predicted=ones, threshold=1.0)


def test_verdict_lines_state_each_paired_difference_with_its_verdict():
    good = _scores((np.arange(300) % 10 < 7).astype(float))
    worse = _scores(np.where(np.arange(300) < 90, 0.0, good.f1))
    lines = verdict_lines({"student": good, "control": worse, "twin": good},
                          [("student", "control"), ("student", "twin")], metrics=("f1",))
    assert lines[0].startswith("f1: student minus control: +") and lines[0].endswith(
        "-> student ahead")
    assert lines[1] == "f1: student minus twin: +0.00 [+0.00, +0.00] -> within noise"


def test_scores_on_test_choose_on_dev_then_score_test(monkeypatch):
    from waldorf.distill import report

    calls = []

    class Run:
        def __init__(self, name):
            self.name = name

        def load(self):
            return self.name, "tokenizer"

    def protocol(model, tokenizer, profile, dev, test):
        calls.append((model, dev, test))
        return f"{model} test scores", f"{model} dev predictions"

    monkeypatch.setattr(report, "protocol_scores", protocol)
    scores, dev_predictions = scores_on_test({"a": Run("A"), "b": Run("B")}, "tok", None, "dev",
                                          "test")
    assert scores == {"a": "A test scores", "b": "B test scores"}
    assert dev_predictions["b"] == "B dev predictions"
    assert calls == [("A", "dev", "test"), ("B", "dev", "test")]
