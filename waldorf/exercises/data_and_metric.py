"""Exercises of chapter 1: the metric by hand, windows by arithmetic, the dev/test protocol.

Each checker knows the right answer without the chapter's data (fixed toy inputs, or a
reader's function run on cases whose answer is known), so it gives the same verdict on every
profile. Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from waldorf.exercises import Verdict, exercise
from waldorf.metrics import compute_f1, squad_evaluate

CHAPTER = "book/01_data_and_metric.ipynb"

# Exercise 1.1: one prediction against the gold answers of one question.
F1_GOLDS = ["the Norman Conquest of England", "the Norman Conquest"]
F1_PREDICTION = "The Normans' conquest of England"

# Exercise 1.3: a toy dev split and a toy test split of the same model, with its answers and
# no-answer probabilities; one paragraph, three answerable and three unanswerable questions each.
TOY_CONTEXT = ("William the Conqueror, Duke of Normandy, invaded England in 1066 and was crowned "
               "at Westminster Abbey on Christmas Day.")


def _split(rows: list[tuple[str, str, list[str], str, float]]) -> dict:
    """Official-format data, predictions and no-answer probabilities from compact rows."""
    qas = [{"id": qid, "question": question, "is_impossible": not golds,
            "answers": [{"text": g, "answer_start": TOY_CONTEXT.index(g)} for g in golds]}
           for qid, question, golds, _, _ in rows]
    return {"data": [{"title": "Toy", "paragraphs": [{"context": TOY_CONTEXT, "qas": qas}]}],
            "predictions": {qid: answer for qid, _, _, answer, _ in rows},
            "na_probs": {qid: na_prob for qid, _, _, _, na_prob in rows}}


PROTOCOL = {
    "dev": _split([
        ("d1", "Who invaded England?", ["William the Conqueror", "William"],
         "William the Conqueror", 0.05),
        ("d2", "When did William invade England?", ["1066"], "in 1066", 0.2),
        ("d3", "Where was William crowned?", ["Westminster Abbey"], "Christmas Day", 0.45),
        ("d4", "Who invaded Ireland?", [], "William", 0.3),
        ("d5", "When was William crowned in Paris?", [], "Christmas Day", 0.4),
        ("d6", "Who was crowned at York?", [], "", 0.8),
    ]),
    "test": _split([
        ("t1", "Which duke invaded England?", ["William the Conqueror", "Duke of Normandy"],
         "Duke William", 0.1),
        ("t2", "When was William crowned?", ["Christmas Day", "on Christmas Day"],
         "Christmas Day", 0.35),
        ("t3", "In which year did the invasion happen?", ["1066"], "1066", 0.32),
        ("t4", "Who invaded Scotland?", [], "William the Conqueror", 0.25),
        ("t5", "When did William invade Wales?", [], "1066", 0.38),
        ("t6", "Where was Harold crowned?", [], "Westminster Abbey", 0.45),
    ]),
}


def _close(answer: object, value: float, tolerance: float) -> bool:
    return abs(float(answer) - value) <= tolerance


@exercise("1.1", CHAPTER, "F1 of one prediction, by hand")
def check_f1_by_hand(answer: object) -> Verdict:
    """The question's F1 (0-1): the best over its gold answers, after normalisation.

    Explained in book/01_data_and_metric.ipynb.
    """
    truth = max(compute_f1(gold, F1_PREDICTION) for gold in F1_GOLDS)
    if _close(answer, truth, 0.005):
        return Verdict(True, f"F1 = {truth:.3f}: three of four words shared with the first gold "
                             "answer, after normalisation")
    raw = max(_bag_f1(gold.split(), F1_PREDICTION.split()) for gold in F1_GOLDS)
    lower = max(_bag_f1(gold.lower().split(), F1_PREDICTION.lower().split())
                for gold in F1_GOLDS)
    per_gold = [compute_f1(gold, F1_PREDICTION) for gold in F1_GOLDS]
    hints = [
        (100 * truth, "one question's F1 lies between 0 and 1; the reports multiply the average "
                      "by 100"),
        (raw, "normalise both texts first: lower case, no punctuation, no articles"),
        (lower, "lower case is not all of the normalisation: drop the punctuation and the "
                "articles a, an, the as well"),
        (sum(per_gold) / len(per_gold), "a question keeps its best match over the gold "
                                        "answers, not their mean"),
        (min(per_gold), "that is the worse of the two gold answers: keep the best match"),
        (0.0, "0 is the exact match; F1 gives partial credit for the shared words"),
    ]
    for value, hint in hints:
        if _close(answer, value, 0.005):
            return Verdict(False, hint)
    return Verdict(False, "count the shared words of the normalised prediction and each "
                          "normalised gold answer (normalize_answer), then precision, recall "
                          "and their harmonic mean")


def _bag_f1(gold: list[str], pred: list[str]) -> float:
    common = sum(min(gold.count(w), pred.count(w)) for w in set(gold))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def windows_needed(paragraph_tokens: int, question_tokens: int, max_length: int,
                   stride: int) -> int:
    """How many windows ``prepare_eval_features`` cuts a question's paragraph into.

    A window holds [CLS] question [SEP] paragraph slice [SEP]; consecutive slices overlap by
    ``stride`` tokens (the tokenizer's convention), so each new window moves on by the room
    left for the paragraph minus the overlap. Explained in book/01_data_and_metric.ipynb.
    """
    room = max_length - question_tokens - 3
    if paragraph_tokens <= room:
        return 1
    return 1 + math.ceil((paragraph_tokens - room) / (room - stride))


def _window_cases() -> list[tuple[int, int, int, int]]:
    cases = []
    for max_length, stride in [(128, 32), (192, 96), (384, 128), (96, 16)]:
        for question in (5, 12, 30):
            room = max_length - question - 3
            step = room - stride
            for paragraph in (1, room - 1, room, room + 1, room + step, room + step + 1,
                              room + 3 * step - 2, 733):
                cases.append((paragraph, question, max_length, stride))
    return cases


def _wrong_windows(p: int, q: int, length: int, stride: int) -> dict[str, int]:
    room, step = length - q - 3, length - q - 3 - stride
    extra = max(p - room, 0)
    return {
        "in the tokenizer's convention `stride` is the overlap of two windows, not the step "
        "from one to the next: the step is the room for the paragraph minus the overlap":
            1 + math.ceil(extra / stride),
        "a window also holds the question and three special tokens ([CLS] and two [SEP]): "
        "only the rest is room for the paragraph":
            1 + math.ceil(max(p - length, 0) / (length - stride)),
        "count the three special tokens too ([CLS] and two [SEP]), not only the question":
            1 + math.ceil(max(p - length + q, 0) / (length - q - stride)),
        "consecutive windows overlap: each new one adds only room minus stride new tokens":
            math.ceil(p / room),
        "round up: a remainder of even one token needs one more window":
            1 + extra // step,
    }


@exercise("1.2", CHAPTER, "How many windows?")
def check_windows(answer: object) -> Verdict:
    """``answer(paragraph_tokens, question_tokens, max_length, stride)`` -> windows, checked on
    cases around every window border. Explained in book/01_data_and_metric.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (paragraph_tokens, question_tokens, "
                              "max_length, stride) that returns a number of windows")
    function: Callable[..., int] = answer
    wrong = []
    for case in _window_cases():
        if int(function(*case)) != windows_needed(*case):
            wrong.append(case)
    if not wrong:
        return Verdict(True, f"right on all {len(_window_cases())} cases, window borders "
                             "included")
    for hint in _wrong_windows(*wrong[0]):
        if all(int(function(*c)) == _wrong_windows(*c)[hint] for c in wrong):
            return Verdict(False, hint)
    p, q, length, stride = wrong[0]
    return Verdict(False, f"wrong for a paragraph of {p} tokens, a question of {q}, "
                          f"max_length={length}, stride={stride}: {windows_needed(*wrong[0])} "
                          f"windows, not {function(*wrong[0])}")


@exercise("1.3", CHAPTER, "Choose on dev, report on test")
def check_protocol(answer: object) -> Verdict:
    """The toy test F1 (percent) at the no-answer threshold chosen on the toy dev split.

    Explained in book/01_data_and_metric.ipynb.
    """
    dev, test = PROTOCOL["dev"], PROTOCOL["test"]
    dev_scores = squad_evaluate(dev["data"], dev["predictions"], dev["na_probs"])
    test_scores = squad_evaluate(test["data"], test["predictions"], test["na_probs"])
    threshold = dev_scores["best_f1_thresh"]
    truth = squad_evaluate(test["data"], test["predictions"], test["na_probs"],
                           na_prob_thresh=threshold)["f1"]
    if _close(answer, truth, 0.05):
        return Verdict(True, f"test F1 {truth:.2f} at the dev threshold {threshold:g}, below the "
                             f"oracle {test_scores['best_f1']:.2f} that re-chooses it on test")
    hints = [
        (test_scores["best_f1"], "that is test's own best_f1: the threshold was chosen on test "
                                 "(the oracle); choose it on dev and apply it to test"),
        (dev_scores["best_f1"], "that is the dev score; apply dev's best_f1_thresh to the "
                                "test predictions and report the test F1"),
        (test_scores["f1"], "that is the test F1 without the dev threshold; pass "
                            "na_prob_thresh=dev's best_f1_thresh"),
        (truth / 100, "SQuAD scores are percentages: multiply by 100"),
    ]
    for value, hint in hints:
        if _close(answer, value, 0.05):
            return Verdict(False, hint)
    return Verdict(False, "take best_f1_thresh from squad_evaluate on dev (with na_probs), "
                          "then squad_evaluate on test with na_prob_thresh set to it")


__all__ = ["F1_GOLDS", "F1_PREDICTION", "PROTOCOL", "TOY_CONTEXT", "check_f1_by_hand",
           "check_protocol", "check_windows", "windows_needed"]
