"""waldorf.distill.report: margins over the floor and teacher-student agreement."""

import pytest

from waldorf.data import QAPredictions
from waldorf.distill.report import agreement, decisions, margin_table


def _preds(answers, na_probs, spans):
    return QAPredictions(answers, na_probs, spans, {k: (0, 0) for k in answers})


def test_margin_table_shares_of_the_teacher_margin():
    table = margin_table({"teacher": {"best_f1": 62.0, "forced_HasAns_f1": 70.0},
                          "student": {"best_f1": 59.5}}, floor=57.0)
    assert table.loc["teacher", "share of teacher margin (%)"] == pytest.approx(100.0)
    assert table.loc["student", "margin over floor"] == pytest.approx(2.5)
    assert table.loc["student", "share of teacher margin (%)"] == pytest.approx(50.0)


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
