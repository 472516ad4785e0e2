"""Results at a glance: every claim of the paper next to what this book measured.

The verdicts live where they are measured, eight chapters apart; a reader of the paper wants
them in one table. A chapter calls :func:`record` (or :func:`record_comparison`,
:func:`record_speed`) where it prints a claim: the call prints one readable line and leaves the
numbers in the cell's outputs as JSON of type ``MIMETYPE``. :func:`collect` reads them back from
the executed notebooks, :func:`study_rows` computes what the recorded studies hold, and
:func:`show` displays both as one table, with a "not measured yet" row for every claim nothing
measured. The page is therefore generated from outputs, never typed, and a test checks it
against the chapters. Explained in book/glance.ipynb.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from waldorf.bench_report import PAPER_SEQ_LEN, PAPER_SPEEDUPS, paper_verdicts
from waldorf.errors import UserError
from waldorf.metrics import QuestionScores, compare, percentile_interval

MIMETYPE = "application/vnd.waldorf.claim+json"  # one measurement, in a chapter's outputs
TABLE_MIMETYPE = "application/vnd.waldorf.glance+json"  # the whole table, in the glance page
COMPARED = ("f1", "exact")  # the paper's accuracy claims hold "in both EM and F1"
METRIC_NAMES = {"f1": "F1", "exact": "EM", "forced_HasAns_f1": "forced HasAns F1"}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, in its words and numbers, and what in this book measures it.

    Explained in book/glance.ipynb.
    """

    text: str
    measured_by: str  # markdown: the chapter or recorded study that measures it


SPEED_NAMES = {"tinybert4": "TinyBERT-4", "distilbert4": "DistilBERT-4 and BERT-PKD-4",
               "bert_base": "BERT-Base", "bert_large": "BERT-Large"}
CLAIMS: dict[str, Claim] = {
    **{f"speed-{model}": Claim(f"WaLDORf is {ratio:g}x faster than {SPEED_NAMES[model]}",
                               "[chapter 7](07_speed.ipynb)")
       for model, ratio in PAPER_SPEEDUPS.items()},
    "accuracy-4layer": Claim("WaLDORf is more accurate than DistilBERT-4 and BERT-PKD-4 (EM, F1)",
                             "[chapter 5](05_baselines.ipynb); `waldorf study headline`"),
    "accuracy-tinybert4": Claim("WaLDORf is more accurate than TinyBERT-4 (EM, F1)",
                                "`waldorf study front` (chapter 9)"),
    "teacher-vs-student": Claim("The teacher is more accurate than its student WaLDORf",
                                "[chapter 4](04_distillation.ipynb); `waldorf study headline`"),
    "teacher-floor": Claim("The teacher beats abstaining on every question",
                           "[chapter 2](02_teacher.ipynb); `waldorf study headline`"),
}
STUDY_PAGES = {"headline": "book/04_distillation.ipynb", "front": "book/09_front.ipynb"}


def current_provenance() -> dict:
    """Profile, hardware and code revision of this kernel's run. Explained in book/glance.ipynb."""
    from waldorf import provenance
    from waldorf.config import get_profile

    info = provenance.collect(get_profile(), time.time())
    return {"profile": info["profile"], "revision": info["git"], "hardware": _hardware(info)}


def _hardware(info: Mapping) -> str:
    return info.get("gpu") or f"{info['cpu']} ({info['cores']} cores)"


def format_value(row: Mapping) -> str:
    """``1.24x [1.19, 1.30]`` for a ratio, ``+4.40 [+3.19, +5.64] F1 points`` for a difference.

    Explained in book/glance.ipynb.
    """
    if row.get("value") is None:
        return "not measured yet"
    ratio = row["unit"] == "x"
    number = "{:.2f}" if ratio else "{:+.2f}"
    text = number.format(row["value"]) + ("x" if ratio else "")
    if row.get("low") is not None:
        text += f" [{number.format(row['low'])}, {number.format(row['high'])}]"
    return text + ("" if ratio or not row["unit"] else f" {row['unit']}")


def record(claim: str, value: float, *, verdict: str, low: float | None = None,
           high: float | None = None, unit: str = "", seeds: int | None = None,
           setting: str = "", note: str = "", provenance: Mapping | None = None) -> dict:
    """Print one claim's measurement and leave its numbers in the cell's outputs.

    ``low``/``high``: the 95% interval; ``unit``: ``x`` (a speed ratio) or the unit of a
    difference (``F1 points``); ``provenance``: profile, hardware, revision (default: this
    kernel's). Returns the JSON that :func:`collect` reads back. Explained in book/glance.ipynb.
    """
    from IPython.display import display

    if claim not in CLAIMS:
        raise UserError(f"unknown claim {claim!r}; choose one of {sorted(CLAIMS)}")
    row = {"claim": claim, "value": float(value), "low": None if low is None else float(low),
           "high": None if high is None else float(high), "unit": unit, "verdict": verdict,
           "seeds": seeds, "setting": setting, "note": note}
    where = provenance or current_provenance()
    row |= {key: where[key] for key in ("profile", "hardware", "revision")}
    details = "".join(f", {part}" for part in (setting, seeds and f"{seeds} seed(s)") if part)
    line = f"claim {claim} ({CLAIMS[claim].text}): {format_value(row)}{details} -> {verdict}"
    display({MIMETYPE: row, "text/plain": line}, raw=True)
    return row


def comparison_verdict(comparisons: Sequence[Mapping]) -> str:
    """``holds`` when every paired comparison puts its first model ahead, ``does not hold`` when
    any puts the second ahead, else ``within noise``. Explained in book/glance.ipynb.
    """
    first, second = list(comparisons[0]["values"])
    verdicts = [c["verdict"] for c in comparisons]
    if all(v == f"{first} ahead" for v in verdicts):
        return "holds"
    return "does not hold" if f"{second} ahead" in verdicts else "within noise"


def _comparison_row(comparisons: Sequence[Mapping]) -> dict:
    head, *rest = comparisons
    values = ", ".join(f"{name} {value:.2f}" for name, value in head["values"].items())
    others = "; ".join(format_value(_difference(c)) for c in rest)
    return {**_difference(head), "verdict": comparison_verdict(comparisons),
            "note": f"{METRIC_NAMES.get(head['metric'], head['metric'])}: {values}"
                    + (f"; {others}" if others else "")}


def _difference(comparison: Mapping) -> dict:
    low, high = comparison["difference_ci"]
    metric = METRIC_NAMES.get(comparison["metric"], comparison["metric"])
    return {"value": comparison["difference"], "low": low, "high": high, "unit": f"{metric} points"}


def record_comparison(claim: str, comparisons: Mapping | Sequence[Mapping], *, seeds: int = 1,
                      setting: str = "test split, threshold chosen on dev",
                      provenance: Mapping | None = None) -> dict:
    """Record paired comparisons (:func:`waldorf.metrics.compare` results, first metric shown):
    the claim holds when the first model is ahead on every metric. Explained in
    book/glance.ipynb.
    """
    comparisons = [comparisons] if isinstance(comparisons, Mapping) else list(comparisons)
    return record(claim, **_comparison_row(comparisons), seeds=seeds, setting=setting,
                  provenance=provenance)


def ratio_interval(slow_ms: Sequence[float], fast_ms: Sequence[float], n_boot: int = 1000,
                   seed: int = 0) -> list[float]:
    """95% bootstrap interval of ``median(slow) / median(fast)``, each model's timed runs
    resampled on their own. Explained in book/glance.ipynb.
    """
    rng = np.random.default_rng(seed)
    slow, fast = np.asarray(slow_ms, dtype=float), np.asarray(fast_ms, dtype=float)
    slow_medians = np.median(rng.choice(slow, (n_boot, len(slow))), axis=1)  # (n_boot,)
    fast_medians = np.median(rng.choice(fast, (n_boot, len(fast))), axis=1)  # (n_boot,)
    return percentile_interval(slow_medians / fast_medians)


def record_speed(doc: Mapping, seq_len: int = PAPER_SEQ_LEN, profile: str | None = None
                 ) -> list[dict]:
    """Record each of the paper's speed ratios that the benchmark ``doc`` measured at
    ``seq_len``, per batch size, with the verdicts of :func:`waldorf.bench_report.paper_verdicts`;
    ``profile``: the chapter's (default: the bench preset). Explained in book/glance.ipynb.
    """
    env = doc["environment"]
    where = {"profile": profile or f"bench {doc['settings'].get('preset', '')}".strip(),
             "revision": env["git"], "hardware": _hardware(env)}
    times = {(r["model"], r["batch_size"]): r["times_ms"]
             for r in doc["results"] if r["seq_len"] == seq_len}
    rows = []
    for batch_size in doc["settings"]["batch_sizes"]:
        for verdict in paper_verdicts(doc, seq_len, batch_size):
            slow, fast = times[verdict["model"], batch_size], times["waldorf", batch_size]
            low, high = ratio_interval(slow, fast)
            rows.append(record(
                f"speed-{verdict['model']}", verdict["measured"], low=low, high=high, unit="x",
                verdict=verdict["verdict"], provenance=where,
                setting=f"length {seq_len}, batch {batch_size}, {env.get('device', 'cpu')}",
                note=f"ratio of medians of {len(slow)} and {len(fast)} timed runs"))
    return rows


FOOTER = re.compile(r"<small>profile `(?P<profile>[^`]+)` · (?P<hardware>.+?) · \d+ torch threads"
                    r" · .*? · (?P<amount>[\d.]+) (?P<unit>s|min|h) · git `(?P<revision>[^`]+)`")
MINUTES_PER = {"s": 1 / 60, "min": 1.0, "h": 60.0}


def chapter_minutes(cells: Sequence[Mapping]) -> dict | None:
    """The longest duration among a notebook's provenance footers (the chapter's own time, in
    minutes), with its profile, hardware and revision; None without footers.

    Explained in book/glance.ipynb.
    """
    found = [FOOTER.search("".join(output.get("data", {}).get("text/markdown", "")))
             for cell in cells for output in cell.get("outputs", [])]
    footers = [{**m.groupdict(), "minutes": float(m["amount"]) * MINUTES_PER[m["unit"]]}
               for m in found if m]
    if not footers:
        return None
    longest = max(footers, key=lambda f: f["minutes"])
    return {key: longest[key] for key in ("profile", "hardware", "revision", "minutes")}


def collect(root: Path, log: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Read the executed notebooks of the book at ``root`` (in toc order): every claim output
    (with its ``source`` notebook and ``title``), and each chapter's minutes, with its first
    execution's from the run ``log`` (default: the package's ``book.RUN_LOG``).

    Explained in book/glance.ipynb.
    """
    import nbformat

    from waldorf.book import RUN_LOG, first_executions, toc_notebooks

    claims, minutes, logs = [], [], {}
    for path in toc_notebooks(root):
        cells = nbformat.read(path, as_version=4).cells
        heading = next((m[1] for c in cells if c.cell_type == "markdown"
                        for m in [re.search(r"^# (.+)$", c.source, re.MULTILINE)] if m), path.stem)
        source = {"source": path.relative_to(root).as_posix(), "title": heading.strip()}
        claims += [{**output["data"][MIMETYPE], **source} for cell in cells
                   for output in cell.get("outputs", []) if MIMETYPE in output.get("data", {})]
        spent = chapter_minutes(cells)
        if spent:  # and the chapter's first execution at that revision, when it was logged
            at = (spent["revision"], spent["profile"])
            if at not in logs:  # the log is read once per revision, not once per chapter
                logs[at] = first_executions(*at, log or RUN_LOG)
            first = logs[at].get(path.stem)
            minutes.append({**spent, **source, "first": first and first["minutes"]})
    return claims, minutes


def _seed_scores(documents: list[dict], model: str) -> tuple[QuestionScores | None, list[dict]]:
    from waldorf.tradeoff import seed_mean_scores

    runs = [doc for doc in documents if doc["model"] == model]
    return (seed_mean_scores([doc["questions"] for doc in runs]) if runs else None), runs


def _floor(scores: QuestionScores) -> QuestionScores:
    """Never answering: full marks on unanswerable questions, zero on the others."""
    abstains = (~scores.has_answer).astype(float)
    return replace(scores, na_prob=np.ones(len(scores)), answered=np.zeros(len(scores), bool),
                   exact_at_threshold=abstains, f1_at_threshold=abstains, threshold=0.0)


STUDY_CLAIMS = (  # (claim, study, first model, second model, metrics)
    ("teacher-floor", "headline", "teacher", "floor", ("f1",)),
    ("teacher-vs-student", "headline", "teacher", "waldorf", COMPARED),
    ("accuracy-4layer", "headline", "waldorf", "cut4", COMPARED),
    ("accuracy-tinybert4", "front", "waldorf", "tinybert4", COMPARED),
)


def study_rows(profile: str = "cpu", results: Path | None = None) -> list[dict]:
    """The claims the recorded studies of ``profile`` measure, as rows like :func:`record`'s:
    per-question scores averaged over each model's seeds, paired bootstrap differences.

    Explained in book/glance.ipynb.
    """
    from waldorf.study import RESULTS, load_study

    loaded = {name: load_study(name, profile, results or RESULTS) for name in STUDY_PAGES}
    rows = []
    for claim, study, first, second, metrics in STUDY_CLAIMS:
        a, runs_a = _seed_scores(loaded[study], first)
        b, runs_b = (_floor(a), runs_a) if second == "floor" and a else _seed_scores(
            loaded[study], second)
        if a is None or b is None:
            continue
        comparisons = [compare(a, b, m, names=(first, second)) for m in metrics]
        runs = runs_a + runs_b
        rows.append({
            "claim": claim, **_comparison_row(comparisons), "profile": profile,
            "seeds": min(len(runs_a), len(runs_b)), "setting": f"test split, study {study}",
            "hardware": ", ".join(sorted({_hardware(d["provenance"]) for d in runs})),
            "revision": ", ".join(sorted({d["provenance"]["git"] for d in runs})),
            "source": STUDY_PAGES[study], "title": f"recorded study `{study}`"})
    return rows


def table_rows(measured: Sequence[Mapping]) -> list[dict]:
    """Every claim, in the order of ``CLAIMS``: its measurements (chapters first, then studies,
    as given), or one "not measured yet" row naming what will measure it.

    Explained in book/glance.ipynb.
    """
    rows = []
    for claim, about in CLAIMS.items():
        mine = [dict(row) for row in measured if row["claim"] == claim]
        rows += mine or [{"claim": claim, "value": None, "verdict": "-",
                          "note": f"measured by {about.measured_by}"}]
    return rows


def _link(row: Mapping, base: Path, pages: Collection[str] | None) -> str:
    if "source" not in row:
        return row["note"]
    if pages is not None and row["source"] not in pages:
        return row["title"]  # a page outside the book: a link would be broken
    return f"[{row['title']}]({os.path.relpath(row['source'], base.as_posix())})"


def _where(row: Mapping) -> str:
    if row.get("value") is None:
        return ""
    parts = (row.get("setting"), row.get("note"),
             f"`{row['profile']}` · {row['hardware']} · `{row['revision']}`")
    return "; ".join(part for part in parts if part)


def markdown(rows: Sequence[Mapping], minutes: Sequence[Mapping], base: Path = Path("book"),
             pages: Collection[str] | None = None) -> str:
    """The glance page's tables as MyST markdown; links relative to ``base`` (the page's folder,
    from the book's root), only to ``pages`` when given. Explained in book/glance.ipynb.
    """
    lines = ["| claim of the paper | measured [95% interval] | seeds | verdict | where "
             "| measured in |", "|" + " --- |" * 6]
    lines += [f"| {CLAIMS[row['claim']].text} | {format_value(row)} | {row.get('seeds') or '-'} "
              f"| {row['verdict']} | {_where(row)} | {_link(row, base, pages)} |" for row in rows]
    lines += ["", "| chapter | profile | hardware | minutes (this page) | minutes (first run) |",
              "|" + " --- |" * 5]
    lines += [f"| {_link(m, base, pages)} | `{m['profile']}` | {m['hardware']} "
              f"| {m['minutes']:.1f} | {_minutes(m.get('first'))} |" for m in minutes]
    total = sum(m["minutes"] for m in minutes)
    profiles = ", ".join(sorted({f"`{m['profile']}`" for m in minutes})) or "no"
    lines += ["", f"The pages' own times add up to **{total:.0f} minutes** "
              f"({total / 60:.1f} hours) on the {profiles} profile."]
    revisions = sorted({m["revision"] for m in minutes})
    if revisions:
        lines[-1] += (f" Every page was run at git `{revisions[0]}`." if len(revisions) == 1 else
                      f" The pages were run at {len(revisions)} revisions: "
                      + ", ".join(f"`{r}`" for r in revisions) + ".")
    firsts = [m["first"] for m in minutes if m.get("first") is not None]
    if len(firsts) == len(minutes):
        lines[-1] += (f" The first execution of each, which trained every model it needed, adds "
                      f"up to **{sum(firsts):.0f} minutes** ({sum(firsts) / 60:.1f} hours).")
    return "\n".join(lines)


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def show(root: Path | None = None, profile: str | None = None) -> dict:
    """Display the glance page: the claims table and the chapters' minutes, from the executed
    notebooks of the book around the current folder and the recorded studies of ``profile``
    (default: this kernel's). Returns the displayed JSON. Explained in book/glance.ipynb.
    """
    from IPython.display import display

    from waldorf.book import find_root, toc_notebooks
    from waldorf.config import get_profile

    root = find_root(root)
    profile = profile or get_profile().name
    claims, minutes = collect(root)
    table = {"profile": profile, "rows": table_rows(claims + study_rows(profile)),
             "minutes": minutes}
    here = Path.cwd().resolve()
    base = here.relative_to(root) if here.is_relative_to(root) else Path("book")
    pages = {path.relative_to(root).as_posix() for path in toc_notebooks(root)}
    display({"text/markdown": markdown(table["rows"], table["minutes"], base, pages),
             TABLE_MIMETYPE: table}, raw=True)
    return table
