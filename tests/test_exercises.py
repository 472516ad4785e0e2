"""The exercise framework and the checkers of chapters 1-4: right answers pass, the usual wrong
ones fail with a hint that names the slip (chapters 5-9: tests/test_exercises_5_9.py)."""

import math

import numpy as np
import pytest
import torch.nn.functional as F
from transformers import AutoTokenizer

from waldorf.config import BUNDLED_MINILM, resolve_checkpoint
from waldorf.data import prepare_eval_features
from waldorf.exercises import EXERCISES, check
from waldorf.exercises.data_and_metric import PROTOCOL, windows_needed
from waldorf.exercises.teacher import f1_at_threshold
from waldorf.metrics import squad_evaluate


def verdict(id, answer):
    return EXERCISES[id].checker(answer)


def assert_hint(id, answer, words):
    result = verdict(id, answer)
    assert not result.ok
    assert words in result.message, result.message


# --- the framework -------------------------------------------------------------------------

def test_a_none_placeholder_asks_for_an_answer(capsys):
    result = check("1.1", None)
    assert not result.ok and "replace the None" in result.message
    assert "Exercise 1.1" in capsys.readouterr().out


def test_strict_raises_on_a_wrong_answer_and_not_on_a_right_one():
    with pytest.raises(AssertionError, match="exercise 1.1"):
        check("1.1", 0.5, strict=True)
    assert check("1.1", 0.75, strict=True).ok


def test_an_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no exercise '9.9'"):
        check("9.9", 1)


def test_an_answer_of_the_wrong_kind_gets_a_verdict_not_a_crash():
    result = check("1.2", lambda *args: 1 / 0)
    assert not result.ok and "could not read" in result.message


def test_chapters_1_to_4_register_their_exercises_under_their_notebooks():
    ours = {id: e.chapter for id, e in EXERCISES.items() if id[0] in "1234"}
    assert set(ours) == {"1.1", "1.2", "1.3", "2.1", "2.2", "3.1", "3.2", "3.3", "4.1", "4.2"}
    assert ours["1.2"] == "book/01_data_and_metric.ipynb"
    assert ours["4.1"] == "book/04_distillation.ipynb"


# --- chapter 1 ----------------------------------------------------------------------------

def test_1_1_f1_by_hand():
    assert verdict("1.1", 0.75).ok
    assert_hint("1.1", 75.0, "between 0 and 1")
    assert_hint("1.1", 0.4, "normalise")
    assert_hint("1.1", 0.8, "articles")
    assert_hint("1.1", (0.75 + 1 / 3) / 2, "not their mean")


def right_windows(p, q, length, stride):
    room = length - q - 3
    return 1 if p <= room else 1 + math.ceil((p - room) / (room - stride))


def test_1_2_windows():
    assert verdict("1.2", right_windows).ok
    assert_hint("1.2", lambda p, q, length, s: 1 + math.ceil(max(p - length + q + 3, 0) / s),
                "overlap of two windows")
    assert_hint("1.2", lambda p, q, length, s: right_windows(p, q, length + 3, s),
                "three special tokens")
    assert_hint("1.2", lambda p, q, length, s: math.ceil(p / (length - q - 3)), "overlap")
    assert not verdict("1.2", 8).ok  # a number, not a function


def test_1_2_the_formula_counts_what_the_tokenizer_cuts():
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    question = "what is the river of the city ?"
    q = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    for words, length, stride in [(10, 64, 16), (45, 64, 16), (46, 64, 16), (300, 128, 32),
                                  (170, 96, 40)]:
        context = " ".join(["river", "normandy"] * (words // 2))
        p = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        features = prepare_eval_features({"id": ["x"], "question": [question],
                                          "context": [context]}, tokenizer, length, stride)
        assert len(features["input_ids"]) == windows_needed(p, q, length, stride), (p, length)


def test_1_3_choose_on_dev_report_on_test():
    dev, test = PROTOCOL["dev"], PROTOCOL["test"]
    threshold = squad_evaluate(dev["data"], dev["predictions"], dev["na_probs"])["best_f1_thresh"]
    right = squad_evaluate(test["data"], test["predictions"], test["na_probs"],
                           na_prob_thresh=threshold)["f1"]
    assert verdict("1.3", right).ok
    oracle = squad_evaluate(test["data"], test["predictions"], test["na_probs"])
    assert_hint("1.3", oracle["best_f1"], "chosen on test")
    assert_hint("1.3", oracle["f1"], "without the dev threshold")
    assert_hint("1.3", right / 100, "percentages")


# --- chapter 2 ----------------------------------------------------------------------------

def test_2_1_the_floor():
    def floor(answers):
        return 100 * np.mean([not a["text"] for a in answers])

    assert verdict("2.1", floor).ok
    assert_hint("2.1", lambda answers: 100 - floor(answers), "unanswerable")
    assert_hint("2.1", lambda answers: floor(answers) / 100, "percentages")
    assert_hint("2.1", lambda answers: 100 * sum(not a["text"] for a in answers)
                / sum(bool(a["text"]) for a in answers), "answerable questions only")


def test_2_2_the_threshold():
    def f1_at(span, answerable, na_prob, threshold):
        answered = na_prob <= threshold
        return 100 * np.mean(np.where(answered, span, ~answerable))

    assert verdict("2.2", f1_at).ok
    assert_hint("2.2", lambda s, a, p, t: f1_at(s, a, -p, -t), "*above* the threshold")
    assert_hint("2.2", lambda s, a, p, t: 100 * np.mean(np.where(p < t, s, ~a)), "equals")
    assert_hint("2.2", lambda s, a, p, t: 100 * np.mean(np.where(p <= t, s, 0)), "scores 1")


def test_2_2_f1_at_threshold_is_the_official_thresholded_f1():
    golds = {"a": ["1066"], "b": ["William"], "c": [], "d": []}
    data = [{"title": "t", "paragraphs": [{"context": "William 1066", "qas": [
        {"id": qid, "question": "?", "is_impossible": not texts,
         "answers": [{"text": x, "answer_start": "William 1066".index(x)} for x in texts]}
        for qid, texts in golds.items()]}]}]
    preds = {"a": "1066", "b": "1066", "c": "William", "d": "1066"}
    na_probs = {"a": 0.2, "b": 0.6, "c": 0.4, "d": 0.9}
    span = np.array([1.0, 0.0, 0.0, 0.0])
    answerable = np.array([True, True, False, False])
    for threshold in (0.0, 0.2, 0.5, 1.0):
        official = squad_evaluate(data, preds, na_probs, na_prob_thresh=threshold)["f1"]
        mine = f1_at_threshold(span, answerable, np.array(list(na_probs.values())), threshold)
        assert mine == pytest.approx(official)


# --- chapter 3 ----------------------------------------------------------------------------

def test_3_1_conv_macs():
    assert verdict("3.1", lambda length, h, k: length * (k * h + h * h)).ok
    assert_hint("3.1", lambda length, h, k: length * k * h * h, "full convolution")
    assert_hint("3.1", lambda length, h, k: length * k * h, "pointwise")
    assert_hint("3.1", lambda length, h, k: k * h + h * h, "every position")


def test_3_2_embedding_saving():
    assert verdict("3.2", lambda v, e, h: v * h - (v * e + e * h + h)).ok
    assert_hint("3.2", lambda v, e, h: v * h - v * e, "projection")
    assert_hint("3.2", lambda v, e, h: v * h - v * e - e * h, "bias")


def test_3_3_receptive_field():
    assert verdict("3.3", lambda n, k: 1 + n * (k - 1)).ok
    assert_hint("3.3", lambda n, k: n * k, "k - 1 tokens, not k")
    assert_hint("3.3", lambda n, k: k, "every unit")


# --- chapter 4 ----------------------------------------------------------------------------

def soft_ce(student, teacher, temperature, scale=None):
    p = F.softmax(teacher / temperature, dim=-1)
    log_q = F.log_softmax(student / temperature, dim=-1)
    scale = temperature**2 if scale is None else scale
    return -scale * (p * log_q).sum(-1).mean()


def test_4_1_soft_cross_entropy():
    assert verdict("4.1", soft_ce).ok
    assert_hint("4.1", lambda s, t, temp: soft_ce(s, t, temp, scale=1.0), "T^2")
    assert_hint("4.1", lambda s, t, temp: soft_ce(s, t, temp) * s.shape[0], "don't sum")
    assert_hint("4.1", lambda s, t, temp: -temp**2 * (F.softmax(t, -1)
                                                     * F.log_softmax(s / temp, -1)).sum(-1).mean(),
                "teacher's distribution")
    assert_hint("4.1", lambda s, t, temp: temp**2 * F.kl_div(
        F.log_softmax(s / temp, -1), F.softmax(t / temp, -1), reduction="batchmean"), "KL")


def test_4_2_layer_map():
    def layers(s, t, mode):
        if mode == "top":
            return list(range(t - s, t))
        return [math.ceil((i + 1) * t / s) - 1 for i in range(s)]

    assert verdict("4.2", layers).ok
    assert_hint("4.2", lambda s, t, mode: [x + 1 for x in layers(s, t, mode)], "from 0")
    assert_hint("4.2", lambda s, t, mode: list(range(s)) if mode == "top" else layers(s, t, mode),
                "*upper* layers")
    assert_hint("4.2", lambda s, t, mode: layers(s, t, "top") if mode == "top"
                else [i * t // s for i in range(s)], "counts units m from 1")
