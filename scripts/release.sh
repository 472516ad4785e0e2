#!/bin/bash
# The release run (issue 23): the whole book on the cpu profile at one frozen revision.
#   1. every chapter from an empty artifact store, in order, so each trains what it needs and its
#      footer times the real work (chapter 9 waits: it shows the front study);
#   2. the recorded studies the chapters cite (hours): first every seed-42 run, which reuses the
#      chapters' models while their artifacts are still there, then the other seeds;
#   3. the pages that show those studies, again, and chapter 7, whose source changed during the
#      run (it times models: on the idle machine);
#   4. `waldorf book --check`: one revision everywhere, the package unchanged since.
# Resumable: run it again after an interruption. Chapters already executed at this revision
# are skipped (waldorf/recorded/book-runs.jsonl), finished study runs are never redone, and
# every training stage resumes from its last checkpoint.
#   usage: WALDORF_ARTIFACTS=/empty/folder WALDORF_DATA_DIR=/path/to/squad2 scripts/release.sh
# Run it from a checkout nobody edits meanwhile (`git worktree add ../release HEAD`), with
# PYTHONPATH set to that checkout, on an otherwise idle machine: chapters 3, 7 and 9 time models.
# On machines that keep no files between sessions, scripts/release-session.sh wraps this script.
set -euo pipefail
: "${WALDORF_ARTIFACTS:?set WALDORF_ARTIFACTS to an empty folder of the release run}"
: "${WALDORF_DATA_DIR:?set WALDORF_DATA_DIR to the offline SQuAD 2.0 folder (README, Data)}"
if [ -n "$(git status --porcelain -- waldorf waldorf_cli.py pyproject.toml \
           ':(exclude)waldorf/recorded')" ]; then
  echo "the package differs from the commit: commit it first, so the run names one revision" >&2
  exit 1
fi
step() { echo "=== $* ($(date -u '+%F %H:%M UTC'))"; "$@"; }
step waldorf book --record --resume --chapters 01 02 03 04 05 06 07 08
step waldorf study headline --seeds 42
step waldorf study front --seeds 42
step waldorf study headline
step waldorf study front
# the pages that show the studies, again: each group whole unless all its pages ran after the last
# study result (so a rerun goes on where it stopped). Chapters 7 and 9 first (minutes, nothing
# trained), then 2 and 4 together: chapter 4 distils from the teacher chapter 2 shows, which a
# machine that lost the artifact store trains again
ran_since_studies() {
  python3 - "$@" <<'PY'
import json, sys
from pathlib import Path
recorded = Path("waldorf/recorded")
last = max(json.loads(p.read_text())["provenance"]["utc"] for p in recorded.glob("studies/*/*/*.json"))
runs = [json.loads(line) for line in (recorded / "book-runs.jsonl").read_text().splitlines()]
done = {run["chapter"][:2] for run in runs if run["utc"] >= last}
sys.exit(0 if set(sys.argv[1:]) <= done else 1)
PY
}
for chapters in "07 09" "02 04"; do
  ran_since_studies $chapters || step waldorf book --record --chapters $chapters
done
step waldorf book --check
