"""Provenance records say which profile, machine, versions and revision made a result."""

from __future__ import annotations

import re
import subprocess
import time

import IPython.display
import pytest

from waldorf import provenance
from waldorf.config import get_profile


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


def test_collect_describes_the_run():
    info = provenance.collect(get_profile("smoke"), time.time() - 90)
    assert info["profile"] == "smoke"
    assert 89 <= info["duration_s"] < 3600
    assert info["cores"] >= 1 and info["torch_threads"] >= 1
    assert info["cpu"] and info["torch"] and info["transformers"] != "not installed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", info["utc"])
    assert info["git"] == "unknown" or re.fullmatch(r"[0-9a-f]{4,}(\+dirty)?", info["git"])


def test_collect_accepts_a_profile_name():
    assert provenance.collect("gpu", time.time())["profile"] == "gpu"


def test_git_revision_marks_changed_and_untracked_files(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    assert provenance.git_revision() == "unknown"  # not a repository
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    clean = provenance.git_revision()
    assert re.fullmatch(r"[0-9a-f]{4,}", clean)
    (tmp_path / "new_module.py").write_text("x = 1")
    assert provenance.git_revision() == clean + "+dirty"  # the commit lacks code that ran
    (tmp_path / "new_module.py").unlink()
    (tmp_path / "a.txt").write_text("2")
    assert provenance.git_revision() == clean + "+dirty"
    (tmp_path / "a.txt").write_text("1")
    assert provenance.git_revision() == clean
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "01_chapter.ipynb").write_text("{}")  # a chapter being recorded
    assert provenance.git_revision() == clean


@pytest.mark.parametrize(
    ("seconds", "text"), [(42.4, "42 s"), (750, "12.5 min"), (6300, "1.75 h")]
)
def test_format_duration_picks_a_readable_unit(seconds, text):
    assert provenance.format_duration(seconds) == text


def test_markdown_line_names_the_gpu_when_there_is_one():
    info = provenance.collect("cpu", time.time())
    assert info["cpu"] in provenance.to_markdown({**info, "gpu": None})
    line = provenance.to_markdown({**info, "gpu": "NVIDIA H200"})
    assert "NVIDIA H200" in line and info["cpu"] not in line


def test_footer_displays_markdown_and_returns_the_record(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    info = provenance.footer("smoke", time.time())
    assert info["profile"] == "smoke"
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Markdown)
    assert "`smoke`" in shown[0].data and info["git"] in shown[0].data


@pytest.mark.parametrize(("seconds", "verdict"), [(44 * 60, "within"), (46 * 60, "OVER")])
def test_budget_report_totals_minutes_and_judges_only_the_cpu_run(seconds, verdict, capsys,
                                                                  monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    table = provenance.budget_report({"stage 1": seconds / 2, "stage 2": seconds / 2}, "cpu")
    assert len(shown) == 1 and shown[0] is table
    assert list(table.index) == ["stage 1", "stage 2", "total"]
    assert table.loc["total", "minutes"] == pytest.approx(seconds / 60)
    assert capsys.readouterr().out.startswith(verdict)
    provenance.budget_report({"stage 1": seconds}, "smoke")
    assert capsys.readouterr().out == ""  # smoke runs are not the book's run: no verdict
