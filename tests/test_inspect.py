"""Tests for waldorf.models.inspect: analytic stages, traced shapes and the diagram."""

from __future__ import annotations

import pytest
import torch
from test_models import TINY, tiny_model  # one tiny WaLDORf for every model test
from transformers import BertConfig, BertForQuestionAnswering

from waldorf.models import WaldorfConfig
from waldorf.models.inspect import KIND_COLORS, diagram, stages, trace_shapes


def inputs(seq: int, pad: int = 0) -> dict:
    input_ids = torch.randint(1, 100, (2, seq), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)  # (batch, seq)
    if pad:
        attention_mask[1, -pad:] = 0
    return dict(input_ids=input_ids, attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids))


def test_stages_follow_the_data_flow_and_shorten_odd_lengths():
    rows = stages(WaldorfConfig(**TINY), 13)
    assert [r["name"] for r in rows] == [
        "embeddings", "conv unit 1", "conv unit 2", "down-sample /2", "transformer unit 1",
        "transformer unit 2", "up-sample + skip", "conv unit 3", "span head"]
    assert [r["seq"] for r in rows] == [13, 13, 13, 7, 7, 7, 13, 13, 13]
    assert rows[-1]["width"] == 2 and all(r["width"] == 32 for r in rows[:-1])
    assert all(r["kind"] in KIND_COLORS for r in rows)


def test_without_downsampling_there_is_no_resampling_stage():
    rows = stages(WaldorfConfig(**{**TINY, "downsample": 1}), 13)
    assert not any(r["kind"] == "resample" for r in rows)
    assert all(r["seq"] == 13 for r in rows)


@pytest.mark.parametrize("overrides", [{}, {"downsample": 3, "downsample_mode": "pool"},
                                       {"downsample": 1, "num_post_conv_layers": 0}])
def test_traced_shapes_match_the_analytic_stages(overrides):
    model = tiny_model(**overrides)
    rows, output = trace_shapes(model, **inputs(13, pad=4))
    assert [r["shape"] for r in rows] == [(2, r["seq"], r["width"]) for r in rows]
    assert output.start_logits.shape == output.end_logits.shape == (2, 13)
    assert sum(r["parameters"] for r in rows) == sum(p.numel() for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


def test_trace_rejects_a_bert_model():
    bert = BertForQuestionAnswering(BertConfig(vocab_size=100, hidden_size=32,
                                               num_hidden_layers=1, num_attention_heads=4,
                                               intermediate_size=64))
    with pytest.raises(TypeError, match="BertForQuestionAnswering"):
        trace_shapes(bert, **inputs(8))


def test_diagram_draws_one_box_per_stage_and_the_skip():
    config = WaldorfConfig(**TINY)
    fig = diagram(config, 16)
    boxes = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(boxes) == len(stages(config, 16))
    widths = [b.x1 - b.x0 for b in boxes]
    assert widths[3] == pytest.approx(widths[0] / 2)  # the down-sampled stage is half as wide
    assert any(a.text == "skip" for a in fig.layout.annotations)
    no_skip = diagram(WaldorfConfig(**{**TINY, "downsample": 1}), 16)
    assert not any(a.text == "skip" for a in no_skip.layout.annotations)
