"""Where trained models and teacher caches live, and how a finished one is found again.

Every expensive result (the teacher, the teacher-output cache, each student recipe) is stored
under ``artifacts_dir()/<role>/<profile>-<hash>`` where the hash covers the whole configuration
that produced it. A finished run is therefore reused, never retrained, and a changed setting
can never pick up a stale result. ``metadata.json`` in each folder says how it was made and
holds the sha256 of every file of the finished artifact; each reuse checks them, and a folder
that fails (a truncated or damaged file) is reported by path, moved to ``corrupt/`` and rebuilt.
Folders are written under a temporary name and renamed when whole, and one process at a time
builds an artifact (a lock file beside its folder): a second one waits, then reuses it.
Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from waldorf.config import artifacts_dir
from waldorf.errors import CorruptArtifactError
from waldorf.files import changed_files, file_checksums, folder_lock, write_atomic

logger = logging.getLogger(__name__)

METADATA = "metadata.json"
# Top-level names in an artifact folder that its checksums leave out: the metadata itself,
# training checkpoints and temporary folders (scratch, removed once the artifact is complete).
SCRATCH = ("checkpoint*", "*.tmp", "*.old")
UNCHECKED = (f"{METADATA}*", *SCRATCH)


def config_hash(key: dict) -> str:
    """12 hex digits of the sha256 of ``key`` as canonical JSON (sorted keys, no spaces).

    Explained in book/02_teacher.ipynb.
    """
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def artifact_dir(role: str, profile_name: str, key: dict) -> Path:
    """The folder of the artifact made by ``role`` on ``profile_name`` from configuration ``key``.

    Explained in book/02_teacher.ipynb.
    """
    return artifacts_dir() / role / f"{profile_name}-{config_hash(key)}"


@functools.cache
def git_revision() -> str:
    """Short commit of the checkout this package runs from, or "unknown" outside one.

    Read once per process, when the first artifact starts: a run that lasts while new commits
    land keeps naming the code it loaded. Explained in book/02_teacher.ipynb.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def hardware() -> str:
    """One line naming the accelerator or CPU a run used, for provenance.

    Explained in book/02_teacher.ipynb.
    """
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n}x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores)"


def write_metadata(path: Path, role: str, profile_name: str, key: dict, *,
                   complete: bool, duration_s: float | None = None,
                   dev_scores: dict | None = None, **extra) -> dict:
    """Write ``path/metadata.json`` atomically (tmp file, then rename) and return it.

    ``complete`` metadata also records ``checksums``, the sha256 of every file of the
    artifact, which each later reuse checks. Explained in book/02_teacher.ipynb.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = dict(
        role=role, profile=profile_name, key=key, hash=config_hash(key),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_revision=git_revision(),
        duration_s=duration_s, hardware=hardware(), dev_scores=dev_scores or {},
        complete=complete, **extra,
    )
    if complete:  # what a later reuse checks the files against
        meta["checksums"] = file_checksums(path, UNCHECKED)
    write_atomic(path / METADATA, json.dumps(meta, indent=2, sort_keys=True, default=str))
    return meta


def read_metadata(path: Path) -> dict | None:
    """The metadata of the artifact in ``path``, or None when there is none.

    Raises ``CorruptArtifactError`` naming the file when it is not valid JSON.
    Explained in book/02_teacher.ipynb.
    """
    file = Path(path) / METADATA
    if not file.exists():
        return None
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifactError(f"{file}: corrupt artifact metadata ({err})") from err


def verify_artifact(path: Path) -> list[str]:
    """The files of the artifact in ``path`` that fail their recorded checksum (missing,
    truncated or changed), ``[metadata.json]`` when the metadata is unreadable, else ``[]``.

    Artifacts written before checksums were recorded have none to fail: they pass, so that
    existing stores keep working. Explained in book/02_teacher.ipynb.
    """
    try:
        meta = read_metadata(path)
    except CorruptArtifactError:
        return [METADATA]
    return changed_files(path, meta.get("checksums") or {}) if meta else []


def _complete(path: Path) -> tuple[dict | None, list[str]]:
    bad = verify_artifact(path)
    meta = None if bad else read_metadata(path)
    return (meta if meta and meta.get("complete") else None), bad


def complete_metadata(path: Path) -> dict | None:
    """The metadata of the artifact in ``path`` if it is complete and its files pass their
    checksums, else None. Every reuse goes through here.

    A complete artifact that fails is reported (a warning naming the folder and its failing
    files) and moved to ``<artifacts>/corrupt/<role>/``, never used: the caller rebuilds it.
    Explained in book/02_teacher.ipynb.
    """
    path = Path(path)
    meta, bad = _complete(path)
    if not bad:
        return meta
    with folder_lock(path):  # another process may have moved or rebuilt it meanwhile
        meta, bad = _complete(path)
        if not bad:
            return meta
        corrupt = path.parent.parent / "corrupt" / path.parent.name
        corrupt.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = Path(tempfile.mkdtemp(prefix=f"{path.name}-{stamp}-", dir=corrupt))
        path.rename(aside)  # onto the new, empty folder: a name no other call gets
    logger.warning("corrupt artifact %s: %s fail their checksums; moved to %s (delete it once "
                   "inspected), it will be rebuilt", path, ", ".join(bad), aside)
    return None


def find_artifact(role: str, profile_name: str, key: dict) -> Path | None:
    """The folder of a *complete*, intact artifact with exactly this configuration, else None.

    Explained in book/02_teacher.ipynb.
    """
    path = artifact_dir(role, profile_name, key)
    return path if complete_metadata(path) else None


def _agreed(compute: Callable[[], dict | None]) -> dict | None:
    # Under `accelerate launch` the main process decides and the others follow it.
    state = PartialState()
    if state.num_processes == 1:
        return compute()
    return broadcast_object_list([compute() if state.is_main_process else None])[0]


def build_artifact(path: Path, role: str, profile_name: str, key: dict,
                   build: Callable[[Path], dict | None]) -> dict:
    """The metadata of the artifact in ``path``: reused if complete and intact, else built by
    ``build(path)`` under the artifact's lock.

    ``build`` writes the files and returns extra metadata fields, or None when it stopped
    early (the artifact stays incomplete and resumable; its metadata is returned). Once
    complete, the checksums are recorded and scratch (checkpoints, temporary folders)
    removed. A process that finds the lock taken waits, then reuses what the other built.
    Under ``accelerate launch`` every process runs ``build``; the main one locks and writes.
    Explained in book/02_teacher.ipynb.
    """
    path = Path(path)
    main = PartialState().is_main_process
    meta = _agreed(lambda: complete_metadata(path))
    if meta is not None:
        return meta
    with folder_lock(path) if main else nullcontext():
        meta = _agreed(lambda: complete_metadata(path))  # finished by another process?
        if meta is not None:
            return meta
        if main:
            write_metadata(path, role, profile_name, key, complete=False)
        extra = build(path)
        if main and extra is not None:
            write_metadata(path, role, profile_name, key, complete=True, **extra)
            _remove_scratch(path)
        meta = read_metadata(path) if main else None  # as a later reuse reads it
    return _agreed(lambda: meta)


def _remove_scratch(path: Path) -> None:
    for entry in path.iterdir():
        if not any(fnmatch.fnmatch(entry.name, pattern) for pattern in SCRATCH):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / 2**20, 2)


def list_artifacts() -> list[dict]:
    """Every artifact folder with role, profile, hash, path, size, completeness and dev scores.

    Explained in book/02_teacher.ipynb.
    """
    rows = []
    for file in sorted(artifacts_dir().glob(f"*/*/{METADATA}")):
        try:
            meta = read_metadata(file.parent)
        except CorruptArtifactError:  # listed as unfinished; the next use moves it aside
            profile_name, _, digest = file.parent.name.rpartition("-")
            meta = dict(role=file.parent.parent.name, profile=profile_name, hash=digest)
        rows.append(dict(
            role=meta["role"], profile=meta["profile"], hash=meta["hash"], path=str(file.parent),
            size_mb=_size_mb(file.parent), complete=bool(meta.get("complete")),
            created=meta.get("created"), dev_scores=meta.get("dev_scores") or {},
        ))
    return rows


def run_artifacts(args: argparse.Namespace) -> int:
    """Print every saved model and cache. Explained in book/02_teacher.ipynb."""
    rows = list_artifacts()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"artifacts in {artifacts_dir()}")
    header = f"{'role':<24} {'profile':<8} {'hash':<12} {'MB':>9} {'done':<5} {'best_f1':>7}  path"
    print(header)
    for r in rows:
        best = r["dev_scores"].get("best_f1")
        best = f"{best:7.2f}" if isinstance(best, (int, float)) else f"{'-':>7}"
        print(f"{r['role']:<24} {r['profile']:<8} {r['hash']:<12} {r['size_mb']:>9.1f} "
              f"{'yes' if r['complete'] else 'no':<5} {best}  {r['path']}")
    return 0
