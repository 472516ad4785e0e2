"""Checkpoints of a training run: written whole, checked before they are trusted, two kept.

``save_checkpoint`` writes Accelerate's state (model, optimizer, scheduler, the random states
of Python, NumPy and torch, the gradient-accumulation step) and the run's history into
``checkpoint.tmp``, records the sha256 of each file in ``checksums.json``, and only then
renames it to ``checkpoint``; the one before stays as ``checkpoint.prev``, so that at most two
are on disk at any time. ``load_checkpoint`` resumes from the newest one whose files pass
their checksums: a damaged one is reported by path and deleted, and training resumes from
the one before it, or from the start. Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from waldorf.files import changed_files, file_checksums, write_atomic

logger = logging.getLogger(__name__)

CURRENT, PREVIOUS, TMP = "checkpoint", "checkpoint.prev", "checkpoint.tmp"
CHECKSUMS, HISTORY = "checksums.json", "history.json"


def save_checkpoint(accelerator: Accelerator, run_dir: Path, history_json: str) -> None:
    """Save the training state and ``history_json`` as the run's newest checkpoint.

    A crash at any point leaves the newest whole checkpoint loadable.
    Explained in book/02_teacher.ipynb.
    """
    current, previous, tmp = (Path(run_dir) / name for name in (CURRENT, PREVIOUS, TMP))
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        if current.exists():  # it becomes the previous one: two on disk while writing
            shutil.rmtree(previous, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / HISTORY).write_text(history_json)
        write_atomic(tmp / CHECKSUMS, json.dumps(file_checksums(tmp, skip=(f"{CHECKSUMS}*",))))
        if current.exists():
            current.rename(previous)
        tmp.rename(current)
    accelerator.wait_for_everyone()


def _failing(folder: Path) -> list[str]:
    file = folder / CHECKSUMS
    if not file.exists():  # written before checksums were recorded: whole if it has a history
        return [] if (folder / HISTORY).exists() else [HISTORY]
    try:
        return changed_files(folder, json.loads(file.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return [CHECKSUMS]


def _newest_intact(run_dir: Path) -> str | None:
    for name in (CURRENT, PREVIOUS):
        folder = run_dir / name
        if not folder.is_dir():
            continue
        bad = _failing(folder)
        if not bad:
            return name
        logger.warning("corrupt checkpoint %s: %s fail their checksums; deleted, training "
                       "resumes from the checkpoint before it or from the start",
                       folder, ", ".join(bad))
        shutil.rmtree(folder)
    return None


def load_checkpoint(accelerator: Accelerator, run_dir: Path) -> str | None:
    """Restore the newest intact checkpoint of ``run_dir`` into ``accelerator``'s prepared
    objects and return its history (JSON), or None when there is none to resume from.

    Explained in book/02_teacher.ipynb.
    """
    chosen = [_newest_intact(Path(run_dir)) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:  # every process loads the one the main process chose
        chosen = broadcast_object_list(chosen)
    if chosen[0] is None:
        return None
    folder = Path(run_dir) / chosen[0]
    accelerator.load_state(str(folder))
    return (folder / HISTORY).read_text()
