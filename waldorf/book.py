"""``waldorf book``: run every chapter on a profile, then build the HTML book.

The committed notebooks carry the outputs of one recorded run, and the book build itself never
executes code (``execute_notebooks: "off"`` in _config.yml). This command is how those outputs
are made: it executes each notebook of _toc.yml in order with ``WALDORF_PROFILE`` set, so later
chapters find the models earlier ones saved. By default it runs on a copy of the sources and
leaves ``book/`` untouched; ``--record`` rewrites the committed notebooks (the recorded profile
only). A failing chapter stops the run and leaves a readable report (failing cell, traceback)
in ``_build/reports/``. Explained in book/intro.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from waldorf.config import DATA_ENV, PROFILE_ENV, PROFILES
from waldorf.errors import UserError
from waldorf.outputs import clean_committed, clean_outputs

REPO = Path(__file__).resolve().parents[1]
RECORDED_PROFILE = "cpu"  # the profile whose run the committed notebooks carry
# What a working copy leaves out: the package, tests, caches, earlier builds, virtual envs.
NOT_COPIED = shutil.ignore_patterns(".*", "_build", "tests", "waldorf", "scripts", "artifacts",
                                    "runs", "*.egg-info", "__pycache__")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Every chapter execution of ``--record``, appended: a chapter's first execution at a revision
# is the one that trained what it needed, so the glance page sums those into the whole run.
RUN_LOG = REPO / "waldorf" / "recorded" / "book-runs.jsonl"


def find_root(start: Path | None = None) -> Path:
    """The book's folder: the first of ``start`` (or the cwd) and its parents with a _toc.yml.

    Falls back to the checkout this package was installed from. Explained in book/intro.md.
    """
    start = (start or Path.cwd()).resolve()
    for folder in [start, *start.parents, REPO]:
        if (folder / "_toc.yml").exists() and (folder / "_config.yml").exists():
            return folder
    raise FileNotFoundError(
        f"no _toc.yml/_config.yml in {start} or its parents: run `waldorf book` in a clone"
    )


def toc_files(entries: list[dict]) -> list[str]:
    """Every ``file`` of _toc.yml entries, depth first in reading order (parts, chapters,
    sections). Explained in book/intro.md.
    """
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("parts", "chapters", "sections"):
            files += toc_files(entry.get(key, []))
    return files


def toc_notebooks(root: Path) -> list[Path]:
    """Notebooks of _toc.yml in reading order; a listed file that is missing is an error.

    Explained in book/intro.md.
    """
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    notebooks = []
    for name in toc_files([toc]):
        matches = [root / f"{name}{suffix}" for suffix in ("", ".ipynb", ".md")]
        found = next((path for path in matches if path.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{root / '_toc.yml'} lists {name!r}, which does not exist")
        if found.suffix == ".ipynb":
            notebooks.append(found)
    return notebooks


def select_chapters(notebooks: list[Path], chapters: list[str] | None) -> list[Path]:
    """Keep notebooks whose file name starts with one of ``chapters`` (e.g. ``01``), in toc order.

    Explained in book/intro.md.
    """
    if not chapters:
        return notebooks
    unknown = [c for c in chapters if not any(nb.name.startswith(c) for nb in notebooks)]
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks)
        raise ValueError(f"no chapter in _toc.yml starts with {unknown}; chapters: {names}")
    return [nb for nb in notebooks if any(nb.name.startswith(c) for c in chapters)]


# Pages that read the chapters' outputs (book/glance.ipynb): executed after every chapter.
SUMMARIES = ("glance",)


def run_order(notebooks: list[Path], chapters: list[str] | None) -> list[Path]:
    """The chosen chapters in toc order, then every summary page, whatever its toc position.

    Explained in book/intro.md.
    """
    summaries = [nb for nb in notebooks if nb.stem in SUMMARIES]
    chosen = select_chapters(notebooks, chapters)
    return [nb for nb in chosen if nb not in summaries] + summaries


def _write_report(path: Path, nb, error: Exception, reports: Path) -> Path:
    """Save the failed notebook and a plain-text report next to it; return the report's path."""
    import nbformat

    reports.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, reports / path.name)
    failing = next(
        (i for i, cell in enumerate(nb.cells)
         if any(out.get("output_type") == "error" for out in cell.get("outputs", []))),
        None,
    )
    lines = [f"Chapter {path} failed", f"Cell index: {failing}"]
    if failing is not None:
        lines += ["", "Cell source:", nb.cells[failing].source]
    lines += ["", "Error:", ANSI.sub("", str(error))]
    lines += ["", f"The notebook with all outputs up to the failure: {reports / path.name}"]
    report = reports / f"{path.stem}.txt"
    report.write_text("\n".join(lines) + "\n")
    return report


def execute_notebook(path: Path, profile: str, timeout: int | None, reports: Path) -> float:
    """Execute ``path`` in place on ``profile``; return minutes. Raises with a report on failure.

    The notebook file is only rewritten when every cell succeeded. Explained in book/intro.md.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    nb = nbformat.read(path, as_version=4)
    code_cells = sum(cell.cell_type == "code" for cell in nb.cells)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    started, previous = time.time(), os.environ.get(PROFILE_ENV)
    os.environ[PROFILE_ENV] = profile  # the kernel inherits the environment
    try:
        with tqdm(total=code_cells, desc=path.stem, unit="cell") as bar:
            client.on_cell_executed = lambda **_: bar.update()
            client.execute()
    except (CellExecutionError, TimeoutError, RuntimeError) as error:
        report = _write_report(path, nb, error, reports)
        raise RuntimeError(f"{path.name} failed; report: {report}") from error
    finally:
        if previous is None:
            os.environ.pop(PROFILE_ENV, None)
        else:
            os.environ[PROFILE_ENV] = previous
    clean_outputs(nb)
    nbformat.write(nb, path)
    return (time.time() - started) / 60


def log_execution(chapter: str, profile: str, minutes: float, log: Path = RUN_LOG) -> dict:
    """Append one recorded execution (chapter, minutes, revision, hardware) to ``log``.

    Explained in book/intro.md.
    """
    from waldorf.provenance import collect

    info = collect(profile, time.time() - 60 * minutes)
    entry = {"chapter": chapter, "minutes": round(minutes, 2),
             **{k: info[k] for k in ("profile", "cpu", "cores", "git", "utc")}}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(json.dumps(entry) + "\n")
    return entry


def first_executions(revision: str, profile: str, log: Path = RUN_LOG) -> dict[str, dict]:
    """Each chapter's first logged execution at ``revision`` on ``profile``.

    Explained in book/intro.md.
    """
    lines = log.read_text().splitlines() if log.is_file() else []
    first: dict[str, dict] = {}
    for entry in map(json.loads, lines):
        if entry["git"] == revision and entry["profile"] == profile:
            first.setdefault(entry["chapter"], entry)
    return first


def jupyter_book_command(root: Path, path_output: Path | None = None) -> list[str]:
    """The -W build command: warnings are errors, all of them reported (``--keep-going``).

    Explained in book/intro.md.
    """
    script = Path(sys.executable).with_name("jupyter-book")
    executable = str(script) if script.exists() else shutil.which("jupyter-book")
    if executable is None:
        raise FileNotFoundError(
            "jupyter-book not found: install the book extra, pip install -e '.[book]'"
        )
    command = [executable, "build", str(root), "-W", "--keep-going"]
    if path_output is not None:
        command += ["--path-output", str(path_output)]
    return command


def data_note(profile_name: str) -> str | None:
    """A warning when a local-data profile would run on the packaged sample, else None.

    Explained in book/intro.md.
    """
    if PROFILES[profile_name].data.source != "local" or os.environ.get(DATA_ENV):
        return None
    return (f"note: {DATA_ENV} is not set, so the {profile_name!r} profile reads the small "
            "packaged sample; the recorded book ran on the offline SQuAD 2.0 folder (README, Data)")


def working_copy(root: Path, dest: Path) -> Path:
    """A fresh copy of the book's sources (toc, config, bibliography, ``book/``) in ``dest``.

    Chapters run on the copy, so the committed notebooks, which carry the recorded run,
    stay byte for byte as they are. Explained in book/intro.md.
    """
    root, dest = root.resolve(), dest.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        inside = {n for n in names if (Path(folder) / n).resolve() == dest}  # no copy in itself
        return NOT_COPIED(folder, names) | inside

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(root, dest, ignore=ignore)
    return dest


def plan(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    """Where the chapters run and where the HTML goes: ``(source, output)`` folders.

    ``--record`` executes the committed notebooks in place (recorded profile only); any other
    run works on a copy under ``--path-output`` (default ``_build/run-<profile>``), and the
    HTML is built from that copy. Explained in book/intro.md.
    """
    if args.profile not in PROFILES:
        raise UserError(f"unknown profile {args.profile!r}; choose one of {sorted(PROFILES)}")
    output = args.path_output or root
    if args.record:
        if args.profile != RECORDED_PROFILE:
            raise UserError(f"--record rewrites the committed notebooks, which record the "
                            f"{RECORDED_PROFILE!r} profile; run {args.profile!r} without --record")
        return root, output
    if args.no_execute:
        return root, output
    copy = (args.path_output or root / "_build") / f"run-{args.profile}"
    return working_copy(root, copy), output


def run_book(args: argparse.Namespace) -> int:
    """Execute the chosen chapters, then build the book; 0 on success.

    Explained in book/intro.md.
    """
    root = find_root(args.root)
    if getattr(args, "clean_outputs", False):
        return clean_committed(toc_notebooks(root))
    if getattr(args, "check", False):
        from waldorf.release import check, format_check
        from waldorf.study import RESULTS

        rows, clean = check(root, toc_notebooks(root), RESULTS)
        print(format_check(rows, clean))
        return 0 if clean else 1
    source, output = plan(args, root)
    reports = output / "_build" / "reports"
    summary = []
    if not args.no_execute:
        notebooks = run_order(toc_notebooks(source), args.chapters)
        if args.resume and source == root:
            from waldorf.provenance import git_revision

            done = first_executions(git_revision(), args.profile, RUN_LOG)
            notebooks = [nb for nb in notebooks if nb.stem in SUMMARIES or nb.stem not in done]
        where = "in place (--record)" if source == root else f"on copies in {source}"
        print(f"Executing {len(notebooks)} chapter(s) on the {args.profile!r} profile {where}")
        note = data_note(args.profile)
        if note:
            print(note, flush=True)
        for index, path in enumerate(notebooks, 1):
            print(f"[{index}/{len(notebooks)}] {path.relative_to(source)}", flush=True)
            try:
                minutes = execute_notebook(path, args.profile, args.timeout, reports)
            except RuntimeError as error:
                print(f"FAILED: {error}", file=sys.stderr)
                return 1
            summary.append({"chapter": path.stem, "profile": args.profile, "minutes": minutes})
            if source == root:
                log_execution(path.stem, args.profile, minutes, RUN_LOG)
            print(f"    done in {minutes:.1f} min", flush=True)
        reports.mkdir(parents=True, exist_ok=True)
        (reports / "execution.json").write_text(json.dumps(summary, indent=2) + "\n")
        if source == root:
            print("Rewrote the recorded run of: "
                  + ", ".join(str(p.relative_to(root)) for p in notebooks), flush=True)
    command = jupyter_book_command(source, output)
    print("Building the HTML book:", " ".join(command), flush=True)
    done = subprocess.run(command)
    if done.returncode != 0:
        print("the book build failed (see the warnings above)", file=sys.stderr)
        return done.returncode
    print(f"Book ready: {output / '_build' / 'html' / 'index.html'}")
    return 0

