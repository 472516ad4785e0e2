"""Workshop exercises: each has a checker that says right or wrong, with a hint when wrong.

A chapter's exercise cell ends with ``check("2.1", answer)``, which prints the verdict and never
raises, so a reader's unfinished attempt does not stop the notebook. The chapter's solution
cell (hidden in the rendered book, revealed on demand) ends with ``check(..., strict=True)``,
which raises when the solution fails its checker: running the chapters on the ``smoke``
profile in CI is the test that every solution passes.

Each chapter's checkers live in one module of this package, named after the chapter
(``data_and_metric``, ``teacher``, ...), and register themselves in ``EXERCISES`` on import.
Explained in book/workshop.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: right or not, and what to tell the reader."""

    ok: bool
    message: str

    def __str__(self) -> str:
        return ("✔ right: " if self.ok else "✘ not yet: ") + self.message

    def _ipython_display_(self) -> None:
        """``check`` has printed the verdict already: a cell ending in it shows it once."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its id ("chapter.number"), the chapter that poses it, and its checker.

    ``checker`` takes the reader's answer and returns a ``Verdict``; it must reject the usual
    wrong answers with a hint, not only accept the right one. Explained in book/workshop.md.
    """

    id: str
    chapter: str
    title: str
    checker: Callable[[object], Verdict]


EXERCISES: dict[str, Exercise] = {}


def exercise(id: str, chapter: str, title: str):
    """Register a checker function as exercise ``id``. Explained in book/workshop.md."""

    def register(checker: Callable[[object], Verdict]) -> Callable[[object], Verdict]:
        if id in EXERCISES:
            raise ValueError(f"exercise {id} is registered twice")
        EXERCISES[id] = Exercise(id, chapter, title, checker)
        return checker

    return register


def check(id: str, answer: object, strict: bool = False) -> Verdict:
    """Check ``answer`` to exercise ``id`` and print the verdict; ``strict`` raises when wrong.

    An answer that is still ``None`` (the cell's placeholder) gets the exercise's hint.
    Explained in book/workshop.md.
    """
    if id not in EXERCISES:
        raise KeyError(f"no exercise {id!r}; known: {sorted(EXERCISES)}")
    if answer is None:
        verdict = Verdict(False, "replace the None with your answer, then run the cell again")
    else:
        try:
            verdict = EXERCISES[id].checker(answer)
        except Exception as err:  # a reader's answer of the wrong kind: say so, do not crash
            verdict = Verdict(False, f"the checker could not read this answer ({err!r})")
    print(f"Exercise {id} ({EXERCISES[id].title}): {verdict}")
    if strict and not verdict.ok:
        raise AssertionError(f"exercise {id}: the solution fails its checker: {verdict.message}")
    return verdict


# The chapters' checkers, registered on import (after the names they use are defined).
from waldorf.exercises import (  # noqa: E402, F401
    ablations,
    architecture,
    baselines,
    data_and_metric,
    distillation,
    front,
    speed,
    student_shape,
    teacher,
)

__all__ = ["EXERCISES", "Exercise", "Verdict", "check", "exercise"]
