"""Exercises of chapter 2: the all-no-answer floor and how the no-answer threshold moves F1.

The reader writes each as a function; the checker runs it on random cases whose answer it
computes the official way, and the chapter's solution then applies it to the teacher's dev
predictions. Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import numpy as np

from waldorf.exercises import Verdict, exercise

CHAPTER = "book/02_teacher.ipynb"


def _answer_lists(seed: int, n: int) -> list[dict]:
    """A random ``answers`` column: some questions with gold texts, some without."""
    rng = np.random.default_rng(seed)
    return [{"text": ["1066"] * int(k), "answer_start": [0] * int(k)}
            for k in rng.choice([0, 1, 3], size=n, p=[0.45, 0.35, 0.2])]


def _floor(answers: list[dict]) -> float:
    return 100.0 * float(np.mean([not a["text"] for a in answers]))


@exercise("2.1", CHAPTER, "The all-no-answer floor")
def check_floor(answer: object) -> Verdict:
    """``answer(answers)`` -> the F1 (percent) of never answering, from an ``answers`` column.

    Explained in book/02_teacher.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of a split's `answers` column that "
                              "returns a percentage")
    cases = [_answer_lists(seed, n) for seed, n in [(0, 40), (1, 9), (2, 300), (3, 12)]]
    results = [float(answer(c)) for c in cases]
    if all(abs(r - _floor(c)) < 1e-6 for r, c in zip(results, cases, strict=True)):
        return Verdict(True, "never answering scores 100 on every unanswerable question and 0 "
                             "on every answerable one: the share of unanswerable questions")
    wrong = {
        "a model that never answers is right on the *unanswerable* questions, not the "
        "answerable ones": lambda c: 100.0 - _floor(c),
        "SQuAD's scores are percentages: multiply the share by 100": lambda c: _floor(c) / 100,
        "you divided by the answerable questions only; divide by all the questions":
            lambda c: _ratio(c),
    }
    for hint, value in wrong.items():
        if all(abs(r - value(c)) < 1e-6 for r, c in zip(results, cases, strict=True)):
            return Verdict(False, hint)
    return Verdict(False, "an unanswerable question has an empty `text` list; count those and "
                          "divide by the number of questions")


def _ratio(answers: list[dict]) -> float:
    unanswerable = sum(not a["text"] for a in answers)
    answerable = len(answers) - unanswerable
    return 100.0 * unanswerable / answerable if answerable else float("inf")


def f1_at_threshold(span_f1: np.ndarray, answerable: np.ndarray, na_prob: np.ndarray,
                    threshold: float) -> float:
    """F1 (percent) when a model answers its best span where ``na_prob <= threshold`` and
    abstains elsewhere, as ``waldorf.qa.threshold_curve`` and the official script decide.

    ``span_f1``: each question's best-span F1 (0 on an unanswerable question, where any span
    is wrong). Explained in book/02_teacher.ipynb.
    """
    answers = np.asarray(na_prob) <= threshold
    score = np.where(answers, span_f1, ~np.asarray(answerable, dtype=bool))
    return 100.0 * float(np.mean(score))


def _threshold_cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    cases = []
    for seed, n, threshold in [(0, 50, 0.5), (1, 200, 0.1), (2, 30, 0.9), (3, 80, 0.3)]:
        rng = np.random.default_rng(seed)
        answerable = rng.random(n) < 0.5
        span = np.where(answerable, rng.choice([0.0, 0.4, 1.0], size=n), 0.0)
        na_prob = rng.random(n)
        na_prob[:5] = threshold  # ties: answered, the official script abstains only above
        cases.append((span, answerable, na_prob, threshold))
    return cases


@exercise("2.2", CHAPTER, "How the threshold moves F1")
def check_threshold(answer: object) -> Verdict:
    """``answer(span_f1, answerable, na_prob, threshold)`` -> F1 (percent) at that threshold.

    Explained in book/02_teacher.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (span_f1, answerable, na_prob, "
                              "threshold) that returns F1 in percent")
    cases = _threshold_cases()
    results = [float(answer(*c)) for c in cases]
    if all(abs(r - f1_at_threshold(*c)) < 1e-6 for r, c in zip(results, cases, strict=True)):
        return Verdict(True, "answer where na_prob <= threshold, abstain above it; an "
                             "abstention scores 1 on an unanswerable question and 0 otherwise")

    def rule(answers, span, answerable, abstained=None):
        right = ~np.asarray(answerable, dtype=bool) if abstained is None else abstained
        return 100.0 * float(np.mean(np.where(answers, span, right)))

    inverted = "abstain where na_prob is *above* the threshold, answer below it"
    wrong = [
        (inverted, lambda s, a, p, t: rule(p > t, s, a)),
        (inverted, lambda s, a, p, t: rule(p >= t, s, a)),
        ("a question whose na_prob equals the threshold is answered: the official script "
         "abstains only where na_prob > threshold", lambda s, a, p, t: rule(p < t, s, a)),
        ("an abstention on an unanswerable question is right: it scores 1, not 0",
         lambda s, a, p, t: rule(p <= t, s, a, abstained=np.zeros(len(s)))),
        ("F1 is reported in percent: multiply the mean by 100",
         lambda s, a, p, t: f1_at_threshold(s, a, p, t) / 100),
    ]
    for hint, value in wrong:
        if all(abs(r - value(*c)) < 1e-6 for r, c in zip(results, cases, strict=True)):
            return Verdict(False, hint)
    return Verdict(False, "per question: its span_f1 where it answers, 1 where it abstains on "
                          "an unanswerable question, 0 where it abstains on an answerable one; "
                          "then the mean, in percent")


__all__ = ["check_floor", "check_threshold", "f1_at_threshold"]
