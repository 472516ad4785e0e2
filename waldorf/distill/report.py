"""How close a student came to its teacher: margins over the all-no-answer floor and agreement.

SQuAD 2.0 splits reward never answering with the share of unanswerable questions (57.1 F1 on
the offline ``dev.json``), so the development tables show each model's *margin* over that floor
and the share of the teacher's margin a student keeps, as description. Verdicts come from the
test split: ``scores_on_test`` applies the protocol (threshold chosen on dev, test scored once) and
``verdict_lines`` states each comparison with its interval. Explained in
book/04_distillation.ipynb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from waldorf.bench import Timing, measure_group
from waldorf.bench_report import summarise
from waldorf.distill.losses import pool_mask, pool_sequence
from waldorf.metrics import QuestionScores, compare, normalize_answer, squad_evaluate
from waldorf.postprocess import QAPredictions
from waldorf.qa import predict_logits, protocol_scores

if TYPE_CHECKING:
    from waldorf.config import Profile

def margin_table(scores: dict[str, dict], floor: float, teacher: str = "teacher") -> pd.DataFrame:
    """One row per model: ``best_f1``, its margin over ``floor``, the share of the teacher's
    margin kept (NaN when the teacher has no margin), span quality (``forced_HasAns_f1``) and
    ``best_exact`` (the paper reports EM next to F1).

    ``scores``: model name -> official scores (``qa.evaluate_qa`` or a run's recorded scores).
    Explained in book/04_distillation.ipynb.
    """
    teacher_margin = scores[teacher]["best_f1"] - floor
    scale = 100 / teacher_margin if teacher_margin > 0 else np.nan  # no margin, no share
    rows = {name: {"best_f1": s["best_f1"], "margin over floor": s["best_f1"] - floor,
                   "share of teacher margin (%)": (s["best_f1"] - floor) * scale,
                   "forced_HasAns_f1": s.get("forced_HasAns_f1", np.nan),
                   "best_exact": s.get("best_exact", np.nan)}
            for name, s in scores.items()}
    return pd.DataFrame(rows).T


def recorded_margins(runs: dict, dev: datasets.Dataset,
                     teacher: str = "teacher") -> tuple[pd.DataFrame, float]:
    """``margin_table`` of the dev scores each run recorded (``metadata["dev_scores"]``), over
    the all-no-answer F1 of ``dev``; returns the table and that floor.

    Explained in book/04_distillation.ipynb.
    """
    floor = squad_evaluate(dev, {qid: "" for qid in dev["id"]})["f1"]
    scores = {name: run.metadata["dev_scores"] for name, run in runs.items()}
    return margin_table(scores, floor, teacher), floor


def difference_lines(table: pd.DataFrame, reference: str, rows: list[str], label: str,
                     arithmetic: str | None = None) -> list[str]:
    """One line per row: its ``best_f1`` and span-quality differences to ``reference`` (called
    ``label``), and its speed as a ratio where the table has a ``windows/s`` column; with
    ``arithmetic`` (a column of MAC ratios, larger = less arithmetic) also how much more
    arithmetic it does.

    Explained in book/06_ablations.ipynb.
    """
    base, lines = table.loc[reference], []
    for name in rows:
        row = table.loc[name]
        line = (f"{name} minus {label}: best_f1 {row['best_f1'] - base['best_f1']:+.2f}, "
                f"forced HasAns F1 {row['forced_HasAns_f1'] - base['forced_HasAns_f1']:+.1f}")
        if "windows/s" in table.columns:
            line += f", speed x{row['windows/s'] / base['windows/s']:.2f}"
        if arithmetic is not None:
            line += f", arithmetic {base[arithmetic] / row[arithmetic] - 1:+.0%}"
        lines.append(line)
    return lines


def scores_on_test(runs: Mapping[str, Any], tokenizer, profile: Profile, dev: datasets.Dataset,
                test: datasets.Dataset) -> tuple[dict[str, QuestionScores], dict]:
    """Each finished run (name -> anything with ``load()``) scored by the book's protocol: its
    no-answer threshold chosen on ``dev``, then ``test`` scored once (``qa.protocol_scores``).

    Returns the per-question test scores and the dev predictions, by name.
    Explained in book/04_distillation.ipynb.
    """
    scores, dev_predictions = {}, {}
    for name, run in runs.items():
        model, _ = run.load()
        scores[name], dev_predictions[name] = protocol_scores(model, tokenizer, profile, dev, test)
    return scores, dev_predictions


def verdict_lines(scores: Mapping[str, QuestionScores], pairs: Sequence[tuple[str, str]],
                  metrics: Sequence[str] = ("f1", "forced_HasAns_f1")) -> list[str]:
    """One line per pair and metric: the paired difference with its 95% bootstrap interval and
    the verdict ("A ahead", "B ahead" or "within noise") of ``waldorf.metrics.compare``.

    Explained in book/04_distillation.ipynb.
    """
    lines = []
    for a, b in pairs:
        for metric in metrics:
            result = compare(scores[a], scores[b], metric, names=(a, b))
            low, high = result["difference_ci"]
            lines.append(f"{metric}: {a} minus {b}: {result['difference']:+.2f} "
                         f"[{low:+.2f}, {high:+.2f}] -> {result['verdict']}")
    return lines


def decisions(predictions: QAPredictions, threshold: float) -> dict[str, bool]:
    """Question id -> answered?, as the official ``best_f1`` decides at ``threshold``: the model
    answers where it gave an answer and its P(no answer) is at most the threshold.

    Explained in book/04_distillation.ipynb.
    """
    return {qid: bool(answer) and predictions.na_probs[qid] <= threshold
            for qid, answer in predictions.answers.items()}


def agreement(teacher: QAPredictions, student: QAPredictions, teacher_threshold: float,
              student_threshold: float) -> dict:
    """How often the student decides and answers like the teacher.

    ``span``: share of questions whose best spans match after SQuAD normalisation;
    ``decision``: share with the same answer/abstain decision (each model at its own best
    threshold); ``table``: the 2x2 counts of those decisions.
    Explained in book/04_distillation.ipynb.
    """
    ids = sorted(teacher.answers)
    missing = set(ids) ^ set(student.answers)
    if missing:
        raise ValueError(f"teacher and student predictions cover different questions, "
                         f"e.g. {sorted(missing)[:3]}")
    same_span = [normalize_answer(teacher.best_spans[i]) == normalize_answer(student.best_spans[i])
                 for i in ids]
    t, s = decisions(teacher, teacher_threshold), decisions(student, student_threshold)
    table = pd.crosstab(pd.Series([t[i] for i in ids], name="teacher answers"),
                        pd.Series([s[i] for i in ids], name="student answers"))
    return {"span": float(np.mean(same_span)),
            "decision": float(np.mean([t[i] == s[i] for i in ids])), "table": table}


def boundary_hits(start_logits: np.ndarray, end_logits: np.ndarray,
                  features: datasets.Dataset | dict, group: int = 2) -> dict[str, float]:
    """How often a model's forced start and end land on the gold token, and in its gold group.

    Only windows that hold a gold answer count; each boundary is the best-scoring context token
    (the closing [SEP] excluded), chosen apart. A student down-sampled ``group`` times merges
    positions 0-1, 2-3, ... into one, so the ``group`` score asks whether it found the right
    merged position, the ``token`` score whether it also found the token inside it.
    Explained in book/08_student_shape.ipynb.
    """
    gold = {"start": np.asarray(features["start_positions"]),
            "end": np.asarray(features["end_positions"])}
    rows = np.flatnonzero(gold["start"] > 0)
    if rows.size == 0:
        raise ValueError("no window holds a gold answer: nothing to score")
    width = start_logits.shape[1]
    context = np.zeros((rows.size, width), dtype=bool)
    for k, i in enumerate(rows):
        kinds = np.asarray(features["token_type_ids"][i][:width])
        real = np.asarray(features["attention_mask"][i][:width]).astype(bool)
        context[k, :kinds.size] = (kinds == 1) & real
        context[k, real.sum() - 1] = False  # the closing [SEP]
    hits = {}
    for side, logits in (("start", start_logits), ("end", end_logits)):
        picked = np.where(context, logits[rows], -np.inf).argmax(axis=1)  # (windows,)
        hits[f"{side}, token"] = float(np.mean(picked == gold[side][rows]))
        hits[f"{side}, {group}-token group"] = float(np.mean(
            picked // group == gold[side][rows] // group))
    return hits


STAGE_NAMES = {"student-front": "stage 0", "student-intermediate": "stage 1",
               "student-prediction": "stage 2", "student-gold": "gold labels"}


def stage_table(runs: dict) -> pd.DataFrame:
    """One row per run and stage: windows, optimizer steps, minutes, machine, revision, artifact.

    ``runs``: name -> a ``StudentRun`` (``distill`` or ``train_without_teacher``); the stages
    before it (``previous``) get rows too, each named by its artifact role. Runs that share a
    stage (an ablation of stage 1 shares stage 0) show the same ``artifact`` hash there.
    Explained in book/05_baselines.ipynb.
    """
    rows = {}
    for name, run in runs.items():
        chain = []
        while run is not None:
            chain.insert(0, run)
            run = run.previous
        for part in chain:
            m = part.metadata
            rows[(name, STAGE_NAMES.get(m["role"], m["role"]))] = {
                "windows": m["train_windows"], "steps": m["optimizer_steps"],
                "minutes": m["duration_s"] / 60, "hardware": m["hardware"],
                "git": m["git_revision"], "artifact": m["hash"]}
    return pd.DataFrame.from_dict(rows, orient="index")  # keeps each column's own type


def windows_per_second(models: dict[str, nn.Module], windows: datasets.Dataset, batch_size: int,
                       repeats: int = 3, reference: str | None = None) -> pd.DataFrame:
    """Dev windows per second and parameters (millions) of each model, timed alike on the CPU.

    A quick, page-sized measurement of trained models on real windows with chapter 7's
    harness (``bench.measure_group``): a warm-up pass, then ``repeats`` timed passes per model,
    interleaved so drift hits all alike, and the median. Moves every model to the CPU. With
    ``reference`` (a key of ``models``) a column gives each speed relative to it.
    Explained in book/05_baselines.ipynb.
    """
    cpu = torch.device("cpu")
    for model in models.values():
        model.to(cpu).eval()
    fns = {name: partial(predict_logits, model, windows, batch_size, progress=False)
           for name, model in models.items()}
    timing = Timing(warmup=1, min_repeats=repeats, max_repeats=repeats, cell_budget_s=0.0)
    times = {name: cell["times_ms"] for name, cell in
             measure_group(fns, timing, cpu, desc="windows per second").items()}
    table = pd.DataFrame({name: {"windows/s": len(windows) / (summarise(times[name])["median"]
                                                              / 1e3),
                                 "parameters (M)": sum(p.numel() for p in m.parameters()) / 1e6}
                          for name, m in models.items()}).T
    if reference is not None:
        table[f"x {reference}"] = table["windows/s"] / table.loc[reference, "windows/s"]
    return table


class ReducedTeacher(nn.Module):
    """The teacher with only ``layers``, optionally on a sequence shortened ``downsample`` times.

    Shortening takes the masked mean of each group of neighbouring tokens and repeats the
    result back before the span head. Nothing is trained: it measures apart the two things a
    student built from copied layers loses (layers removed, tokens merged). A WaLDORf student
    at step 0 differs further (narrower embeddings, the up-sampling's skip connection).
    Use it like any QA model (``qa.evaluate_qa``).
    Explained in book/04_distillation.ipynb.
    """

    def __init__(self, teacher: nn.Module, layers: list[int], downsample: int = 1):
        super().__init__()
        self.teacher, self.layers, self.factor = teacher, list(layers), downsample
        self.config = teacher.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> QuestionAnsweringModelOutput:
        bert = self.teacher.base_model
        x = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (b, seq, h)
        seq, f = x.shape[1], self.factor
        real = attention_mask[..., None].float()  # (batch, seq, 1)
        x = pool_sequence(x, f, 1, real)  # (batch, seq', hidden)
        small = pool_mask(attention_mask, f)  # (batch, seq')
        bias = (~small)[:, None, None, :] * torch.finfo(x.dtype).min  # (batch, 1, 1, seq')
        for i in self.layers:
            x = bert.encoder.layer[i](x, attention_mask=bias)  # (batch, seq', hidden)
        x = x.repeat_interleave(f, dim=1)[:, :seq]  # (batch, seq, hidden)
        start, end = self.teacher.qa_outputs(x).unbind(-1)  # (batch, seq) each
        return QuestionAnsweringModelOutput(start_logits=start.contiguous(),
                                            end_logits=end.contiguous())


__all__ = ["ReducedTeacher", "agreement", "boundary_hits", "decisions", "difference_lines",
           "margin_table", "recorded_margins", "stage_table", "scores_on_test", "verdict_lines",
           "windows_per_second"]
