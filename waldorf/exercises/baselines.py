"""Exercises of chapter 5: which teacher layers a four-layer cut copies, and what the baseline
costs against WaLDORf in arithmetic and parameters. The checkers compute the right answer from
the package itself (``losses.layer_map``, ``count_macs``, ``count_parameters``), so they follow
the code if the shapes change. Explained in book/05_baselines.ipynb.
"""

from __future__ import annotations

import math
from functools import cache

from waldorf.distill.losses import layer_map
from waldorf.exercises import Verdict, exercise
from waldorf.models import (
    WaldorfConfig,
    baseline_config,
    build_student,
    count_macs,
    count_parameters,
)

CHAPTER = "book/05_baselines.ipynb"
TEACHER_LAYERS = 6  # MiniLM-L6, the teacher of the smoke, cpu and colab profiles
UNITS = 4
BASELINE = "teacher4"  # the four-layer cut at MiniLM's width
SEQ_LEN = 384  # the paper's window length


def _layers(value: object) -> list[int]:
    return [int(layer) for layer in value]


@exercise("5.1", CHAPTER, "which teacher layers a four-layer cut copies")
def layers_copied(answer: object) -> Verdict:
    """Answer: ``{"top": [...], "uniform": [...]}``, the 0-based layers of a six-layer teacher
    that four units copy under each mapping. Explained in book/05_baselines.ipynb.
    """
    if not isinstance(answer, dict) or set(answer) != {"top", "uniform"}:
        return Verdict(False, "answer a dict with the keys 'top' and 'uniform', each a list of "
                              "four teacher layers")
    got = {mode: _layers(layers) for mode, layers in answer.items()}
    want = {mode: layer_map(UNITS, TEACHER_LAYERS, mode) for mode in ("top", "uniform")}
    if got == want:
        return Verdict(True, f"'top' keeps the teacher's last four layers {want['top']}; "
                             f"'uniform' spreads the units over its depth {want['uniform']}")
    if got == {mode: [layer + 1 for layer in layers] for mode, layers in want.items()}:
        return Verdict(False, "count the teacher's layers from 0, as the table above does "
                              "('unit 0 <- teacher layer ...')")
    if got == {"top": want["uniform"], "uniform": want["top"]}:
        return Verdict(False, "the two lists are swapped: 'top' takes consecutive layers from "
                              "the top of the teacher")
    if got["top"] != want["top"]:
        return Verdict(False, "'top' copies the teacher's top four layers, in order, counted "
                              "from 0: the table above lists them")
    return Verdict(False, "'uniform' gives unit i the teacher layer ceil((i + 1) * 6 / 4) - 1: "
                          "TinyBERT's every-(N/M)-th layer, counted from 0")


@cache
def _mac_ratio(seq_len: int) -> float:
    baseline = count_macs(baseline_config(BASELINE), seq_len)["total"]
    return baseline / count_macs(WaldorfConfig(), seq_len)["total"]


@cache
def _parameters() -> dict[str, dict[str, int]]:
    return {name: count_parameters(build_student(name)) for name in (BASELINE, "waldorf")}


@exercise("5.2", CHAPTER, "the baseline's arithmetic against WaLDORf's")
def mac_ratio(answer: object) -> Verdict:
    """Answer: how many times more multiply-accumulates ``teacher4`` does than the default
    WaLDORf on one window of 384 tokens. Explained in book/05_baselines.ipynb.
    """
    value, want = float(answer), _mac_ratio(SEQ_LEN)
    if math.isclose(value, want, rel_tol=0.01):
        return Verdict(True, f"the baseline does {want:.2f}x WaLDORf's multiply-accumulates")
    if math.isclose(value, 1 / want, rel_tol=0.01):
        return Verdict(False, "that is WaLDORf's arithmetic over the baseline's: divide the "
                              "baseline's total by WaLDORf's")
    counts = _parameters()
    if math.isclose(value, counts[BASELINE]["total"] / counts["waldorf"]["total"], rel_tol=0.01):
        return Verdict(False, "that is the ratio of parameters; count_macs counts the arithmetic "
                              "of one window instead")
    if any(math.isclose(value, _mac_ratio(n), rel_tol=0.01) for n in (128, 192, 256, 512)):
        return Verdict(False, "count at 384 tokens, the paper's window length")
    return Verdict(False, "use waldorf.models.count_macs(config, 384)['total'] for both: "
                          "baseline_config('teacher4') and WaldorfConfig()")


@exercise("5.3", CHAPTER, "where the baseline's extra parameters are")
def parameter_component(answer: object) -> Verdict:
    """Answer: the ``count_parameters`` component that accounts for most of the difference
    between ``teacher4`` and the default WaLDORf. Explained in book/05_baselines.ipynb.
    """
    counts = _parameters()
    gaps = {part: counts[BASELINE][part] - counts["waldorf"][part]
            for part in counts[BASELINE] if part != "total"}
    want = max(gaps, key=gaps.get)
    got = str(answer).strip().lower()
    if got == want:
        return Verdict(True, f"the baseline's {want} hold {gaps[want] / 1e6:.1f}M parameters "
                             f"more than WaLDORf's; its lead over all components is "
                             f"{sum(gaps.values()) / 1e6:.1f}M")
    if got not in gaps:
        return Verdict(False, f"answer one of the components: {', '.join(gaps)}")
    if gaps[got] == 0:
        return Verdict(False, f"both students have the same {got} parameters: look for a "
                              "component that differs")
    if gaps[got] < 0:
        return Verdict(False, f"WaLDORf has more {got} parameters than the baseline, not fewer")
    return Verdict(False, f"the baseline has more {got} parameters, but another component "
                          "differs more: compare the columns of the parameter table")
