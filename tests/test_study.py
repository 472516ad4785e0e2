"""Recorded studies: resumable runners, atomic result files, seed tables."""

from __future__ import annotations

import json
import math

import pytest
from transformers import BertConfig

import waldorf_cli
from waldorf import study
from waldorf.config import get_profile
from waldorf.errors import CorruptArtifactError, UserError
from waldorf.study import Run, load_study, read_result, record_study, seed_table

TINY = (Run("teacher", 42), Run("teacher", 1), Run("waldorf", 42))


@pytest.fixture
def tiny_study(monkeypatch):
    monkeypatch.setitem(study.STUDIES, "tiny", TINY)
    return "tiny"


def fake_result(name: str, run: Run, profile) -> dict:
    return {"study": name, "run": run.name, "model": run.model, "seed": run.seed,
            "test": {"f1": float(run.seed)}}


class SessionEnded(Exception):
    """Stands for whatever stops a run half-way (a kill, the end of a session)."""


def test_an_interrupted_study_resumes_without_redoing_finished_runs(tiny_study, tmp_path):
    calls, stop_at = [], ["teacher-seed1"]

    def interrupted(name, run, profile):
        calls.append(run.name)
        if run.name in stop_at:
            stop_at.clear()
            raise SessionEnded  # the session ends in the middle of the second run
        return fake_result(name, run, profile)

    profile = get_profile("smoke")
    with pytest.raises(SessionEnded):
        record_study(tiny_study, profile, tmp_path, score=interrupted)
    folder = tmp_path / tiny_study / "smoke"
    assert sorted(p.name for p in folder.iterdir()) == ["teacher-seed42.json"]  # no half file
    first = (folder / "teacher-seed42.json").read_text()
    calls.clear()
    paths = record_study(tiny_study, profile, tmp_path, score=interrupted)
    assert calls == ["teacher-seed1", "waldorf-seed42"]  # the finished run is not redone
    assert (folder / "teacher-seed42.json").read_text() == first
    assert [p.name for p in paths] == [f"{run.name}.json" for run in TINY]
    assert [d["run"] for d in load_study(tiny_study, "smoke", tmp_path)] == [r.name for r in TINY]


def test_seed_table_mean_std_and_values():
    docs = [{"model": "teacher", "seed": s, "test": {"f1": v}}
            for s, v in ((42, 60.0), (1, 62.0), (2, 64.0))]
    docs.append({"model": "waldorf", "seed": 42, "test": {"f1": 55.0}})
    table = seed_table(docs)
    assert table.loc["teacher", "f1 mean"] == pytest.approx(62.0)
    assert table.loc["teacher", "f1 std"] == pytest.approx(2.0)  # sample std of 60, 62, 64
    assert table.loc["teacher", "per seed"] == "42: 60.00, 1: 62.00, 2: 64.00"
    assert math.isnan(table.loc["waldorf", "f1 std"])  # one seed has no spread


def test_unknown_studies_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="headline"):
        record_study("nope", get_profile("smoke"), tmp_path, score=fake_result)
    with pytest.raises(UserError, match="unknown study"):
        load_study("nope")


def test_the_headline_study_has_three_seeds_per_row():
    runs = study.STUDIES["headline"]
    for model in ("teacher", "waldorf", "cut4"):
        assert len({r.seed for r in runs if r.model == model}) >= 3
    assert len({r.name for r in runs}) == len(runs)


def test_a_real_smoke_run_reports_test_scores(squad_dir, tmp_path, monkeypatch):
    """The teacher on the smoke profile, end to end: dev threshold, test report, provenance."""
    monkeypatch.setenv("WALDORF_DATA_DIR", str(squad_dir))
    monkeypatch.setitem(study.STUDIES, "one", (Run("teacher", 42),))
    [path] = record_study("one", get_profile("smoke"), tmp_path)
    doc = json.loads(path.read_text())
    assert doc["test"]["n"] > 0 and 0 <= doc["test"]["f1"] <= 100
    low, high = doc["test"]["f1_ci"]
    assert low <= doc["test"]["f1"] <= high
    assert doc["test"]["threshold"] == doc["dev"]["threshold"]  # chosen on dev, applied to test
    assert doc["provenance"]["profile"] == "smoke" and doc["provenance"]["git"]
    assert len(doc["questions"]["ids"]) == doc["test"]["n"]


def test_a_damaged_result_is_refused_by_path_and_run_again(tiny_study, tmp_path):
    profile = get_profile("smoke")
    record_study(tiny_study, profile, tmp_path, score=fake_result)
    path = tmp_path / tiny_study / "smoke" / "teacher-seed1.json"
    path.write_text(path.read_text().replace('"f1": 1.0', '"f1": 99.0'))  # edited by hand
    with pytest.raises(CorruptArtifactError, match="teacher-seed1.json: content does not match"):
        load_study(tiny_study, "smoke", tmp_path)
    calls = []
    record_study(tiny_study, profile, tmp_path,
                 score=lambda *a: calls.append(a[1].name) or fake_result(*a))
    assert calls == ["teacher-seed1"]  # only the damaged run is redone
    assert read_result(path)["test"]["f1"] == 1.0


def test_the_front_study_names_known_models_with_three_seeds_each():
    runs = study.STUDIES["front"]
    models = {r.model for r in runs}
    assert models <= set(study.MODELS)
    assert {"cut1", "cut2", "cut3", "cut4", "tinybert4", "waldorf", "waldorf-4units",
            "waldorf-nomerge"} <= models
    for model in models:
        assert len({r.seed for r in runs if r.model == model}) >= 3
    front = {m for m in models if study.MODELS[m].transformer_only}
    assert "waldorf" not in front and "gold-cut4" not in front and "cut2" in front


def test_study_models_are_built_at_the_right_shape():
    teacher = BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                         num_hidden_layers=6)
    profile = get_profile("cpu")
    assert study.build_study_model("cut2", teacher, profile).config.num_hidden_layers == 2
    assert study.build_study_model("cut4", teacher, profile).config.num_hidden_layers == 4
    assert study.build_study_model("tinybert4", teacher, profile).config.hidden_size == 312
    assert study.build_study_model("gold-waldorf", teacher, profile).config.model_type == "waldorf"
    four = study.build_study_model("waldorf-4units", teacher, profile).config
    default = study.build_study_model("waldorf", teacher, profile).config
    assert (four.num_transformer_layers, default.num_transformer_layers) == (4, 3)
    assert study.build_study_model("waldorf-nomerge", teacher, profile).config.downsample == 1
    with pytest.raises(UserError, match="unknown study model"):
        study.build_study_model("cut9", teacher, profile)


def test_runs_route_to_distillation_or_the_gold_control(monkeypatch, tmp_path):
    calls = []

    class Found:
        model_dir, metadata, previous = "dir", {"duration_s": 60}, None

    class BookTeacher:
        model_dir = tmp_path / "teacher"

    BertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
               num_hidden_layers=2).save_pretrained(BookTeacher.model_dir)

    def fake(kind):
        def train(name, profile, **kwargs):
            calls.append((kind, name, profile.seed, dict(profile.student.model_overrides),
                          profile.student.layer_mapping))
            return Found()
        return train

    from waldorf import distill, teacher
    monkeypatch.setattr(teacher, "get_teacher", lambda profile: BookTeacher())
    monkeypatch.setattr(distill, "distill", fake("distill"))
    monkeypatch.setattr(distill, "train_without_teacher", fake("gold"))
    monkeypatch.setitem(study.MODELS, "waldorf-nods", study.Recipe("waldorf", (("downsample", 1),)))
    monkeypatch.setitem(study.MODELS, "cut2-uniform",
                        study.Recipe("teacher2", layer_mapping="uniform"))
    profile = get_profile("smoke")
    for model in ("cut2", "gold-waldorf", "waldorf-nods", "cut2-uniform"):
        assert study.trained_model_dir(Run(model, 7), profile) == ("dir", 1.0)
    assert [c[:3] for c in calls] == [("distill", "teacher2", 7), ("gold", "waldorf", 7),
                                      ("distill", "waldorf", 7), ("distill", "teacher2", 7)]
    assert calls[2][3]["downsample"] == 1 and calls[2][3]["hidden_size"] == 64  # profile's kept
    assert [c[4] for c in calls] == ["uniform", "top", "top", "uniform"]  # cuts: every other layer


def test_a_recipe_profile_carries_the_models_shape_and_layer_map():
    profile = get_profile("cpu")
    cut = study.recipe_profile("cut4", profile)
    assert cut.student.layer_mapping == "uniform" and profile.student.layer_mapping == "top"
    four = study.recipe_profile("waldorf-4units", profile).student
    assert four.model_overrides["num_transformer_layers"] == 4 and four.layer_mapping == "top"
    assert study.recipe_profile("waldorf", profile) == profile


def test_a_study_can_run_only_some_seeds_and_models(tiny_study, tmp_path):
    calls = []

    def score(name, run, profile):
        calls.append(run.name)
        return fake_result(name, run, profile)

    paths = record_study(tiny_study, get_profile("smoke"), tmp_path, score=score, seeds=(42,))
    assert calls == ["teacher-seed42", "waldorf-seed42"]
    assert [p.name for p in paths] == ["teacher-seed42.json", "waldorf-seed42.json"]
    calls.clear()
    record_study(tiny_study, get_profile("smoke"), tmp_path, score=score, models=("teacher",))
    assert calls == ["teacher-seed1"]  # seed 42's result exists: only the missing run trains


def test_the_study_command_passes_its_seeds_and_models_on(tiny_study, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setattr(study.record_study, "__defaults__",
                        (None, study.RESULTS, fake_result, None, None))
    args = waldorf_cli.build_parser().parse_args(
        ["study", tiny_study, "--profile", "smoke", "--results", str(tmp_path),
         "--seeds", "42", "--models", "waldorf"])
    assert study.run_study(args) == 0
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == ["waldorf-seed42.json"]
    assert "waldorf" in capsys.readouterr().out


def test_the_model_table_counts_each_shape_and_names_its_recipe():
    teacher = BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                         num_hidden_layers=6)
    profile = get_profile("cpu")
    names = ("cut1", "cut2", "gold-cut4", "waldorf")
    table = study.model_table({m: study.build_study_model(m, teacher, profile) for m in names},
                              384)
    macs = table["GMACs, 384 tokens"]
    assert macs["cut2"] == pytest.approx(2 * macs["cut1"], rel=0.02)  # a layer costs the same
    assert table.loc["gold-cut4", "trained on"] == "gold labels only"
    assert table.loc["cut1", "on the front"] == "yes"
    assert table.loc["waldorf", "on the front"] == "no"
