"""Exercises of chapter 4: the soft cross-entropy with its temperature, and the layer maps.

The reader writes each as a function; the checker runs it next to the book's own
(``waldorf.distill.losses``) on random logits and on many student/teacher depths, and names
the usual slip when they differ. Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from waldorf.distill.losses import LAYER_MAPPINGS, layer_map, soft_cross_entropy
from waldorf.exercises import Verdict, exercise

CHAPTER = "book/04_distillation.ipynb"
TEMPERATURES = (0.5, 1.0, 2.0, 4.0)


def _logit_cases() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    cases = []
    for seed, temperature in enumerate(TEMPERATURES):
        generator = torch.Generator().manual_seed(seed)
        student = 3 * torch.randn(4, 12, generator=generator)  # (batch, seq)
        teacher = 3 * torch.randn(4, 12, generator=generator)  # (batch, seq)
        cases.append((student, teacher, temperature))
    return cases


def _agrees(results: list[float], values: list[float]) -> bool:
    return all(math.isclose(r, v, rel_tol=1e-4, abs_tol=1e-6)
               for r, v in zip(results, values, strict=True))


def _soft_variant(student: torch.Tensor, teacher: torch.Tensor, temperature: float, *,
                  t_student: float, t_teacher: float, scale: float) -> float:
    p = F.softmax(teacher / t_teacher, dim=-1)  # (batch, seq)
    log_q = F.log_softmax(student / t_student, dim=-1)  # (batch, seq)
    return float(-scale * (p * log_q).sum(-1).mean())


@exercise("4.1", CHAPTER, "Soft cross-entropy with a temperature")
def check_soft_cross_entropy(answer: object) -> Verdict:
    """``answer(student_logits, teacher_logits, temperature)`` -> the loss, compared with
    ``waldorf.distill.losses.soft_cross_entropy`` on random (batch, seq) logits.

    Explained in book/04_distillation.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (student_logits, teacher_logits, "
                              "temperature) that returns the loss")
    cases = _logit_cases()
    results = [float(answer(s.clone(), t.clone(), temp)) for s, t, temp in cases]
    if _agrees(results, [float(soft_cross_entropy(s, t, temp)) for s, t, temp in cases]):
        return Verdict(True, "T^2 times the batch mean of -sum p_teacher(T) log p_student(T): "
                             "the same numbers as the book's loss")

    def entropy(t: torch.Tensor, temp: float) -> float:
        p = F.softmax(t / temp, dim=-1)  # (batch, seq)
        return float(-(p * p.log()).sum(-1).mean())

    wrong = {
        "multiply by T^2: without it the gradients shrink as 1/T^2 and the temperature "
        "silently changes the learning rate":
            lambda s, t, temp: float(soft_cross_entropy(s, t, temp)) / temp**2,
        "soften the teacher's distribution too: divide its logits by T as well":
            lambda s, t, temp: _soft_variant(s, t, temp, t_student=temp, t_teacher=1.0,
                                             scale=temp**2),
        "soften the student's distribution too: divide its logits by T as well":
            lambda s, t, temp: _soft_variant(s, t, temp, t_student=1.0, t_teacher=temp,
                                             scale=temp**2),
        "average over the windows of the batch, don't sum them":
            lambda s, t, temp: float(soft_cross_entropy(s, t, temp)) * s.shape[0],
        "that is the KL divergence: it subtracts the teacher's entropy, which gives the same "
        "gradient for the student but another value; the book's loss is the cross-entropy":
            lambda s, t, temp: float(soft_cross_entropy(s, t, temp)) - temp**2 * entropy(t, temp),
        "mind the sign: cross-entropy is -sum p log q, a positive number":
            lambda s, t, temp: -float(soft_cross_entropy(s, t, temp)),
    }
    for hint, value in wrong.items():
        if _agrees(results, [value(s, t, temp) for s, t, temp in cases]):
            return Verdict(False, hint)
    return Verdict(False, "p = softmax(teacher / T), log q = log_softmax(student / T), both over "
                          "the last dimension; then -T^2 * sum(p log q) per window, averaged")


LAYER_CASES = [(4, 6), (3, 6), (4, 12), (6, 24), (2, 6), (4, 4), (1, 6), (3, 12)]


@exercise("4.2", CHAPTER, "Which teacher layer teaches each unit")
def check_layer_map(answer: object) -> Verdict:
    """``answer(student_layers, teacher_layers, mode)`` -> 0-based teacher layers, for modes
    "top" and "uniform", compared with ``waldorf.distill.losses.layer_map``.

    Explained in book/04_distillation.ipynb.
    """
    if not callable(answer):
        return Verdict(False, "the answer is a function of (student_layers, teacher_layers, "
                              "mode) that returns a list of teacher layers")
    failing = [(s, t, mode) for mode in LAYER_MAPPINGS for s, t in LAYER_CASES
               if [int(x) for x in answer(s, t, mode)] != layer_map(s, t, mode)]
    if not failing:
        return Verdict(True, "top: the teacher's upper layers, consecutive; uniform: "
                             "ceil((i + 1) N / M) - 1, TinyBERT's g(m) = m N / M from 0")

    def got(case):
        return [int(x) for x in answer(*case)]

    wrong = {
        "number the teacher's layers from 0, as the chapter's tables do":
            lambda s, t, mode: [x + 1 for x in layer_map(s, t, mode)],
        "'top' takes the teacher's *upper* layers, the last student_layers of them":
            lambda s, t, mode: list(range(s)),
        "TinyBERT's g(m) = m N / M counts units m from 1: for unit i (from 0) take "
        "(i + 1) N / M, then subtract one for 0-based layers":
            lambda s, t, mode: [i * t // s for i in range(s)],
        "round up: ceil((i + 1) N / M) - 1, so that the last unit gets the last layer":
            lambda s, t, mode: [(i + 1) * t // s - 1 for i in range(s)],
    }
    for hint, value in wrong.items():
        if all(got(case) == value(*case) for case in failing):
            return Verdict(False, hint)
    s, t, mode = failing[0]
    return Verdict(False, f"{mode!r} with {s} units and {t} teacher layers should give "
                          f"{layer_map(s, t, mode)}, not {got(failing[0])}")


__all__ = ["check_layer_map", "check_soft_cross_entropy"]
