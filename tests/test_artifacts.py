"""Artifact folders: stable configuration hashes, metadata round trip, listing and CLI; checksums,
setting damaged artifacts aside, atomic folders and one builder at a time."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import pytest

import waldorf_cli
from waldorf import artifacts, files


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("WALDORF_ARTIFACTS", str(tmp_path))
    return tmp_path


def test_config_hash_is_canonical_and_sensitive():
    a = artifacts.config_hash({"lr": 1e-4, "data": {"stride": 96, "length": 192}})
    b = artifacts.config_hash({"data": {"length": 192, "stride": 96}, "lr": 1e-4})
    c = artifacts.config_hash({"data": {"length": 192, "stride": 64}, "lr": 1e-4})
    assert a == b != c
    assert len(a) == 12 and int(a, 16) >= 0


def test_artifact_dir_layout(store):
    path = artifacts.artifact_dir("teacher", "smoke", {"x": 1})
    assert path == store / "teacher" / f"smoke-{artifacts.config_hash({'x': 1})}"


def test_metadata_round_trip_and_find(store):
    key = {"teacher": "tiny", "seed": 1}
    path = artifacts.artifact_dir("teacher", "smoke", key)
    artifacts.write_metadata(path, "teacher", "smoke", key, complete=False)
    assert artifacts.find_artifact("teacher", "smoke", key) is None  # unfinished is not reused
    written = artifacts.write_metadata(path, "teacher", "smoke", key, complete=True,
                                       duration_s=12.5, dev_scores={"best_f1": 63.0}, windows=7)
    meta = artifacts.read_metadata(path)
    assert meta == json.loads(json.dumps(written))
    assert meta["hash"] == artifacts.config_hash(key) and meta["key"] == key
    assert meta["git_revision"] and meta["hardware"] and meta["windows"] == 7
    assert artifacts.find_artifact("teacher", "smoke", key) == path
    assert artifacts.find_artifact("teacher", "smoke", {"teacher": "other"}) is None


def _parse(argv):
    return waldorf_cli.build_parser().parse_args(["artifacts", *argv])


def test_list_artifacts_and_cli(store, capsys):
    for role, key, scores in [("teacher", {"a": 1}, {"best_f1": 61.5}),
                              ("teacher-cache", {"b": 2}, {})]:
        path = artifacts.artifact_dir(role, "smoke", key)
        artifacts.write_metadata(path, role, "smoke", key, complete=True, dev_scores=scores)
        (path / "weights.bin").write_bytes(b"0" * 2**20)
    rows = artifacts.list_artifacts()
    assert {r["role"] for r in rows} == {"teacher", "teacher-cache"}
    teacher = next(r for r in rows if r["role"] == "teacher")
    assert teacher["size_mb"] >= 1.0 and teacher["dev_scores"] == {"best_f1": 61.5}
    assert artifacts.run_artifacts(_parse(["--json"])) == 0
    assert json.loads(capsys.readouterr().out) == rows
    assert artifacts.run_artifacts(_parse([])) == 0
    table = capsys.readouterr().out
    assert "teacher-cache" in table and "61.50" in table


# ---- integrity: checksums, set-aside, atomic folders, one builder at a time ----

def _fake_build(calls: list, size: int = 1000):
    """A build that writes two files (one nested) and a checkpoint, counting its runs."""
    def build(folder):
        calls.append(folder)
        (folder / "model").mkdir(exist_ok=True)
        (folder / "model" / "weights.bin").write_bytes(b"w" * size)
        (folder / "history.json").write_text("{}")
        (folder / "checkpoint").mkdir(exist_ok=True)
        (folder / "checkpoint" / "optimizer.bin").write_bytes(b"o")
        return {"windows": 3}
    return build


def test_complete_artifact_records_checksums_and_drops_scratch(store):
    calls, path = [], artifacts.artifact_dir("fake", "smoke", {"k": 1})
    meta = artifacts.build_artifact(path, "fake", "smoke", {"k": 1}, _fake_build(calls))
    assert meta["complete"] and meta["windows"] == 3 and calls == [path]
    assert set(meta["checksums"]) == {"model/weights.bin", "history.json"}
    assert meta["checksums"]["history.json"] == hashlib.sha256(b"{}").hexdigest()
    assert not (path / "checkpoint").exists()  # training state goes once the artifact is whole
    assert artifacts.verify_artifact(path) == []
    again = artifacts.build_artifact(path, "fake", "smoke", {"k": 1}, _fake_build(calls))
    assert again == meta and len(calls) == 1  # reused, not rebuilt


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_artifact_is_reported_set_aside_and_rebuilt(store, caplog, damage):
    calls, path = [], artifacts.artifact_dir("fake", "smoke", {"k": 2})
    artifacts.build_artifact(path, "fake", "smoke", {"k": 2}, _fake_build(calls))
    weights = path / "model" / "weights.bin"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:500])
    elif damage == "flip":
        weights.write_bytes(b"x" + weights.read_bytes()[1:])
    else:
        weights.unlink()
    (path / "model" / "cache-0001.arrow").write_bytes(b"added later")  # not listed: ignored
    assert artifacts.verify_artifact(path) == ["model/weights.bin"]
    with caplog.at_level(logging.WARNING):
        assert artifacts.find_artifact("fake", "smoke", {"k": 2}) is None
    assert str(path) in caplog.text and "model/weights.bin" in caplog.text
    assert not path.exists()
    aside = list((store / "corrupt" / "fake").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith(path.name)  # kept for inspection
    meta = artifacts.build_artifact(path, "fake", "smoke", {"k": 2}, _fake_build(calls))
    assert len(calls) == 2 and meta["complete"] and artifacts.verify_artifact(path) == []
    assert [r["path"] for r in artifacts.list_artifacts()] == [str(path)]  # not the corrupt one


def test_unreadable_metadata_is_listed_then_set_aside(store, caplog):
    path = artifacts.artifact_dir("fake", "smoke", {"k": 3})
    path.mkdir(parents=True)
    (path / "metadata.json").write_text('{"complete": tr')  # cut off mid-write
    with pytest.raises(artifacts.CorruptArtifactError, match="metadata.json"):
        artifacts.read_metadata(path)
    [row] = artifacts.list_artifacts()
    assert row["role"] == "fake" and not row["complete"] and row["hash"] in path.name
    with caplog.at_level(logging.WARNING):
        assert artifacts.complete_metadata(path) is None
    assert "metadata.json" in caplog.text and not path.exists()


def test_artifacts_saved_before_checksums_are_still_reused(store, caplog):
    path = artifacts.artifact_dir("fake", "smoke", {"k": 4})
    path.mkdir(parents=True)
    (path / "weights.bin").write_bytes(b"old")
    (path / "metadata.json").write_text(json.dumps({"complete": True, "role": "fake"}))
    with caplog.at_level(logging.WARNING):
        assert artifacts.complete_metadata(path) == {"complete": True, "role": "fake"}
    assert caplog.text == "" and artifacts.verify_artifact(path) == []


def test_an_unfinished_or_failed_build_stays_incomplete_and_resumable(store):
    path = artifacts.artifact_dir("fake", "smoke", {"k": 5})

    def stops_early(folder):
        (folder / "checkpoint").mkdir()
        return None

    meta = artifacts.build_artifact(path, "fake", "smoke", {"k": 5}, stops_early)
    assert not meta["complete"] and "checksums" not in meta
    assert (path / "checkpoint").is_dir()  # kept: the next attempt resumes from it

    def fails(folder):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        artifacts.build_artifact(path, "fake", "smoke", {"k": 5}, fails)
    assert artifacts.find_artifact("fake", "smoke", {"k": 5}) is None
    calls = []  # the lock was released: a later build goes ahead
    assert artifacts.build_artifact(path, "fake", "smoke", {"k": 5}, _fake_build(calls))["complete"]


def test_staged_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "windows"
    final.mkdir()
    (final / "old.arrow").write_text("old")
    with pytest.raises(KeyboardInterrupt), files.staged_folder(final) as staged:
        (staged / "new.arrow").write_text("half")
        raise KeyboardInterrupt
    assert [f.name for f in final.iterdir()] == ["old.arrow"]  # the old one is untouched
    with files.staged_folder(final) as staged:
        (staged / "new.arrow").write_text("new")
        assert not (final / "new.arrow").exists()
    assert [f.name for f in final.iterdir()] == ["new.arrow"]
    assert not staged.exists()


def test_folder_lock_is_reentrant_within_a_process(tmp_path):
    done = []

    def nested():
        with files.folder_lock(tmp_path / "a"), files.folder_lock(tmp_path / "a"):
            done.append(True)

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert done == [True]  # a second flock on a new handle would have waited for ever


BUILDER = """
import json, sys, time
from pathlib import Path
from waldorf import artifacts
path, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(folder):
    with open(log, "a") as handle:
        handle.write("built\\n")
    for i in range(3):  # slow enough for the other process to try meanwhile
        (folder / f"part{i}.bin").write_bytes(bytes([i]) * 100_000)
        time.sleep(0.2)
    return {"parts": 3}

meta = artifacts.build_artifact(path, "fake", "smoke", {"k": 6}, build)
print(json.dumps(meta["checksums"], sort_keys=True))
"""


def test_two_processes_build_the_same_artifact_once(store, tmp_path):
    path, log = artifacts.artifact_dir("fake", "smoke", {"k": 6}), tmp_path / "builds.log"
    errors = [tmp_path / f"stderr{i}" for i in range(2)]
    with ExitStack() as stack:
        stack.enter_context(files.folder_lock(path))  # both start while the lock is taken ...
        procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(path), str(log)],
                                  stdout=subprocess.PIPE, text=True,
                                  stderr=stack.enter_context(open(err, "w")))
                 for err in errors]
        deadline = time.time() + 120
        while not all("waiting for it" in err.read_text() for err in errors):
            assert time.time() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.1)
        stack.pop_all().close()  # ... then race for it when it is released
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.read_text() for e in errors]
    assert log.read_text() == "built\n"  # one built it, the other waited and reused it
    assert outputs[0] == outputs[1] and len(json.loads(outputs[0])) == 3
    assert artifacts.verify_artifact(path) == []
    assert sorted(f.name for f in path.iterdir()) == ["metadata.json", "part0.bin", "part1.bin",
                                                      "part2.bin"]


def test_a_file_system_without_locks_still_builds_and_says_so(tmp_path, monkeypatch, caplog):
    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files.fcntl, "flock", no_locks)
    ran = []
    with caplog.at_level(logging.WARNING), files.folder_lock(tmp_path / "a"):
        ran.append(True)
    assert ran and "cannot lock" in caplog.text and str(tmp_path / "a") in caplog.text
