"""``waldorf evaluate``: the official script on files, plus threshold transfer and intervals.

Every argument keeps the meaning it has in ``evaluate-v2.0.py`` (the parser is in
``waldorf_cli.py``). Two additions serve the protocol "choose on dev, report on test":
``--threshold-from`` applies the no-answer threshold recorded on dev to another file, and
``--bootstrap`` adds 95% intervals. Input files are checked first, so a malformed file is a
one-line ``UserError`` naming the file and question, not a traceback.
Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
from pathlib import Path

from waldorf.data import read_json_object, read_squad_json
from waldorf.errors import UserError
from waldorf.metrics.bootstrap import bootstrap_counts, metric_values, percentile_interval
from waldorf.metrics.official import squad_evaluate
from waldorf.metrics.report import CONFIDENCE
from waldorf.metrics.scores import question_scores

THRESHOLD_KEY = "best_f1_thresh"


def read_predictions(path: str | Path) -> dict[str, str]:
    """``{question_id: answer_text}`` ("" = abstain), checked value by value.

    Explained in book/01_data_and_metric.ipynb.
    """
    preds = read_json_object(path, "prediction file {question_id: answer_text}")
    for qid, answer in preds.items():
        if not isinstance(answer, str):
            raise UserError(f"{path}: question {qid!r}: the answer should be a string, got "
                            f"{type(answer).__name__}")
    return preds


def read_na_probs(path: str | Path, preds: dict[str, str]) -> dict[str, float]:
    """``{question_id: P(no answer)}`` with a finite number for every predicted question.

    Explained in book/01_data_and_metric.ipynb.
    """
    na_probs = read_json_object(path, "no-answer probability file {question_id: probability}")
    for qid, prob in na_probs.items():
        if isinstance(prob, bool) or not isinstance(prob, int | float) or not math.isfinite(prob):
            raise UserError(f"{path}: question {qid!r}: the no-answer probability should be a "
                            f"finite number, got {prob!r}")
    missing = [qid for qid in preds if qid not in na_probs]
    if missing:
        raise UserError(f"{path}: no-answer probabilities missing for {len(missing)} predicted "
                        f"question(s), e.g. {missing[:5]}")
    return na_probs


def threshold_from(eval_file: str | Path) -> float:
    """The ``best_f1_thresh`` an earlier ``waldorf evaluate ... -n NA -o EVAL.json`` recorded.

    Explained in book/01_data_and_metric.ipynb.
    """
    scores = read_json_object(eval_file, "evaluation file")
    value = scores.get(THRESHOLD_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{eval_file}: no numeric {THRESHOLD_KEY!r}; write it with `waldorf "
                        "evaluate DEV.json PRED.json --na-prob-file NA.json --out-file EVAL.json`")
    return float(value)


def evaluate_files(
    data_file: str | Path, pred_file: str | Path, na_prob_file: str | Path | None = None,
    out_file: str | Path | None = None, na_prob_thresh: float = 1.0,
    out_image_dir: str | Path | None = None, *, threshold_file: str | Path | None = None,
    n_boot: int = 0, seed: int = 0,
) -> dict:
    """Score prediction files exactly like ``evaluate-v2.0.py data_file pred_file``.

    ``threshold_file``: take ``na_prob_thresh`` from that evaluation's ``best_f1_thresh``
    instead of the official default 1.0 (recorded as ``na_prob_thresh`` in the output; any
    other ``na_prob_thresh`` with it is an error). ``n_boot`` > 0 adds
    ``<key>_ci`` = [low, high], 95% bootstrap intervals of ``exact``, ``f1`` and, with
    no-answer probabilities, ``best_exact`` and ``best_f1``.
    Explained in book/01_data_and_metric.ipynb.
    """
    if threshold_file is not None:
        if na_prob_file is None:
            raise UserError("--threshold-from needs --na-prob-file: the threshold is compared "
                            "with each question's no-answer probability")
        if na_prob_thresh != 1.0:
            raise UserError("give either --threshold-from or --na-prob-thresh, not both")
        na_prob_thresh = threshold_from(threshold_file)
    if n_boot < 0:
        raise UserError(f"--bootstrap must be 0 (no intervals) or more, got {n_boot}")
    dataset = read_squad_json(data_file)
    preds = read_predictions(pred_file)
    na_probs = read_na_probs(na_prob_file, preds) if na_prob_file else None
    out = squad_evaluate(dataset, preds, na_probs, na_prob_thresh, out_image_dir)
    if threshold_file is not None:
        out["na_prob_thresh"] = na_prob_thresh
    if n_boot:
        with contextlib.redirect_stderr(io.StringIO()):  # missing predictions: reported above
            scores = question_scores(dataset, preds, na_prob_thresh, na_probs)
        names = ["exact", "f1"] + (["best_exact", "best_f1"] if na_probs is not None else [])
        resampled = metric_values(scores, bootstrap_counts(len(scores), n_boot, seed), names)
        for name in names:
            out[f"{name}_ci"] = percentile_interval(resampled[name], CONFIDENCE)
    if out_file:
        with open(out_file, "w", encoding="utf-8") as f:
            json.dump(out, f)
    return out


def run_evaluate(args: argparse.Namespace) -> int:
    """Print (or write) the scores like the official script.

    The official arguments keep their meaning; ``--threshold-from`` and ``--bootstrap`` add the
    book's protocol. Explained in book/01_data_and_metric.ipynb.
    """
    if args.out_image_dir and not args.na_prob_file:
        print("--out-image-dir needs --na-prob-file; no plots written", file=sys.stderr)
    out = evaluate_files(args.data_file, args.pred_file, args.na_prob_file, args.out_file,
                         args.na_prob_thresh, args.out_image_dir,
                         threshold_file=args.threshold_from, n_boot=args.bootstrap,
                         seed=args.seed)
    if not args.out_file:
        print(json.dumps(out, indent=2))
    return 0
