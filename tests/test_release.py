"""The release check: one revision everywhere, and no package change since it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat

from waldorf import provenance
from waldorf.release import check, code_differs, format_check, notebook_record


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(root: Path, text: str, path: str = "waldorf/code.py") -> str:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text)
    return git(root, "rev-parse", "--short", "HEAD")


def chapter(path: Path, revision: str, artifacts: dict | None = None) -> Path:
    info = dict(profile="cpu", gpu=None, cpu="x", cores=2, torch_threads=2, torch="2",
                transformers="5", duration_s=60, git=revision, utc="now")
    if artifacts:
        info["artifacts"] = artifacts
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("footer()")
    cell.outputs = [nbformat.v4.new_output("display_data",
                                           {"text/markdown": provenance.to_markdown(info)})]
    nb.cells = [cell]
    nbformat.write(nb, path)
    return path


def test_the_footer_names_each_artifacts_revision_and_the_check_reads_it(tmp_path):
    path = chapter(tmp_path / "02_teacher.ipynb", "abc1234", {"teacher": "def5678"})
    record = notebook_record(path)
    assert record.revisions == {"abc1234"}
    assert record.artifacts == {"teacher": "def5678"}


def test_one_revision_and_unchanged_code_is_a_clean_release(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    first = commit(root, "v1")
    studies = root / "studies" / "headline" / "cpu"
    studies.mkdir(parents=True)
    (studies / "teacher-seed42.json").write_text(json.dumps({"provenance": {"git": first}}))
    books = [chapter(root / "01.ipynb", first, {"teacher": first}),
             chapter(root / "02.ipynb", first)]
    rows, clean = check(root, books, root / "studies")
    assert clean and [r["package_changed_since"] for r in rows] == ["no", "no", "no"]
    assert "one run" in format_check(rows, clean)

    second = commit(root, "v2")  # the package moves on: the recorded run is no longer HEAD's
    assert code_differs(first, root) and not code_differs(second, root)
    rows, clean = check(root, books, root / "studies")
    assert not clean and rows[0]["package_changed_since"] == first
    chapter(root / "02.ipynb", second)  # and two revisions are never one run
    rows, clean = check(root, books, root / "studies")
    assert not clean and "not one run" in format_check(rows, clean)


def test_recorded_outputs_and_the_check_itself_are_not_code_that_decides_numbers(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    release = commit(root, "v1")
    commit(root, "a study result", "waldorf/recorded/studies/headline/cpu/teacher-seed1.json")
    commit(root, "a mended check", "waldorf/release.py")
    assert not code_differs(release, root)
    commit(root, "v2", "waldorf/models/block.py")
    assert code_differs(release, root)


def recorded_repo(tmp_path: Path) -> tuple[Path, str, Path]:
    """A repository with one commit and an empty waldorf/recorded/studies folder."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    first = commit(root, "v1")
    recorded = root / "waldorf" / "recorded"
    (recorded / "studies").mkdir(parents=True)
    return root, first, recorded


def test_a_benchmark_recorded_elsewhere_is_a_reference_the_verdict_names(tmp_path):
    root, first, recorded = recorded_repo(tmp_path)
    books = [chapter(root / "07.ipynb", first)]
    (recorded / "bench-h200-full.json").write_text(json.dumps({"environment": {"git": first}}))
    rows, clean = check(root, books, recorded / "studies")
    assert clean and rows[-1]["source"] == "bench h200-full" and rows[-1]["reference"]
    (recorded / "bench-h200-full.json").write_text(
        json.dumps({"environment": {"git": "abc1234+dirty"}}))
    rows, clean = check(root, books, recorded / "studies")
    assert rows[-1]["package_changed_since"] == "abc1234+dirty"
    # made on hardware the run did not have: the run is still one run, and the verdict says
    # what stands beside it with which revision
    assert clean
    assert format_check(rows, clean).endswith("own revision: bench h200-full (abc1234+dirty)")
    chapter(root / "07.ipynb", "abc1234+dirty")  # a chapter is never a reference
    assert not check(root, books, recorded / "studies")[1]


def test_a_run_trained_again_names_its_revision_in_the_check(tmp_path):
    root, first, recorded = recorded_repo(tmp_path)
    again = recorded / "retrained" / "headline" / "cpu"
    again.mkdir(parents=True)
    (again / "teacher-seed42.json").write_text(json.dumps({"provenance": {"git": "abc1234"}}))
    rows, clean = check(root, [chapter(root / "02.ipynb", first)], recorded / "studies")
    assert rows[-1]["source"] == "retrained headline/cpu" and rows[-1]["revisions"] == "abc1234"
    assert not clean  # another revision than the chapter's: not one run


def test_a_dirty_revision_never_counts_as_committed_code(tmp_path):
    assert code_differs("abc1234+dirty", tmp_path)
    assert notebook_record(chapter(tmp_path / "c.ipynb", "abc1234+dirty")).revisions == {
        "abc1234+dirty"}


def test_the_committed_book_is_checked_and_the_result_reported(capsys):
    """Reports whether the committed book is one run; fails only if the check itself breaks."""
    from waldorf.book import REPO, toc_notebooks
    from waldorf.study import RESULTS

    notebooks = toc_notebooks(REPO)
    rows, clean = check(REPO, notebooks, RESULTS)
    assert len(rows) >= len(notebooks)
    assert all(row["revisions"] for row in rows)
    with capsys.disabled():
        print("\n" + format_check(rows, clean))
