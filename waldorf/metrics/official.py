"""The official SQuAD 2.0 evaluation, re-implemented line for line.

Every number in the book must be comparable with the leaderboard, so this module follows
``evaluate-v2.0.py`` (Rajpurkar et al., 2018) exactly: same normalisation, same maximum over
gold answers, same key order, same arithmetic. Differences, all for usability: the gold data
may also be a ``datasets.Dataset`` in the hub schema, the precision-recall plots are plotly
HTML files instead of matplotlib PNGs, and a missing prediction is reported on stderr and
scored 0 (the official script drops it from ``total`` and then fails on the breakdown).
Reading files and the ``waldorf evaluate`` command live in :mod:`waldorf.metrics.command`.

Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import collections
import re
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from waldorf.errors import UserError

if TYPE_CHECKING:
    import datasets

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, articles and extra whitespace, as the official script.

    Explained in book/01_data_and_metric.ipynb.
    """
    text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def get_tokens(s: str) -> list[str]:
    """Whitespace tokens of the normalised answer; what F1 counts.

    Explained in book/01_data_and_metric.ipynb.
    """
    return normalize_answer(s).split() if s else []


def compute_exact(a_gold: str, a_pred: str) -> int:
    """1 when the normalised answers are identical, else 0.

    Explained in book/01_data_and_metric.ipynb.
    """
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """Token-overlap F1; two empty answers (both abstain) agree perfectly.

    Explained in book/01_data_and_metric.ipynb.
    """
    gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
    if not gold_toks or not pred_toks:
        return int(gold_toks == pred_toks)
    num_same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def gold_answers(data: Mapping | list | datasets.Dataset) -> dict[str, list[str]]:
    """Map question id -> gold answer texts ([] = unanswerable), in the order of the data.

    Accepts the official JSON (the whole file or its ``data`` list) or a ``datasets.Dataset``
    with the hub columns ``id`` and ``answers{text, answer_start}``.
    Explained in book/01_data_and_metric.ipynb.
    """
    if isinstance(data, Mapping) and "data" in data:
        data = data["data"]
    if hasattr(data, "column_names"):  # datasets.Dataset in the rajpurkar/squad_v2 schema
        pairs = zip(data["id"], data["answers"], strict=True)
        return {qid: list(answers["text"]) for qid, answers in pairs}
    return {
        qa["id"]: [a["text"] for a in qa["answers"]]
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


def get_raw_scores(golds: Mapping[str, list[str]],
                   preds: Mapping[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Exact and F1 per question, the best over all gold answers; no-answer gold is [""].

    Explained in book/01_data_and_metric.ipynb.
    """
    exact_scores, f1_scores = {}, {}
    for qid, answers in golds.items():
        answers = [a for a in answers if normalize_answer(a)] or [""]
        if qid not in preds:
            print(f"Missing prediction for {qid}", file=sys.stderr)
            exact_scores[qid] = f1_scores[qid] = 0
            continue
        exact_scores[qid] = max(compute_exact(a, preds[qid]) for a in answers)
        f1_scores[qid] = max(compute_f1(a, preds[qid]) for a in answers)
    return exact_scores, f1_scores


def apply_no_ans_threshold(scores: Mapping[str, float], na_probs: Mapping[str, float],
                           qid_to_has_ans: Mapping[str, bool], na_prob_thresh: float) -> dict:
    """Replace the answer by "" where the no-answer probability exceeds the threshold.

    Explained in book/01_data_and_metric.ipynb.
    """
    new_scores = {}
    for qid, s in scores.items():
        pred_na = na_probs.get(qid, 0.0) > na_prob_thresh
        new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
    return new_scores


def make_eval_dict(exact_scores: Mapping[str, float], f1_scores: Mapping[str, float],
                   qid_list: list[str] | None = None) -> dict:
    """Percent exact and F1 over all questions or over ``qid_list``.

    Explained in book/01_data_and_metric.ipynb.
    """
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict([
            ("exact", 100.0 * sum(exact_scores.values()) / total),
            ("f1", 100.0 * sum(f1_scores.values()) / total),
            ("total", total),
        ])
    total = len(qid_list)
    return collections.OrderedDict([
        ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
        ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
        ("total", total),
    ])


def merge_eval(main_eval: dict, new_eval: dict, prefix: str) -> None:
    """Copy ``new_eval`` into ``main_eval`` with keys ``<prefix>_<key>``.

    Explained in book/01_data_and_metric.ipynb.
    """
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def find_best_thresh(preds: Mapping[str, str], scores: Mapping[str, float],
                     na_probs: Mapping[str, float],
                     qid_to_has_ans: Mapping[str, bool]) -> tuple[float, float]:
    """Sweep the abstention threshold over the sorted no-answer probabilities.

    Starts from "abstain on everything" and adds one question at a time.
    Explained in book/01_data_and_metric.ipynb.
    """
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k] and k in preds)
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds.get(qid) else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(main_eval: dict, preds: Mapping[str, str],
                         exact_raw: Mapping[str, float], f1_raw: Mapping[str, float],
                         na_probs: Mapping[str, float],
                         qid_to_has_ans: Mapping[str, bool]) -> None:
    """Add best_exact, best_exact_thresh, best_f1, best_f1_thresh to ``main_eval``.

    Explained in book/01_data_and_metric.ipynb.
    """
    best_exact, exact_thresh = find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def make_precision_recall_eval(scores: Mapping[str, float], na_probs: Mapping[str, float],
                               num_true_pos: int, qid_to_has_ans: Mapping[str, bool],
                               out_image: Path | None = None, title: str = "") -> dict:
    """Average precision of answering, ranking questions by rising no-answer probability.

    Explained in book/01_data_and_metric.ipynb.
    """
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    true_pos = 0.0
    precisions, recalls = [1.0], [0.0]
    avg_prec = 0.0
    for i, qid in enumerate(qid_list):
        if qid_to_has_ans[qid]:
            true_pos += scores[qid]
        cur_p = true_pos / float(i + 1)
        cur_r = true_pos / float(num_true_pos)
        if i == len(qid_list) - 1 or na_probs[qid] != na_probs[qid_list[i + 1]]:
            avg_prec += cur_p * (cur_r - recalls[-1])  # a threshold can sit after this question
            precisions.append(cur_p)
            recalls.append(cur_r)
    if out_image:
        import plotly.graph_objects as go

        fig = go.Figure(go.Scatter(x=recalls, y=precisions, line_shape="hv", fill="tozeroy"))
        fig.update_layout(title=title, xaxis_title="Recall", yaxis_title="Precision",
                          xaxis_range=[0.0, 1.05], yaxis_range=[0.0, 1.05])
        fig.write_html(out_image, include_plotlyjs="directory")
    return {"ap": 100.0 * avg_prec}


def run_precision_recall_analysis(main_eval: dict, exact_raw: Mapping[str, float],
                                  f1_raw: Mapping[str, float], na_probs: Mapping[str, float],
                                  qid_to_has_ans: Mapping[str, bool],
                                  out_image_dir: Path) -> None:
    """Add pr_exact_ap, pr_f1_ap, pr_oracle_ap and write the curves and histograms as HTML.

    Explained in book/01_data_and_metric.ipynb.
    """
    out_image_dir.mkdir(parents=True, exist_ok=True)
    num_true_pos = sum(1 for v in qid_to_has_ans.values() if v)
    if num_true_pos == 0:
        return
    oracle_scores = {k: float(v) for k, v in qid_to_has_ans.items()}
    for name, scores, title in [
        ("exact", exact_raw, "Precision-Recall curve for Exact Match score"),
        ("f1", f1_raw, "Precision-Recall curve for F1 score"),
        ("oracle", oracle_scores,
         "Oracle Precision-Recall curve (binary task of HasAns vs. NoAns)"),
    ]:
        pr = make_precision_recall_eval(scores, na_probs, num_true_pos, qid_to_has_ans,
                                        out_image_dir / f"pr_{name}.html", title)
        merge_eval(main_eval, pr, f"pr_{name}")
    for name, wanted in [("hasAns", True), ("noAns", False)]:
        histogram_na_prob(na_probs, [k for k, v in qid_to_has_ans.items() if v == wanted],
                          out_image_dir, name)


def histogram_na_prob(na_probs: Mapping[str, float], qid_list: list[str], image_dir: Path,
                      name: str) -> None:
    """Histogram of no-answer probabilities for one group of questions, as HTML.

    Explained in book/01_data_and_metric.ipynb.
    """
    if not qid_list:
        return
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=[na_probs[k] for k in qid_list], histnorm="probability",
                                 xbins=dict(start=0.0, end=1.0, size=0.05)))
    fig.update_layout(title=f"Histogram of no-answer probability: {name}",
                      xaxis_title="Model probability of no-answer",
                      yaxis_title="Proportion of dataset")
    fig.write_html(image_dir / f"na_prob_hist_{name}.html", include_plotlyjs="directory")


def squad_evaluate(
    data: Mapping | list | datasets.Dataset, preds: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0, out_image_dir: str | Path | None = None,
) -> dict:
    """The official SQuAD 2.0 scores of ``preds`` ({id: text, "" = abstain}) against ``data``.

    With ``na_probs`` ({id: P(no answer)}) the best-threshold keys are added, and with
    ``out_image_dir`` also the precision-recall keys and plots.
    Explained in book/01_data_and_metric.ipynb.
    """
    golds = gold_answers(data)
    qid_to_has_ans = {qid: bool(answers) for qid, answers in golds.items()}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    given_na_probs = na_probs is not None
    if given_na_probs:
        _check_na_probs(preds, na_probs)
    else:
        na_probs = {k: 0.0 for k in preds}
    exact_raw, f1_raw = get_raw_scores(golds, preds)
    exact_thresh = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, no_ans_qids), "NoAns")
    if given_na_probs:
        na_probs = {k: v for k, v in na_probs.items() if k in qid_to_has_ans}
        find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans)
        if out_image_dir:
            run_precision_recall_analysis(
                out_eval, exact_raw, f1_raw, na_probs, qid_to_has_ans, Path(out_image_dir)
            )
    return dict(out_eval)


def _check_na_probs(preds: Mapping[str, str], na_probs: Mapping[str, float]) -> None:
    """The official script fails with a bare KeyError here; name the ids instead."""
    missing = [k for k in preds if k not in na_probs]
    if missing:
        raise UserError(
            f"no-answer probabilities missing for {len(missing)} predicted ids, e.g. {missing[:5]}"
        )

