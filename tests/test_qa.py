"""QuestionAnswerer, prediction files and evaluate_qa on a tiny random BERT and a rigged model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering
from transformers.modeling_outputs import QuestionAnsweringModelOutput

import waldorf_cli
from waldorf import data
from waldorf.artifacts import write_metadata
from waldorf.config import BUNDLED_MINILM, get_profile, resolve_checkpoint
from waldorf.errors import CorruptArtifactError, UserError
from waldorf.metrics import evaluate_files, squad_evaluate
from waldorf.postprocess import QAPredictions
from waldorf.qa import (
    QuestionAnswerer,
    evaluate_qa,
    load_qa,
    model_source,
    predict_logits,
    protocol_scores,
    span_probabilities,
    threshold_curve,
)

FILLER = "Grass grows slowly on the wide plain while the river runs north. "
LONG_CONTEXT = FILLER * 12 + "At night the zebra sleeps standing up. " + FILLER * 3
SQUAD = {"version": "v2.0", "data": [{"title": "Plains", "paragraphs": [
    {"context": LONG_CONTEXT, "qas": [
        {"id": "z1", "question": "Which animal sleeps standing?", "is_impossible": False,
         "answers": [{"text": "zebra", "answer_start": LONG_CONTEXT.index("zebra")}]},
        {"id": "z2", "question": "What colour is the moon?", "is_impossible": True,
         "answers": []},
    ]},
    {"context": "The river runs north.", "qas": [
        {"id": "r1", "question": "Where does the river run?", "is_impossible": False,
         "answers": [{"text": "north", "answer_start": 15}]},
    ]},
]}]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A one-layer random BERT QA model with the MiniLM tokenizer, saved like a checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-qa")
    BertForQuestionAnswering(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def run_cli():
    """``waldorf ...`` in this process: the console script's own entry point."""
    return waldorf_cli.main


class SpotWord(torch.nn.Module):
    """Start and end logits peak on one token id: a model whose right answer is known."""

    def __init__(self, token_id: int):
        super().__init__()
        self.token_id = token_id
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, input_ids, attention_mask):  # no token_type_ids, like DistilBERT
        hit = (input_ids == self.token_id).float() * self.scale  # (batch, seq)
        return QuestionAnsweringModelOutput(start_logits=hit, end_logits=hit)


def test_spans_index_the_context_short_and_long(model_dir):
    model, tokenizer = load_qa(model_dir)
    qa = QuestionAnswerer(model, tokenizer, max_length=48, stride=16, null_threshold=1e9)
    windows = data.prepare_eval_features(
        {"id": ["x"], "question": ["Which animal?"], "context": [LONG_CONTEXT]}, tokenizer, 48, 16)
    assert len(windows["input_ids"]) > 3  # the long context really needs several windows
    for context in ["The river runs north.", LONG_CONTEXT]:
        out = qa(question="Where does it run?", context=context)
        assert set(out) == {"answer", "score", "start", "end"}
        assert out["answer"] and context[out["start"]:out["end"]] == out["answer"]
        assert 0.0 <= out["score"] <= 1.0


def test_answer_found_in_a_later_window_by_character_offset():
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    zebra = tokenizer.convert_tokens_to_ids("zebra")
    qa = QuestionAnswerer(SpotWord(zebra), tokenizer, max_length=48, stride=16)
    out = qa(question="Which animal sleeps standing?", context=LONG_CONTEXT)
    start = LONG_CONTEXT.index("zebra")
    assert out["answer"] == "zebra" and (out["start"], out["end"]) == (start, start + 5)
    assert out["score"] > 0.99  # span score 20 against a null score of 0


def test_abstention_and_list_input(model_dir):
    model, tokenizer = load_qa(model_dir)
    qa = QuestionAnswerer(model, tokenizer, max_length=48, stride=16, null_threshold=-1e9)
    out = qa(question=["Where does it run?", "Which animal?"], context=LONG_CONTEXT)
    assert isinstance(out, list) and len(out) == 2
    assert all(o["answer"] == "" and o["start"] == o["end"] == 0 for o in out)
    with pytest.raises(ValueError, match="2 questions but 3 contexts"):
        qa(question=["a?", "b?"], context=["x", "y", "z"])


def test_predict_logits_shapes_and_token_type_ids(model_dir):
    model, tokenizer = load_qa(model_dir)
    features = data.prepare_eval_features(
        {"id": ["x", "y"], "question": ["Q?", "R?"], "context": [LONG_CONTEXT, "Short."]},
        tokenizer, 48, 16)
    start, end = predict_logits(model, features, batch_size=3, progress=False)
    assert start.shape == end.shape == (len(features["input_ids"]), 48)
    spot_start, _ = predict_logits(SpotWord(0), features, batch_size=3, progress=False)
    assert spot_start.shape == start.shape  # a forward without token_type_ids still runs


def test_predict_cli_writes_files_the_metric_reads(model_dir, tmp_path, run_cli):
    data_file, pred_file, na_file = tmp_path / "dev.json", tmp_path / "p.json", tmp_path / "n.json"
    data_file.write_text(json.dumps(SQUAD))
    argv = ["predict", str(model_dir), str(data_file), "--out", str(pred_file),
            "--na-prob-out", str(na_file), "--profile", "smoke"]
    assert run_cli(argv) == 0
    assert set(json.loads(pred_file.read_text())) == {"z1", "z2", "r1"}
    scores = evaluate_files(data_file, pred_file, na_file)
    assert scores["total"] == 3 and "best_f1_thresh" in scores


def test_ask_cli_prints_the_answer(model_dir, run_cli, capsys):
    assert run_cli(["ask", str(model_dir), "-q", "Where?", "-c", "The river runs north."]) == 0
    out = json.loads(capsys.readouterr().out)
    context = "The river runs north."
    assert context[out["start"]:out["end"]] == out["answer"]


def test_the_artifact_folder_is_a_model_argument(model_dir, tmp_path):
    artifact = tmp_path / "teacher" / "cpu-0123abcd4567"
    (artifact / "model").mkdir(parents=True)
    for file in model_dir.iterdir():
        (artifact / "model" / file.name).write_bytes(file.read_bytes())
    assert model_source(artifact) == str(artifact / "model")  # what `waldorf artifacts` prints
    assert model_source(model_dir) == str(model_dir)
    with pytest.raises(UserError, match="no config.json"):
        model_source(tmp_path)  # exists, but holds no model
    with pytest.raises(UserError, match="no such model folder"):
        model_source(tmp_path / "nothing" / "here")
    assert model_source("bert-base-uncased") == "bert-base-uncased"  # a hub name stays one


def test_a_damaged_artifact_is_refused_by_path(model_dir, tmp_path):
    artifact = tmp_path / "teacher" / "cpu-0123abcd4567"
    (artifact / "model").mkdir(parents=True)
    for file in model_dir.iterdir():
        (artifact / "model" / file.name).write_bytes(file.read_bytes())
    write_metadata(artifact, "teacher", "cpu", {"k": 1}, complete=True)  # records checksums
    assert model_source(artifact) == str(artifact / "model")
    weights = next((artifact / "model").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    with pytest.raises(CorruptArtifactError, match=f"{artifact}.*{weights.name}"):
        model_source(artifact)
    with pytest.raises(CorruptArtifactError):
        model_source(artifact / "model")


def test_output_paths_are_checked_before_the_model_runs(tmp_path, run_cli, capsys):
    data_file = tmp_path / "dev.json"
    data_file.write_text(json.dumps(SQUAD))
    out = tmp_path / "no-folder" / "p.json"
    argv = ["predict", str(tmp_path / "no-model"), str(data_file), "--out", str(out)]
    assert run_cli(argv) == 2  # the output is refused before the (missing) model is looked up
    assert "cannot write" in capsys.readouterr().err


def test_ask_input_that_cannot_be_answered_is_a_user_error(model_dir, run_cli, capsys):
    model, tokenizer = load_qa(model_dir)
    qa = QuestionAnswerer(model, tokenizer, max_length=48, stride=16)
    with pytest.raises(UserError, match="question is empty"):
        qa(question="  ", context="The river runs north.")
    with pytest.raises(UserError, match="context is empty"):
        qa(question="Where?", context="")
    with pytest.raises(UserError, match="stride"):  # the tokenizer would panic, not raise
        QuestionAnswerer(model, tokenizer, max_length=48, stride=40)(question="Where does the "
                                                                    "river run?", context="x y")
    argv = ["ask", str(model_dir), "-q", "Where?", "-c", "North.", "--max-length", "4"]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("waldorf ask: error: ")


@pytest.mark.parametrize("context", [
    "Le fleuve coule vers le nord. " * 2000,  # ~14k tokens: hundreds of windows
    "川は北へ流れる。東京は日本の首都です。",  # non-Latin text: [UNK] and CJK characters
    "Москва — столица России.",
])
def test_long_and_non_latin_contexts_get_a_valid_answer(model_dir, context):
    model, tokenizer = load_qa(model_dir)
    out = QuestionAnswerer(model, tokenizer, max_length=128, stride=32)(
        question="Où coule le fleuve ?", context=context)
    assert context[out["start"]:out["end"]] == out["answer"]
    assert 0.0 <= out["score"] <= 1.0


def test_evaluate_qa_returns_official_and_forced_keys(model_dir, tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(SQUAD))
    examples = data.read_squad_json(path)
    model, tokenizer = load_qa(model_dir)
    out = evaluate_qa(model, tokenizer, examples, get_profile("smoke"))
    official = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                "NoAns_exact", "NoAns_f1", "NoAns_total",
                "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    assert list(out)[:len(official)] == official
    assert {"forced_HasAns_exact", "forced_HasAns_f1"} <= set(out)
    assert isinstance(out["predictions"], QAPredictions)
    assert set(out["predictions"].na_probs) == {"z1", "z2", "r1"}
    assert out["best_f1"] >= out["NoAns_total"] / out["total"] * 100 - 1e-9  # abstain-all floor


def test_threshold_curve_spans_abstain_all_to_answer_all(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(SQUAD))
    examples = data.read_squad_json(path)
    spans = {"z1": "zebra", "z2": "moon", "r1": "runs north"}
    na_probs = {"z1": 0.2, "z2": 0.7, "r1": 0.6}
    answers = {q: "" if na_probs[q] > 0.5 else s for q, s in spans.items()}
    predictions = QAPredictions(answers, na_probs, spans, {})
    curve = threshold_curve(examples, predictions, [-1.0, 0.5, 0.65, 1.0])
    assert curve["f1"][0] == pytest.approx(100 / 3)  # abstain everywhere: the NoAns share
    assert curve["HasAns_f1"][-1] == pytest.approx(squad_evaluate(examples, spans)["HasAns_f1"])
    assert curve["f1"][1] == pytest.approx(squad_evaluate(examples, answers)["f1"])  # own decision
    assert curve["HasAns_f1"][2] > curve["HasAns_f1"][1]  # answering r1 too gains its partial F1
    np.testing.assert_allclose(curve["answered"], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve["NoAns_f1"], [100, 100, 100, 0])
    full = threshold_curve(examples, predictions)  # grid plus every na_prob: exact maximum
    assert {0.0, 0.2, 0.5, 0.6, 0.7, 1.0} <= set(np.round(full["threshold"], 9))
    assert full["f1"].max() >= squad_evaluate(examples, answers, na_probs)["best_f1"] - 1e-9


def test_span_probabilities_point_at_the_answer_across_windows():
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    zebra = tokenizer.convert_tokens_to_ids("zebra")
    out = span_probabilities(SpotWord(zebra), tokenizer, "Which animal sleeps standing?",
                             LONG_CONTEXT, max_length=48, stride=16)
    assert out["windows"] > 3
    first, last = out["offsets"][np.argmax(out["start"])]
    assert LONG_CONTEXT[first:last] == "zebra" and out["tokens"][np.argmax(out["end"])] == "zebra"
    assert out["start"].max() > 0.99 and out["end"].max() > 0.99  # logit 10 against zeros
    assert np.all(np.diff(out["offsets"][:, 0]) > 0)  # each paragraph token once, in order
    assert len(out["tokens"]) == len(tokenizer(LONG_CONTEXT, add_special_tokens=False)["input_ids"])


def test_span_probabilities_are_distributions(model_dir):
    model, tokenizer = load_qa(model_dir)
    out = span_probabilities(model, tokenizer, "Where does the river run?",
                             "The river runs north.")
    assert out["windows"] == 1 and out["tokens"] == ["the", "river", "runs", "north", "."]
    for key in ["start", "end"]:
        total = out[key].sum() + out[f"null_{key}"]
        assert 0.0 < total <= 1.0 + 1e-6  # the rest lies on question and separator tokens


def test_protocol_scores_choose_on_dev_and_score_test(model_dir, tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(SQUAD))
    dev = data.read_squad_json(path)
    model, tokenizer = load_qa(model_dir)
    profile = get_profile("smoke")
    scores, dev_predictions = protocol_scores(model, tokenizer, profile, dev, dev)
    official = squad_evaluate(dev, dev_predictions.answers, dev_predictions.na_probs)
    assert scores.threshold == official["best_f1_thresh"]  # chosen on dev
    # the same questions as test: F1 at the dev-chosen threshold is the official best_f1
    assert 100 * scores.f1_at_threshold.mean() == pytest.approx(official["best_f1"])
    again, reused = protocol_scores(model, tokenizer, profile, dev, dev, dev_predictions)
    assert reused is dev_predictions and again.threshold == scores.threshold
