"""Loading, validation, windowing and post-processing of SQuAD 2.0 (waldorf/data.py)."""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import replace

import datasets
import numpy as np
import pytest

from waldorf.artifacts import config_hash
from waldorf.config import get_profile
from waldorf.data import (
    FEATURES,
    SAMPLE_PATH,
    SquadFormatError,
    describe_windows,
    load_squad,
    prepare_eval_features,
    prepare_train_features,
    read_squad_json,
    subsample_negative_windows,
    tokenize_squad,
)
from waldorf.errors import UserError
from waldorf.teacher import teacher_key


@pytest.fixture
def no_data_dir(monkeypatch):
    monkeypatch.delenv("WALDORF_DATA_DIR", raising=False)


def unlimited(profile_name: str = "smoke", **data_fields):
    profile = get_profile(profile_name)
    fields = dict(max_train_examples=None, max_dev_examples=None) | data_fields
    return replace(profile, data=replace(profile.data, **fields))


# --- loading -------------------------------------------------------------------------------


def test_sample_splits_are_disjoint_articles_with_both_kinds_of_question(no_data_dir):
    train, dev = load_squad("train", unlimited()), load_squad("dev", unlimited())
    assert train.features == FEATURES and dev.features == FEATURES
    assert len(train) + len(dev) == len(read_squad_json(SAMPLE_PATH))
    assert not set(train["title"]) & set(dev["title"])
    assert set(dev["title"]) == {json.loads(SAMPLE_PATH.read_text())["data"][-1]["title"]}
    for split in (train, dev):
        empty = sum(not answers["text"] for answers in split["answers"])
        assert 0 < empty < len(split)


def test_every_sample_answer_sits_at_its_answer_start():
    for row in read_squad_json(SAMPLE_PATH):
        for text, start in zip(*row["answers"].values(), strict=True):
            assert row["context"][start:start + len(text)] == text


def test_cut_is_deterministic_representative_and_in_file_order(no_data_dir):
    full = load_squad("train", unlimited())
    cut = [load_squad("train", unlimited(max_train_examples=10)) for _ in range(2)]
    assert len(cut[0]) == 10 and cut[0]["id"] == cut[1]["id"]
    positions = [list(full["id"]).index(i) for i in cut[0]["id"]]
    assert positions == sorted(positions) and positions != list(range(10))
    assert len(load_squad("dev", unlimited(max_dev_examples=3))) == 3


def test_explicit_path_beats_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WALDORF_DATA_DIR", str(tmp_path / "nowhere"))
    assert len(load_squad("dev", unlimited(), path=SAMPLE_PATH)) == len(
        read_squad_json(SAMPLE_PATH))
    with pytest.raises(UserError, match="not found: .*nowhere"):
        load_squad("dev", unlimited())
    with pytest.raises(UserError, match="split must be one of"):
        load_squad("validation", unlimited(), path=SAMPLE_PATH)


def test_data_dir_concatenates_train_files(tmp_path, monkeypatch):
    raw = json.loads(SAMPLE_PATH.read_text())
    for k, name in enumerate(["a.json", "b.json"]):
        part = copy.deepcopy(raw)
        for article in part["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    qa["id"] += f"-{k}"
        (tmp_path / name).write_text(json.dumps(part))
    monkeypatch.setenv("WALDORF_DATA_DIR", str(tmp_path))
    train = load_squad("train", unlimited(train_files=("a.json", "b.json"), dev_file="b.json"))
    assert len(train) == 2 * len(read_squad_json(SAMPLE_PATH))
    assert train["id"][0].endswith("-0") and train["id"][-1].endswith("-1")


def test_hub_source_reads_the_profile_split_names(monkeypatch):
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return read_squad_json(SAMPLE_PATH)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("WALDORF_DATA_DIR", "/nowhere")  # the hub profile does not read files
    profile = unlimited("gpu")
    assert len(load_squad("dev", profile)) == len(read_squad_json(SAMPLE_PATH))
    assert calls == [("rajpurkar/squad_v2", "validation")]
    load_squad("train", profile)
    assert calls[-1] == ("rajpurkar/squad_v2", "train")


def hub_copy(folder, splits: dict[str, datasets.Dataset], layout: str):
    """``splits`` written as the hub serves them: parquet files named by split, as in the hub's
    repository of rajpurkar/squad_v2, or a ``DatasetDict.save_to_disk`` folder."""
    if layout == "save_to_disk":
        datasets.DatasetDict(splits).save_to_disk(str(folder))
    else:
        for split, ds in splits.items():
            ds.to_parquet(str(folder / "squad_v2" / f"{split}-00000-of-00001.parquet"))
    return str(folder)


@pytest.mark.parametrize("layout", ["parquet", "save_to_disk"])
def test_the_hub_path_reads_a_local_copy_in_the_hubs_format(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    sample = read_squad_json(SAMPLE_PATH)
    first = sample["title"][0]
    splits = {"train": sample.filter(lambda t: t != first, input_columns="title"),
              "validation": sample.filter(lambda t: t == first, input_columns="title")}
    int64 = datasets.Features({**FEATURES, "answers": {  # a copy made elsewhere may differ
        "text": datasets.List(datasets.Value("string")),
        "answer_start": datasets.List(datasets.Value("int64"))}})
    hub = hub_copy(tmp_path / "hub", {k: v.cast(int64) for k, v in splits.items()}, layout)
    for name in ("gpu", "colab"):
        profile = unlimited(name, hub_dataset=hub)
        train, dev = load_squad("train", profile), load_squad("dev", profile)
        assert train["id"] == splits["train"]["id"] and dev["id"] == splits["validation"]["id"]
        assert train.features == FEATURES and train["answers"] == splits["train"]["answers"]
    colab = get_profile("colab")
    cut = replace(colab, data=replace(colab.data, hub_dataset=hub, max_train_examples=5))
    assert len(load_squad("train", cut)) == 5


def test_the_hub_path_reads_the_real_files_saved_in_the_hubs_format(squad_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    splits = {"train": read_squad_json(squad_dir / "train.json"),
              "validation": read_squad_json(squad_dir / "dev.json")}
    hub = hub_copy(tmp_path / "hub", splits, "parquet")
    dev = load_squad("dev", unlimited("gpu", hub_dataset=hub))
    assert len(dev) == 1807 and dev["id"] == splits["validation"]["id"]
    assert len(load_squad("train", get_profile("colab", data=replace(
        get_profile("colab").data, hub_dataset=hub)))) == 7523  # fewer than its 40,000


def test_real_shared_files_load_with_the_documented_counts(squad_dir):
    counts = {"train.json": (7523, 3593), "dev.json": (1807, 1032), "test.json": (2543, 1320),
              "train-extra-v1.1.json": (4557, 0)}
    for name, (questions, no_answer) in counts.items():
        ds = read_squad_json(squad_dir / name)
        assert len(ds) == questions, name
        assert sum(not a["text"] for a in ds["answers"]) == no_answer, name


def test_data_dir_train_split_is_both_train_files(squad_dir, monkeypatch):
    monkeypatch.setenv("WALDORF_DATA_DIR", str(squad_dir))
    assert len(load_squad("train", unlimited("cpu"))) == 7523 + 4557


def test_real_test_split_is_held_out_articles(squad_dir, monkeypatch, caplog):
    monkeypatch.setenv("WALDORF_DATA_DIR", str(squad_dir))
    with caplog.at_level(logging.WARNING, logger="waldorf.data"):
        test, dev = load_squad("test", get_profile("cpu")), load_squad("dev", get_profile("cpu"))
    assert len(test) == 2543 and "no separate test split" not in caplog.text
    train = load_squad("train", get_profile("cpu"))
    assert not set(test["title"]) & (set(dev["title"]) | set(train["title"]))
    assert len(load_squad("test", get_profile("smoke"))) == 32  # cut like dev


# --- the test split ------------------------------------------------------------------------


def test_sample_test_split_is_its_dev_article_with_a_warning(no_data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="waldorf.data"):
        test = load_squad("test", unlimited())
    assert test["id"] == load_squad("dev", unlimited())["id"]
    assert "no separate test split" in caplog.text


def test_data_dir_test_split_reads_the_profile_test_file(tmp_path, monkeypatch):
    (tmp_path / "held-out.json").write_text(json.dumps(GOOD))
    monkeypatch.setenv("WALDORF_DATA_DIR", str(tmp_path))
    assert load_squad("test", unlimited(test_file="held-out.json"))["id"] == ["q1", "q2"]
    assert load_squad("test", unlimited(), path=tmp_path / "held-out.json")["id"] == ["q1", "q2"]
    with pytest.raises(UserError, match="not found: .*test.json"):
        load_squad("test", unlimited())


def test_hub_test_split_is_the_official_dev_set_with_a_warning(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda name, split: calls.append(split) or read_squad_json(SAMPLE_PATH))
    with caplog.at_level(logging.WARNING, logger="waldorf.data"):
        load_squad("test", unlimited("gpu"))
    assert calls == ["validation"] and "no separate test split" in caplog.text


# The teacher key (and the student keys built on its data part) must not change when the test
# split is added: nothing trains or chooses on it. e83d72c782cc is the cpu key of the sample
# before test_file existed; a deliberate change of the teacher's configuration updates it.
def test_the_test_split_leaves_artifact_keys_unchanged():
    sample = read_squad_json(SAMPLE_PATH)
    cpu = get_profile("cpu")
    assert config_hash(teacher_key(cpu, sample)) == "e83d72c782cc"
    other = replace(cpu, data=replace(cpu.data, test_file="elsewhere.json"))
    assert teacher_key(other, sample) == teacher_key(cpu, sample)


# --- bad input -----------------------------------------------------------------------------

GOOD = {"version": "v2.0", "data": [{"title": "Teapots", "paragraphs": [{
    "context": "The blue teapot holds six cups.",
    "qas": [{"id": "q1", "question": "What colour is it?", "is_impossible": False,
             "answers": [{"text": "blue", "answer_start": 4}]},
            {"id": "q2", "question": "Who made it?", "is_impossible": True, "answers": []}]}]}]}


def _broken(edit):
    raw = copy.deepcopy(GOOD)
    edit(raw)
    return raw


def _qa(raw, k=0):
    return raw["data"][0]["paragraphs"][0]["qas"][k]


BAD_CASES = {
    "answer_start": (lambda r: _qa(r)["answers"][0].update(answer_start=5), "q1", "answer_start"),
    "no_answers": (lambda r: _qa(r).update(answers=[]), "q1", "without answers"),
    "no_answers_v11": (lambda r: (_qa(r).pop("is_impossible"), _qa(r).update(answers=[])), "q1",
                       "without answers"),
    "duplicate": (lambda r: _qa(r, 1).update(id="q1"), "q1", "duplicate"),
    "missing_question": (lambda r: _qa(r).pop("question"), "q1", "'question'"),
    "missing_answer_text": (lambda r: _qa(r)["answers"][0].pop("text"), "q1", "'text'"),
    "impossible_with_answers": (lambda r: _qa(r).update(is_impossible=True), "q1",
                                "is_impossible"),
    "missing_context": (lambda r: r["data"][0]["paragraphs"][0].pop("context"), None,
                        "'context'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_questions_are_named_with_file_article_and_id(case, tmp_path):
    edit, question_id, problem = BAD_CASES[case]
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(_broken(edit)))
    with pytest.raises(SquadFormatError) as err:
        read_squad_json(path)
    message = str(err.value)
    assert path.name in message and "'Teapots'" in message and problem in message
    if question_id:
        assert f"question {question_id!r}" in message


@pytest.mark.parametrize("content, problem", [
    ("", "SQuAD file is empty"),
    ("{not json", "SQuAD file is not JSON"),
    ("[1, 2]", "should be a JSON object, got a list"),
    ('{"version": "v2.0"}', "'data' list"),
    ('{"data": [{"paragraphs": []}]}', "'title'"),
])
def test_bad_files_are_named_with_the_problem(content, problem, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(SquadFormatError, match=re.escape(problem)) as err:
        read_squad_json(path)
    assert "broken.json" in str(err.value)


def test_every_problem_is_reported_not_only_the_first(tmp_path):
    raw = _broken(lambda r: (_qa(r).update(answers=[]), _qa(r, 1).update(id="q1")))
    path = tmp_path / "two.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(SquadFormatError, match="2 problem") as err:
        read_squad_json(path)
    first, *rest = str(err.value).splitlines()  # the command line prints the first line only
    assert "two.json" in first and "question 'q1'" in first and "without answers" in first
    assert len(rest) == 2


def test_a_missing_file_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="absent.json: cannot read"):
        read_squad_json(tmp_path / "absent.json")


# --- windows and labels --------------------------------------------------------------------


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def assert_gold_spans_survive(examples, tokenizer, max_length, stride):
    batch = examples.to_dict()
    train = prepare_train_features(batch, tokenizer, max_length, stride)
    evals = prepare_eval_features(batch, tokenizer, max_length, stride)
    assert train["example_id"] == evals["example_id"] and train["window"] == evals["window"]
    rows = {row["id"]: row for row in examples}
    labelled, inside_a_token = set(), set()
    for k, example_id in enumerate(train["example_id"]):
        start, end = train["start_positions"][k], train["end_positions"][k]
        gold = rows[example_id]["answers"]["text"]
        if start == 0:
            assert end == 0
            continue
        offsets = evals["offset_mapping"][k]
        decoded = rows[example_id]["context"][offsets[start][0]:offsets[end][1]]
        if _squash(decoded) != _squash(gold[0]):
            # The answer starts or ends inside a word piece ("Japan" in "Japanese"): the
            # label is the smallest token span around it, which cannot be trimmed.
            assert gold[0] in decoded, example_id
            inside_a_token.add(example_id)
        labelled.add(example_id)
    answerable = {row["id"] for row in examples if row["answers"]["text"]}
    assert labelled == answerable  # every answer is found, and nothing else gets a span
    assert len(inside_a_token) <= 0.02 * len(answerable)


def test_sample_gold_spans_survive_tokenisation(tokenizer):
    sample = read_squad_json(SAMPLE_PATH)
    assert_gold_spans_survive(sample, tokenizer, max_length=128, stride=64)
    assert_gold_spans_survive(sample, tokenizer, max_length=48, stride=16)  # many windows


def test_real_dev_gold_spans_survive_tokenisation(tokenizer, squad_dir):
    dev = read_squad_json(squad_dir / "dev.json")
    some = dev.select(range(0, len(dev), 6))  # ~300 questions spread over all articles
    assert_gold_spans_survive(some, tokenizer, max_length=192, stride=96)


def test_long_context_gives_overlapping_windows_that_map_back(tokenizer):
    dev = load_squad("dev", unlimited(), path=SAMPLE_PATH)
    longest = dev.select([int(np.argmax([len(c) for c in dev["context"]]))])
    feats = prepare_eval_features(longest.to_dict(), tokenizer, max_length=64, stride=24)
    assert len(feats["window"]) >= 4
    assert feats["window"] == list(range(len(feats["window"])))
    assert set(feats["example_id"]) == {longest["id"][0]}
    spans = [[o for o in offsets if o is not None] for offsets in feats["offset_mapping"]]
    for before, after in zip(spans, spans[1:], strict=False):
        assert after[0][0] < before[-1][1]  # consecutive windows overlap
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(longest["context"][0].rstrip())
    assert all(len(ids) == 64 for ids in feats["input_ids"])


def test_tokenize_squad_removes_raw_columns(tokenizer):
    sample = read_squad_json(SAMPLE_PATH).select(range(6))
    train = tokenize_squad(sample, tokenizer, get_profile("smoke"), train=True)
    evals = tokenize_squad(sample, tokenizer, get_profile("smoke"), train=False)
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids",
                                       "start_positions", "end_positions", "example_id", "window"}
    assert set(evals.column_names) == {"input_ids", "attention_mask", "token_type_ids",
                                       "offset_mapping", "example_id", "window"}


def test_subsample_negative_windows_keeps_answers_and_impossible_questions(tokenizer):
    sample = read_squad_json(SAMPLE_PATH)
    feats = datasets.Dataset.from_dict(
        prepare_train_features(sample.to_dict(), tokenizer, max_length=48, stride=16))
    impossible = {row["id"] for row in sample if not row["answers"]["text"]}
    kind = ["answer" if s > 0 else "impossible" if i in impossible else "negative"
            for i, s in zip(feats["example_id"], feats["start_positions"], strict=True)]
    assert kind.count("negative") > 0
    none = subsample_negative_windows(feats, keep=0.0, seed=0)
    assert len(none) == kind.count("answer") + kind.count("impossible")
    half = [subsample_negative_windows(feats, keep=0.5, seed=1) for _ in range(2)]
    assert half[0]["input_ids"] == half[1]["input_ids"]
    assert len(none) < len(half[0]) < len(feats)
    assert subsample_negative_windows(feats, keep=1.0, seed=0) is feats


def test_describe_windows_tile_the_paragraph_and_locate_the_answer(tokenizer):
    context = " ".join(f"Sentence {i} says nothing much about topic {i}." for i in range(40))
    answer = "topic 31"
    example = {"id": "q", "title": "t", "context": context, "question": "Which topic?",
               "answers": {"text": [answer], "answer_start": [context.index(answer)]}}
    rows = describe_windows(example, tokenizer, max_length=64, stride=16)
    n_tokens = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    assert len(rows) > 2 and rows[0]["first_token"] == 0 and rows[-1]["last_token"] == n_tokens - 1
    pairs = zip(rows, rows[1:], strict=False)
    assert all(a["last_token"] - b["first_token"] + 1 == 16 for a, b in pairs)
    holding = [r for r in rows if r["label_start"]]
    assert holding and all(r["first_token"] <= r["answer_first"] <= r["answer_last"]
                           <= r["last_token"] for r in holding)
    assert len({(r["answer_first"], r["answer_last"]) for r in holding}) == 1
    assert all(r["answer_first"] is None for r in rows if not r["label_start"])
