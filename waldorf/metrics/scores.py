"""Per-question scores: what every interval and every paired comparison is computed from.

The official script reduces a split to a handful of averages; an interval or a paired
comparison needs the numbers behind them, one per question. ``QuestionScores`` holds them as
aligned numpy vectors, built with the official functions so that their means are the official
scores exactly, and travels as compact JSON so recorded studies can be re-analysed later.
Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from waldorf.errors import UserError
from waldorf.metrics.official import (
    _check_na_probs,
    apply_no_ans_threshold,
    get_raw_scores,
    gold_answers,
    squad_evaluate,
)
from waldorf.postprocess import QAPredictions

if TYPE_CHECKING:
    import datasets

# Vectors of QuestionScores, in the order to_json writes them.
VECTORS = ("has_answer", "na_prob", "answered", "exact", "f1", "exact_at_threshold",
           "f1_at_threshold", "forced_f1", "predicted")


@dataclass(eq=False)
class QuestionScores:
    """One model on one split, question by question (all vectors aligned with ``ids``).

    ``answered``: the model's answer is not ""; ``exact``/``f1``: that answer's official raw
    scores; ``*_at_threshold``: after abstaining where ``na_prob > threshold`` (what
    ``exact``/``f1`` average); ``forced_f1``: the best span even where the model abstains;
    ``predicted``: False where the prediction is missing (scored 0 everywhere, as
    :func:`squad_evaluate` does).
    Explained in book/01_data_and_metric.ipynb.
    """

    ids: list[str]
    has_answer: np.ndarray  # bool (questions,)
    na_prob: np.ndarray  # (questions,)
    answered: np.ndarray  # bool (questions,)
    exact: np.ndarray
    f1: np.ndarray
    exact_at_threshold: np.ndarray
    f1_at_threshold: np.ndarray
    forced_f1: np.ndarray
    predicted: np.ndarray  # bool (questions,)
    threshold: float

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, ids: list[str]) -> QuestionScores:
        """The same scores in the order of ``ids`` (a permutation of ``self.ids``).

        Explained in book/01_data_and_metric.ipynb.
        """
        position = {qid: i for i, qid in enumerate(self.ids)}
        order = np.array([position[qid] for qid in ids], dtype=int)
        return QuestionScores(list(ids), *(getattr(self, v)[order] for v in VECTORS),
                              threshold=self.threshold)

    def to_json(self) -> dict:
        """A compact JSON-ready dict: 0/1 as integers, other floats rounded to 4 digits.

        Rounding moves a split's mean F1 by less than 0.005 points, but can turn close
        no-answer probabilities into ties. Explained in book/01_data_and_metric.ipynb.
        """
        out = {"threshold": self.threshold, "ids": list(self.ids)}
        for name in VECTORS:
            values = getattr(self, name)
            out[name] = [int(v) if float(v).is_integer() else round(float(v), 4)
                         for v in values.tolist()]
        if out["predicted"] == [1] * len(self):
            del out["predicted"]  # the usual case: every question has a prediction
        return out

    @classmethod
    def from_json(cls, record: Mapping) -> QuestionScores:
        """Rebuild what :meth:`to_json` wrote. Explained in book/01_data_and_metric.ipynb."""
        missing = [k for k in ("threshold", "ids", *VECTORS[:-1]) if k not in record]
        if missing:
            raise UserError(f"question scores: missing key(s) {missing}")
        n = len(record["ids"])
        vectors = {name: np.asarray(record.get(name, [1] * n), dtype=float) for name in VECTORS}
        wrong = [name for name, v in vectors.items() if v.shape != (n,)]
        if wrong:
            raise UserError(f"question scores: {wrong} should have one value per id ({n})")
        for name in ("has_answer", "answered", "predicted"):
            vectors[name] = vectors[name].astype(bool)
        return cls(list(record["ids"]), **vectors, threshold=float(record["threshold"]))


def question_scores(data: Mapping | list | datasets.Dataset,
                    predictions: QAPredictions | Mapping[str, str],
                    threshold: float = 1.0,
                    na_probs: Mapping[str, float] | None = None) -> QuestionScores:
    """Score every question of ``data`` (official JSON or hub Dataset) with the official code.

    ``predictions`` is a model's ``QAPredictions`` (answers, no-answer probabilities and best
    spans) or a plain ``{id: answer}`` mapping with optional ``na_probs``; without them nothing
    abstains, as in the official script, and ``forced_f1`` is the answer's F1. The threshold is
    applied like ``--na-prob-thresh``: abstain where ``na_prob > threshold``.
    Explained in book/01_data_and_metric.ipynb.
    """
    if isinstance(predictions, QAPredictions):
        answers, na_probs, spans = (predictions.answers, predictions.na_probs,
                                    predictions.best_spans)
    else:
        answers, spans = predictions, None
    if na_probs is not None:
        _check_na_probs(answers, na_probs)
    else:
        na_probs = {k: 0.0 for k in answers}
    golds = gold_answers(data)
    ids = list(golds)
    has = {qid: bool(texts) for qid, texts in golds.items()}
    exact_raw, f1_raw = get_raw_scores(golds, answers)
    forced_raw = get_raw_scores(golds, spans)[1] if spans is not None else f1_raw
    exact_t = apply_no_ans_threshold(exact_raw, na_probs, has, threshold)
    f1_t = apply_no_ans_threshold(f1_raw, na_probs, has, threshold)

    def vector(values: Mapping, dtype=float) -> np.ndarray:
        return np.array([values[qid] for qid in ids], dtype=dtype)

    return QuestionScores(
        ids, has_answer=vector(has, bool),
        na_prob=np.array([na_probs.get(qid, 0.0) for qid in ids], dtype=float),
        answered=np.array([bool(answers.get(qid)) for qid in ids]),
        exact=vector(exact_raw), f1=vector(f1_raw), exact_at_threshold=vector(exact_t),
        f1_at_threshold=vector(f1_t), forced_f1=vector(forced_raw),
        predicted=np.array([qid in answers for qid in ids]), threshold=float(threshold))


def choose_threshold(dev_data: Mapping | list | datasets.Dataset,
                     dev_predictions: QAPredictions) -> float:
    """The no-answer threshold that maximises F1 on dev (the official ``best_f1_thresh``).

    Chosen on dev and applied unchanged to test, it gives an honest test score; the oracle
    ``best_f1`` re-chooses it on the split it reports. The sweep keeps the model's answers
    and can only add abstentions, exactly like ``waldorf evaluate``'s ``best_f1_thresh``.
    Explained in book/01_data_and_metric.ipynb.
    """
    scores = squad_evaluate(dev_data, dev_predictions.answers, dev_predictions.na_probs)
    return float(scores["best_f1_thresh"])
