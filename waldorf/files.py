"""Files that are written whole or not at all, checked by checksum, and built by one process.

The book's saved models, caches and checkpoints take minutes to hours to make, so a crash, a
full disk or a second notebook started on the same artifact must never leave a half-written
file that a later run trusts. Three habits see to it: write under a temporary name and rename
(a rename is atomic on one file system), record a sha256 of every file and compare before
reuse, and hold a lock file while building. Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

_HELD: set[Path] = set()  # lock files this process holds


def write_atomic(file: Path, text: str) -> None:
    """Write ``text`` to ``file`` through a temporary file and a rename: never half written.

    Explained in book/02_teacher.ipynb.
    """
    file = Path(file)
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")  # two writers never share one
    tmp.write_text(text)
    tmp.replace(file)


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A temporary folder to write ``final`` into; when the block ends without an exception it
    is renamed to ``final`` (replacing a stale one), so no reader ever sees half a folder.

    Explained in book/02_teacher.ipynb.
    """
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path, leaving out everything under a
    top-level name that matches a glob pattern of ``skip``.

    Hashing a 90 MB model takes a fraction of a second. Explained in book/02_teacher.ipynb.
    """
    folder = Path(folder)
    files = (f for f in sorted(folder.rglob("*")) if f.is_file())
    return {f.relative_to(folder).as_posix(): _sha256(f) for f in files
            if not any(fnmatch.fnmatch(f.relative_to(folder).parts[0], p) for p in skip)}


def changed_files(folder: Path, checksums: dict[str, str]) -> list[str]:
    """The files of ``checksums`` missing from ``folder`` or with other contents.

    Files that ``checksums`` does not list (e.g. caches ``datasets`` adds later) are ignored.
    Explained in book/02_teacher.ipynb.
    """
    folder = Path(folder)
    return [name for name, digest in checksums.items()
            if not (folder / name).is_file() or _sha256(folder / name) != digest]


@contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the folder ``path`` (a ``<folder>.lock`` file beside it).

    Another process asking for it waits, and says so, until this one is done; the operating
    system releases it when a process dies. Re-entrant within a process (not across threads).
    Explained in book/02_teacher.ipynb.
    """
    lock = Path(os.path.abspath(path)).with_name(Path(path).name + ".lock")
    if lock in _HELD:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        locked = _flock(handle, path)
        _HELD.add(lock)
        try:
            yield
        finally:
            _HELD.discard(lock)
            if locked:  # explicitly: a forked child holding the file must not keep the lock
                fcntl.flock(handle, fcntl.LOCK_UN)


def _flock(handle, path: Path) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logger.warning("%s: another process is building it; waiting for it", path)
        fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError as err:  # a file system without locks (some network mounts)
        logger.warning("%s: cannot lock (%s); do not build it in two processes at once",
                       path, err)
        return False
    return True
