"""Running a QA checkpoint: logits for windows, scores for a split, answers for a question.

transformers 5 dropped the extractive ``question-answering`` pipeline; ``QuestionAnswerer``
replaces it, and it shares every step with evaluation (``data.prepare_eval_features`` and
``postprocess.postprocess_qa``), so what a reader tries by hand behaves exactly like the dev scores.
Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForQuestionAnswering, AutoTokenizer
from transformers.utils import logging as hf_logging

from waldorf import data
from waldorf.artifacts import METADATA, verify_artifact
from waldorf.config import Profile, get_profile, resolve_checkpoint
from waldorf.errors import CorruptArtifactError, UserError
from waldorf.metrics import (
    QuestionScores,
    choose_threshold,
    get_raw_scores,
    gold_answers,
    question_scores,
    squad_evaluate,
)
from waldorf.postprocess import QAPredictions, postprocess_qa
from waldorf.precision import autocast

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_source(model_dir: str | Path) -> str:
    """Where ``from_pretrained`` should load a model from, checked locally first.

    A folder with ``config.json`` is used as it is; an artifact folder (what
    ``waldorf artifacts`` prints) holds its model in ``model/`` and must pass its checksums;
    anything that looks like a path but is not a model folder is a UserError naming it, never
    sent to the hub as a repo id. Other names (``bert-base-uncased``, ``org/name``,
    ``bundled:...``) go to the hub.
    Explained in book/02_teacher.ipynb.
    """
    path = Path(model_dir).expanduser()
    for folder in (path, path / "model"):
        if (folder / "config.json").is_file():
            artifact = folder.parent if folder.name == "model" else folder
            damaged = verify_artifact(artifact) if (artifact / METADATA).is_file() else []
            if damaged:
                raise CorruptArtifactError(f"{artifact}: files that fail their checksum: "
                                           f"{', '.join(damaged)}; delete it and train again")
            return str(folder)
    if path.exists():
        raise UserError(f"not a saved model (no config.json, nor model/config.json) in {path}")
    text = str(model_dir)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1 or text.endswith("/"):
        raise UserError(f"no such model folder: {path}")
    return resolve_checkpoint(text)


def load_qa(model_dir: str | Path):
    """Load ``(model, tokenizer)`` from a saved checkpoint (teacher, WaLDORf or baseline).

    ``import waldorf`` has registered the WaLDORf model type with the Auto classes.
    Explained in book/02_teacher.ipynb.
    """
    name = model_source(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForQuestionAnswering.from_pretrained(name)
    except OSError as err:  # a hub name that cannot be reached or does not exist
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load a QA model from {name!r}: {first}") from err
    return model.eval(), tokenizer


def check_window_sizes(max_length: int, stride: int) -> None:
    """Window settings no question could fit. Explained in book/01_data_and_metric.ipynb."""
    if max_length < 8 or not 0 <= stride < max_length:
        raise UserError(f"window settings cannot work: max_length {max_length} (at least 8), "
                        f"stride {stride} (at least 0 and below max_length)")


def check_windows(tokenizer, questions: list[str], max_length: int, stride: int) -> None:
    """Refuse window settings the tokenizer cannot cut (it would panic, not raise).

    Each window holds [CLS] question [SEP] context [SEP]; the context part must be longer
    than ``stride``, the overlap between consecutive windows. Explained in
    book/01_data_and_metric.ipynb.
    """
    check_window_sizes(max_length, stride)
    longest = max(len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in questions)
    room = max_length - longest - 3
    if room <= stride:
        raise UserError(f"windows of {max_length} tokens leave {max(room, 0)} for the context "
                        f"after a {longest}-token question, not more than the stride {stride}: "
                        "raise --max-length or lower --stride")


def _batches(features, names: list[str], batch_size: int):
    """Dicts of tensors, ``batch_size`` windows at a time, from a Dataset or a plain dict."""
    if isinstance(features, datasets.Dataset):
        features = features.with_format("torch", columns=names)
        for i in range(0, len(features), batch_size):
            yield features[i:i + batch_size]
    else:
        columns = {k: torch.as_tensor(features[k]) for k in names}
        for i in range(0, len(columns["input_ids"]), batch_size):
            yield {k: v[i:i + batch_size] for k, v in columns.items()}


def predict_logits(model, features, batch_size: int = 64,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits, each ``(windows, seq_len)`` float32, for tokenized windows.

    Passes ``token_type_ids`` only to models whose forward takes them (DistilBERT-style
    students do not). Explained in book/02_teacher.ipynb.
    """
    accepted = inspect.signature(model.forward).parameters
    available = features.column_names if isinstance(features, datasets.Dataset) else features
    names = [k for k in MODEL_INPUTS if k in accepted and k in available]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    starts, ends = [], []
    total = -(-len(features["input_ids"]) // batch_size)
    with torch.inference_mode():
        for batch in tqdm(_batches(features, names, batch_size), total=total,
                          desc="predict", disable=not progress):
            out = model(**{k: v.to(device) for k, v in batch.items()})
            starts.append(out.start_logits.float().cpu().numpy())  # (batch, seq)
            ends.append(out.end_logits.float().cpu().numpy())  # (batch, seq)
    model.train(was_training)
    return np.concatenate(starts), np.concatenate(ends)


def predict_dataset(model, tokenizer, examples: datasets.Dataset,
                    profile: Profile | None = None) -> QAPredictions:
    """Answers and no-answer probabilities for every question of a hub-schema Dataset.

    Explained in book/02_teacher.ipynb.
    """
    profile = profile or get_profile()
    features = data.tokenize_squad(examples, tokenizer, profile, train=False)
    start, end = predict_logits(model, features, profile.eval_batch_size)
    return postprocess_qa(examples, features, start, end, n_best=profile.data.n_best,
                          max_answer_length=profile.data.max_answer_length)


def evaluate_qa(model, tokenizer, examples: datasets.Dataset,
                profile: Profile | None = None) -> dict:
    """Official SQuAD 2.0 scores with the model's own no-answer probabilities, plus
    ``forced_HasAns_exact``/``forced_HasAns_f1``: answerable questions scored on the best
    span even where the model abstains, i.e. span finding separated from abstention, and
    ``predictions`` (the QAPredictions) for error analysis.

    Explained in book/02_teacher.ipynb.
    """
    predictions = predict_dataset(model, tokenizer, examples, profile)
    scores = squad_evaluate(examples, predictions.answers, predictions.na_probs)
    forced = squad_evaluate(examples, predictions.best_spans)
    if "HasAns_exact" in forced:
        scores["forced_HasAns_exact"] = forced["HasAns_exact"]
        scores["forced_HasAns_f1"] = forced["HasAns_f1"]
    scores["predictions"] = predictions
    return scores


def protocol_scores(model, tokenizer, profile: Profile, dev: datasets.Dataset,
                    test: datasets.Dataset, dev_predictions: QAPredictions | None = None
                    ) -> tuple[QuestionScores, QAPredictions]:
    """The book's protocol for one model: choose the no-answer threshold on ``dev``, score
    ``test`` once with it. Returns the test's per-question scores and the dev predictions.

    Predictions run in the profile's precision (``waldorf.precision.autocast``), as each run
    scored itself. Explained in book/04_distillation.ipynb.
    """
    with autocast(profile.mixed_precision):
        if dev_predictions is None:
            dev_predictions = predict_dataset(model, tokenizer, dev, profile)
        test_predictions = predict_dataset(model, tokenizer, test, profile)
    threshold = choose_threshold(dev, dev_predictions)
    return question_scores(test, test_predictions, threshold), dev_predictions


def threshold_curve(examples: datasets.Dataset, predictions: QAPredictions,
                    thresholds=None) -> dict[str, np.ndarray]:
    """F1 (all, HasAns, NoAns, in percent) and the share of questions answered when the model
    answers its best span wherever ``na_prob <= threshold`` and abstains elsewhere.

    The official ``best_f1`` sweeps only the answers the model already gave (it can add
    abstentions, never answers); this curve sweeps every threshold over the best spans, so
    it shows the whole trade-off. At 0.5 it is the model's own decision (null score > span).
    Default thresholds: steps of 0.01 plus every question's na_prob, so every distinct threshold
    is on the curve (the official sweep may also stop inside a group of equal na_probs).
    Explained in book/02_teacher.ipynb.
    """
    golds = gold_answers(examples)
    ids = list(golds)
    na_prob = np.array([predictions.na_probs[q] for q in ids])  # (questions,)
    if thresholds is None:
        thresholds = np.unique(np.r_[np.linspace(0.0, 1.0, 101), na_prob])
    thresholds = np.asarray(thresholds, dtype=float)
    _, span_f1 = get_raw_scores(golds, predictions.best_spans)
    span = np.array([span_f1[q] for q in ids], dtype=float)  # (questions,)
    has_answer = np.array([bool(golds[q]) for q in ids])  # (questions,)
    answer = na_prob[None, :] <= thresholds[:, None]  # (thresholds, questions)
    score = np.where(answer, span[None, :], (~has_answer).astype(float)[None, :]) * 100

    def mean(mask: np.ndarray) -> np.ndarray:
        return score[:, mask].mean(axis=1) if mask.any() else np.full(len(thresholds), np.nan)

    return {"threshold": thresholds, "f1": mean(np.ones_like(has_answer)),
            "HasAns_f1": mean(has_answer), "NoAns_f1": mean(~has_answer),
            "answered": answer.mean(axis=1)}


def _softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    logits = np.where(mask, logits, -np.inf)  # padding takes no probability
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def span_probabilities(model, tokenizer, question: str, context: str, max_length: int = 384,
                       stride: int = 128) -> dict:
    """What a model believes about one question: P(start) and P(end) of every context token.

    Each window's softmax runs over all its positions ([CLS] included: its share is the
    window's "no answer"; what is left over falls on question tokens). A token seen by
    several windows keeps its highest probability. Returns ``tokens``, their character
    ``offsets`` (tokens x 2), ``start`` and ``end`` probabilities, and ``null_start``/
    ``null_end``: the [CLS] probabilities of the window whose null score is lowest, the
    one post-processing compares the best span with. Explained in book/02_teacher.ipynb.
    """
    examples = {"id": ["q"], "question": [question], "context": [context]}
    features = data.prepare_eval_features(examples, tokenizer, max_length, stride)
    start, end = predict_logits(model, features, batch_size=8, progress=False)  # (windows, seq)
    mask = np.asarray(features["attention_mask"], dtype=bool)  # (windows, seq)
    start_p, end_p = _softmax(start, mask), _softmax(end, mask)  # (windows, seq)
    best = {}  # character offsets -> [token, P(start), P(end)], in paragraph order
    for w, offsets in enumerate(features["offset_mapping"]):
        for i, offset in enumerate(offsets):
            if offset is None:
                continue
            token = tokenizer.convert_ids_to_tokens(features["input_ids"][w][i])
            row = best.setdefault(tuple(offset), [token, 0.0, 0.0])
            row[1], row[2] = max(row[1], start_p[w, i]), max(row[2], end_p[w, i])
    order = sorted(best)
    null = int(np.argmin(start[:, 0] + end[:, 0]))
    return {"tokens": [best[o][0] for o in order], "offsets": np.array(order, dtype=int),
            "start": np.array([best[o][1] for o in order]),
            "end": np.array([best[o][2] for o in order]),
            "null_start": float(start_p[null, 0]), "null_end": float(end_p[null, 0]),
            "windows": len(start)}


class QuestionAnswerer:
    """``qa(question=..., context=...)`` -> ``{"answer", "score", "start", "end"}``.

    The replacement of the removed transformers pipeline. ``start``/``end`` are character
    offsets, so ``context[start:end] == answer``; ``answer == ""`` (start = end = 0) when the
    no-answer score beats the best span by more than ``null_threshold``. ``score`` is the
    probability of what is returned: 1 - P(no answer) for a span, P(no answer) for "".
    Long contexts are cut into overlapping windows like the dev set; lists are batched.
    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, model, tokenizer, max_length: int = 384, stride: int = 128,
                 max_answer_length: int = 30, n_best: int = 20, null_threshold: float = 0.0,
                 batch_size: int = 32):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.stride = max_length, stride
        self.max_answer_length, self.n_best = max_answer_length, n_best
        self.null_threshold, self.batch_size = null_threshold, batch_size

    def __call__(self, question: str | list[str], context: str | list[str]):
        single = isinstance(question, str) and isinstance(context, str)
        questions = [question] if isinstance(question, str) else list(question)
        contexts = [context] if isinstance(context, str) else list(context)
        if len(questions) == 1 < len(contexts):
            questions *= len(contexts)
        if len(contexts) == 1 < len(questions):
            contexts *= len(questions)
        if len(questions) != len(contexts):
            raise UserError(f"got {len(questions)} questions but {len(contexts)} contexts")
        for what, texts in (("question", questions), ("context", contexts)):
            empty = [i for i, text in enumerate(texts) if not text.strip()]
            if empty:
                raise UserError(f"the {what} is empty" if single else
                                f"empty {what} at position(s) {empty}")
        check_windows(self.tokenizer, questions, self.max_length, self.stride)
        results = self._answer(questions, contexts)
        return results[0] if single else results

    def _answer(self, questions: list[str], contexts: list[str]) -> list[dict]:
        ids = [str(i) for i in range(len(questions))]
        examples = {"id": ids, "question": questions, "context": contexts}
        features = data.prepare_eval_features(examples, self.tokenizer, self.max_length,
                                              self.stride)
        start, end = predict_logits(self.model, features, self.batch_size, progress=False)
        preds = postprocess_qa(examples, features, start, end, n_best=self.n_best,
                               max_answer_length=self.max_answer_length,
                               null_threshold=self.null_threshold)
        results = []
        for qid in ids:
            answer, na_prob = preds.answers[qid], preds.na_probs[qid]
            first, last = preds.best_offsets[qid] if answer else (0, 0)
            results.append({"answer": answer, "score": 1.0 - na_prob if answer else na_prob,
                            "start": first, "end": last})
        return results


def run_predict(args: argparse.Namespace) -> int:
    """Write prediction files that ``waldorf evaluate`` (or the official script) reads.

    Explained in book/02_teacher.ipynb.
    """
    profile = get_profile(args.profile)
    outputs = [Path(p) for p in (args.out, args.na_prob_out) if p]
    for out in outputs:  # checked before the model runs, not after
        if out.is_dir():
            raise UserError(f"cannot write {out}: it is a folder")
        if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
            raise UserError(f"cannot write {out}: its folder does not exist or is not writable")
    examples = data.read_squad_json(args.data_file)
    hf_logging.disable_progress_bar()
    model, tokenizer = load_qa(args.model_dir)
    predictions = predict_dataset(model, tokenizer, examples, profile)
    Path(args.out).write_text(json.dumps(predictions.answers), encoding="utf-8")
    if args.na_prob_out:
        Path(args.na_prob_out).write_text(json.dumps(predictions.na_probs), encoding="utf-8")
    print(f"wrote {len(predictions.answers)} predictions to {args.out}", file=sys.stderr)
    return 0


def run_ask(args: argparse.Namespace) -> int:
    """Print the answer as JSON. Explained in book/03_architecture.ipynb."""
    check_window_sizes(args.max_length, args.stride)
    hf_logging.disable_progress_bar()  # a command prints its result, not loading bars
    model, tokenizer = load_qa(args.model_dir)
    qa = QuestionAnswerer(model, tokenizer, max_length=args.max_length, stride=args.stride)
    print(json.dumps(qa(question=args.question, context=args.context), indent=2))
    return 0
