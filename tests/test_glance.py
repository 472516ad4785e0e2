"""Results at a glance: claims recorded in outputs, collected back, and the committed page."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest

from waldorf import book, glance, provenance
from waldorf.errors import UserError
from waldorf.metrics import QuestionScores, compare

REPO = Path(__file__).resolve().parents[1]
HERE = {"profile": "cpu", "hardware": "AMD EPYC (2 cores)", "revision": "abc1234"}


@pytest.fixture
def shown(monkeypatch):
    """What the record functions display, as (mimetype -> data) bundles."""
    import IPython.display

    bundles = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: bundles.append(obj))
    return bundles


def _footer(seconds: float, revision: str = "abc1234") -> dict:
    info = dict(profile="cpu", gpu=None, cpu="AMD EPYC", cores=2, torch_threads=2, torch="2",
                transformers="5", duration_s=seconds, git=revision, utc="now",
                artifacts={"teacher": "def5678"})
    return nbformat.v4.new_output("display_data", {"text/markdown": provenance.to_markdown(info)})


def _chapter(path: Path, title: str, *outputs: dict) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nText."),
                nbformat.v4.new_code_cell("x = 1", outputs=list(outputs))]
    nbformat.write(nb, path)
    return path


def _book(root: Path, *names: str) -> Path:
    (root / "book").mkdir(parents=True, exist_ok=True)
    (root / "_config.yml").write_text("title: test\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    chapters = "\n".join(f"  - file: book/{name}" for name in names)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{chapters}\n")
    return root


def _claim_output(row: dict) -> dict:
    return nbformat.v4.new_output("display_data", {glance.MIMETYPE: row, "text/plain": "line"})


def test_record_prints_a_line_and_leaves_the_numbers_in_the_outputs(shown):
    row = glance.record("speed-tinybert4", 1.3, low=1.2, high=1.4, unit="x", verdict="holds",
                        setting="length 384, batch 1", provenance=HERE)
    (bundle,) = shown
    assert bundle[glance.MIMETYPE] == row and row["profile"] == "cpu"
    assert "1.30x [1.20, 1.40]" in bundle["text/plain"] and "holds" in bundle["text/plain"]
    assert "1.24x faster than TinyBERT-4" in bundle["text/plain"]
    with pytest.raises(UserError, match="unknown claim 'speed-tinybert'"):
        glance.record("speed-tinybert", 1.0, verdict="holds", provenance=HERE)


def _scores(f1: list[float]) -> QuestionScores:
    n = len(f1)
    values = np.asarray(f1, dtype=float)
    return QuestionScores([f"q{i}" for i in range(n)], np.ones(n, bool), np.zeros(n),
                          np.ones(n, bool), values, values, values, values, values,
                          np.ones(n, bool), threshold=0.5)


def test_comparisons_hold_only_when_the_first_model_is_ahead_on_every_metric(shown):
    better, worse = _scores([1.0] * 40 + [0.0] * 10), _scores([0.0] * 40 + [1.0] * 10)
    ahead = compare(better, worse, "f1", names=("WaLDORf", "cut4"))
    behind = compare(worse, better, "f1", names=("WaLDORf", "cut4"))
    tie = compare(better, better, "f1", names=("WaLDORf", "cut4"))
    assert glance.comparison_verdict([ahead, ahead]) == "holds"
    assert glance.comparison_verdict([ahead, behind]) == "does not hold"
    assert glance.comparison_verdict([ahead, tie]) == "within noise"
    row = glance.record_comparison("accuracy-4layer", [ahead, tie], seeds=3, provenance=HERE)
    assert row["value"] == pytest.approx(60.0) and row["low"] > 0 and row["seeds"] == 3
    assert row["unit"] == "F1 points" and "WaLDORf 80.00, cut4 20.00" in row["note"]


def test_record_speed_gives_each_paper_ratio_an_interval_and_the_chapters_verdict(shown):
    times = {"waldorf": [10.0, 10.5, 9.5], "tinybert4": [13.0, 13.5, 12.5],
             "bert_base": [50.0, 52.0, 48.0]}
    doc = {"environment": {"profile": "cpu", "git": "abc1234", "gpu": None, "device": "cpu",
                           "cpu": "AMD EPYC", "cores": 2},
           "settings": {"batch_sizes": [1], "preset": "paper"},
           "results": [{"model": m, "seq_len": 384, "batch_size": 1, "times_ms": t}
                       for m, t in times.items()],
           "speedups": [{"model": m, "seq_len": 384, "batch_size": 1,
                         "waldorf_speedup": float(np.median(t) / 10.0)} for m, t in times.items()]}
    rows = {row["claim"]: row for row in glance.record_speed(doc)}
    assert set(rows) == {"speed-tinybert4", "speed-bert_base"}  # waldorf itself is no claim
    assert rows["speed-tinybert4"]["verdict"] == "holds"  # 1.30 >= 1.24
    assert rows["speed-bert_base"]["verdict"] == "does not hold"  # 5.0 < 9.13 by far
    low, high = rows["speed-tinybert4"]["low"], rows["speed-tinybert4"]["high"]
    assert low <= 1.3 <= high and high < 1.45
    assert rows["speed-bert_base"]["hardware"] == "AMD EPYC (2 cores)"
    assert rows["speed-bert_base"]["profile"] == "bench paper"
    assert glance.record_speed(doc, profile="cpu")[0]["profile"] == "cpu"


def test_collect_reads_claims_and_minutes_and_missing_claims_stay_visible(tmp_path):
    root = _book(tmp_path, "01_a", "02_b")
    measured = dict(claim="speed-bert_large", value=30.0, low=29.0, high=31.0, unit="x",
                    verdict="holds", seeds=None, setting="batch 1", note="", **HERE)
    _chapter(root / "book" / "01_a.ipynb", "First chapter", _footer(30), _footer(90),
             _claim_output(measured))
    _chapter(root / "book" / "02_b.ipynb", "Second", _footer(7200, "fff0000"))
    claims, minutes = glance.collect(root)
    assert claims == [{**measured, "source": "book/01_a.ipynb", "title": "First chapter"}]
    assert [(m["title"], m["minutes"], m["revision"]) for m in minutes] == [
        ("First chapter", 1.5, "abc1234"), ("Second", 120.0, "fff0000")]

    rows = glance.table_rows(claims)
    assert [row["claim"] for row in rows] == list(glance.CLAIMS)  # every claim, in order
    missing = [row for row in rows if row["value"] is None]
    assert len(missing) == len(glance.CLAIMS) - 1
    assert all(row["verdict"] == "-" and "measured by" in row["note"]
               for row in missing)
    page = glance.markdown(rows, minutes)
    assert "| 30.00x [29.00, 31.00] | - | holds | batch 1;" in page
    assert "[First chapter](01_a.ipynb)" in page
    assert page.count("not measured yet") == len(missing)
    assert "add up to **122 minutes**" in page
    assert "first execution" not in page  # no run log: the first runs' total is unknown
    assert "run at 2 revisions: `abc1234`, `fff0000`" in page


def test_the_first_executions_of_a_revision_add_up_to_the_whole_run(tmp_path):
    root = _book(tmp_path, "01_a", "02_b")
    _chapter(root / "book" / "01_a.ipynb", "First", _footer(60))
    _chapter(root / "book" / "02_b.ipynb", "Second", _footer(120))
    log = tmp_path / "runs.jsonl"
    for chapter, minutes in [("01_a", 30.0), ("02_b", 40.0), ("01_a", 1.0)]:  # 01_a ran twice
        book.log_execution(chapter, "cpu", minutes, log)
    log.write_text(log.read_text().replace(provenance.git_revision(), "abc1234"))
    _, minutes = glance.collect(root, log)
    assert [m["first"] for m in minutes] == [30.0, 40.0]  # the first execution, not the last
    page = glance.markdown(glance.table_rows([]), minutes)
    assert "| 1.0 | 30.0 |" in page and "adds up to **70 minutes**" in page


def test_study_rows_average_the_seeds_and_compare_with_the_floor(tmp_path):
    import json

    from waldorf.study import write_result

    answered = _scores([1.0] * 30 + [0.0] * 20)
    answered.has_answer[:] = np.arange(50) < 35  # 15 unanswerable, all answered
    info = {"git": "abc1234", "cpu": "AMD EPYC", "cores": 2, "gpu": None}
    folder = tmp_path / "headline" / "cpu"
    for seed in (42, 1):
        write_result(folder / f"teacher-seed{seed}.json",
                     {"model": "teacher", "seed": seed, "questions": answered.to_json(),
                      "provenance": info})
    (rows,) = glance.study_rows("cpu", tmp_path)
    assert rows["claim"] == "teacher-floor" and rows["seeds"] == 2
    assert rows["value"] == pytest.approx(60.0 - 30.0)  # 30 of 50 right vs 15 of 50 abstentions
    assert rows["verdict"] == "holds" and rows["source"] == "book/04_distillation.ipynb"
    assert json.loads(json.dumps(rows)) == rows  # plain JSON, as the page stores it


def _rounded(value):
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {key: _rounded(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


STALE = ("book/glance.ipynb shows other numbers than the committed chapters and recorded "
         "studies hold: refresh it with `waldorf book --record --chapters glance` (it executes "
         "only the glance page, then builds the book)")


def test_the_committed_glance_page_shows_what_the_committed_chapters_measured():
    """The numbers in book/glance.ipynb's outputs equal those collected now from the committed
    chapters and recorded studies, and so do the chapters' minutes."""
    page = nbformat.read(REPO / "book" / "glance.ipynb", as_version=4)
    tables = [output["data"][glance.TABLE_MIMETYPE] for cell in page.cells
              for output in cell.get("outputs", [])
              if glance.TABLE_MIMETYPE in output.get("data", {})]
    assert len(tables) == 1, "book/glance.ipynb has no table output: execute it"
    (table,) = tables
    claims, minutes = glance.collect(REPO)
    rows = glance.table_rows(claims + glance.study_rows(table["profile"]))
    assert {row["claim"] for row in table["rows"]} == set(glance.CLAIMS)
    assert _rounded(table["rows"]) == _rounded(rows), STALE
    assert _rounded(table["minutes"]) == _rounded(minutes), STALE
