"""Several processes for real: the smoke profile's teacher, teacher cache and a distilled student
trained by two data-parallel processes under ``accelerate launch`` (the multi-GPU launcher, here
two CPU processes over gloo), against the same job in one process.

The recipe's batch size is the global batch (``TrainArgs.batch_size``): with two processes each
takes half of every batch, so both runs take the same optimizer steps on the same windows.
Dropout is off in teacher and student, so the runs differ only where the arithmetic does:

- the teacher (span cross-entropy, a mean over windows): the same logged loss to 1e-5 and the
  same weights to 1e-4 (two of its Adam steps: a parameter whose gradient is near zero can
  take a step one way or the other on rounding alone);
- the student: stage 1's losses are means over a slice's real tokens, so two slices of
  unequal length weigh their tokens a little differently than one batch does. Every logged
  loss within 1% and the final weights within 10% of the distance they travelled from their
  initialisation (measured: 0.1% and 4.4%).

A run interrupted in stage 1 resumes from its checkpoint to the very weights of the
uninterrupted two-process run. The whole module takes about 80 s on two busy cores.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from waldorf.artifacts import verify_artifact
from waldorf.config import BUNDLED_MINILM, get_profile, resolve_checkpoint
from waldorf.models import build_student

QUIET = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # no random masks

JOB = f'''
import dataclasses, json, os, sys
from pathlib import Path

from accelerate import PartialState

state = PartialState(cpu=True)  # processes on the CPU talk over gloo; on GPUs (nccl) omit this

from waldorf import artifacts, checkpoint, config, teacher, train  # noqa: E402
from waldorf.distill import stages  # noqa: E402

out, backbone = Path(sys.argv[1]), sys.argv[2]
out.mkdir(parents=True, exist_ok=True)


def logged(write):  # which process writes which artifact file, through the package's writers
    def wrapper(path, *args, **kwargs):
        with open(out / f"writes-{{state.process_index}}.txt", "a") as log:
            log.write(f"{{path}}\\n")
        return write(path, *args, **kwargs)
    return wrapper


for module in (artifacts, checkpoint, teacher, train):
    for name in ("write_atomic", "staged_folder"):
        if hasattr(module, name):
            setattr(module, name, logged(getattr(module, name)))
calls, stop_at, real_train = {{}}, int(os.environ.get("STOP_AT", "0")), stages.train


def counted(model, windows, args, folder, compute_loss=None, **kwargs):
    role = Path(folder).parent.name  # micro-batches run per stage; KeyboardInterrupt at stop_at

    def loss(m, batch):
        calls[role] = calls.get(role, 0) + 1
        if calls[role] == stop_at:
            raise KeyboardInterrupt
        return compute_loss(m, batch)
    return real_train(model, windows, args, folder, compute_loss=loss, **kwargs)


stages.train = counted
smoke = config.get_profile("smoke")
profile = dataclasses.replace(
    smoke, data=dataclasses.replace(smoke.data, max_train_examples=32, max_dev_examples=16),
    teacher=dataclasses.replace(smoke.teacher, checkpoint=backbone),
    student=dataclasses.replace(smoke.student,
                                model_overrides=smoke.student.model_overrides | {QUIET!r}))
run = teacher.get_teacher(profile, progress=False)
cache = teacher.teacher_cache(profile, run=run, progress=False)
student = stages.distill("waldorf", profile, "both", teacher=run, cache=cache, augment=False,
                         train_args={{"checkpoint_every": 2, "log_every": 1}}, progress=False)
if state.is_main_process:
    runs = {{"teacher": run, "intermediate": student.previous, "prediction": student}}
    (out / "result.json").write_text(json.dumps({{
        "processes": state.num_processes, "calls": calls,
        **{{name: dict(model_dir=str(r.model_dir), hash=r.metadata["hash"],
                       steps=r.metadata["optimizer_steps"],
                       losses=[row["loss"] for row in r.history.rows])
            for name, r in runs.items()}}}}))
state.wait_for_everyone()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(folder: Path, name: str, processes: int, store: Path,
           stop_at: int = 0) -> subprocess.CompletedProcess:
    """Run the job with its own artifact store; ``processes`` > 1 through accelerate launch."""
    env = {k: v for k, v in os.environ.items() if k != "WALDORF_DATA_DIR"}  # the sample
    env.update(WALDORF_ARTIFACTS=str(store), WALDORF_PROFILE="smoke", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", STOP_AT=str(stop_at))
    job = [str(folder / "job.py"), str(folder / name), str(folder / "backbone")]
    if processes > 1:
        job = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(free_port()), *job]
    return subprocess.run([sys.executable, *job], env=env, capture_output=True, text=True,
                          timeout=600)


def finished(done: subprocess.CompletedProcess, folder: Path, name: str) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / name / "result.json").read_text())


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> tuple[Path, dict, dict]:
    """(folder, one-process result, two-process result)."""
    folder = tmp_path_factory.mktemp("multiprocess")
    (folder / "job.py").write_text(JOB)
    backbone = shutil.copytree(resolve_checkpoint(BUNDLED_MINILM), folder / "backbone")
    config = json.loads((backbone / "config.json").read_text())
    (backbone / "config.json").write_text(json.dumps(config | QUIET))
    one = finished(launch(folder, "one", 1, folder / "store-one"), folder, "one")
    two = finished(launch(folder, "two", 2, folder / "store-two"), folder, "two")
    return folder, one, two


def weights(result: dict, stage: str) -> dict[str, torch.Tensor]:
    return load_file(Path(result[stage]["model_dir"]) / "model.safetensors")


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([state[name].flatten().float() for name in sorted(state)])


def test_two_processes_train_what_one_process_does(jobs):
    _, one, two = jobs
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["calls"] == one["calls"]  # each process runs every (global) batch, sliced
    for stage in ("teacher", "intermediate", "prediction"):
        assert two[stage]["hash"] == one[stage]["hash"]  # one recipe on any number of processes
        assert two[stage]["steps"] == one[stage]["steps"]
    assert two["teacher"]["losses"] == pytest.approx(one["teacher"]["losses"], rel=1e-5)
    teachers = weights(two, "teacher")
    for name, value in weights(one, "teacher").items():
        assert (value - teachers[name]).abs().max() < 1e-4, name
    smoke = get_profile("smoke")
    torch.manual_seed(smoke.seed)  # the student's initialisation, as distill builds it
    start = build_student("waldorf", **smoke.student.model_overrides | QUIET).state_dict()
    for stage in ("intermediate", "prediction"):
        assert two[stage]["losses"] == pytest.approx(one[stage]["losses"], rel=1e-2)
        ours, theirs = flat(weights(two, stage)), flat(weights(one, stage))
        travelled = theirs - flat({name: start[name] for name in weights(one, stage)})
        assert (ours - theirs).norm() < 0.1 * travelled.norm(), stage


def test_only_the_main_process_writes_artifacts(jobs):
    folder, _, two = jobs
    assert not (folder / "two" / "writes-1.txt").exists()
    written = (folder / "two" / "writes-0.txt").read_text().splitlines()
    for role, part in (("teacher", "model"), ("teacher-cache", "windows"),
                       ("student-intermediate", "model"), ("student-prediction", "model")):
        assert sum(Path(p).parent.parent.name == role and Path(p).name == part
                   for p in written) == 1, role
    store = folder / "store-two"
    for artifact in store.glob("*/smoke-*"):
        if artifact.is_dir():
            assert verify_artifact(artifact) == [], artifact
            assert not list(artifact.glob("checkpoint*")), artifact  # scratch removed
    assert Path(two["prediction"]["model_dir"]).is_relative_to(store)


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(jobs):
    folder, _, two = jobs
    store = folder / "store-resumed"
    for role in ("teacher", "teacher-cache"):  # the same teacher: only the student is trained
        shutil.copytree(folder / "store-two" / role, store / role)
    stopped = launch(folder, "stopped", 2, store, stop_at=3)  # stage 1, after step 2's checkpoint
    assert stopped.returncode != 0 and "KeyboardInterrupt" in stopped.stderr
    assert len(list(store.glob("student-intermediate/*/checkpoint"))) == 1
    resumed = finished(launch(folder, "resumed", 2, store), folder, "resumed")
    # stage 1 ran only its batches 3 and 4 (from step 2's checkpoint), stage 2 all of its 4
    assert resumed["calls"] == {"student-intermediate": 2, "student-prediction": 4}
    for stage in ("intermediate", "prediction"):
        assert resumed[stage]["losses"] == two[stage]["losses"]
        ours = weights(resumed, stage)
        for name, value in weights(two, stage).items():
            assert torch.equal(ours[name], value), name
