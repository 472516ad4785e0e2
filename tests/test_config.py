"""Profiles: the cpu profile's artifact keys never move; every profile is offered and runs."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import datasets
import pytest
import torch
from transformers import BertConfig

import waldorf_cli
from waldorf import augment, book, config, data, precision
from waldorf import teacher as teachers
from waldorf.artifacts import config_hash
from waldorf.distill import stages
from waldorf.models import build_student
from waldorf.teacher import TeacherRun
from waldorf.train import History

# The cpu profile's artifact keys (config_hash of each key dict) as the release revision computes
# them: the default of three transformer units and the gold-only controls' tuned schedules. The
# recorded run's teacher, cache, transfer set and students are found again only while these
# hold. Keyed by whether the CPU runs bf16 (the resolved precision is part of every key).
CPU_KEYS = {
    True: {
        "teacher": "9c59391ab0ca",
        "teacher-cache": "1072ff7580c7",
        "transfer-set": "c18754a5f95f",
        "waldorf init=True hidden+units+front+attention front": "3e374113df28",
        "waldorf init=True hidden+units+front+attention intermediate": "5d039997cf16",
        "waldorf init=True hidden+units+front+attention prediction": "a2edcad837b9",
        "waldorf init=False hidden+units+front+attention intermediate": "9007a5197626",
        "waldorf init=False hidden+units+front+attention prediction": "255787def416",
        "waldorf init=True hidden+units+front front": "3e374113df28",
        "waldorf init=True hidden+units+front intermediate": "703c68f530d8",
        "waldorf init=True hidden+units+front prediction": "7b32f99934e2",
        "teacher4 init=True hidden+units+front+attention intermediate": "4e9a505eceb6",
        "teacher4 init=True hidden+units+front+attention prediction": "92222b620d98",
        "gold init=True": "b0d66abc8598",
        "gold init=False": "20212a323833",
    },
    False: {
        "teacher": "9c59391ab0ca",
        "teacher-cache": "a382bcbcd329",
        "transfer-set": "d1ee45ba7668",
        "waldorf init=True hidden+units+front+attention front": "088fb70634b9",
        "waldorf init=True hidden+units+front+attention intermediate": "9fc298ff8017",
        "waldorf init=True hidden+units+front+attention prediction": "4dd721c28770",
        "waldorf init=False hidden+units+front+attention intermediate": "20dd44586a6e",
        "waldorf init=False hidden+units+front+attention prediction": "5c1d1b05667c",
        "waldorf init=True hidden+units+front front": "088fb70634b9",
        "waldorf init=True hidden+units+front intermediate": "1b1857f7124d",
        "waldorf init=True hidden+units+front prediction": "ef92e9772d17",
        "teacher4 init=True hidden+units+front+attention intermediate": "95d9bfd64e2e",
        "teacher4 init=True hidden+units+front+attention prediction": "22d5c7c69120",
        "gold init=True": "a7beef87e3bc",
        "gold init=False": "c5657d6f2ffa",
    },
}


class _Found:
    """A finished stage as ``stages._found`` would return it, without weights on disk."""

    def __init__(self, stage: str):
        self.metadata, self.previous = {"complete": True, "hash": f"{stage}-hash"}, None

    def load(self) -> tuple[torch.nn.Module, None]:
        return torch.nn.Identity(), None


def cpu_keys(monkeypatch, folder: Path, bf16: bool) -> dict[str, str]:
    """Every artifact key the cpu profile's chapters compute, as 12-digit hashes."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: bf16)
    profile = config.get_profile("cpu")
    # the offline teacher's shape: stage 0's decision reads the teacher's config.json
    BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
               intermediate_size=1536).save_pretrained(folder)
    examples = datasets.Dataset.from_dict({"id": ["q1", "q2", "q3"]})
    teacher_key = teachers.teacher_key(profile, examples)
    run = TeacherRun(folder, {"hash": "teacher-hash", "key": {"data": teacher_key["data"]}},
                     History())
    keys = {"teacher": config_hash(teacher_key),
            "teacher-cache": config_hash(teachers.cache_key(profile, run)),
            "transfer-set": config_hash(augment.transfer_key(
                profile, run, profile.student.augment_options()))}
    seen: dict[str, str] = {}

    def found(stage: str, _profile, key: dict) -> _Found:
        seen[stage] = config_hash(key)
        return _Found(stage)

    monkeypatch.setattr(stages, "_found", found)
    for student, init, terms in (("waldorf", True, stages.STAGE1_TERMS),
                                 ("waldorf", False, stages.STAGE1_TERMS),
                                 ("waldorf", True, ("hidden", "units", "front")),
                                 ("teacher4", True, stages.STAGE1_TERMS)):
        stages.distill(student, profile, init_from_teacher=init, teacher=run,
                       stage1_terms=terms, reuse_only=True)
        keys |= {f"{student} init={init} {'+'.join(terms)} {k}": v for k, v in seen.items()}
        seen.clear()
    for init in (True, False):
        stages.train_without_teacher("waldorf", profile, init_from_teacher=init, teacher=run)
        keys[f"gold init={init}"] = seen.pop("gold")
    return keys


@pytest.mark.parametrize("bf16", [True, False])
def test_the_cpu_profile_keeps_its_artifact_keys(monkeypatch, tmp_path, bf16):
    keys = cpu_keys(monkeypatch, tmp_path, bf16)
    assert keys == CPU_KEYS[bf16]


def test_funnel_switches_change_a_student_key_only_when_on():
    """The recorded students, built before the switches existed, keep their keys."""
    with torch.device("meta"):  # no weights: a student's key reads its config only
        default, off, on = (build_student("waldorf", **switches) for switches in (
            {}, dict(pool_query_only=False, separate_cls=False), dict(separate_cls=True)))

    def key(model: torch.nn.Module) -> str:
        return config_hash(stages._student_key(model, "waldorf", 42))

    assert key(default) == key(off) != key(on)


def test_every_profile_is_offered_by_the_book_and_the_command_line(tmp_path):
    assert set(config.PROFILES) == {"smoke", "cpu", "colab", "gpu"}
    subcommands = next(a for a in waldorf_cli.build_parser()._actions if a.dest == "command")
    profile_help = next(a.help for a in subcommands.choices["book"]._actions
                        if a.dest == "profile")
    for name in config.PROFILES:
        assert config.get_profile(name).name == name and name in profile_help
        args = argparse.Namespace(profile=name, path_output=tmp_path, record=False,
                                  no_execute=True)
        assert book.plan(args, tmp_path) == (tmp_path, tmp_path)
    assert book.data_note("colab") is None  # it reads the hub, not WALDORF_DATA_DIR


def test_colab_and_gpu_ask_for_the_official_data_and_mixed_precision():
    colab, gpu = config.get_profile("colab"), config.get_profile("gpu")
    for profile in (colab, gpu):
        assert profile.data.source == "hub" and profile.data.hub_dataset == config.HUB_SQUAD
        assert profile.data.dev_file == "validation" and profile.mixed_precision == "bf16"
    assert colab.teacher.checkpoint == config.BUNDLED_MINILM  # the student's width: no source
    assert colab.student.init_checkpoint is None and colab.data.max_train_examples == 40_000
    assert gpu.student.init_checkpoint == config.BUNDLED_MINILM  # BERT-Large is wider


def test_colab_at_smoke_size_loads_the_hub_format_and_trains_its_teacher_a_step(
        tmp_path, monkeypatch):
    """The colab profile's path on the CPU in fp32: data in the hub's format (built from the
    packaged sample), its teacher backbone, one optimizer step, a dev evaluation."""
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path / "artifacts"))
    sample = data.read_squad_json(data.SAMPLE_PATH)
    first = sample["title"][0]
    train = sample.filter(lambda t: t != first, input_columns="title")  # 46 questions
    datasets.DatasetDict({
        "train": train, "validation": sample.filter(lambda t: t == first, input_columns="title"),
    }).save_to_disk(str(tmp_path / "hub"))
    colab, smoke = config.get_profile("colab"), config.get_profile("smoke")
    sizes = {k: getattr(smoke.data, k) for k in ("max_train_examples", "max_dev_examples",
                                                 "max_seq_length", "doc_stride")}
    profile = dataclasses.replace(
        colab, data=dataclasses.replace(colab.data, hub_dataset=str(tmp_path / "hub"), **sizes),
        teacher=dataclasses.replace(colab.teacher, batch_size=smoke.teacher.batch_size,
                                    epochs=0.1),  # a tenth of an epoch: one step
        mixed_precision="no", eval_batch_size=smoke.eval_batch_size)
    run = teachers.get_teacher(profile, progress=False)
    meta = run.metadata
    assert meta["complete"] and meta["optimizer_steps"] == 1 and meta["mixed_precision"] == "no"
    assert meta["key"]["data"]["source"] == "hub" and meta["train_questions"] == len(train)
    assert "best_f1" in meta["dev_scores"] and meta["dev_questions"] > 0
