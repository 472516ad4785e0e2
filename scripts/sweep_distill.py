"""One distillation run of the development sweep (see scripts/README.md): cpu-profile recipe
plus JSON overrides: ``student`` (``StudentConfig`` fields), ``kind`` ("distill" or "gold"),
``model`` (a ``build_student`` name, default "waldorf") and keyword arguments of
``distill``/``train_without_teacher``; ``seed`` changes the student's seed (initialisation,
augmentation, data order), not the teacher's. The name "prep" builds the teacher, its cache and
the transfer set once. The environment variable ``SWEEP_CHECKPOINT`` names another teacher
backbone (the GPU sweeps used ``/tmp/minilm``); without it the run reuses the book's own cpu
teacher. Prints one ``RESULT`` line."""

import json
import os
import sys
import time
from dataclasses import replace

from waldorf import teacher
from waldorf.augment import transfer_windows
from waldorf.config import get_profile
from waldorf.distill import distill, train_without_teacher

SHOWN = ("epoch", "best_f1", "f1", "HasAns_f1", "forced_HasAns_f1")

name = sys.argv[1]
spec = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
profile = get_profile("cpu")
profile = replace(profile, student=replace(profile.student, **spec.pop("student", {})))
if "SWEEP_CHECKPOINT" in os.environ:
    checkpoint = os.environ["SWEEP_CHECKPOINT"]
    profile = replace(profile, teacher=replace(profile.teacher, checkpoint=checkpoint))
started = time.time()
run = teacher.get_teacher(profile, progress=False)
if "seed" in spec:
    profile = replace(profile, seed=spec.pop("seed"))
if name == "prep":
    cache = teacher.teacher_cache(profile, run=run, progress=False)
    windows = transfer_windows(profile, run, cache, profile.student.augment_options(),
                               progress=False)
    print("RESULT", json.dumps(dict(name=name, teacher=run.metadata["dev_scores"],
                                    cache_windows=len(cache), transfer_windows=len(windows))))
    sys.exit()
train = train_without_teacher if spec.pop("kind", "distill") == "gold" else distill
student = spec.pop("model", "waldorf")
result, stages = train(student, profile, teacher=run, progress=False, **spec), []
while result is not None:
    meta = result.metadata
    stages.append(dict(role=meta["role"], windows=meta.get("train_windows"),
                       steps=meta.get("optimizer_steps"),
                       evals=[{k: round(v, 2) for k, v in e.items() if k in SHOWN}
                              for e in result.history.evals]))
    result = result.previous
print("RESULT", json.dumps(dict(name=name, wall=round(time.time() - started),
                                stages=stages[::-1])), flush=True)
