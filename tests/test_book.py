"""The book: toc, chapter execution with failure reports, and the -W HTML build."""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import waldorf_cli
from waldorf import book
from waldorf.errors import UserError

REPO = Path(__file__).resolve().parents[1]
Build = tuple[subprocess.CompletedProcess, Path]
_BUILT: dict[str, Build] = {}


def build_book(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The real book, as committed, built once per test session with ``jupyter-book -W``.

    Returns the finished build command and its HTML folder; tests/test_browser.py reads the same
    build. Explained in book/intro.md.
    """
    if "book" not in _BUILT:
        out = tmp_path_factory.mktemp("book")
        done = subprocess.run(book.jupyter_book_command(REPO, out), capture_output=True, text=True)
        _BUILT["book"] = (done, out / "_build" / "html")
    return _BUILT["book"]


def _write_toc(root: Path, chapters: list[str]) -> None:
    lines = ["format: jb-book", "root: book/intro", "parts:", "  - caption: All",
             "    chapters:"] + [f"      - file: {c}" for c in chapters]
    (root / "_toc.yml").write_text("\n".join(lines) + "\n")
    (root / "_config.yml").write_text("title: test\n")
    (root / "book").mkdir(exist_ok=True)
    (root / "book" / "intro.md").write_text("# Intro\n")


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def test_every_file_of_the_toc_exists():
    notebooks = book.toc_notebooks(REPO)  # raises, naming the file, when one is missing
    assert all(path.suffix == ".ipynb" and path.is_file() for path in notebooks)


def test_toc_notebooks_in_reading_order_and_chapter_selection(tmp_path):
    _write_toc(tmp_path, ["book/02_b", "book/notes", "book/01_a"])
    for name in ("02_b.ipynb", "01_a.ipynb"):
        _notebook(tmp_path / "book" / name, "1")
    (tmp_path / "book" / "notes.md").write_text("# Notes\n")
    notebooks = book.toc_notebooks(tmp_path)
    assert [p.name for p in notebooks] == ["02_b.ipynb", "01_a.ipynb"]  # toc order, no .md
    assert [p.name for p in book.select_chapters(notebooks, ["01"])] == ["01_a.ipynb"]
    assert book.select_chapters(notebooks, None) == notebooks
    with pytest.raises(ValueError, match="07"):
        book.select_chapters(notebooks, ["07"])


def test_a_missing_toc_file_is_named(tmp_path):
    _write_toc(tmp_path, ["book/03_missing"])
    with pytest.raises(FileNotFoundError, match="03_missing"):
        book.toc_notebooks(tmp_path)


def test_find_root_walks_up_from_a_subfolder(tmp_path):
    _write_toc(tmp_path, [])
    assert book.find_root(tmp_path / "book") == tmp_path


def test_run_order_puts_summary_pages_after_the_chapters(tmp_path):
    _write_toc(tmp_path, ["book/glance", "book/01_a", "book/02_b"])
    for name in ("glance.ipynb", "01_a.ipynb", "02_b.ipynb"):
        _notebook(tmp_path / "book" / name, "1")
    notebooks = book.toc_notebooks(tmp_path)
    assert [p.stem for p in notebooks] == ["glance", "01_a", "02_b"]  # toc order
    assert [p.stem for p in book.run_order(notebooks, None)] == ["01_a", "02_b", "glance"]
    assert [p.stem for p in book.run_order(notebooks, ["02"])] == ["02_b", "glance"]
    assert [p.stem for p in book.run_order(notebooks, ["glance"])] == ["glance"]


def test_the_clean_command_rewrites_only_notebooks_that_change(tmp_path, capsys):
    _write_toc(tmp_path, ["book/01_noisy", "book/02_tidy"])
    noisy = tmp_path / "book" / "01_noisy.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output(
        "stream", name="stderr", text="Map: 100%|██████████| 83/83 [00:00<00:00, 2712.77it/s]\n")])]
    nbformat.write(nb, noisy)
    tidy = _notebook(tmp_path / "book" / "02_tidy.ipynb", "1")
    before = tidy.stat().st_mtime_ns
    args = argparse.Namespace(root=tmp_path, clean_outputs=True)  # `waldorf book --clean-outputs`
    assert book.run_book(args) == 0
    assert "cleaned 1 of 2 notebook(s)" in capsys.readouterr().out
    assert tidy.stat().st_mtime_ns == before
    assert "100%|" not in noisy.read_text()


def test_a_failing_chapter_leaves_a_report_and_its_notebook_untouched(tmp_path):
    path = _notebook(tmp_path / "01_fails.ipynb", "x = 1", "raise ValueError('bad input 42')")
    before = path.read_text()
    reports = tmp_path / "reports"
    with pytest.raises(RuntimeError, match="01_fails.ipynb failed"):
        book.execute_notebook(path, "smoke", timeout=120, reports=reports)
    assert path.read_text() == before
    report = (reports / "01_fails.txt").read_text()
    assert "Cell index: 1" in report and "raise ValueError" in report
    assert "bad input 42" in report and "\x1b[" not in report
    assert (reports / "01_fails.ipynb").exists()


def test_the_run_log_keeps_each_chapters_first_execution_per_revision(tmp_path):
    log = tmp_path / "runs.jsonl"
    first = book.log_execution("02_teacher", "cpu", 40.0, log)
    book.log_execution("02_teacher", "cpu", 2.0, log)
    book.log_execution("04_distillation", "smoke", 1.0, log)
    assert first["minutes"] == 40.0 and first["cores"] >= 1
    found = book.first_executions(first["git"], "cpu", log)
    assert {name: entry["minutes"] for name, entry in found.items()} == {"02_teacher": 40.0}
    assert book.first_executions("0000000", "cpu", log) == {}
    assert book.first_executions(first["git"], "cpu", tmp_path / "absent.jsonl") == {}


def test_resume_skips_chapters_already_recorded_at_this_revision(tmp_path, monkeypatch, capsys):
    _write_toc(tmp_path, ["book/01_a", "book/02_b"])
    for name in ("01_a", "02_b"):
        _notebook(tmp_path / "book" / f"{name}.ipynb", f"print('{name} ran')")
    log = tmp_path / "runs.jsonl"
    monkeypatch.setattr(book, "RUN_LOG", log)
    monkeypatch.setattr(book, "first_executions",
                        lambda revision, profile, log=log: {"01_a": {"minutes": 1.0}})
    monkeypatch.setattr(book, "jupyter_book_command", lambda root, out=None: ["true"])
    args = waldorf_cli.build_parser().parse_args(
        ["book", "--record", "--resume", "--profile", "cpu", "--root", str(tmp_path)])
    assert book.run_book(args) == 0
    assert "[1/1] book/02_b.ipynb" in capsys.readouterr().out
    assert [entry.split('"')[3] for entry in log.read_text().splitlines()] == ["02_b"]


def test_a_chapter_runs_in_place_on_the_chosen_profile(tmp_path):
    path = _notebook(tmp_path / "01_ok.ipynb", "import os\nprint(os.environ['WALDORF_PROFILE'])")
    book.execute_notebook(path, "gpu", timeout=120, reports=tmp_path / "reports")
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert outputs[0]["text"].strip() == "gpu"


def test_data_note_only_when_a_local_profile_has_no_data_folder(monkeypatch):
    monkeypatch.delenv("WALDORF_DATA_DIR", raising=False)
    assert "packaged sample" in book.data_note("cpu")
    assert book.data_note("gpu") is None  # reads the hub
    monkeypatch.setenv("WALDORF_DATA_DIR", "/data/squad2")
    assert book.data_note("cpu") is None


def _args(*argv: str) -> argparse.Namespace:
    return waldorf_cli.build_parser().parse_args(["book", *argv])


def test_chapters_run_on_copies_unless_the_recorded_run_is_rewritten(tmp_path):
    _write_toc(tmp_path, ["book/01_a"])
    _notebook(tmp_path / "book" / "01_a.ipynb", "1")
    (tmp_path / "waldorf").mkdir()  # the package is not part of a working copy
    out = tmp_path / "out"
    source, output = book.plan(_args("--profile", "smoke", "--path-output", str(out)), tmp_path)
    assert (source, output) == (out / "run-smoke", out)
    assert (source / "book" / "01_a.ipynb").read_bytes() == (
        tmp_path / "book" / "01_a.ipynb").read_bytes()
    assert not (source / "waldorf").exists() and not (source / "out").exists()
    source, _ = book.plan(_args("--profile", "cpu"), tmp_path)
    assert source == tmp_path / "_build" / "run-cpu"  # the default: a copy too
    assert book.plan(_args("--profile", "cpu", "--record"), tmp_path)[0] == tmp_path
    with pytest.raises(UserError, match="--record rewrites the committed notebooks"):
        book.plan(_args("--profile", "smoke", "--record"), tmp_path)
    with pytest.raises(UserError, match="unknown profile 'huge'"):
        book.plan(_args("--profile", "huge"), tmp_path)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_smoke_run_with_path_output_leaves_the_recorded_book_untouched(tmp_path):
    """`waldorf book --profile smoke --path-output DIR`, every chapter: a few minutes, and the
    models it trains stay in the session's artifact store for nbval to reuse."""
    before = _digest(REPO / "book")
    done = subprocess.run([sys.executable, "-m", "waldorf_cli", "book", "--profile", "smoke",
                           "--path-output", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _digest(REPO / "book") == before
    executed = nbformat.read(tmp_path / "run-smoke" / "book" / "01_data_and_metric.ipynb", 4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "profile smoke ·" in printed  # the copy ran on the smoke profile (notebook.start)
    assert (tmp_path / "_build" / "html" / "index.html").exists()
    assert "Rewrote" not in done.stdout


def test_the_book_builds_with_warnings_as_errors(tmp_path_factory):
    """The real book, as committed: jupyter-book -W fails on any warning (missing citation,
    broken reference, file outside the toc). Takes about a minute."""
    done, html = build_book(tmp_path_factory)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    intro = (html / "book" / "intro.html").read_text()
    assert re.search(r"Tian (<em>)?et al\.(</em>)?, 2019", intro)  # citations resolved
    assert "Rajpurkar" in intro  # the bibliography is rendered
    for page in html.rglob("*.html"):
        # plotly.js >= 3 loads as a plain script; with require.js on the page figures stay blank
        assert "require.min.js" not in page.read_text(), page
    for notebook in book.toc_notebooks(REPO):
        assert (html / notebook.relative_to(REPO).with_suffix(".html")).exists(), notebook
