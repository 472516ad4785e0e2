"""waldorf.postprocess: from window logits back to answers, on real sample paragraphs."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waldorf.data import SAMPLE_PATH, prepare_eval_features, prepare_train_features, read_squad_json
from waldorf.postprocess import postprocess_qa


@pytest.fixture(scope="module")
def one_question(tokenizer):
    sample = read_squad_json(SAMPLE_PATH)
    row = next(r for r in sample if r["answers"]["text"] == ["Agnes Thorley"])
    examples = sample.select([list(sample["id"]).index(row["id"])])
    feats = datasets.Dataset.from_dict(
        prepare_eval_features(examples.to_dict(), tokenizer, max_length=128, stride=64))
    train = prepare_train_features(examples.to_dict(), tokenizer, max_length=128, stride=64)
    return examples, feats, train["start_positions"][0], train["end_positions"][0]


def _logits(feats, spikes):
    start, end = np.zeros((len(feats), 128)), np.zeros((len(feats), 128))
    for (array, window, position), value in spikes.items():
        (start if array == "start" else end)[window, position] = value
    return start, end


def test_postprocess_picks_the_best_span_and_forced_answer(one_question):
    examples, feats, s, e = one_question
    question_id = examples["id"][0]
    start, end = _logits(feats, {("start", 0, s): 5.0, ("end", 0, e): 5.0,
                                 ("start", 0, 0): 1.0, ("end", 0, 0): 1.0})
    found = postprocess_qa(examples, feats, start, end)
    assert found.answers[question_id] == "Agnes Thorley"
    assert 0.0 < found.na_probs[question_id] < 0.5
    start[0, 0] = end[0, 0] = 9.0  # now the null answer wins
    abstain = postprocess_qa(examples, feats, start, end)
    assert abstain.answers[question_id] == ""
    assert abstain.best_spans[question_id] == "Agnes Thorley"
    assert 0.5 < abstain.na_probs[question_id] < 1.0
    lenient = postprocess_qa(examples, feats, start, end, null_threshold=100.0)
    assert lenient.answers[question_id] == "Agnes Thorley"


def test_postprocess_respects_max_answer_length_and_span_order(one_question):
    examples, feats, s, e = one_question
    question_id = examples["id"][0]
    start, end = _logits(feats, {("start", 0, s): 5.0, ("end", 0, s + 8): 5.0,
                                 ("end", 0, e): 2.0, ("end", 0, s - 1): 6.0})
    short = postprocess_qa(examples, feats, start, end, max_answer_length=4)
    assert short.answers[question_id] == "Agnes Thorley"  # the 9-token span is too long
    long = postprocess_qa(examples, feats, start, end, max_answer_length=30)
    assert long.answers[question_id].startswith("Agnes Thorley")
    assert len(long.answers[question_id]) > len("Agnes Thorley")


def test_postprocess_aggregates_over_windows(tokenizer):
    sample = read_squad_json(SAMPLE_PATH)
    long_paragraph = list(sample["id"]).index("waldorf-sample-0046")
    examples = sample.select([long_paragraph])
    feats = datasets.Dataset.from_dict(
        prepare_eval_features(examples.to_dict(), tokenizer, max_length=64, stride=24))
    assert len(feats) >= 3
    start, end = np.zeros((len(feats), 64)), np.zeros((len(feats), 64))
    last = len(feats) - 1
    context_positions = [i for i, o in enumerate(feats["offset_mapping"][last]) if o is not None]
    p = context_positions[-3]
    start[last, p], end[last, p + 1] = 4.0, 4.0
    start[:, 0] = end[:, 0] = 3.0
    start[1, 0] = end[1, 0] = 1.0  # the most confident window sets the null score (minimum)
    found = postprocess_qa(examples, feats, start, end)
    offsets = feats["offset_mapping"][last]
    expected = examples["context"][0][offsets[p][0]:offsets[p + 1][1]]
    assert found.best_spans["waldorf-sample-0046"] == expected
    assert found.na_probs["waldorf-sample-0046"] == pytest.approx(1 / (1 + np.exp(-(2.0 - 8.0))))


def test_postprocess_rejects_windows_of_unknown_questions(one_question):
    examples, feats, _, _ = one_question
    other = read_squad_json(SAMPLE_PATH).select([0])
    start, end = np.zeros((len(feats), 128)), np.zeros((len(feats), 128))
    with pytest.raises(ValueError, match="no given question"):
        postprocess_qa(other, feats, start, end)


# --- properties over random logits -----------------------------------------------------------

@pytest.fixture(scope="module")
def many_windows(tokenizer):
    """Every sample question cut into short windows: many windows per question, padding, CLS."""
    sample = read_squad_json(SAMPLE_PATH)
    feats = prepare_eval_features(sample.to_dict(), tokenizer, max_length=48, stride=16)
    return sample, datasets.Dataset.from_dict(feats)


@settings(deadline=None, max_examples=60,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0, 1e4]),
       max_answer_length=st.integers(1, 30), n_best=st.integers(1, 20))
def test_spans_always_lie_inside_their_context(many_windows, seed, scale, max_answer_length,
                                               n_best):
    examples, feats = many_windows
    rng = np.random.default_rng(seed)
    start, end = (rng.normal(0, scale, (len(feats), 48)) for _ in range(2))
    found = postprocess_qa(examples, feats, start, end, n_best=n_best,
                           max_answer_length=max_answer_length)
    for qid, context in zip(examples["id"], examples["context"], strict=True):
        first, last = found.best_offsets[qid]
        assert 0 <= first <= last <= len(context)
        assert found.best_spans[qid] == context[first:last]
        assert found.answers[qid] in ("", found.best_spans[qid])
        assert 0.0 <= found.na_probs[qid] <= 1.0
