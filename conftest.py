"""Test set-up for tests/ and the notebooks: smoke profile, throw-away artifacts, shared data."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent

# Set before any notebook kernel starts, so nbval runs the smoke profile in a clean artifact store.
os.environ.setdefault("WALDORF_PROFILE", "smoke")
# A store made here is removed at the end of the session (models, caches: hundreds of MB).
OWN_ARTIFACTS = None
if "WALDORF_ARTIFACTS" not in os.environ:
    OWN_ARTIFACTS = tempfile.mkdtemp(prefix="waldorf-test-artifacts-")
    os.environ["WALDORF_ARTIFACTS"] = OWN_ARTIFACTS
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionfinish(session, exitstatus):
    """Leave nothing under /tmp: the artifact store this session made goes with it, and so do
    the fixtures' temporary folders (models, built books) of a run in which every test passed;
    a failing run keeps them to look at."""
    if OWN_ARTIFACTS:
        shutil.rmtree(OWN_ARTIFACTS, ignore_errors=True)
    factory = getattr(session.config, "_tmp_path_factory", None)  # pytest's own, if it made one
    if exitstatus == 0 and factory is not None and factory._basetemp is not None:
        shutil.rmtree(factory.getbasetemp(), ignore_errors=True)


def _shared_squad_dir() -> Path:
    env = os.environ.get("WALDORF_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "squad2"


@pytest.fixture(scope="session")
def tokenizer():
    """The offline teacher's tokenizer (BERT uncased WordPiece), loaded once per session."""
    from transformers import AutoTokenizer

    from waldorf.config import BUNDLED_MINILM, resolve_checkpoint

    return AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))


@pytest.fixture(scope="session")
def squad_dir() -> Path:
    """The real SQuAD 2.0 files of ../shared/data/squad2; skips the test when they are absent."""
    path = _shared_squad_dir()
    if not (path / "dev.json").exists():
        pytest.skip(f"real SQuAD 2.0 files not found at {path} (set WALDORF_DATA_DIR)")
    return path
