"""Measurement the book can trust: the official SQuAD 2.0 metric, then intervals around it.

- :mod:`~waldorf.metrics.official`: ``evaluate-v2.0.py`` line for line, so every number is
  comparable with the leaderboard;
- :mod:`~waldorf.metrics.scores`: the same scores question by question, and the no-answer
  threshold chosen on dev;
- :mod:`~waldorf.metrics.bootstrap`: every score for many resamples of the questions at once;
- :mod:`~waldorf.metrics.report`: the report every chapter prints (each number with a 95%
  interval), paired comparisons of two models and summaries over seeds;
- :mod:`~waldorf.metrics.command`: ``waldorf evaluate``.

Explained in book/01_data_and_metric.ipynb.
"""

from waldorf.metrics.bootstrap import (
    METRICS,
    bootstrap_counts,
    metric_values,
    percentile_interval,
)
from waldorf.metrics.command import (
    evaluate_files,
    read_na_probs,
    read_predictions,
    run_evaluate,
    threshold_from,
)
from waldorf.metrics.official import (
    apply_no_ans_threshold,
    compute_exact,
    compute_f1,
    find_all_best_thresh,
    find_best_thresh,
    get_raw_scores,
    get_tokens,
    gold_answers,
    histogram_na_prob,
    make_eval_dict,
    make_precision_recall_eval,
    merge_eval,
    normalize_answer,
    run_precision_recall_analysis,
    squad_evaluate,
)
from waldorf.metrics.report import compare, format_report, report, report_scores, seed_summary
from waldorf.metrics.scores import QuestionScores, choose_threshold, question_scores

__all__ = [
    "METRICS", "QuestionScores", "apply_no_ans_threshold", "bootstrap_counts", "choose_threshold",
    "compare", "compute_exact", "compute_f1", "evaluate_files", "find_all_best_thresh",
    "find_best_thresh", "format_report", "get_raw_scores", "get_tokens", "gold_answers",
    "histogram_na_prob", "make_eval_dict", "make_precision_recall_eval", "merge_eval",
    "metric_values", "normalize_answer", "percentile_interval", "question_scores",
    "read_na_probs", "read_predictions", "report", "report_scores", "run_evaluate",
    "run_precision_recall_analysis", "seed_summary", "squad_evaluate", "threshold_from",
]
