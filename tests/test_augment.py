"""Tests of waldorf.augment: spans stay valid, runs repeat for a seed, counts add up, and the
teacher-labelled transfer set is stored once and relabelled when damaged."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModel, BertConfig, BertForQuestionAnswering

from waldorf import augment
from waldorf import teacher as teachers
from waldorf.artifacts import artifact_dir, find_artifact, read_metadata
from waldorf.config import BUNDLED_MINILM, get_profile, resolve_checkpoint
from waldorf.data import FEATURES, load_squad, tokenize_squad
from waldorf.teacher import TeacherRun
from waldorf.train import History

PARIS = ("Paris is the capital of France. It lies on the river Seine. "
         "The city has about two million inhabitants! Its mayor is elected.")
SEINE = "The Seine flows through Paris. Its source is in Burgundy. It ends in the English Channel."
ROME = "Rome is the capital of Italy. The Tiber river crosses the city. It was founded in 753 BC."


def _row(qid, title, context, question, answer=None):
    answers = {"text": [], "answer_start": []}
    if answer is not None:
        answers = {"text": [answer, answer], "answer_start": [context.index(answer)] * 2}
    return {"id": qid, "title": title, "context": context, "question": question,
            "answers": answers}


@pytest.fixture(scope="module")
def examples() -> datasets.Dataset:
    rows = [
        _row("q1", "France", PARIS, "Which river flows through the capital?", "Seine"),
        _row("q2", "France", PARIS, "How many inhabitants does the city have?",
             "about two million"),
        _row("q3", "France", SEINE, "Where is the source of the Seine?", "Burgundy"),
        _row("q4", "France", SEINE, "Who designed the bridges of Paris?"),  # unanswerable
        _row("q5", "Italy", ROME, "When was Rome founded?", "753 BC"),
        _row("q6", "Italy", ROME, "What is the population of Rome?"),  # unanswerable
    ]
    return datasets.Dataset.from_list(rows, features=FEATURES)


@pytest.fixture(scope="module")
def random_embeddings(tokenizer) -> torch.Tensor:
    return torch.randn(len(tokenizer.get_vocab()), 8, generator=torch.Generator().manual_seed(0))


def _build(examples, tokenizer, embeddings, **options):
    options = {"qwr_variants": 2, "pair_rate": 1.0, "crop_rate": 1.0, "seed": 7} | options
    return augment.build_transfer_set(examples, tokenizer, embeddings, **options)


def test_gold_spans_stay_valid_and_counts_add_up(examples, tokenizer, random_embeddings):
    ds, counts = _build(examples, tokenizer, random_embeddings)
    assert counts["original"] == len(examples)
    parts = ("original", *augment.AUGMENTATIONS)
    assert counts["total"] == len(ds) == sum(counts[k] for k in parts)
    assert all(counts[k] > 0 for k in augment.AUGMENTATIONS)
    for name, n in counts.items():
        if name != "total":
            assert ds["origin"].count(name) == n
    for row in ds:
        assert row["has_gold"] == (row["origin"] in augment.GOLD_ORIGINS)
        if row["has_gold"]:
            assert augment.spans_valid(row["context"], row["answers"]), row["id"]
        else:
            assert row["answers"] == {"text": [], "answer_start": []}
    assert len(set(ds["id"])) == len(ds)


def test_same_seed_same_rows_other_seed_other_rows(examples, tokenizer, random_embeddings):
    first, _ = _build(examples, tokenizer, random_embeddings)
    again, _ = _build(examples, tokenizer, random_embeddings)
    other, _ = _build(examples, tokenizer, random_embeddings, seed=8)
    assert first.to_list() == again.to_list()
    assert first.to_list() != other.to_list()


def test_switching_one_augmentation_off_keeps_the_others(examples, tokenizer, random_embeddings):
    full, _ = _build(examples, tokenizer, random_embeddings)
    no_qwr, counts = _build(examples, tokenizer, random_embeddings, qwr_variants=0)
    assert counts["qwr"] == 0
    assert ([r for r in full if r["origin"] == "pair"]
            == [r for r in no_qwr if r["origin"] == "pair"])
    plain, counts = _build(examples, tokenizer, random_embeddings, qwr_variants=0,
                           pair_rate=0.0, crop_rate=0.0)
    assert counts["total"] == counts["original"] == len(examples)
    assert plain["question"] == examples["question"]


def test_question_variants_differ_and_keep_context(examples, tokenizer, random_embeddings):
    ds, _ = _build(examples, tokenizer, random_embeddings)
    originals = {r["id"]: r for r in examples}
    variants = [r for r in ds if r["origin"] == "qwr"]
    assert len(variants) >= len(examples)  # every question here has content words
    for row in variants:
        base = originals[row["id"].rsplit("-", 1)[0]]
        assert row["question"] != base["question"]
        assert row["context"] == base["context"]
        # the question word (a stop word) is never replaced
        assert row["question"].split()[0] == base["question"].split()[0]
        assert len(augment.WORD.findall(row["question"])) >= len(augment.WORD.findall(
            base["question"]))  # words are swapped one for one, never dropped


def test_repaired_contexts_come_from_the_same_article(examples, tokenizer, random_embeddings):
    ds, _ = _build(examples, tokenizer, random_embeddings)
    originals = {r["id"]: r for r in examples}
    pairs = [r for r in ds if r["origin"] == "pair"]
    assert pairs
    for row in pairs:
        base = originals[row["id"].rsplit("-", 1)[0]]
        assert row["context"] != base["context"]
        assert row["context"] in {r["context"] for r in examples if r["title"] == base["title"]}
        assert row["title"] == base["title"]


def test_crops_drop_sentences_and_shift_answers(examples, tokenizer, random_embeddings):
    ds, _ = _build(examples, tokenizer, random_embeddings, qwr_variants=0, pair_rate=0.0)
    originals = {r["id"]: r for r in examples}
    crops = [r for r in ds if r["origin"] == "crop"]
    assert {r["id"] for r in crops} >= {"q1-crop0", "q2-crop0"}
    for row in crops:
        base = originals[row["id"].rsplit("-", 1)[0]]
        assert len(row["context"]) < len(base["context"]) and row["context"] in base["context"]
        assert row["answers"]["text"] == base["answers"]["text"]
    q2 = next(r for r in crops if r["id"] == "q2-crop0")
    assert q2["context"].startswith(("It lies", "The city"))  # "Paris is ..." cannot survive
    assert augment.sentence_bounds("A b. C d! E") == [(0, 4), (5, 9), (10, 11)]


def test_real_embeddings_give_related_words_and_valid_real_spans(squad_dir, tokenizer):
    model = AutoModel.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    embeddings = model.get_input_embeddings().weight.detach()
    neighbours = augment.WordNeighbours(tokenizer, embeddings, top_k=8)
    assert {"cities", "town"} & set(neighbours("city"))
    assert neighbours("what") == [] and neighbours("##s") == [] and neighbours("[UNK]") == []
    examples = load_squad("train", get_profile("smoke"), path=squad_dir)
    ds, counts = augment.build_transfer_set(examples, tokenizer, embeddings, qwr_variants=1,
                                            pair_rate=1.0, crop_rate=1.0, seed=0)
    assert counts["qwr"] > 0.9 * len(examples) and counts["crop"] > 0
    assert all(augment.spans_valid(r["context"], r["answers"]) for r in ds if r["has_gold"])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tokenizer):
    """(tiny random teacher, its run, the smoke profile, its teacher cache)."""
    folder = tmp_path_factory.mktemp("tiny-teacher")
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(BertConfig(hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=2, intermediate_size=64))
    teacher.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = TeacherRun(folder, {"hash": "tiny", "key": {"data": {"tiny": True}}}, History())
    profile = get_profile("smoke")
    windows = tokenize_squad(load_squad("train", profile), tokenizer, profile)
    start, end = teachers.teacher_logits(teacher, windows, profile, progress=False)
    cache = datasets.concatenate_datasets([windows, teachers.logit_columns(start, end)], axis=1)
    return teacher, run, profile, cache


def test_transfer_windows_label_augmented_rows_once(labelled):
    teacher, run, profile, cache = labelled
    options = {"qwr_variants": 1, "pair_rate": 1.0, "crop_rate": 1.0}
    full = augment.transfer_windows(profile, run, cache, options, progress=False)
    assert len(full) > 2 * len(cache)
    assert set(full.column_names) == set(cache.column_names) | {"has_gold"}
    gold = np.asarray(full["has_gold"])
    assert gold[:len(cache)].all() and not gold.all()
    ids = np.asarray(full["example_id"])
    assert all(i.rsplit("-", 1)[-1].startswith(("qwr", "pair")) for i in ids[~gold])
    # labelled by the teacher: the stored logits are the teacher's on those very windows
    extra = full.with_format("torch")[len(cache):len(cache) + 4]
    with torch.no_grad():
        out = teacher.eval()(input_ids=extra["input_ids"], attention_mask=extra["attention_mask"],
                      token_type_ids=extra["token_type_ids"])
    assert torch.allclose(out.start_logits, extra["teacher_start_logits"], atol=1e-4)
    again = augment.transfer_windows(profile, run, cache, options, progress=False)
    assert again["example_id"] == full["example_id"]
    assert augment.transfer_windows(profile, run, cache, None)["example_id"] == cache["example_id"]


def test_a_damaged_transfer_set_is_labelled_again(labelled, tmp_path, monkeypatch, caplog):
    _, run, profile, cache = labelled
    monkeypatch.setenv("WALDORF_ARTIFACTS", str(tmp_path))
    real, passes = teachers.teacher_logits, []  # counts the teacher's labelling passes
    monkeypatch.setattr(teachers, "teacher_logits",
                        lambda *a, **k: passes.append(1) or real(*a, **k))
    options = {"qwr_variants": 1, "pair_rate": 0.0, "crop_rate": 0.0}
    ids = augment.transfer_windows(profile, run, cache, options, progress=False)["example_id"]
    path = artifact_dir("transfer-set", profile.name, augment.transfer_key(profile, run, options))
    assert "windows/data-00000-of-00001.arrow" in read_metadata(path)["checksums"]
    arrow = path / "windows" / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[:-200])  # truncated
    with caplog.at_level(logging.WARNING):
        again = augment.transfer_windows(profile, run, cache, options, progress=False)
    assert f"{path}: windows/data-00000-of-00001.arrow fail" in caplog.text
    assert len(passes) == 2 and again["example_id"] == ids  # labelled again, the same rows
    none = {"qwr_variants": 0, "pair_rate": 0.0, "crop_rate": 0.0}
    for _ in range(2):  # nothing to add: recorded once, then known without augmenting
        assert len(augment.transfer_windows(profile, run, cache, none)) == len(cache)
    assert len(passes) == 2 and find_artifact(
        "transfer-set", profile.name, augment.transfer_key(profile, run, none))


def test_fractional_qwr_variants_augment_a_share_of_questions(examples, tokenizer,
                                                                random_embeddings):
    _, none = _build(examples, tokenizer, random_embeddings, qwr_variants=0, pair_rate=0.0,
                     crop_rate=0.0)
    _, some = _build(examples, tokenizer, random_embeddings, qwr_variants=0.5, pair_rate=0.0,
                     crop_rate=0.0)
    _, all_ = _build(examples, tokenizer, random_embeddings, qwr_variants=1, pair_rate=0.0,
                     crop_rate=0.0)
    assert none["qwr"] == 0
    assert 0 < some["qwr"] < all_["qwr"]
