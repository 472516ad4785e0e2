"""The ``waldorf`` command line: argument definitions and routing, nothing heavy.

This module sits outside the ``waldorf`` package on purpose: ``import waldorf`` registers the
WaLDORf model with the transformers Auto classes, which imports torch (seconds). Here the
parser is built from the standard library alone, so ``waldorf --help`` and every
``waldorf COMMAND --help`` answer at once; only the command that runs imports its module
(``waldorf.<module>.run_<command>(args)``).

A user error (``waldorf.errors.UserError``: a missing or malformed file, a folder that is not
a model, an argument value that cannot work) prints one line,
``waldorf COMMAND: error: ...``, and exits with status 2. Any other exception is a bug and
keeps its traceback. ``--debug`` (or ``WALDORF_DEBUG=1``) shows the traceback of user errors
too. Explained in book/intro.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

DEBUG_ENV = "WALDORF_DEBUG"
DESCRIPTION = """\
WaLDORf, reproduced: distil a SQuAD 2.0 reader into a small, fast student, score it with the
official metric, and rebuild the book that explains it. Run `waldorf COMMAND --help` for the
options of one command."""


def _evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    p.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    p.add_argument("--out-file", "-o", metavar="eval.json",
                   help="Write accuracy metrics to file (default is stdout).")
    p.add_argument("--na-prob-file", "-n", metavar="na_prob.json",
                   help="Model estimates of probability of no answer.")
    p.add_argument("--na-prob-thresh", "-t", type=float, default=1.0,
                   help='Predict "" if no-answer probability exceeds this (default = 1.0).')
    p.add_argument("--out-image-dir", "-p", metavar="out_images", default=None,
                   help="Save precision-recall curves (plotly HTML) to directory.")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="accepted for compatibility with the official script; no effect")
    p.add_argument("--threshold-from", metavar="EVAL.json", default=None,
                   help="apply the no-answer threshold recorded as best_f1_thresh in EVAL.json "
                   "(the --out-file of an earlier run with --na-prob-file, typically on dev) to "
                   "exact and f1: choose on dev, report on test; needs --na-prob-file")
    p.add_argument("--bootstrap", metavar="N", type=int, default=0,
                   help="add 95%% intervals <key>_ci = [low, high] for exact, f1 and, with "
                   "--na-prob-file, best_exact and best_f1, from N resamples (e.g. 1000; "
                   "default 0: none)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the bootstrap resamples (default 0)")


def _predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="saved QA model: a folder with config.json, an artifact "
                   "folder printed by `waldorf artifacts`, or a hub name")
    p.add_argument("data_file", help="SQuAD file in the official JSON format")
    p.add_argument("--out", required=True, help="write {question_id: answer} here")
    p.add_argument("--na-prob-out", help="write {question_id: P(no answer)} here")
    p.add_argument("--profile", help="profile for window length, stride and batch size "
                   "(default: $WALDORF_PROFILE or cpu)")


def _ask(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="saved QA model: a folder with config.json, an artifact "
                   "folder printed by `waldorf artifacts`, or a hub name")
    p.add_argument("--question", "-q", required=True, help="the question, in plain text")
    p.add_argument("--context", "-c", required=True,
                   help="the paragraph to answer from; long texts are cut into windows")
    p.add_argument("--max-length", type=int, default=384, help="tokens per window (default 384)")
    p.add_argument("--stride", type=int, default=128,
                   help="tokens shared by consecutive windows (default 128)")


def _artifacts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _csv(kind: type) -> Callable[[str], list]:
    return lambda text: [kind(item) for item in text.split(",") if item]


def _bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="quick",
                   help="a named set of models, lengths and timing budgets (default: quick)")
    p.add_argument("--models", nargs="+", help="names or name:key=value,... specs, e.g."
                   " bert_base,waldorf waldorf:downsample=1 (default: the preset's)")
    p.add_argument("--seq-lens", type=_csv(int), help="comma list, e.g. 128,384")
    p.add_argument("--batch-sizes", type=_csv(int), help="comma list, e.g. 1,32")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--cell-budget-s", type=float, help="timed seconds per cell")
    p.add_argument("--min-repeats", type=int, help="timed repeats per cell, at least")
    p.add_argument("--max-repeats", type=int, help="timed repeats per cell, at most")
    p.add_argument("--warmup", type=int, help="untimed calls before each cell")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights")
    p.add_argument("--deploy", type=_csv(str), help="also compare inference paths on the"
                   " first length and batch size: all or a comma list of eager_fp32,"
                   " bf16_autocast, compile, int8_dynamic, onnxruntime")
    p.add_argument("--json", type=Path, help="write the results document here")


def _book(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=os.environ.get("WALDORF_PROFILE", "cpu"),
                   help="run profile of every chapter: smoke, cpu, colab or gpu "
                   "(default: $WALDORF_PROFILE or cpu)")
    p.add_argument("--chapters", nargs="+", metavar="NN",
                   help="only execute these chapters, e.g. --chapters 01 02 (default: all)")
    p.add_argument("--no-execute", action="store_true",
                   help="only build the HTML from the outputs already in the notebooks")
    p.add_argument("--record", action="store_true",
                   help="execute the committed notebooks in place, replacing the recorded run "
                   "(only on the profile the book records); without it chapters run on copies")
    p.add_argument("--resume", action="store_true",
                   help="with --record: skip chapters already executed at this revision (see "
                   "waldorf/recorded/book-runs.jsonl), so a long recorded run continues")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds one cell may run before it fails (default: no limit)")
    p.add_argument("--root", type=Path, default=None,
                   help="the book's folder (default: the clone around the current folder)")
    p.add_argument("--path-output", type=Path, default=None,
                   help="run the copies and build into PATH instead of the book's own _build")
    p.add_argument("--clean-outputs", action="store_true",
                   help="only clean the committed notebooks' outputs (progress bars, local "
                   "paths, warnings, CDN tags); execute and build nothing")
    p.add_argument("--check", action="store_true",
                   help="only report whether the committed book is one run: every chapter, "
                   "artifact and recorded study made at one revision, the package unchanged since")


def _study(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="the study to run, e.g. headline (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies and their runs")
    p.add_argument("--profile", help="run profile (default: $WALDORF_PROFILE or cpu)")
    p.add_argument("--results", type=Path, default=None,
                   help="folder of the result files (default: the package's recorded studies)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run only these seeds of the study (default: all of them)")
    p.add_argument("--models", nargs="+", default=None,
                   help="run only these models of the study, e.g. waldorf cut4 (default: all)")


# name: (module that runs it, one-line help, argument definitions)
COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "evaluate": ("waldorf.metrics", "score a prediction file with the official SQuAD 2.0 metric",
                 _evaluate),
    "predict": ("waldorf.qa", "write SQuAD 2.0 predictions of a QA model for a SQuAD file",
                _predict),
    "ask": ("waldorf.qa", "answer one question about one context", _ask),
    "artifacts": ("waldorf.artifacts", "list saved models and caches", _artifacts),
    "bench": ("waldorf.bench", "measure inference speed of the students and baselines", _bench),
    "book": ("waldorf.book", "run the chapters on a profile and build the HTML book", _book),
    "study": ("waldorf.study", "run a recorded study: several models and seeds, resumable",
              _study),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole parser, from the standard library only. Explained in book/intro.md."""
    parser = argparse.ArgumentParser(prog="waldorf", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of user errors too (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text, configure) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``waldorf`` console script. Explained in book/intro.md."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    from waldorf.errors import CorruptArtifactError, UserError  # the package loads from here on

    try:
        module = importlib.import_module(COMMANDS[args.command][0])
        return getattr(module, f"run_{args.command}")(args) or 0
    except (UserError, CorruptArtifactError, OSError) as error:
        if debug or (isinstance(error, OSError) and not error.filename):
            raise  # an OSError without a file name is not about the user's input
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, OSError):
            message = f"{error.strerror}: {error.filename}"
        print(f"waldorf {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
