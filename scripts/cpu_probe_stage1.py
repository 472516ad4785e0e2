"""Short stage-1 (and optional stage-2) probes on the CPU that chose chapter 4's stage-1 recipe
(see scripts/README.md). Not the book's code path: each switch recreates one of the recipes
compared, including the ones the book no longer uses.

JSON options: ``model`` (WaldorfConfig overrides), ``layers`` (teacher layers copied into the
transformer units), ``keep`` (conv units start as identity, down-sampling as a mean; otherwise
those modules are drawn at random as before), ``per_layer`` (per-unit hidden-state targets),
``front`` (teacher layer the conv units' output should match), ``windows`` (stage-1 windows),
``lr``, ``stage2`` (epochs of a stage 2 afterwards; 0 = none). Prints one ``RESULT`` line.
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
from waldorf.distill import losses
from waldorf.distill.from_teacher import FROM_BERT_LAYER, copy_from_teacher
from waldorf.distill.stages import TARGETS, DistillModel, _inputs, prediction_loss
from waldorf.models import build_student
from waldorf.teacher import teacher_features
from waldorf.train import TrainArgs, train

name, opts = sys.argv[1], json.loads(sys.argv[2])
profile = get_profile("cpu")
run = teachers.get_teacher(profile, progress=False)
teacher, tokenizer = run.load()
torch.manual_seed(profile.seed)
student = build_student("waldorf", **opts.get("model", {}))
copy_from_teacher(student, teacher)
model, layers = student.waldorf, opts.get("layers", [1, 3, 5])
with torch.no_grad():
    for unit, t in zip(model.transformer_units, layers, strict=True):
        state = teacher.base_model.encoder.layer[t].state_dict()
        ours = {new + k[len(old):]: v for new, old in FROM_BERT_LAYER.items()
                for k, v in state.items() if k.startswith(old)}
        for end in ("weight", "bias"):
            ours[f"attention.qkv.{end}"] = torch.cat([state[f"attention.self.{n}.{end}"]
                                                      for n in ("query", "key", "value")])
        unit.load_state_dict(ours)
    if not opts.get("keep"):  # the recipe before identity starts: these modules at random
        for unit in [*model.conv_units, *model.post_conv_units, model.downsample]:
            for module in unit.modules() if unit is not None else ():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
                    torch.nn.init.normal_(module.weight, std=student.config.initializer_range)
                    torch.nn.init.zeros_(module.bias)
factor, below = student.config.downsample, student.config.num_conv_layers


def stage1_loss(wrapped, batch):
    inputs, mask = _inputs(wrapped, batch), batch["attention_mask"]
    target = teacher_features(teacher, inputs, tuple(range(-teacher.config.num_hidden_layers, 0)))
    states, maps = target["hidden_states"], target["attentions"]
    out, projected = wrapped(**inputs)
    parts = {"hidden": losses.hidden_mse(projected, states[-1], mask)}
    mapping = layers if opts.get("per_layer") else None
    parts["attention"] = losses.attention_transfer(out.attentions, maps, mask, factor, mapping)
    if opts.get("per_layer"):
        parts["units"] = torch.stack([
            losses.pooled_hidden_mse(out.hidden_states[below + 1 + i], states[t], mask, factor)
            for i, t in enumerate(layers)]).mean()
    if opts.get("front") is not None:
        parts["front"] = losses.hidden_mse(out.hidden_states[below], states[opts["front"]], mask)
    return sum(parts.values()), {k: v.item() for k, v in parts.items()}


def fit(net, loss, columns, epochs, folder):
    windows = transfer_windows(profile, run, None, profile.student.augment_options(), False)
    windows = windows.with_format("torch", columns=[c for c in columns
                                                    if c in windows.column_names])
    shutil.rmtree(folder, ignore_errors=True)
    args = TrainArgs(epochs=epochs if epochs else opts.get("windows", 3000) / len(windows),
                     learning_rate=opts.get("lr", 6e-4), batch_size=32, seed=profile.seed,
                     mixed_precision="bf16", checkpoint_every=10**6)
    return train(net, windows, args, folder, compute_loss=loss, progress=False)


def score() -> str:
    student.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = qa.evaluate_qa(student, tokenizer, data.load_squad("dev", profile), profile)
    student.train()
    return f"best_f1={s['best_f1']:.2f} forced={s['forced_HasAns_f1']:.2f}"


started = time.time()
fit(DistillModel(student, 384), stage1_loss, [*qa.MODEL_INPUTS, "start_positions",
                                              "end_positions"], None, f"/tmp/probe/{name}/s1")
result = f"stage1 {score()} train_min={(time.time() - started) / 60:.1f}"
if opts.get("stage2"):
    fit(student, prediction_loss(2.0, 0.1), [*qa.MODEL_INPUTS, *TARGETS], opts["stage2"],
        f"/tmp/probe/{name}/s2")
    result += f" | stage2 {score()}"
print("RESULT", name, json.dumps(opts), result, flush=True)
