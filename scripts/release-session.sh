#!/bin/bash
# One session of the release run (issue 23) on a machine that keeps nothing between sessions but
# what is committed. Run from the main checkout, with its virtual environment on PATH:
#   scripts/release-session.sh REVISION
# It
#   1. checks the frozen REVISION out next to this checkout (../release) and copies into it what
#      earlier sessions recorded at that revision (executed notebooks, the run log, study
#      results), so scripts/release.sh skips that work, and this checkout's pages of the book;
#   2. runs scripts/release.sh there in the background (log: ../release.log; artifacts in
#      ../release-artifacts, lost with the machine: the teacher is trained again each session);
#   3. every five minutes copies what the run recorded back here and commits it, so a session
#      that ends mid-run loses only the run in progress.
# Before the session ends, `scripts/release-session.sh --pause REVISION` stops that loop, pauses
# the training in progress (it goes on after `kill -CONT`; its last checkpoint is what the next
# session resumes from), executes the glance page on what the studies have recorded so far and
# commits it, so the committed book is consistent for the stop's tests.
set -euo pipefail
pause=false
if [ "${1:-}" = "--pause" ]; then pause=true; shift; fi
revision=${1:?usage: scripts/release-session.sh [--pause] REVISION (the frozen commit of the release)}
main=$(git rev-parse --show-toplevel)
release="$main/../release"
loop_pid="$main/../release-session.pid"
revision=$(git -C "$main" rev-parse --short "$revision")

# Copies, from checkout $1 to checkout $2, the notebooks executed at $revision since $2's log
# last heard of them (so a page edited in $2 meanwhile is not overwritten by an older execution)
# and the study results (and runs trained again) recorded at $revision; prints what it copied,
# relative to $2.
copy_recorded() {
  python3 - "$1" "$2" "$revision" <<'PY'
import json, shutil, sys
from pathlib import Path
source, target, revision = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
logs = [folder / "waldorf/recorded/book-runs.jsonl" for folder in (source, target)]
source_lines, target_lines = (log.read_text().splitlines() if log.is_file() else [] for log in logs)
entries = [json.loads(line) for line in source_lines if line not in set(target_lines)]
chapters = {e["chapter"] for e in entries if e["git"] == revision and e["profile"] == "cpu"}
copies = [logs[0]] if chapters else []
copies += [notebook for notebook in (source / "book").glob("*.ipynb") if notebook.stem in chapters]
copies += [result for runs in ("studies", "retrained")  # retrained: runs whose artifact was lost
           for result in (source / "waldorf/recorded" / runs).rglob("*.json")
           if json.loads(result.read_text())["provenance"]["git"] == revision]
for path in copies:
    copy = target / path.relative_to(source)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, copy)
    print(copy.relative_to(target))
PY
}

# Commits only what it copied: page edits made here meanwhile stay uncommitted.
commit_recorded() {
  local copied
  mapfile -t copied < <(copy_recorded "$release" "$main")
  [ ${#copied[@]} -gt 0 ] || return 0
  git -C "$main" add -- "${copied[@]}"
  if ! git -C "$main" diff --cached --quiet -- "${copied[@]}"; then
    git -C "$main" commit -q -m "Release run at $revision: what it recorded so far" \
      -- "${copied[@]}"
    echo "committed the recorded outputs ($(date -u '+%H:%M UTC'))"
  fi
}

run_env() {
  (cd "$release" && WALDORF_ARTIFACTS="$main/../release-artifacts" PYTHONPATH="$release" \
     WALDORF_DATA_DIR="${WALDORF_DATA_DIR:-$main/../shared/data/squad2}" "$@")
}

if $pause; then
  [ -f "$loop_pid" ] && kill "$(cat "$loop_pid")" 2> /dev/null || true
  rm -f "$loop_pid"
  pkill -STOP -f "waldorf study" || true
  run_env waldorf book --record --chapters glance
  commit_recorded
  exit 0
fi

if [ ! -d "$release" ]; then
  git -C "$main" worktree add -q --detach "$release" "$revision"
  # a study result recorded at another revision would be skipped as finished: drop those
  find "$release/waldorf/recorded/studies" -name '*.json' -delete
  copy_recorded "$main" "$release" > /dev/null
else
  commit_recorded  # what ran there after the last copy, if the machine kept it
fi
mkdir -p "$main/../release-artifacts"
if ! pgrep -f scripts/release.sh > /dev/null; then
  # the notebooks may change during the release (prose, provenance lines), the package may not;
  # while the run goes on, copy an edited notebook into ../release by hand before it runs again
  # there. Only notebooks: any other changed file there marks the run's revision "+dirty"
  cp "$main"/book/*.ipynb "$release/book/"
  run_env nohup bash "$main/scripts/release.sh" >> "$main/../release.log" 2>&1 &
  sleep 5
fi
echo $$ > "$loop_pid"
while pgrep -f scripts/release.sh > /dev/null; do
  sleep 300
  commit_recorded
done
commit_recorded
