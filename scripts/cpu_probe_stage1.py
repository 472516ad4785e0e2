"""Short stage-1 (and optional stage-2) probes on the CPU that chose chapter 4's stage-1 recipe
(see scripts/README.md). Each switch recreates one of the recipes compared, including the ones
the book no longer uses, through the book's own stage-1 loss and initialisation.

JSON options: ``model`` (WaldorfConfig overrides), ``mapping`` ("uniform" or "top": which
teacher layers the transformer units copy and learn from), ``keep`` (conv units start as
identity and down-sampling as a mean, as ``copy_from_teacher`` does; otherwise those modules
are drawn at random as before), ``terms`` (stage-1 loss terms, default all), ``windows``
(stage-1 windows), ``lr``, ``stage2`` (epochs of a stage 2 afterwards; 0 = none).
Prints one ``RESULT`` line.
"""

import json
import shutil
import sys
import time

import torch

from waldorf import data, qa
from waldorf import teacher as teachers
from waldorf.augment import transfer_windows
from waldorf.config import get_profile
from waldorf.distill.from_teacher import copy_from_teacher
from waldorf.distill.stages import (
    STAGE1_TERMS,
    TARGETS,
    DistillModel,
    intermediate_loss,
    prediction_loss,
)
from waldorf.models import build_student
from waldorf.train import TrainArgs, train

name, opts = sys.argv[1], json.loads(sys.argv[2])
profile = get_profile("cpu")
s = profile.student
run = teachers.get_teacher(profile, progress=False)
teacher, tokenizer = run.load()
torch.manual_seed(profile.seed)
student = build_student("waldorf", **opts.get("model", {}))
mapping = opts.get("mapping", "uniform")
copy_from_teacher(student, teacher, mapping)
if not opts.get("keep"):  # the recipe before identity starts: these modules at random
    model = student.waldorf
    with torch.no_grad():
        for unit in [*model.conv_units, *model.post_conv_units, model.downsample]:
            for module in unit.modules() if unit is not None else ():
                student._init_weights(module)  # the model's own scheme, in the same order
windows = transfer_windows(profile, run, None, s.augment_options(), False)


def fit(net, loss, columns, epochs, folder):
    shutil.rmtree(folder, ignore_errors=True)
    args = TrainArgs(epochs=epochs, learning_rate=opts.get("lr", s.learning_rate),
                     batch_size=s.batch_size, seed=profile.seed, mixed_precision="bf16",
                     checkpoint_every=10**6)
    chosen = windows.with_format("torch", columns=[c for c in columns
                                                   if c in windows.column_names])
    return train(net, chosen, args, folder, compute_loss=loss, progress=False)


def score() -> str:
    student.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = qa.evaluate_qa(student, tokenizer, data.load_squad("dev", profile), profile)
    student.train()
    return f"best_f1={r['best_f1']:.2f} forced={r['forced_HasAns_f1']:.2f}"


started = time.time()
stage1 = intermediate_loss(teacher, student.config.downsample, mapping,
                           opts.get("terms", STAGE1_TERMS))
fit(DistillModel(student, teacher.config.hidden_size), stage1,
    [*qa.MODEL_INPUTS, "start_positions", "end_positions"],
    opts.get("windows", 3000) / len(windows), f"/tmp/probe/{name}/s1")
result = f"stage1 {score()} train_min={(time.time() - started) / 60:.1f}"
if opts.get("stage2"):
    fit(student, prediction_loss(s.temperature, s.hard_label_weight),
        [*qa.MODEL_INPUTS, *TARGETS], opts["stage2"], f"/tmp/probe/{name}/s2")
    result += f" | stage2 {score()}"
print("RESULT", name, json.dumps(opts), result, flush=True)
