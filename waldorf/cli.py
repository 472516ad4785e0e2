"""The ``waldorf`` command line: one sub-command per job, each defined next to its code.

A module that offers a sub-command ``NAME`` defines ``configure_NAME(parser)`` (adds its
arguments) and ``run_NAME(args) -> int`` (does the work). This file only routes.
Explained in book/intro.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("waldorf.metrics", "official SQuAD 2.0 evaluation of a prediction file"),
    "predict": ("waldorf.qa", "write SQuAD 2.0 predictions of a QA checkpoint"),
    "ask": ("waldorf.qa", "answer one question about one context"),
    "artifacts": ("waldorf.artifacts", "list saved models and caches"),
    "bench": ("waldorf.bench", "measure inference speed of the students and baselines"),
    "book": ("waldorf.book", "run every chapter on a profile and build the HTML book"),
}


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from the modules that own each sub-command."""
    parser = argparse.ArgumentParser(prog="waldorf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        configure = getattr(importlib.import_module(module), f"configure_{name}")
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``waldorf`` console script."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return getattr(module, f"run_{args.command}")(args) or 0


if __name__ == "__main__":
    sys.exit(main())
