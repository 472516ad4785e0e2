"""Exercises of chapter 6: reading a paired bootstrap interval as a verdict, first on made-up
intervals, then on a real comparison of two ablations (``waldorf.metrics.compare``).

The rule is ``compare``'s: "A ahead" when the 95% interval of A minus B lies wholly above 0,
"B ahead" when wholly below, "within noise" when it contains 0. Explained in
book/06_ablations.ipynb.
"""

from __future__ import annotations

from waldorf.exercises import Verdict, exercise

CHAPTER = "book/06_ablations.ipynb"
# Made up for practice, not measured: (A minus B in best_f1 points, its 95% paired interval).
PRACTICE_INTERVALS: list[tuple[float, tuple[float, float]]] = [
    (0.8, (0.2, 1.4)),
    (-0.6, (-1.5, 0.3)),
    (-1.1, (-1.9, -0.4)),
    (0.5, (-0.1, 1.1)),
]


def interval_verdict(low: float, high: float, names: tuple[str, str] = ("A", "B")) -> str:
    """The verdict on a 95% interval of ``names[0]`` minus ``names[1]``, as ``compare`` says it.

    Explained in book/06_ablations.ipynb.
    """
    return (f"{names[0]} ahead" if low > 0 else f"{names[1]} ahead" if high < 0
            else "within noise")


def _said(value: object) -> str:
    return " ".join(str(value).lower().split())


def _wrong_reading(difference: float, low: float, high: float, said: str,
                   names: tuple[str, str]) -> str:
    """The hint for one misread interval (``said`` in lower case)."""
    if low <= 0 <= high and said == interval_verdict(difference, difference, names).lower():
        return (f"the interval [{low:+.2f}, {high:+.2f}] contains 0: the sign of the point "
                f"difference alone is not a verdict")
    if said == interval_verdict(-high, -low, names).lower():
        return (f"the interval is of {names[0]} minus {names[1]}: wholly above 0 means "
                f"{names[0]} ahead, wholly below means {names[1]} ahead")
    if said == "within noise":
        return f"[{low:+.2f}, {high:+.2f}] does not contain 0: one model is ahead"
    return f"say '{names[0]} ahead', '{names[1]} ahead' or 'within noise'"


@exercise("6.1", CHAPTER, "verdicts from paired intervals")
def practice_verdicts(answer: object) -> Verdict:
    """Answer: one verdict per interval of ``PRACTICE_INTERVALS``, in order.

    Explained in book/06_ablations.ipynb.
    """
    said = [_said(v) for v in answer] if not isinstance(answer, str) else [_said(answer)]
    if len(said) != len(PRACTICE_INTERVALS):
        return Verdict(False, f"give one verdict per interval: a list of "
                              f"{len(PRACTICE_INTERVALS)} strings")
    for i, ((difference, (low, high)), verdict) in enumerate(
            zip(PRACTICE_INTERVALS, said, strict=True), start=1):
        if verdict != interval_verdict(low, high).lower():
            hint = _wrong_reading(difference, low, high, verdict, ("A", "B"))
            return Verdict(False, f"interval {i}: {hint}")
    return Verdict(True, "only an interval wholly on one side of 0 names a winner")


@exercise("6.2", CHAPTER, "the verdict on an ablation")
def ablation_verdict(answer: object) -> Verdict:
    """Answer: ``(comparison, verdict)``, the dict ``waldorf.metrics.compare`` returned for two
    models on the same questions and the verdict read from its interval, in the models' names
    or as "A ahead" / "B ahead". Explained in book/06_ablations.ipynb.
    """
    comparison, verdict = answer
    if not isinstance(comparison, dict) or "difference_ci" not in comparison:
        return Verdict(False, "the first item is the dict that waldorf.metrics.compare returns")
    names = tuple(comparison["values"])
    low, high = comparison["difference_ci"]
    said = _said(verdict)
    for labels in (names, ("A", "B")):
        if said == interval_verdict(low, high, labels).lower():
            return Verdict(True, f"{comparison['metric']}: {names[0]} minus {names[1]} is "
                                 f"{comparison['difference']:+.2f}, 95% interval "
                                 f"[{low:+.2f}, {high:+.2f}] on {comparison['n']} questions")
    labels = ("A", "B") if said[:2] in ("a ", "b ") else names
    return Verdict(False, _wrong_reading(comparison["difference"], low, high, said, labels))
