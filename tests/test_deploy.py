"""Tests of the block profiler and the deployment paths: each path runs a tiny model and agrees
with eager fp32.

Agreement is checked on a batch of a different shape (and with padding) than the one used to
compile or export, so a path that bakes in the example's shape fails here. No timing is asserted.
"""

from __future__ import annotations

import pytest
import torch
from test_bench import tiny_bert, tiny_waldorf

from waldorf.bench import Timing, make_inputs
from waldorf.deploy import (
    DEPLOY_PATHS,
    PathModel,
    SpanLogits,
    compare_paths,
    format_paths,
    max_abs_diff,
    model_blocks,
    prepare_path,
    profile_blocks,
    root_cause,
)

# Largest logit difference allowed, relative to the largest eager logit.
TOLERANCE = {"eager_fp32": 0.0, "compile": 1e-5, "onnxruntime": 1e-5,
             "bf16_autocast": 0.05, "int8_dynamic": 0.25}


def padded_batch() -> dict[str, torch.Tensor]:
    batch = make_inputs(3, 16, vocab_size=1200, seed=1)
    batch["attention_mask"][0, 12:] = 0  # one padded window
    return batch


def test_profile_blocks_times_every_waldorf_block_and_the_rest():
    model = tiny_waldorf()
    c = model.config
    rows = profile_blocks(model, seq_len=16, batch_size=2, repeats=3, warmup=1)
    expected = ["embeddings", *(f"conv_units.{i}" for i in range(c.num_conv_layers)),
                *(["downsample"] if c.downsample > 1 else []),
                *(f"transformer_units.{i}" for i in range(c.num_transformer_layers)),
                *(["upsample"] if c.downsample > 1 else []),
                *(f"post_conv_units.{i}" for i in range(c.num_post_conv_layers)),
                "qa_outputs", "other"]
    assert [row["block"] for row in rows] == expected  # forward order, every block once
    assert sum(row["fraction"] for row in rows) == pytest.approx(1.0)
    assert all(row["n"] == 3 and row["median_ms"] >= 0 and row["iqr_ms"] >= 0 for row in rows)
    kinds = {row["block"]: row["kind"] for row in rows}
    assert kinds["embeddings"] == "embeddings" and kinds["qa_outputs"] == "head"
    assert kinds["transformer_units.0"] == "transformer" and kinds["conv_units.0"] == "conv"
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_model_blocks_of_a_bert_model_are_embeddings_layers_and_head():
    names = [name for name, _ in model_blocks(tiny_bert())]
    assert names == ["embeddings", "encoder.layer.0", "qa_outputs"]
    rows = profile_blocks(tiny_bert(), seq_len=8, repeats=2, warmup=1)
    assert [row["kind"] for row in rows] == ["embeddings", "transformer", "head", "other"]


@pytest.mark.parametrize("path", DEPLOY_PATHS)
@pytest.mark.parametrize("build", [
    tiny_bert,
    pytest.param(tiny_waldorf, marks=pytest.mark.filterwarnings("ignore")),
])
def test_path_agrees_with_eager_on_a_new_batch(build, path, tmp_path):
    model = build()
    batch = padded_batch()
    with torch.inference_mode():
        reference = SpanLogits(model)(**batch)
    # The "eager" backend runs dynamo's graph capture without inductor's minutes of C++ builds.
    fn = prepare_path(model, path, make_inputs(2, 16, 1200), tmp_path, compile_backend="eager")
    with torch.inference_mode():
        start, end = fn(batch)
    assert start.shape == end.shape == (3, 16) and start.dtype == torch.float32
    scale = float(reference[0].abs().max())
    assert max_abs_diff((start, end), reference) <= TOLERANCE[path] * scale + 1e-6


def test_onnx_export_keeps_batch_and_length_dynamic(tmp_path):
    fn = prepare_path(tiny_bert(), "onnxruntime", make_inputs(2, 16, 1200), tmp_path)
    assert all(isinstance(axis, str) for axis in fn.details["onnx_input_shape"])
    longer = make_inputs(1, 24, vocab_size=1200, seed=2)
    with torch.inference_mode():
        assert max_abs_diff(fn(longer), SpanLogits(tiny_bert())(**longer)) < 1e-5


def test_compare_paths_reports_every_path_and_failures_as_rows():
    rows = compare_paths({"bert_tiny": tiny_bert()}, ["eager_fp32", "int8_dynamic"], seq_len=16,
                         batch_size=2, timing=Timing(1, 2, 2, 0.0), compile_backend="eager")
    by_path = {row["path"]: row for row in rows}
    assert set(by_path) == {"eager_fp32", "int8_dynamic"}
    assert all(row["status"] == "ok" and row["n"] == 2 for row in rows)
    assert by_path["eager_fp32"]["max_abs_diff"] == 0.0
    assert by_path["eager_fp32"]["speedup_vs_eager"] == 1.0
    assert "int8_dynamic" in format_paths(rows)
    with pytest.raises(ValueError, match="unknown deployment path 'tensorrt'"):
        compare_paths({"bert_tiny": tiny_bert()}, ["tensorrt"], 16, 1)


def test_root_cause_reports_the_innermost_error():
    try:
        try:
            raise KeyError("the real reason")
        except KeyError as inner:
            raise RuntimeError("export failed, step 1/3") from inner
    except RuntimeError as outer:
        assert root_cause(outer) == "KeyError: 'the real reason'"


def test_path_model_looks_like_a_qa_model_to_the_evaluation_code():
    model = tiny_bert()
    wrapped = PathModel(model, prepare_path(model, "int8_dynamic", make_inputs(2, 16, 1200)))
    batch = padded_batch()
    with torch.inference_mode():
        out = wrapped(**batch)
        reference = model(**batch)
    assert out.start_logits.shape == reference.start_logits.shape
    assert next(wrapped.parameters()).device.type == "cpu"


def test_agreement_on_dev_scores_a_saved_checkpoint_through_each_path(tmp_path):
    from transformers import AutoTokenizer

    from waldorf.config import BUNDLED_MINILM, get_profile, resolve_checkpoint
    from waldorf.data import load_squad
    from waldorf.deploy import agreement_on_dev

    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    tiny_bert(vocab_size=tokenizer.vocab_size, positions=128).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    profile = get_profile("smoke")
    examples = load_squad("dev", profile).select(range(4))
    scores = agreement_on_dev(tmp_path, ["eager_fp32", "int8_dynamic"], profile, examples)
    assert set(scores) == {"eager_fp32", "int8_dynamic"}
    assert scores["eager_fp32"]["total"] == 4 and "f1" in scores["int8_dynamic"]
