"""The chapters' first cells: a visible profile choice and a line saying what will run."""

from __future__ import annotations

import sys

import pytest

from waldorf import notebook
from waldorf.config import ARTIFACTS_ENV, DATA_ENV, PROFILE_ENV


def test_the_environment_wins_else_cpu_outside_colab(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "smoke")
    assert notebook.default_profile() == "smoke"
    monkeypatch.delenv(PROFILE_ENV)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not notebook.on_colab()
    assert notebook.default_profile() == "cpu"


def test_a_colab_gpu_runtime_defaults_to_the_colab_profile(monkeypatch):
    import torch

    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert notebook.default_profile() == "colab"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert notebook.default_profile() == "cpu"  # a CPU runtime on Colab: the cpu profile


def test_start_sets_the_profile_and_prints_what_runs_without_local_paths(
        monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "squad2"))
    profile = notebook.start("smoke")
    line = capsys.readouterr().out
    assert profile.name == "smoke"
    import os
    assert os.environ[PROFILE_ENV] == "smoke"  # later package lookups use the same profile
    assert "profile smoke" in line and "CPU" in line and "'squad2'" in line
    assert str(tmp_path) not in line  # the folder's name, not the machine's path
    assert notebook.data_source(notebook.get_profile("colab")).startswith("the hub's")


def test_drive_is_refused_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(RuntimeError, match="inside Colab"):
        notebook.start("smoke", drive=True)
