#!/bin/bash
# The development sweep of issue 19 (dev.json only): WaLDORf shapes at TinyBERT-4's speed, the
# transformer-only cuts with either layer map, and the gold-only controls' learning rate. The
# rows ran at revisions before the three-unit default, so every WaLDORf row names its units.
# One scripts/sweep_distill.py run per line, skipped where its log already holds a RESULT, so the
# sweep resumes after an interruption (each stage also resumes from its checkpoint).
#   usage: scripts/sweep_front.sh LOG_FOLDER   (from the repository root; WALDORF_DATA_DIR set)
# Run it from a checkout that nobody edits meanwhile (e.g. `git worktree add`), with
# PYTHONPATH pointing at that checkout, so every run imports the same code.
set -u
logs=${1:?usage: scripts/sweep_front.sh LOG_FOLDER}
mkdir -p "$logs"
run() {
  if grep -q RESULT "$logs/$1.log" 2>/dev/null; then echo "=== $1 done before"; return; fi
  echo "=== $1 $(date -u)"
  python scripts/sweep_distill.py "$1" "$2" > "$logs/$1.log" 2>&1
  grep RESULT "$logs/$1.log"
}
run t2 '{"model": "teacher2", "init_from_teacher": true}'
run c1ds1tl2p0 '{"init_from_teacher": true, "student": {"model_overrides": {"num_conv_layers": 1, "downsample": 1, "num_transformer_layers": 2, "num_post_conv_layers": 0}}}'
run t2u '{"model": "teacher2", "init_from_teacher": true, "student": {"layer_mapping": "uniform"}}'
run tl3 '{"init_from_teacher": true, "student": {"model_overrides": {"num_transformer_layers": 3}}}'
run tl3pqcls '{"init_from_teacher": true, "student": {"model_overrides": {"num_transformer_layers": 3, "pool_query_only": true, "separate_cls": true}}}'
run t3 '{"model": "teacher3", "init_from_teacher": true}'
run t3u '{"model": "teacher3", "init_from_teacher": true, "student": {"layer_mapping": "uniform"}}'
# the gold-only controls' schedule (the three-unit WaLDORf and cut4); 6e-4 is the distillation's
for lr in 2e-4 1e-4; do
  run "gold_tl3_$lr" "{\"kind\": \"gold\", \"init_from_teacher\": true, \"student\": {\"model_overrides\": {\"num_transformer_layers\": 3}}, \"train_args\": {\"learning_rate\": $lr}}"
  run "gold_cut4_$lr" "{\"kind\": \"gold\", \"model\": \"teacher4\", \"init_from_teacher\": true, \"train_args\": {\"learning_rate\": $lr}}"
done
run gold_tl3_2e-4_3ep '{"kind": "gold", "init_from_teacher": true, "epochs": 3.0, "student": {"model_overrides": {"num_transformer_layers": 3}}, "train_args": {"learning_rate": 2e-4}}'
echo "=== done $(date -u)"
