"""Artifact folders: stable configuration hashes, metadata round trip, listing and CLI."""

from __future__ import annotations

import argparse
import json

import pytest

from waldorf import artifacts


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


def test_corrupt_metadata_names_the_file(store):
    path = store / "teacher" / "smoke-000000000000"
    path.mkdir(parents=True)
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="metadata.json"):
        artifacts.read_metadata(path)


def _parse(argv):
    parser = argparse.ArgumentParser()
    artifacts.configure_artifacts(parser)
    return parser.parse_args(argv)


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
