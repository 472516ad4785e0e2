"""The teacher is trained once and reused; its logit cache round-trips and never goes stale;
a damaged teacher or cache is reported and rebuilt."""

from __future__ import annotations

import logging
from dataclasses import replace

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from waldorf import data, teacher
from waldorf.artifacts import artifact_dir, list_artifacts
from waldorf.config import BUNDLED_MINILM, get_profile, resolve_checkpoint
from waldorf.postprocess import QAPredictions


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """A random 2-layer BERT *encoder* (no span head, like MiniLM) with the MiniLM tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def profile(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("WALDORF_ARTIFACTS", str(tmp_path))
    smoke = get_profile("smoke")
    return replace(smoke, teacher=replace(smoke.teacher, checkpoint=str(tiny_backbone),
                                          learning_rate=1e-3))


@pytest.fixture
def counters(monkeypatch):
    """Count real training runs and real teacher passes over the training windows."""
    counts = {"train": 0, "logits": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(teacher, "train", counting("train", teacher.train))
    monkeypatch.setattr(teacher, "teacher_logits", counting("logits", teacher.teacher_logits))
    return counts


def test_backbone_gets_a_new_span_head_only(tiny_backbone):
    model, tokenizer = teacher.load_backbone(str(tiny_backbone))
    assert model.qa_outputs.out_features == 2 and tokenizer.vocab_size == 30522


def test_teacher_is_trained_once_then_reused(profile, counters):
    assert teacher.get_teacher(profile, reuse_only=True) is None and counters["train"] == 0
    first = teacher.get_teacher(profile, progress=False)
    assert counters["train"] == 1
    meta = first.metadata
    assert meta["complete"] and meta["role"] == "teacher" and meta["profile"] == "smoke"
    assert {"best_f1", "HasAns_f1", "NoAns_f1", "forced_HasAns_f1"} <= set(meta["dev_scores"])
    assert meta["train_windows"] >= meta["train_questions"] > 0 and meta["duration_s"] > 0
    assert first.history.evals and (first.model_dir / "config.json").exists()
    assert not (first.model_dir.parent / "checkpoint").exists()

    second = teacher.get_teacher(profile, progress=False)
    assert counters["train"] == 1  # found, not retrained
    assert teacher.get_teacher(profile, reuse_only=True).model_dir == first.model_dir
    assert second.model_dir == first.model_dir and second.history == first.history
    model, _ = second.load()
    assert type(model).__name__ == "BertForQuestionAnswering"


def test_teacher_training_is_reproducible(profile, tmp_path, monkeypatch):
    first, _ = teacher.get_teacher(profile, progress=False).load()
    monkeypatch.setenv("WALDORF_ARTIFACTS", str(tmp_path / "elsewhere"))
    torch.manual_seed(123)  # the global random state must not matter
    second, _ = teacher.get_teacher(profile, progress=False).load()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_cache_labels_with_the_teacher_it_is_given(profile, counters):
    run = teacher.get_teacher(profile, progress=False)
    reseeded = replace(profile, seed=profile.seed + 1)  # get_teacher(reseeded) would train anew
    cache = teacher.teacher_cache(reseeded, run=run, progress=False)
    assert counters == {"train": 1, "logits": 1}
    assert [r["role"] for r in list_artifacts()].count("teacher") == 1
    model, tokenizer = run.load()
    # the windows are the reseeded profile's (its seed may pick other questions), the teacher run's
    windows = data.tokenize_squad(data.load_squad("train", reseeded), tokenizer, reseeded)
    start, _ = teacher.teacher_logits(model, windows, reseeded, progress=False)
    np.testing.assert_array_equal(cache.with_format("numpy")[:]["teacher_start_logits"], start)


def test_tokenizer_alone_matches_the_loaded_one(profile):
    run = teacher.get_teacher(profile, progress=False)
    _, loaded = run.load()
    question = "When did Beyonce start becoming popular?"
    assert run.tokenizer()(question)["input_ids"] == loaded(question)["input_ids"]


def test_cache_round_trips_exactly_and_is_keyed(profile, counters):
    cache = teacher.teacher_cache(profile, progress=False)
    run = teacher.get_teacher(profile, progress=False)
    model, tokenizer = run.load()
    windows = data.tokenize_squad(data.load_squad("train", profile), tokenizer, profile)
    start, end = teacher.teacher_logits(model, windows, profile, progress=False)
    assert counters == {"train": 1, "logits": 2}
    length = profile.data.max_seq_length
    cached, fresh = cache.with_format("numpy")[:], windows.with_format("numpy")[:]
    assert len(cache) == len(windows)
    np.testing.assert_array_equal(cached["input_ids"], fresh["input_ids"])
    assert cached["teacher_start_logits"].dtype == np.float32
    assert cached["teacher_start_logits"].shape == (len(windows), length)
    np.testing.assert_array_equal(cached["teacher_start_logits"], start)
    np.testing.assert_array_equal(cached["teacher_end_logits"], end)
    np.testing.assert_allclose(cached["teacher_null_score"], start[:, 0] + end[:, 0], rtol=1e-6)

    again = teacher.teacher_cache(profile, progress=False)
    assert counters["logits"] == 2  # reloaded from disk, no teacher pass
    np.testing.assert_array_equal(again.with_format("numpy")[:]["teacher_end_logits"], end)

    shorter = replace(profile, data=replace(profile.data, max_seq_length=64, doc_stride=32))
    other = teacher.teacher_cache(shorter, progress=False)
    assert counters == {"train": 2, "logits": 3}  # new windows: new teacher and new cache
    assert len(other) > len(cache) and len(other[0]["teacher_start_logits"]) == 64
    caches = [r for r in list_artifacts() if r["role"] == "teacher-cache"]
    assert len(caches) == 2 and len({r["hash"] for r in caches}) == 2


def test_damaged_teacher_and_cache_are_reported_and_rebuilt(profile, counters, caplog,
                                                            tmp_path):
    first = teacher.get_teacher(profile, progress=False)
    recorded = first.metadata["checksums"]
    assert {"model/model.safetensors", "model/config.json", "history.json"} <= set(recorded)
    assert not any(name.startswith("checkpoint") for name in recorded)
    cache = teacher.teacher_cache(profile, run=first, progress=False)
    logits = np.array(cache.with_format("numpy")[:]["teacher_start_logits"], copy=True)
    cache_dir = artifact_dir("teacher-cache", profile.name, teacher.cache_key(profile, first))
    arrow = next((cache_dir / "windows").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-64] + bytes(64))  # its last 64 bytes zeroed
    with caplog.at_level(logging.WARNING):
        relabelled = teacher.teacher_cache(profile, run=first, progress=False)
    assert f"{cache_dir}: windows/{arrow.name} fail" in caplog.text
    assert counters == {"train": 1, "logits": 2}  # labelled again, not read back damaged
    np.testing.assert_array_equal(relabelled.with_format("numpy")[:]["teacher_start_logits"],
                                  logits)
    weights = first.model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # truncated
    with caplog.at_level(logging.WARNING):
        assert teacher.get_teacher(profile, reuse_only=True) is None  # refused, not loaded
    assert f"{first.model_dir.parent}: model/model.safetensors fail" in caplog.text
    assert len(list((tmp_path / "corrupt" / "teacher").iterdir())) == 1  # set aside
    second = teacher.get_teacher(profile, progress=False)
    assert counters["train"] == 2 and second.model_dir == first.model_dir
    assert second.metadata["checksums"]["model/model.safetensors"] == (
        recorded["model/model.safetensors"])  # retrained to the very same weights


def test_teacher_features_are_computed_live(tiny_backbone):
    model, tokenizer = teacher.load_backbone(str(tiny_backbone))
    batch = dict(tokenizer(["Who?"], ["Ada wrote it."], return_tensors="pt"))
    out = teacher.teacher_features(model.eval(), batch, layers=(-1, 1))
    seq = batch["input_ids"].shape[1]
    assert [h.shape for h in out["hidden_states"]] == [(1, seq, 32)] * 2
    assert [a.shape for a in out["attentions"]] == [(1, 2, seq, seq)] * 2
    torch.testing.assert_close(out["attentions"][0].sum(-1), torch.ones(1, 2, seq))


def test_teacher_states_are_the_lower_layers_of_the_full_pass(tiny_backbone):
    model, tokenizer = teacher.load_backbone(str(tiny_backbone))
    batch = dict(tokenizer(["Who?", "Who wrote it, and when?"], ["Ada wrote it.", "Ada."],
                           return_tensors="pt", padding=True))
    assert not batch["attention_mask"].all()  # the first pair is padded
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        full = model.eval()(**batch, output_hidden_states=True).hidden_states
    for layers in (1, 2):
        ours = teacher.teacher_states(model, batch, layers)  # (batch, seq, hidden)
        torch.testing.assert_close(ours[real], full[layers][real])
    assert not torch.allclose(teacher.teacher_states(model, batch, 1)[real], full[2][real])


def test_evaluate_teacher_reproduces_the_recorded_dev_scores(profile):
    run = teacher.get_teacher(profile, progress=False)
    model, tokenizer = run.load()
    scores = teacher.evaluate_teacher(model, tokenizer, data.load_squad("dev", profile), profile)
    recorded = run.metadata["dev_scores"]
    assert recorded and isinstance(scores["predictions"], QAPredictions)
    for key, value in recorded.items():
        assert scores[key] == pytest.approx(value), key


def test_window_kinds_follow_the_labels():
    features = datasets.Dataset.from_dict({
        "example_id": ["a", "a", "a", "b", "b", "c"],
        "start_positions": [0, 7, 0, 0, 0, 3]})
    kinds = teacher.window_kinds(features).tolist()
    assert kinds == ["elsewhere", "answer", "elsewhere", "unanswerable", "unanswerable", "answer"]


def test_null_score_gap_is_the_logit_of_na_prob_and_stays_finite():
    gap = teacher.null_score_gap(np.array([0.5, 1 / (1 + np.exp(-2.0)), 0.0, 1.0]))
    assert gap[:2] == pytest.approx([0.0, 2.0])
    assert np.isfinite(gap).all() and gap[2] < -29 and gap[3] > 29


def test_token_range_finds_the_tokens_a_character_span_overlaps():
    offsets = np.array([[0, 4], [5, 9], [9, 12], [13, 17]])  # "Duke Will iam came"
    assert teacher.token_range(offsets, 5, 12) == (1, 2)
    assert teacher.token_range(offsets, 6, 7) == (1, 1)  # inside a word piece
    assert teacher.token_range(offsets, 4, 5) is None  # the space between two tokens
