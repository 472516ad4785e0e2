"""Is the committed book one run of this code? The check behind ``waldorf book --check``.

A reproduction's release should be one run of one revision: every chapter's provenance footer,
every model it used and every recorded study it cites made at the same commit, and the package
unchanged since. This reads the revisions the committed notebooks and study results carry and
asks git whether the package differs from each. Explained in book/development.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from waldorf.provenance import RUN_OUTPUTS

FOOTER = re.compile(r"git `([0-9a-f]{7,40})(\+dirty)?`")
MADE_AT = re.compile(r"([\w-]+) made at git `([0-9a-f]{7,40}(?:\+dirty)?|unknown)`")
# What decides the numbers: the package, less what a run records (the numbers themselves) and
# less this check, which reads them and cannot change one.
CODE = ("waldorf", "waldorf_cli.py", "pyproject.toml", *RUN_OUTPUTS, ":(exclude)waldorf/release.py")


@dataclass
class Record:
    """Where one chapter's or study's numbers came from. Explained in book/development.md."""

    source: str
    revisions: set[str] = field(default_factory=set)  # of its outputs (footers, results)
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact -> its revision
    # made on hardware the run did not have (a lent GPU): shown beside the run with its own
    # revision, named by the verdict, but not part of the run
    reference: bool = False

    def all_revisions(self) -> set[str]:
        return self.revisions | set(self.artifacts.values())


def notebook_record(path: Path) -> Record:
    """The revisions in a notebook's outputs: provenance footers and "made at" artifacts.

    Explained in book/development.md.
    """
    record = Record(path.stem)
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = json.dumps(output)
            for name, revision in MADE_AT.findall(text):
                record.artifacts[name] = revision
            for revision, dirty in FOOTER.findall(MADE_AT.sub("", text)):
                record.revisions.add(revision + dirty)
    return record


def study_records(folder: Path, label: str = "study") -> list[Record]:
    """One record per recorded study and profile, from its result files' provenance.

    Explained in book/development.md.
    """
    records = []
    for profile_dir in sorted(p for p in folder.glob("*/*") if p.is_dir()):
        record = Record(f"{label} {profile_dir.parent.name}/{profile_dir.name}")
        for result in sorted(profile_dir.glob("*.json")):
            record.revisions.add(json.loads(result.read_text())["provenance"]["git"])
        records.append(record)
    return records


def bench_records(folder: Path) -> list[Record]:
    """One reference record per benchmark recorded on other hardware (``bench-*.json``), from
    its environment: chapter 7 shows them, so the release names their revision too.

    Explained in book/development.md.
    """
    return [Record(f"bench {path.stem.removeprefix('bench-')}",
                   {json.loads(path.read_text())["environment"]["git"]}, reference=True)
            for path in sorted(folder.glob("bench-*.json"))]


def code_differs(revision: str, root: Path) -> bool | None:
    """Whether the package at HEAD differs from ``revision`` (None: git cannot tell).

    A ``+dirty`` revision differs by definition: its code was never committed.
    """
    if revision.endswith("+dirty") or revision == "unknown":
        return True
    done = subprocess.run(["git", "diff", "--quiet", revision, "HEAD", "--", *CODE], cwd=root,
                          capture_output=True, timeout=60, check=False)
    return {0: False, 1: True}.get(done.returncode)


def check(root: Path, notebooks: list[Path], studies: Path) -> tuple[list[dict], bool]:
    """One row per chapter, study (in ``studies``), run trained again where its artifact was
    lost (in ``retrained`` next to it) and recorded benchmark (next to it too): its revisions,
    whether the package changed since each; and whether the whole book, less the references
    (recorded benchmarks, listed with their own revision), is one clean run of HEAD's package.

    Explained in book/development.md.
    """
    rows, revisions = [], set()
    for record in [*map(notebook_record, notebooks), *study_records(studies),
                   *study_records(studies.parent / "retrained", "retrained"),
                   *bench_records(studies.parent)]:
        found = record.all_revisions()
        if not record.reference:
            revisions |= found
        changed = sorted(r for r in found if code_differs(r, root) is not False)
        rows.append(dict(source=record.source, revisions=", ".join(sorted(found)) or "none",
                         artifacts=", ".join(f"{k} {v}" for k, v in record.artifacts.items()),
                         package_changed_since=", ".join(changed) or "no",
                         reference=record.reference))
    clean = len(revisions) == 1 and all(row["package_changed_since"] == "no" for row in rows
                                        if not row["reference"])
    return rows, clean


def format_check(rows: list[dict], clean: bool) -> str:
    """The check as a table and a verdict line. Explained in book/development.md."""
    width = max(len(row["source"]) for row in rows) if rows else 10
    lines = [f"{row['source']:<{width}}  {row['revisions']:<24}  "
             f"package changed since: {row['package_changed_since']}"
             + (f"  (artifacts: {row['artifacts']})" if row["artifacts"] else "")
             + ("  [reference]" if row["reference"] else "")
             for row in rows]
    verdict = ("one run: every chapter and study was made at one revision, and the package has "
               "not changed since" if clean else
               "not one run: the revisions differ, or the package changed since (see above)")
    references = [f"{row['source']} ({row['revisions']})" for row in rows if row["reference"]]
    if references:
        verdict += ("; shown beside it, recorded on hardware the run did not have and labelled "
                    "with their own revision: " + ", ".join(references))
    return "\n".join([*lines, verdict])


__all__ = ["Record", "bench_records", "check", "code_differs", "format_check", "notebook_record",
           "study_records"]
