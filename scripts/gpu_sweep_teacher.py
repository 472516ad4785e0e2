"""One teacher run of the development sweep (see scripts/README.md): cpu-profile recipe plus
JSON overrides of ``TeacherConfig`` (and ``train_files``/``max_seq_length``/``doc_stride``,
``seed``, ``no_answer_weight``). Prints one ``RESULT`` line."""

import json
import sys
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

import waldorf.train
from waldorf.config import get_profile
from waldorf.teacher import get_teacher

DATA_FIELDS = ("train_files", "max_seq_length", "doc_stride")
SHOWN = ("epoch", "best_f1", "exact", "f1", "HasAns_f1", "NoAns_f1", "forced_HasAns_f1")

name, spec = sys.argv[1], json.loads(sys.argv[2])
no_answer_weight, seed = spec.pop("no_answer_weight", 1.0), spec.pop("seed", 42)
data_overrides = {k: spec.pop(k) for k in list(spec) if k in DATA_FIELDS}
if "train_files" in data_overrides:
    data_overrides["train_files"] = tuple(data_overrides["train_files"])


def weighted_loss(model, batch):
    """Span cross-entropy with windows labelled "no answer" weighted ``no_answer_weight``."""
    inputs = {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}
    out = model(**inputs)
    start, end = batch["start_positions"], batch["end_positions"]
    ce = (F.cross_entropy(out.start_logits.float(), start, reduction="none")
          + F.cross_entropy(out.end_logits.float(), end, reduction="none"))  # (batch,)
    weight = torch.where(start == 0, torch.full_like(ce, no_answer_weight), torch.ones_like(ce))
    return (weight * ce).sum() / (2 * weight.sum()), {}


if no_answer_weight != 1.0:
    waldorf.train.default_loss = weighted_loss
profile = get_profile("cpu")
profile = replace(profile, seed=seed,
                  teacher=replace(profile.teacher, checkpoint="/tmp/minilm", **spec),
                  data=replace(profile.data, **data_overrides))
started = time.time()
run = get_teacher(profile, progress=False)
evals = [{k: round(v, 2) for k, v in e.items() if k in SHOWN} for e in run.history.evals]
print("RESULT", json.dumps(dict(name=name, spec=sys.argv[2], windows=run.metadata["train_windows"],
                                steps=run.metadata["optimizer_steps"],
                                wall=time.time() - started, evals=evals)), flush=True)
