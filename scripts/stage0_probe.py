"""A "stage 0" before chapter 4's recipe (see scripts/README.md): only the student's embeddings
and conv units train, against stage 1's ``front`` target (for the default student the
teacher's second-layer output), from a pass through the teacher's layers below it; then
``distill`` runs stage 1 and stage 2 as usual from that student. JSON options: ``seed`` (the
student's: initialisation, augmentation, data order; not the teacher's), ``epochs0`` (stage-0
epochs over the transfer set; 0 = none, the control), ``lr0``. ``STAGE0_PROFILE`` names the
profile (default cpu). Prints one ``RESULT`` line."""
import json
import os
import sys
import time
from dataclasses import replace

import torch
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from waldorf import teacher
from waldorf.augment import transfer_windows
from waldorf.config import get_profile
from waldorf.distill import copy_from_teacher, distill
from waldorf.distill.losses import hidden_mse, layer_map
from waldorf.models import build_student

name, spec = sys.argv[1], json.loads(sys.argv[2])
profile = get_profile(os.environ.get("STAGE0_PROFILE", "cpu"))
started = time.time()
run = teacher.get_teacher(profile, progress=False)  # the profile's teacher, whatever the seed
cache = teacher.teacher_cache(profile, run=run, progress=False)
profile = replace(profile, seed=spec.get("seed", profile.seed))  # the student's seed only
windows = transfer_windows(profile, run, cache, profile.student.augment_options(), progress=False)
torch.manual_seed(profile.seed)
student = build_student("waldorf")
t_model = run.load()[0]
copy_from_teacher(student, t_model, profile.student.layer_mapping)
dev = "cuda" if torch.cuda.is_available() else "cpu"
student.to(dev).train()
t_model.to(dev).eval()
# stage 1's front target: the output of the teacher layer below the first one the units copy
front = layer_map(student.config.num_transformer_layers, t_model.config.num_hidden_layers,
                  profile.student.layer_mapping)[0]
t_model.bert.encoder.layer = t_model.bert.encoder.layer[:front]  # only the layers below it
base = student.waldorf
params = list(base.embeddings.parameters()) + list(base.conv_units.parameters())
epochs0 = spec.get("epochs0", 1.0)
steps = int(epochs0 * len(windows) / profile.student.batch_size) if epochs0 > 0 else 0
if steps:
    opt = torch.optim.AdamW(params, lr=spec.get("lr0", 6e-4), weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    cols = ["input_ids", "attention_mask", "token_type_ids"]
    loader = DataLoader(windows.with_format("torch", columns=cols), shuffle=True,
                        batch_size=profile.student.batch_size,
                        generator=torch.Generator().manual_seed(profile.seed))
    done, losses = 0, []
    while done < steps:
        for batch in loader:
            batch = {k: v.to(dev) for k, v in batch.items()}
            with torch.autocast(dev, dtype=torch.bfloat16):
                with torch.no_grad():
                    target = t_model.bert(**batch, output_hidden_states=True).hidden_states[front]
                mask = batch["attention_mask"][..., None].to(torch.float32)
                x = base.embeddings(batch["input_ids"], batch["token_type_ids"])
                for unit in base.conv_units:
                    x = unit(x, mask)
            loss = hidden_mse(x, target, batch["attention_mask"])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
            done += 1
            if done >= steps:
                break
    print("stage0", steps, "steps; mean loss of the first and last five:",
          sum(losses[:5]) / 5, sum(losses[-5:]) / 5, flush=True)
student.cpu()
result = distill(student, profile, teacher=run, cache=cache, init_from_teacher=False,
                 progress=False)
out = []
while result is not None:
    e = result.history.evals[-1]
    out.append({k: round(e[k], 2) for k in ("best_f1", "forced_HasAns_f1")}
               | dict(role=result.metadata["role"], steps=result.metadata["optimizer_steps"]))
    result = result.previous
print("RESULT", json.dumps(dict(name=name, spec=spec, stage0_steps=steps,
                                wall=round(time.time() - started), stages=out[::-1])), flush=True)
