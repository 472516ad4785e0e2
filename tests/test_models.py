"""Tests for waldorf.models: shapes, masks, resampling, round trips, gradients and counting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    BertConfig,
    BertForQuestionAnswering,
)

import waldorf.models
from waldorf.distill import copy_from_teacher
from waldorf.models import (
    WaldorfConfig,
    WaldorfForQuestionAnswering,
    WaldorfModel,
    baseline_config,
    build_student,
    count_macs,
    count_parameters,
    distilbert_style_from_teacher,
    downsample_mask,
    four_layer_baseline,
)
from waldorf.models.modeling_waldorf import depthwise_conv1d
from waldorf.models.resampling import ReducedLayout, WaldorfDownsample

TINY = dict(vocab_size=100, embedding_size=16, hidden_size=32, num_attention_heads=4,
            intermediate_size=64, num_conv_layers=2, conv_kernel_size=3, downsample=2,
            num_transformer_layers=2, num_post_conv_layers=1, max_position_embeddings=64)


# Funnel-Transformer's switches, each alone and both together
SWITCHES = {"pool_query_only": dict(pool_query_only=True), "separate_cls": dict(separate_cls=True),
            "both": dict(pool_query_only=True, separate_cls=True)}
EVERY_SHAPE = {"default": {}, **SWITCHES}


def tiny_model(**overrides) -> WaldorfForQuestionAnswering:
    torch.manual_seed(0)
    return WaldorfForQuestionAnswering(WaldorfConfig(**{**TINY, **overrides})).eval()


def batch(size=2, seq=13, seed=1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 100, (size, seq), generator=generator)  # (batch, seq)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq // 2:] = 1
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                token_type_ids=token_type_ids)


def test_auto_config_knows_waldorf_after_import():
    assert waldorf.models.WaldorfConfig is WaldorfConfig
    config = AutoConfig.for_model("waldorf", hidden_size=48, num_attention_heads=4)
    assert isinstance(config, WaldorfConfig) and config.hidden_size == 48
    assert isinstance(AutoModel.from_config(WaldorfConfig(**TINY)), WaldorfModel)


def test_config_rejects_bad_shapes():
    invalid = StrictDataclassClassValidationError  # wraps our ValueError and keeps its message
    with pytest.raises(invalid, match="num_attention_heads"):
        WaldorfConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(invalid, match="odd"):
        WaldorfConfig(conv_kernel_size=4)
    with pytest.raises(invalid, match="downsample_mode"):
        WaldorfConfig(downsample_mode="stride")


@pytest.mark.parametrize("seq", [13, 16, 1])
def test_output_shapes_follow_documented_convention(seq):
    model = tiny_model()
    out = model(**batch(seq=seq), output_hidden_states=True, output_attentions=True)
    assert out.start_logits.shape == out.end_logits.shape == (2, seq)
    n_units = sum(TINY[k] for k in ("num_conv_layers", "num_transformer_layers",
                                    "num_post_conv_layers"))
    assert len(out.hidden_states) == 1 + n_units
    assert all(h.shape == (2, seq, 32) for h in out.hidden_states)
    short = -(-seq // 2)
    assert len(out.attentions) == TINY["num_transformer_layers"]
    assert all(a.shape == (2, 4, short, short) for a in out.attentions)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(2, 4, short))


def test_reported_transformer_states_repeat_each_reduced_position():
    out = tiny_model()(**batch(seq=13), output_hidden_states=True)
    reported = out.hidden_states[1 + TINY["num_conv_layers"]]  # first transformer unit
    assert torch.equal(reported[:, 0], reported[:, 1])  # tokens 0 and 1 share reduced position 0
    assert not torch.equal(reported[:, 1], reported[:, 2])  # next pair
    assert not torch.equal(reported[:, 11], reported[:, 12])  # odd tail: token 12 alone in pair 6


def test_front_is_the_first_hidden_states_and_their_mask():
    model, inputs = tiny_model(), batch(seq=9)
    inputs["attention_mask"][1, 6:] = 0
    with torch.no_grad():
        states, mask = model.waldorf.front(**inputs)
        out = model(**inputs, output_hidden_states=True)
    assert len(states) == 1 + TINY["num_conv_layers"]
    for ours, theirs in zip(states, out.hidden_states, strict=False):
        assert torch.equal(ours, theirs)
    assert mask.shape == (2, 9, 1) and mask[1, 6:].sum() == 0
    assert model.waldorf.front(**batch(seq=9))[1] is None  # no padding: no masking at all


def test_no_downsample_keeps_full_length_attention():
    out = tiny_model(downsample=1)(**batch(seq=9), output_attentions=True)
    assert out.attentions[0].shape == (2, 4, 9, 9)


@pytest.mark.parametrize("shape", EVERY_SHAPE)
@pytest.mark.parametrize("mode", ["conv", "pool"])
@pytest.mark.parametrize("real", [7, 8])
def test_appended_padding_never_changes_real_logits(mode, real, shape):
    model = tiny_model(downsample_mode=mode, **EVERY_SHAPE[shape])
    short = batch(size=1, seq=real)
    with torch.no_grad():
        reference = model(**short)
        for extra in (1, 2, 5):
            padded = {k: F.pad(v, (0, extra), value=0) for k, v in short.items()}
            padded["input_ids"][:, real:] = 0  # [PAD]
            out = model(**padded)
            assert torch.allclose(out.start_logits[:, :real], reference.start_logits, atol=1e-5)
            assert torch.allclose(out.end_logits[:, :real], reference.end_logits, atol=1e-5)


@pytest.mark.parametrize("shape", EVERY_SHAPE)
def test_padding_in_a_batch_matches_the_example_alone(shape):
    model = tiny_model(**EVERY_SHAPE[shape])
    full = batch(size=2, seq=11)
    full["attention_mask"][1, 6:] = 0
    full["input_ids"][1, 6:] = 0
    alone = {k: v[1:, :6] for k, v in full.items()}
    with torch.no_grad():
        together, single = model(**full), model(**alone)
    assert torch.allclose(together.start_logits[1, :6], single.start_logits[0], atol=1e-5)


def test_downsample_mask_covers_odd_lengths():
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]])
    assert downsample_mask(mask, 2).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert downsample_mask(mask, 3).tolist() == [[1, 1, 0], [1, 0, 0]]


def test_reduced_layout_by_hand():
    assert ReducedLayout(2).positions(7).tolist() == [0, 0, 1, 1, 2, 2, 3]
    cls_apart = ReducedLayout(2, separate_cls=True)  # [CLS] | 1 2 | 3 4 | 5 6 | 7
    assert cls_apart.positions(8).tolist() == [0, 1, 1, 2, 2, 3, 3, 4]
    assert [cls_apart.length(n) for n in (1, 2, 3, 7, 8)] == [1, 2, 2, 4, 5]
    assert ReducedLayout(3, True).positions(8).tolist() == [0, 1, 1, 1, 2, 2, 2, 3]
    reduced = torch.tensor([[10, 20, 30, 40]])  # (batch, seq')
    assert cls_apart.stretch(reduced, 7).tolist() == [[10, 20, 20, 30, 30, 40, 40]]
    assert ReducedLayout(2).stretch(reduced, 7).tolist() == [[10, 10, 20, 20, 30, 30, 40]]
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0]])
    assert downsample_mask(mask, 2, separate_cls=True).tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert downsample_mask(mask[:, :4], 2, separate_cls=True).tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pool_downsampling_keeps_cls_as_it_is_with_separate_cls():
    down = WaldorfDownsample(WaldorfConfig(**TINY, downsample_mode="pool", separate_cls=True))
    x = torch.arange(6.0)[None, :, None].expand(1, 6, 32)  # token t holds t: (batch, seq, hidden)
    mask = torch.tensor([[1.0, 1, 1, 1, 0, 0]])[..., None]  # (batch, seq, 1), as the model's
    small, small_mask = down(x, mask)  # [CLS] | 1 2 | 3 (4 padding) | 5 (padding)
    assert small[0, :, 0].tolist() == [0.0, 1.5, 3.0, 0.0]
    assert small_mask[0, :, 0].tolist() == [1, 1, 1, 0]


@pytest.mark.parametrize("shape", SWITCHES)
@pytest.mark.parametrize("seq", [13, 16, 1])
def test_output_shapes_with_funnel_switches(shape, seq):
    switches = SWITCHES[shape]
    out = tiny_model(**switches)(**batch(seq=seq), output_hidden_states=True,
                                 output_attentions=True)
    assert out.start_logits.shape == out.end_logits.shape == (2, seq)
    assert all(h.shape == (2, seq, 32) for h in out.hidden_states)
    short = 1 + -(-(seq - 1) // 2) if switches.get("separate_cls") else -(-seq // 2)
    first_keys = seq if switches.get("pool_query_only") else short
    assert out.attentions[0].shape == (2, 4, short, first_keys)  # merged queries, full keys
    assert out.attentions[1].shape == (2, 4, short, short)  # later units: as without it


def test_pool_query_only_unit_attends_over_every_real_token():
    inputs = batch(seq=13)
    inputs["attention_mask"][1, 9:] = 0
    out = tiny_model(pool_query_only=True)(**inputs, output_attentions=True)
    first = out.attentions[0]  # (batch, heads, seq', seq)
    assert first.shape == (2, 4, 7, 13)
    real = inputs["attention_mask"][:, None, None, :].float()  # (batch, 1, 1, seq)
    assert torch.allclose((first * real).sum(-1), torch.ones(2, 4, 7))  # rows: real keys only
    assert first[1, ..., 9:].abs().max() == 0.0


def test_separate_cls_reports_cls_alone_and_pairs_after_it():
    out = tiny_model(separate_cls=True)(**batch(seq=13), output_hidden_states=True)
    reported = out.hidden_states[1 + TINY["num_conv_layers"]]  # first transformer unit
    assert not torch.equal(reported[:, 0], reported[:, 1])  # [CLS] alone in reduced position 0
    assert torch.equal(reported[:, 1], reported[:, 2])  # tokens 1 and 2 share position 1
    assert torch.equal(reported[:, 11], reported[:, 12])  # 11, 12: position 6, no odd tail


def test_funnel_switches_do_nothing_without_downsampling():
    inputs = batch(seq=9)
    inputs["attention_mask"][0, 6:] = 0
    with torch.no_grad():
        plain = tiny_model(downsample=1)(**inputs, output_attentions=True)
        switched = tiny_model(downsample=1, **SWITCHES["both"])(**inputs, output_attentions=True)
    assert torch.equal(plain.start_logits, switched.start_logits)
    assert all(torch.equal(a, b) for a, b in zip(plain.attentions, switched.attentions,
                                                 strict=True))


def test_config_dict_names_the_funnel_switches_only_when_on():
    assert not {"pool_query_only", "separate_cls"} & set(WaldorfConfig().to_dict())
    on = WaldorfConfig(separate_cls=True).to_dict()
    assert on["separate_cls"] is True and "pool_query_only" not in on
    back = WaldorfConfig.from_dict(on)
    assert back.separate_cls and not back.pool_query_only


def test_depthwise_conv1d_equals_torch_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 8, 5, padding=2, groups=8)
    x = torch.randn(2, 11, 8)  # (batch, seq, hidden)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(depthwise_conv1d(x, conv), expected, atol=1e-6)


@pytest.mark.parametrize("shape", EVERY_SHAPE)
def test_sdpa_path_equals_explicit_softmax_path(shape):
    model = tiny_model(**EVERY_SHAPE[shape])
    inputs = batch(seq=15)
    inputs["attention_mask"][0, 9:] = 0
    with torch.no_grad():
        fast = model(**inputs)
        explicit = model(**inputs, output_attentions=True)
    assert torch.allclose(fast.start_logits, explicit.start_logits, atol=1e-5)
    assert torch.allclose(fast.end_logits, explicit.end_logits, atol=1e-5)


def test_save_and_auto_load_round_trip_exactly(tmp_path):
    model = tiny_model(downsample_mode="pool", factorized_embeddings=False)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, WaldorfForQuestionAnswering)
    saved, original = loaded.config.to_dict(), model.config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original
    inputs = batch(seq=10)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).start_logits, model(**inputs).start_logits)
        assert torch.equal(loaded(**inputs).end_logits, model(**inputs).end_logits)


@pytest.mark.parametrize("mode", ["conv", "pool"])
def test_save_and_load_round_trip_with_funnel_switches(tmp_path, mode):
    model = tiny_model(downsample_mode=mode, **SWITCHES["both"])
    model.save_pretrained(tmp_path)
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert loaded.config.pool_query_only and loaded.config.separate_cls
    inputs = batch(seq=12)
    inputs["attention_mask"][1, 7:] = 0
    with torch.no_grad():
        ours, theirs = model(**inputs), loaded(**inputs)
    assert torch.equal(ours.start_logits, theirs.start_logits)
    assert torch.equal(ours.end_logits, theirs.end_logits)


def test_copy_from_teacher_copies_the_pool_query_only_unit_exactly():
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64)).eval()
    plain, switched = tiny_model(), tiny_model(**SWITCHES["both"])
    assert copy_from_teacher(plain, teacher, "top") == copy_from_teacher(switched, teacher, "top")
    ours, theirs = plain.state_dict(), switched.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items() if "transformer_units" in k)
    unit, layer = switched.waldorf.transformer_units[0], teacher.bert.encoder.layer[1]
    attention = layer.attention.self
    qkv = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
    assert torch.equal(unit.attention.qkv.weight, qkv)
    x = torch.randn(2, 9, 32)  # (batch, seq, hidden)
    with torch.no_grad():  # queries and keys from one sequence: the teacher's layer again
        assert torch.allclose(unit(x, None, source=x)[0], layer(x), atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_onnx_export_of_funnel_switches_keeps_the_length_dynamic(tmp_path):
    """Exported at one length, run at others: the layout's lengths stay symbolic."""
    from waldorf.deploy import prepare_path

    model = tiny_model(**SWITCHES["both"])
    example = batch(seq=16)
    example["attention_mask"][1, 12:] = 0
    fn = prepare_path(model, "onnxruntime", example, tmp_path)
    for seq in (11, 9):
        inputs = batch(seq=seq, seed=seq)
        inputs["attention_mask"][1, seq - 3:] = 0
        with torch.no_grad():
            reference = model(**inputs).start_logits  # (batch, seq)
        assert torch.allclose(torch.as_tensor(fn(inputs)[0]), reference, atol=1e-4)


def test_loss_matches_bert_definition():
    model = tiny_model()
    inputs = batch(seq=12)
    start, end = torch.tensor([3, 0]), torch.tensor([5, 40])  # 40 lies outside the window
    out = model(**inputs, start_positions=start, end_positions=end)
    start_loss = F.cross_entropy(out.start_logits, start)
    end_loss = F.cross_entropy(out.end_logits[:1], end[:1])  # clamped to 12 = ignored
    assert torch.allclose(out.loss, (start_loss + end_loss) / 2)
    as_tuple = model(**inputs, start_positions=start, end_positions=end, return_dict=False)
    assert torch.allclose(as_tuple[0], out.loss)


@pytest.mark.parametrize("shape", ["default", "both"])
def test_gradient_reaches_every_parameter(shape):
    model = tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       **EVERY_SHAPE[shape]).train()
    inputs = batch(size=3, seq=13)
    inputs["attention_mask"][2, 8:] = 0
    start, end = torch.tensor([1, 4, 0]), torch.tensor([2, 6, 0])
    out = model(**inputs, start_positions=start, end_positions=end)
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_build_student_by_name_and_config():
    assert isinstance(build_student("waldorf", **TINY), WaldorfForQuestionAnswering)
    ablation = build_student(WaldorfConfig(**TINY), downsample=1)
    assert ablation.config.downsample == 1 and ablation.waldorf.downsample is None
    tiny_bert = build_student("tinybert4", vocab_size=100)
    assert isinstance(tiny_bert, BertForQuestionAnswering) and tiny_bert.config.hidden_size == 312
    with pytest.raises(ValueError, match="unknown student"):
        build_student("albert")


def test_baseline_parameter_counts():
    # Full shapes on the BERT vocabulary, built on the meta device: no memory, exact counts.
    with torch.device("meta"):
        tinybert = count_parameters(build_student("tinybert4"))
        distil = count_parameters(build_student("distilbert4"))
        base = count_parameters(build_student("bert_base"))
    assert tinybert["total"] == 14_253_218  # TinyBERT's 14.5M adds a pooler and a fit layer
    assert distil["total"] == 52_190_210
    assert base["total"] == 108_893_186  # BERT-Base's 110M minus its pooler
    assert tinybert["head"] == 312 * 2 + 2 and tinybert["other"] == 0


def test_teacher4_is_the_teacher_shape_two_layers_shorter():
    with torch.device("meta"):
        teacher, four = build_student("teacher-shape"), build_student("teacher4")
    layer = count_parameters(teacher.bert.encoder.layer[0])["total"]
    assert four.config.num_hidden_layers == 4 and four.config.hidden_size == 384
    large4 = build_student("bert_large4", vocab_size=100)  # the same cut of the gpu teacher
    assert large4.config.num_hidden_layers == 4 and large4.config.hidden_size == 1024
    assert four_layer_baseline(teacher.config) == "teacher4"
    assert four_layer_baseline(baseline_config("bert_large")) == "bert_large4"
    with pytest.raises(ValueError, match="width 768"):
        four_layer_baseline(baseline_config("bert_base"))
    assert count_parameters(teacher)["total"] - count_parameters(four)["total"] == 2 * layer


def test_parameter_components_add_up_for_waldorf():
    model = tiny_model()
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["other"] == 0 and counts["conv"] > 0 and counts["resample"] > 0


def test_macs_scale_quadratically_for_attention_and_linearly_for_conv():
    config = WaldorfConfig()
    short, long = count_macs(config, 128), count_macs(config, 256)
    assert long["attention_scores"] == 4 * short["attention_scores"]
    assert long["conv"] == 2 * short["conv"] and long["ffn"] == 2 * short["ffn"]
    bert = baseline_config("tinybert4")
    bert_scores = [count_macs(bert, n)["attention_scores"] for n in (128, 256)]
    assert bert_scores[1] == 4 * bert_scores[0]
    assert count_macs(bert, 384)["ffn"] == 4 * 384 * 2 * 312 * 1200
    no_resample = count_macs(WaldorfConfig(downsample=1), 256)
    assert no_resample["attention_scores"] == 4 * long["attention_scores"]


def test_macs_of_the_funnel_switches_count_full_length_keys_and_the_lone_cls():
    seq, hidden = 256, 384
    base = count_macs(WaldorfConfig(), seq)
    pq = count_macs(WaldorfConfig(pool_query_only=True), seq)
    short = seq // 2
    assert pq["attention_proj"] - base["attention_proj"] == 2 * (seq - short) * hidden * hidden
    assert pq["attention_scores"] - base["attention_scores"] == 2 * short * short * hidden
    assert pq["ffn"] == base["ffn"]  # the feed-forward still runs on merged positions
    cls = count_macs(WaldorfConfig(separate_cls=True), seq)  # [CLS] alone: one more position
    assert cls["ffn"] == base["ffn"] * (short + 1) // short


def test_distilbert_style_student_copies_alternate_teacher_layers():
    torch.manual_seed(0)
    teacher_config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=6,
                                num_attention_heads=4, intermediate_size=64)
    teacher = BertForQuestionAnswering(teacher_config).eval()
    student = distilbert_style_from_teacher(teacher, layers=(0, 2, 4))
    assert student.config.num_hidden_layers == 3
    copied = student.bert.encoder.layer[1].attention.self.query.weight
    assert torch.equal(copied, teacher.bert.encoder.layer[2].attention.self.query.weight)
    assert torch.equal(student.qa_outputs.weight, teacher.qa_outputs.weight)
    with pytest.raises(ValueError, match="teacher"):
        distilbert_style_from_teacher(teacher, layers=(0, 6))


def test_distilbert_style_student_from_the_offline_teacher_backbone():
    from waldorf.config import BUNDLED_MINILM, resolve_checkpoint

    backbone = AutoModel.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))  # has a pooler
    student = distilbert_style_from_teacher(backbone)
    assert student.config.num_hidden_layers == 3 and student.config.hidden_size == 384
    last = student.bert.encoder.layer[2].output.dense.weight
    assert torch.equal(last, backbone.encoder.layer[4].output.dense.weight)
