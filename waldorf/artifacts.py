"""Where trained models and teacher caches live, and how a finished one is found again.

Every expensive result (the teacher, the teacher-output cache, each student recipe) is stored
under ``artifacts_dir()/<role>/<profile>-<hash>`` where the hash covers the whole configuration
that produced it. A finished run is therefore reused, never retrained, and a changed setting
can never pick up a stale result. ``metadata.json`` in each folder says how it was made.
Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from waldorf.config import artifacts_dir

METADATA = "metadata.json"


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


def git_revision() -> str:
    """Short commit of the checkout this package runs from, or "unknown" outside one.

    Explained in book/02_teacher.ipynb.
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

    Explained in book/02_teacher.ipynb.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = dict(
        role=role, profile=profile_name, key=key, hash=config_hash(key),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_revision=git_revision(),
        duration_s=duration_s, hardware=hardware(), dev_scores=dev_scores or {},
        complete=complete, **extra,
    )
    tmp = path / (METADATA + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    tmp.replace(path / METADATA)
    return meta


def read_metadata(path: Path) -> dict | None:
    """The metadata of the artifact in ``path``, or None when there is none.

    Explained in book/02_teacher.ipynb.
    """
    file = Path(path) / METADATA
    if not file.exists():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: corrupt artifact metadata ({err}); delete the folder") from err


def find_artifact(role: str, profile_name: str, key: dict) -> Path | None:
    """The folder of a *complete* artifact with exactly this configuration, else None.

    Explained in book/02_teacher.ipynb.
    """
    path = artifact_dir(role, profile_name, key)
    meta = read_metadata(path)
    return path if meta and meta.get("complete") else None


def _size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / 2**20, 2)


def list_artifacts() -> list[dict]:
    """Every artifact folder with role, profile, hash, path, size, completeness and dev scores.

    Explained in book/02_teacher.ipynb.
    """
    rows = []
    for file in sorted(artifacts_dir().glob(f"*/*/{METADATA}")):
        meta = read_metadata(file.parent)
        rows.append(dict(
            role=meta["role"], profile=meta["profile"], hash=meta["hash"], path=str(file.parent),
            size_mb=_size_mb(file.parent), complete=bool(meta.get("complete")),
            created=meta.get("created"), dev_scores=meta.get("dev_scores") or {},
        ))
    return rows


def configure_artifacts(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``waldorf artifacts``. Explained in book/02_teacher.ipynb."""
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


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
