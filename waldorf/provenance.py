"""Provenance: which profile, machine, software and code revision produced a result.

A number in the book is only meaningful next to where it came from: a score of the ``smoke``
profile is noise, and a latency depends on the CPU and on the thread count. Every results cell
ends with :func:`footer`. Explained in book/intro.md.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from waldorf.config import Profile

REPO = Path(__file__).resolve().parents[1]
BUDGET_MINUTES = 45  # the book's limit for one chapter's cpu-profile run on 2 cores


def _cpu_model() -> str:
    """The CPU's marketing name; /proc/cpuinfo on Linux, platform elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cores() -> int:
    """Cores this process may use (the affinity mask, which containers restrict), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# What a run writes into the checkout: recording the book rewrites the chapters' outputs while
# later chapters run, which must not make their code look uncommitted.
RUN_OUTPUTS = (":(exclude)book/*.ipynb", ":(exclude)waldorf/recorded")


def git_revision() -> str:
    """Short commit of the checkout, ``+dirty`` when a file other than the book's recorded
    outputs (``RUN_OUTPUTS``) differs; ``unknown`` outside git. Explained in book/intro.md.
    """
    revision = _git("rev-parse", "--short", "HEAD")
    if not revision:
        return "unknown"
    # untracked code counts: the commit lacks it
    changes = _git("status", "--porcelain", "--", ".", *RUN_OUTPUTS)
    return revision + ("+dirty" if changes else "")


def collect(profile: Profile | str, started: float) -> dict:
    """Describe the current run: profile, hardware, versions, duration since ``started``, revision.

    ``started`` is a ``time.time()`` taken when the work began. Explained in book/intro.md.
    """
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "profile": profile.name if isinstance(profile, Profile) else str(profile),
        "cpu": _cpu_model(),
        "cores": _cores(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "duration_s": round(time.time() - started, 3),
        "git": git_revision(),
        "utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``1.75 h``: the unit a reader compares at a glance.

    Explained in book/intro.md.
    """
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def budget_report(seconds: dict[str, float], profile: Profile | str) -> pd.DataFrame:
    """Display the minutes per step of a chapter and their total; on the ``cpu`` profile (the
    book's own run) print whether the total fits the book's ``BUDGET_MINUTES`` per chapter.

    ``seconds``: step name -> seconds, e.g. the ``duration_s`` an artifact recorded.
    Returns the table. Explained in book/02_teacher.ipynb.
    """
    from IPython.display import display

    minutes = pd.Series({name: value / 60 for name, value in seconds.items()}, dtype=float)
    minutes["total"] = minutes.sum()
    table = minutes.round(1).to_frame("minutes")
    display(table)
    if (profile if isinstance(profile, str) else profile.name) == "cpu":
        verdict = "within" if minutes["total"] <= BUDGET_MINUTES else "OVER"
        print(f"{verdict} this book's budget of {BUDGET_MINUTES} minutes for a chapter's cpu run")
    return table


def to_markdown(info: dict) -> str:
    """One compact line for the bottom of a results cell; the artifacts the result used, with
    the revision each was made at, when ``info`` names them. Explained in book/intro.md.
    """
    device = info["gpu"] or f"{info['cpu']} ({info['cores']} cores)"
    made = "".join(f" · {role} made at git `{revision}`"
                   for role, revision in info.get("artifacts", {}).items())
    return (
        f"<small>profile `{info['profile']}` · {device} · {info['torch_threads']} torch threads"
        f" · torch {info['torch']} · transformers {info['transformers']}"
        f" · {format_duration(info['duration_s'])} · git `{info['git']}` · {info['utc']}"
        f"{made}</small>"
    )


def footer(profile: Profile | str, started: float, artifacts: dict | None = None) -> dict:
    """Display the provenance line under a result and return the record (to save with it).

    ``artifacts``: name -> the metadata of a trained model or cache the result used (e.g.
    ``{"teacher": run.metadata}``), so the line says which revision made each.
    Explained in book/intro.md.
    """
    from IPython.display import Markdown, display

    info = collect(profile, started)
    if artifacts:
        info["artifacts"] = {name: meta.get("git_revision", "unknown")
                             for name, meta in artifacts.items()}
    display(Markdown(to_markdown(info)))
    return info
