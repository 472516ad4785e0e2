"""From per-window start/end logits back to answer texts and no-answer probabilities.

A question's paragraph may span several windows (``waldorf.data.tokenize_squad``); the answer is
the best valid span over all of them, weighed against the null (``[CLS]``) score. Teacher and
students share this one function, so their scores differ only by their logits.
Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa


@dataclass
class QAPredictions:
    """Answers for every question: the thresholded answer, P(no answer), the best span anyway.

    Explained in book/01_data_and_metric.ipynb.
    """

    answers: dict[str, str]
    na_probs: dict[str, float]
    best_spans: dict[str, str]
    best_offsets: dict[str, tuple[int, int]]  # characters of best_spans in the context


def _char_offsets(features, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows, seq_len) start/end character offsets, -1 outside the context."""
    column = (features.with_format("arrow")["offset_mapping"]
              if isinstance(features, datasets.Dataset) else pa.array(features["offset_mapping"]))
    outer = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = outer.value_lengths().to_numpy(zero_copy_only=False)
    inner = outer.flatten()
    valid = inner.is_valid().to_numpy(zero_copy_only=False)
    pairs = inner.flatten().to_numpy(zero_copy_only=False).reshape(-1, 2)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    starts = np.full((len(lengths), seq_len), -1)
    ends = np.full((len(lengths), seq_len), -1)
    starts[rows[valid], cols[valid]] = pairs[:, 0]
    ends[rows[valid], cols[valid]] = pairs[:, 1]
    return starts, ends


def postprocess_qa(examples: datasets.Dataset | dict, features: datasets.Dataset | dict,
                   start_logits: np.ndarray, end_logits: np.ndarray, n_best: int = 20,
                   max_answer_length: int = 30, null_threshold: float = 0.0) -> QAPredictions:
    """Search the n best starts x n best ends of every window, keep the best valid span
    over all windows of a question, and compare it with the null (CLS) score.

    The null score is the minimum over windows (the window most sure there is an answer);
    the answer is "" when null - best span > ``null_threshold``, and
    na_prob = sigmoid(null - best span). Explained in book/01_data_and_metric.ipynb.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    n_windows, seq_len = start_logits.shape
    char_start, char_end = _char_offsets(features, seq_len)
    n = min(n_best, seq_len)
    top_s = np.argsort(-start_logits, axis=1)[:, :n]  # (windows, n)
    top_e = np.argsort(-end_logits, axis=1)[:, :n]  # (windows, n)
    rows = np.arange(n_windows)[:, None]
    scores = (start_logits[rows, top_s][:, :, None]
              + end_logits[rows, top_e][:, None, :])  # (windows, n, n)
    length = top_e[:, None, :] - top_s[:, :, None] + 1  # (windows, n, n)
    valid = ((char_start[rows, top_s] >= 0)[:, :, None] & (char_end[rows, top_e] >= 0)[:, None, :]
             & (length >= 1) & (length <= max_answer_length))
    scores = np.where(valid, scores, -np.inf).reshape(n_windows, -1)  # (windows, n*n)
    best_flat = scores.argmax(axis=1)  # (windows,)
    best_score = scores[np.arange(n_windows), best_flat]  # (windows,)
    null_score = start_logits[:, 0] + end_logits[:, 0]  # (windows,)

    windows_of = defaultdict(list)
    for w, example_id in enumerate(features["example_id"]):
        windows_of[example_id].append(w)
    unknown = set(windows_of) - set(examples["id"])
    if unknown:
        raise ValueError(f"{len(unknown)} window(s) belong to no given question, "
                         f"e.g. {min(unknown)!r}")
    answers, na_probs, best_spans, best_offsets = {}, {}, {}, {}
    for example_id, context in zip(examples["id"], examples["context"], strict=True):
        ws = windows_of.get(example_id)
        if not ws:
            raise ValueError(f"question {example_id!r} has no windows in features")
        w = ws[int(np.argmax(best_score[ws]))]
        s, e = top_s[w, best_flat[w] // n], top_e[w, best_flat[w] % n]
        first, last = ((int(char_start[w, s]), int(char_end[w, e]))
                       if np.isfinite(best_score[w]) else (0, 0))
        span = context[first:last]
        best_offsets[example_id] = (first, last)
        diff = float(null_score[ws].min() - best_score[w])
        best_spans[example_id] = span
        answers[example_id] = "" if diff > null_threshold else span
        na_probs[example_id] = float(0.5 * (1.0 + np.tanh(diff / 2.0)))  # sigmoid, no overflow
    return QAPredictions(answers, na_probs, best_spans, best_offsets)


__all__ = ["QAPredictions", "postprocess_qa"]
