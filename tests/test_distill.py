"""Tests of waldorf.distill: each loss against hand-computed values, then a tiny stage run."""

from __future__ import annotations

import dataclasses
import logging
import math
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering, BertModel

from waldorf import data
from waldorf import teacher as teachers
from waldorf.config import BUNDLED_MINILM, get_profile, resolve_checkpoint
from waldorf.distill import copy_from_teacher, from_teacher, front, losses, stages
from waldorf.distill.report import ReducedTeacher
from waldorf.models import build_student
from waldorf.teacher import TeacherRun
from waldorf.train import History


def test_soft_cross_entropy_matches_hand_computation_with_temperature():
    student = torch.tensor([[0.0, math.log(3.0)]])  # T=1: p_s = [1/4, 3/4]
    teacher = torch.tensor([[0.0, 0.0]])  # p_t = [1/2, 1/2]
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert losses.soft_cross_entropy(student, teacher, 1.0).item() == pytest.approx(expected)
    # T=2: student logits halve -> p_s = [1/(1+sqrt3), sqrt3/(1+sqrt3)]; loss scaled by T^2 = 4
    s = math.sqrt(3.0)
    expected_t2 = -4 * (0.5 * math.log(1 / (1 + s)) + 0.5 * math.log(s / (1 + s)))
    assert losses.soft_cross_entropy(student, teacher, 2.0).item() == pytest.approx(expected_t2)


def test_soft_cross_entropy_ignores_padding_and_keeps_cls():
    student = torch.tensor([[0.0, math.log(3.0), 50.0, -7.0]])
    teacher = torch.tensor([[0.0, 0.0, -3.0, 90.0]])
    mask = torch.tensor([[1, 1, 0, 0]])  # positions 2, 3 are padding; 0 is [CLS]
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    got = losses.soft_cross_entropy(student, teacher, 1.0, mask)
    assert got.item() == pytest.approx(expected)
    # batch mean: a second row with identical distributions has loss = teacher entropy log 2
    two = losses.soft_cross_entropy(torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]]),
                                    torch.tensor([[0.0, 0.0], [2.0, 2.0]]), 1.0)
    assert two.item() == pytest.approx((expected + math.log(2.0)) / 2)


def test_prediction_loss_adds_hard_labels_only_where_gold_exists():
    out = SimpleNamespace(start_logits=torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]),
                          end_logits=torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]))
    teacher = torch.zeros(2, 2)
    positions = torch.tensor([1, 0])
    has_gold = torch.tensor([True, False])
    total, parts = losses.prediction_loss(out, teacher, teacher, positions, positions, has_gold,
                                          temperature=1.0, hard_weight=0.5)
    soft = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) + math.log(2.0)) / 2
    hard = -math.log(0.75)  # row 0 only: gold position 1 has p = 3/4; row 1 has no gold
    assert parts["soft"].item() == pytest.approx(soft)
    assert parts["hard"].item() == pytest.approx(hard)
    assert total.item() == pytest.approx(soft + 0.5 * hard)
    none, _ = losses.prediction_loss(out, teacher, teacher, positions, positions,
                                     torch.tensor([False, False]), hard_weight=0.5)
    assert none.item() == pytest.approx(soft)


def test_hidden_mse_averages_over_real_tokens_only():
    student = torch.tensor([[[1.0, 1.0], [3.0, 0.0], [100.0, 100.0]]])
    teacher = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # token 0: (1 + 0) / 2 = 0.5; token 1: (4 + 0) / 2 = 2; mean over 2 real tokens = 1.25
    assert losses.hidden_mse(student, teacher, mask).item() == pytest.approx(1.25)


def test_attention_kl_by_hand_and_masked_rows():
    teacher = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])  # (1, 1, 2, 2)
    student = torch.tensor([[[[0.25, 0.75], [0.1, 0.9]]]])
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row1 = math.log(1.0 / 0.1)
    assert losses.attention_kl(student, teacher).item() == pytest.approx((row0 + row1) / 2)
    masked = losses.attention_kl(student, teacher, torch.tensor([[1, 0]]))
    assert masked.item() == pytest.approx(row0)
    assert losses.attention_kl(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_pool_attention_rows_sum_to_one_for_odd_lengths():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
    pooled = losses.pool_attention(probs, 2)
    assert pooled.shape == (2, 3, 3, 3)  # ceil(5 / 2)
    assert torch.allclose(pooled.sum(-1), torch.ones(2, 3, 3))
    # hand check of one entry: query group {0, 1}, key group {0, 1}
    expected = (probs[0, 0, 0, :2].sum() + probs[0, 0, 1, :2].sum()) / 2
    assert pooled[0, 0, 0, 0].item() == pytest.approx(expected.item())
    # the last (odd) group holds one token: its row is that token's pooled row
    last = probs[1, 2, 4]
    assert pooled[1, 2, 2].tolist() == pytest.approx(
        [last[:2].sum().item(), last[2:4].sum().item(), last[4].item()])


def test_pool_attention_ignores_padded_queries():
    probs = torch.tensor([[[[0.9, 0.1, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                            [0.2, 0.8, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    pooled = losses.pool_attention(probs, 2, mask)
    assert pooled[0, 0, 1].tolist() == pytest.approx([1.0, 0.0])  # only query 2 is real
    assert losses.pool_mask(mask, 2).tolist() == [[True, True]]
    assert losses.pool_mask(torch.tensor([[1, 1, 1, 0, 0]]), 2).tolist() == [[True, True, False]]


def test_group_heads_and_layer_map():
    probs = torch.softmax(torch.randn(1, 4, 3, 3), dim=-1)
    grouped = losses.group_heads(probs, 2)
    assert torch.allclose(grouped[0, 1], probs[0, 2:].mean(0))
    assert losses.group_heads(probs, 3).shape == (1, 3, 3, 3)
    assert torch.allclose(losses.group_heads(probs, 3)[0, 2], probs[0].mean(0))
    assert losses.layer_map(3, 6) == [1, 3, 5]
    assert losses.layer_map(4, 12) == [2, 5, 8, 11]
    assert losses.layer_map(2, 2) == [0, 1]
    assert losses.layer_map(3, 6, "top") == [3, 4, 5]
    assert losses.layer_map(4, 2, "top") == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="layer mapping"):
        losses.layer_map(3, 6, "bottom")


def test_pooled_hidden_mse_compares_group_means_over_real_tokens():
    teacher = torch.tensor([[[1.0], [3.0], [5.0], [9.0]]])  # (1, 4, 1); token 3 is padding
    mask = torch.tensor([[1, 1, 1, 0]])
    stretched = torch.tensor([[[2.0], [2.0], [5.0], [5.0]]])  # group means 2 and 5, repeated
    assert losses.pooled_hidden_mse(stretched, teacher, mask, 2).item() == pytest.approx(0.0)
    off = stretched + torch.tensor([[[1.0], [1.0], [0.0], [0.0]]])  # group 0 off by 1
    assert losses.pooled_hidden_mse(off, teacher, mask, 2).item() == pytest.approx(0.5)
    assert losses.pooled_hidden_mse(off, teacher, mask, 1).item() == pytest.approx(
        losses.hidden_mse(off, teacher, mask).item())


def test_attention_transfer_pools_and_groups_to_the_student():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    teacher_maps = [torch.softmax(torch.randn(2, 4, 6, 6), -1) for _ in range(4)]
    student_maps = [torch.softmax(torch.randn(2, 2, 3, 3), -1) for _ in range(2)]
    got = losses.attention_transfer(student_maps, teacher_maps, mask, factor=2)
    small = losses.pool_mask(mask, 2)
    expected = torch.stack([
        losses.attention_kl(s, losses.group_heads(losses.pool_attention(teacher_maps[t], 2, mask),
                                                  2), small)
        for s, t in zip(student_maps, [1, 3], strict=True)]).mean()
    assert got.item() == pytest.approx(expected.item())
    assert losses.attention_transfer(student_maps, teacher_maps, mask, factor=1) is None
    assert losses.attention_transfer((), teacher_maps, mask) is None


# ---- stages: a tiny random teacher, sharp synthetic teacher logits, a tiny student ----

TINY_WALDORF = dict(hidden_size=32, embedding_size=16, num_attention_heads=2, intermediate_size=64,
                    num_conv_layers=1, num_transformer_layers=2, num_post_conv_layers=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(profile, teacher run, teacher cache) in seconds, without fine-tuning a real teacher."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(BertConfig(hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=64))
    folder = tmp_path_factory.mktemp("tiny-teacher")
    teacher.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = TeacherRun(folder, {"hash": "tiny-teacher", "key": {"data": {"tiny": True}}}, History())
    base = get_profile("smoke")
    profile = dataclasses.replace(base, student=dataclasses.replace(
        base.student, model_overrides=TINY_WALDORF, learning_rate=5e-3,
        intermediate_epochs=2.0, prediction_epochs=3.0))
    windows = data.tokenize_squad(data.load_squad("train", profile), tokenizer, profile)
    seq = len(windows[0]["input_ids"])
    # A confident teacher (20 nats above the rest on the gold span): a loss a student can lower.
    start = 20.0 * np.eye(seq, dtype=np.float32)[windows["start_positions"]]
    end = 20.0 * np.eye(seq, dtype=np.float32)[windows["end_positions"]]
    cache = datasets.concatenate_datasets([windows, teachers.logit_columns(start, end)], axis=1)
    return profile, run, cache


def _head_and_tail(rows: list[dict]) -> tuple[float, float]:
    losses_ = [row["loss"] for row in rows]
    return float(np.mean(losses_[:2])), float(np.mean(losses_[-2:]))


def test_distillation_lowers_both_stage_losses_and_is_reused(setup):
    profile, run, cache = setup
    result = stages.distill("waldorf", profile, "both", teacher=run, cache=cache, augment=False,
                            train_args={"log_every": 1}, progress=False)
    first = result.previous
    assert first is not None and first.metadata["complete"] and result.metadata["complete"]
    assert first.previous is None and "front" not in first.metadata["key"]  # random init
    for stage in (first, result):
        head, tail = _head_and_tail(stage.history.rows)
        assert tail < head, stage.model_dir
        assert all(math.isfinite(v) for row in stage.history.rows for v in row["parts"].values())
        assert "best_f1" in stage.metadata["dev_scores"]
    assert set(first.history.rows[0]["parts"]) == {"hidden", "units", "attention"}
    assert set(result.history.rows[0]["parts"]) == {"soft", "hard"}
    assert result.metadata["key"]["after"] == first.metadata["hash"]
    model, _ = result.load()
    assert model.config.hidden_size == TINY_WALDORF["hidden_size"]
    again = stages.distill("waldorf", profile, "both", teacher=run, cache=cache, augment=False,
                           train_args={"log_every": 1}, progress=False)
    assert again.model_dir == result.model_dir
    assert again.metadata["created"] == result.metadata["created"]  # found, not retrained
    looked_up = stages.distill("waldorf", profile, "both", teacher=run, augment=False,
                               train_args={"log_every": 1}, reuse_only=True)
    assert looked_up.model_dir == result.model_dir and looked_up.previous is not None
    missing = stages.distill("waldorf", profile, "both", teacher=run, augment=False,
                             train_args={"log_every": 2}, reuse_only=True)
    assert missing is None  # another recipe: nothing trained, nothing found


def test_stage1_terms_switch_what_stage_one_matches_and_key_the_artifact(setup):
    profile, run, cache = setup
    short = dataclasses.replace(profile, student=dataclasses.replace(
        profile.student, prediction_epochs=0.5))
    no_maps = stages.distill("waldorf", short, "intermediate", teacher=run, cache=cache,
                             augment=False, stage1_terms=("units", "hidden"), progress=False)
    assert set(no_maps.history.rows[0]["parts"]) == {"hidden", "units"}
    assert tuple(no_maps.metadata["key"]["stage1_terms"]) == ("hidden", "units")  # canonical
    full = stages.distill("waldorf", short, "intermediate", teacher=run, augment=False,
                          reuse_only=True)
    assert full is None  # the default terms are another recipe: nothing found
    with pytest.raises(ValueError, match="stage1_terms"):
        stages.distill("waldorf", short, teacher=run, stage1_terms=("logits",))


def test_intermediate_closure_on_bert_and_waldorf_students(setup):
    profile, run, cache = setup
    teacher, _ = run.load()
    batch = {k: torch.tensor(cache[:4][k]) for k in ("input_ids", "attention_mask",
                                                      "token_type_ids")}
    bert = build_student(BertConfig(hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                                    intermediate_size=48))
    bert.set_attn_implementation("eager")
    waldorf = build_student("waldorf", **TINY_WALDORF)
    one_unit = build_student("waldorf", **{**TINY_WALDORF, "num_transformer_layers": 1})
    expected = {"hidden", "units", "attention"}
    for student, factor, terms in ((bert, 1, expected), (waldorf, 2, expected),
                                   (one_unit, 2, expected | {"front"})):
        model = stages.DistillModel(student, teacher.config.hidden_size)
        loss, parts = stages.intermediate_loss(teacher, factor, "top")(model, batch)
        assert set(parts) == terms  # one unit <- the top layer; the conv unit <- the one below
        assert all(math.isfinite(v) and v > 0 for v in parts.values())
        loss.backward()
        assert model.projection.weight.grad is not None
    assert isinstance(stages.DistillModel(bert, 32).unit_projection, torch.nn.Linear)  # 24 -> 32


def test_stage1_targets_line_up_with_the_copied_layers(setup):
    """A same-width student copied from the teacher matches its units' targets exactly; with one
    unit (<- the top layer) its conv unit (an identity at step 0) is compared with layer 0."""
    _, run, cache = setup
    teacher, _ = run.load()
    batch = {k: torch.tensor(cache[:4][k]) for k in ("input_ids", "attention_mask",
                                                      "token_type_ids")}
    same = dict(hidden_size=32, factorized_embeddings=False, num_attention_heads=4,
                intermediate_size=64, num_conv_layers=1, downsample=1, num_post_conv_layers=0)
    two = build_student("waldorf", **same, num_transformer_layers=2)
    one = build_student("waldorf", **same, num_transformer_layers=1)
    for student in (two, one):
        copy_from_teacher(student, teacher, "top")
    with torch.no_grad():
        _, parts = stages.intermediate_loss(teacher, 1, "top")(
            stages.DistillModel(two, 32).eval(), batch)
        assert parts["units"] < 1e-8 and parts["attention"] < 1e-6
        assert "front" not in parts  # the first copied layer is layer 0: nothing below it
        _, parts = stages.intermediate_loss(teacher, 1, "top")(
            stages.DistillModel(one, 32).eval(), batch)
        states = teacher(**batch, output_hidden_states=True).hidden_states
        expected = losses.hidden_mse(states[0], states[1], batch["attention_mask"])
    assert parts["units"] > 1e-6  # unit 0 <- layer 1, but fed the embeddings, not layer 0's output
    assert parts["front"] == pytest.approx(expected.item(), rel=1e-4)


def test_front_layer_counts_the_teacher_layers_the_convolutions_replace(setup):
    _, run, _ = setup
    config = run.load()[0].config  # 2 layers
    one_unit = build_student("waldorf", **{**TINY_WALDORF, "num_transformer_layers": 1})
    assert front.front_layer(one_unit, config, "top") == 1  # the unit copies layer 1
    assert front.front_layer(build_student("waldorf", **TINY_WALDORF), config, "top") == 0
    no_conv = build_student("waldorf", **{**TINY_WALDORF, "num_transformer_layers": 1,
                                          "num_conv_layers": 0})
    assert front.front_layer(no_conv, config, "top") == 0
    bert = build_student(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=64))
    assert front.front_layer(bert, config, "top") == 0
    narrow = build_student("waldorf", **{**TINY_WALDORF, "num_transformer_layers": 1,
                                         "hidden_size": 16, "intermediate_size": 32})
    assert front.front_layer(narrow, config, "top") == 0  # copies no layer: nothing to join


def test_stage0_fits_only_the_front_of_a_teacher_initialised_student(setup):
    profile, run, cache = setup
    one_unit = {**TINY_WALDORF, "num_transformer_layers": 1}  # conv unit stands in for layer 0
    fit = dataclasses.replace(profile, student=dataclasses.replace(
        profile.student, model_overrides=one_unit, front_epochs=4.0, intermediate_epochs=0.5))
    result = stages.distill("waldorf", fit, "intermediate", teacher=run, cache=cache,
                            augment=False, init_from_teacher=True, train_args={"log_every": 1},
                            progress=False)
    stage0 = result.previous
    assert stage0.metadata["role"] == "student-front" and stage0.metadata["complete"]
    assert result.metadata["key"]["front"] == stage0.metadata["hash"]
    assert set(stage0.history.rows[0]["parts"]) == {"front"}
    head, tail = _head_and_tail(stage0.history.rows)
    assert tail < head
    teacher, _ = run.load()
    torch.manual_seed(fit.seed)
    start = build_student("waldorf", **one_unit)
    copy_from_teacher(start, teacher, "top")
    fitted, _ = stage0.load()
    moved = {name for name, value in fitted.state_dict().items()
             if not torch.allclose(value, start.state_dict()[name])}
    assert any(name.startswith("waldorf.conv_units.") for name in moved)
    assert all(name.startswith(("waldorf.embeddings.", "waldorf.conv_units.")) for name in moved)
    without = dataclasses.replace(fit, student=dataclasses.replace(fit.student, front_epochs=0.0))
    plain = stages.distill("waldorf", without, "intermediate", teacher=run, augment=False,
                           init_from_teacher=True, train_args={"log_every": 1}, reuse_only=True)
    assert plain is None  # no stage 0: another stage-1 recipe, not found
    no_maps = stages.distill("waldorf", fit, "intermediate", teacher=run, cache=cache,
                             augment=False, init_from_teacher=True, stage1_terms=("hidden",),
                             train_args={"log_every": 1}, progress=False)
    assert no_maps.model_dir != result.model_dir  # another stage 1 ...
    assert no_maps.previous.model_dir == stage0.model_dir  # ... on the same stage 0


def test_copy_from_teacher_reproduces_a_same_shaped_teacher(setup):
    _, run, cache = setup
    teacher, _ = run.load()
    student = build_student("waldorf", hidden_size=32, factorized_embeddings=False,
                            num_attention_heads=4, intermediate_size=64, num_conv_layers=0,
                            downsample=1, num_transformer_layers=2, num_post_conv_layers=0)
    copied = copy_from_teacher(student, teacher)
    assert "unit 1 <- teacher layer 1" in copied and "qa_outputs" in copied
    batch = {k: torch.tensor(cache[:2][k]) for k in ("input_ids", "attention_mask",
                                                      "token_type_ids")}
    real = batch["attention_mask"].bool()
    # conv units start as identities: with them (and no down-sampling) it is still the teacher
    with_conv = build_student("waldorf", hidden_size=32, factorized_embeddings=False,
                              num_attention_heads=4, intermediate_size=64, num_conv_layers=2,
                              downsample=1, num_transformer_layers=2, num_post_conv_layers=1)
    assert "conv_units start as identity" in copy_from_teacher(with_conv, teacher)
    with torch.no_grad():
        theirs = teacher(**batch)
        for ours in (student.eval()(**batch), with_conv.eval()(**batch)):
            assert torch.allclose(ours.start_logits[real], theirs.start_logits[real], atol=1e-4)
    top = build_student("waldorf", **{**TINY_WALDORF, "num_transformer_layers": 1})
    assert "unit 0 <- teacher layer 1" in copy_from_teacher(top, teacher, "top")
    narrow = build_student("waldorf", **TINY_WALDORF)  # embeds at 16 < the teacher's 32
    assert "embeddings.word_embeddings" in copy_from_teacher(narrow, teacher)
    x = torch.randn(1, 5, 32)  # down-sampling starts as the mean of each pair, normalised
    got, _ = narrow.waldorf.downsample(x, None)
    pairs = torch.nn.functional.pad(x, (0, 0, 0, 1)).view(1, 3, 2, 32).mean(2)  # (1, 3, 32)
    expected = torch.nn.functional.layer_norm(pairs, (32,), eps=1e-12)
    assert torch.allclose(got, expected, atol=1e-4)
    table = teacher.bert.embeddings.word_embeddings.weight.detach()  # (vocab, 32)
    basis = torch.linalg.svd(table, full_matrices=False)[2][:16].T  # (32, 16): top directions
    assert torch.allclose(narrow.waldorf.embeddings.word_embeddings.weight, table @ basis,
                          atol=1e-5)


def test_a_shallower_bert_copied_from_the_top_is_the_teacher_without_its_lowest_layers():
    # Chapter 5's baseline at step 0: a 4-of-6 cut, here 2 of 3 layers of a tiny teacher.
    torch.manual_seed(0)
    shape = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=100,
                 attn_implementation="eager")
    teacher = BertForQuestionAnswering(BertConfig(num_hidden_layers=3, **shape)).eval()
    student = BertForQuestionAnswering(BertConfig(num_hidden_layers=2, **shape)).eval()
    copied = copy_from_teacher(student, teacher, "top")
    assert {"unit 0 <- teacher layer 1", "unit 1 <- teacher layer 2", "qa_outputs"} <= set(copied)
    ids = torch.randint(1, 100, (2, 9))  # (batch, seq)
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    with torch.no_grad():
        ours = student(input_ids=ids, attention_mask=mask)
        cut = ReducedTeacher(teacher, [1, 2])(ids, mask)
        full = teacher(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    assert torch.allclose(ours.start_logits[real], cut.start_logits[real], atol=1e-5)
    assert not torch.allclose(ours.start_logits[real], full.start_logits[real], atol=1e-3)


def test_train_without_teacher_runs_on_gold_labels(setup):
    profile, run, _ = setup
    result = stages.train_without_teacher("waldorf", profile, teacher=run, epochs=1.0,
                                          train_args={"log_every": 1}, progress=False)
    assert result.metadata["complete"] and result.metadata["role"] == "student-gold"
    assert all(math.isfinite(row["loss"]) for row in result.history.rows)


def test_a_damaged_student_is_reported_and_trained_again(setup, tmp_path, monkeypatch, caplog):
    profile, run, _ = setup
    monkeypatch.setenv("WALDORF_ARTIFACTS", str(tmp_path))
    real, runs = stages.train, []
    monkeypatch.setattr(stages, "train", lambda *a, **k: runs.append(1) or real(*a, **k))

    def gold():
        return stages.train_without_teacher("waldorf", profile, teacher=run, epochs=0.5,
                                            progress=False)

    first = gold()
    assert gold().metadata == first.metadata and len(runs) == 1  # intact: reused
    weights = first.model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # truncated
    with caplog.at_level(logging.WARNING):
        again = gold()
    assert f"{first.model_dir.parent}: model/model.safetensors fail" in caplog.text
    assert len(runs) == 2 and again.metadata["complete"] and not weights.with_name(
        "checkpoint").exists()
    assert again.metadata["checksums"]["model/model.safetensors"] == (
        first.metadata["checksums"]["model/model.safetensors"])  # the same weights again


# ---- a teacher wider and deeper than the student: the student starts from a pretrained model of
# its own width (the source), stages 0 and 1 fit it to the teacher through learned projections ----

WIDE_TEACHER = dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=6,
                    intermediate_size=192)
SOURCE = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128)
NARROW = dict(hidden_size=64, embedding_size=32, num_attention_heads=2, intermediate_size=128,
              num_conv_layers=1, num_transformer_layers=2, num_post_conv_layers=1)


@pytest.fixture(scope="module")
def wide(tmp_path_factory, setup):
    """(profile, wide teacher run, cache, source folder): a random 96-wide 4-layer teacher and a
    random 64-wide 3-layer encoder standing for MiniLM, the student's width."""
    profile, _, cache = setup
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(BUNDLED_MINILM))
    torch.manual_seed(1)
    folder, source = tmp_path_factory.mktemp("wide-teacher"), tmp_path_factory.mktemp("source")
    BertForQuestionAnswering(BertConfig(**WIDE_TEACHER)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BertModel(BertConfig(**SOURCE)).save_pretrained(source)
    run = TeacherRun(folder, {"hash": "wide-teacher", "key": {"data": {"tiny": True}}}, History())
    profile = dataclasses.replace(profile, student=dataclasses.replace(
        profile.student, model_overrides=NARROW, init_checkpoint=str(source), front_epochs=2.0,
        intermediate_epochs=1.0, prediction_epochs=1.0))
    return profile, run, cache, str(source)


def test_init_source_is_used_only_where_the_teacher_is_wider(wide):
    _, run, _, source = wide
    wide_config = run.load()[0].config
    student = build_student("waldorf", **NARROW)
    assert from_teacher.init_source(student, wide_config, source) == source
    assert from_teacher.init_source(student, wide_config, None) is None
    same_width = BertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=128)
    assert from_teacher.init_source(student, same_width, source) is None  # the teacher fits
    other = build_student("waldorf", **{**NARROW, "num_attention_heads": 4})
    assert from_teacher.init_source(other, wide_config, source) is None  # its heads differ


def test_a_student_initialised_from_the_source_equals_it_where_copied(wide):
    _, run, _, source = wide
    teacher, _ = run.load()
    pretrained = BertModel.from_pretrained(source)
    torch.manual_seed(0)
    student = build_student("waldorf", **NARROW)
    head = student.qa_outputs.weight.detach().clone()
    names = from_teacher.initialise_student(student, teacher, "top", source)
    assert f"unit 1 <- teacher layer 2 (from {source})" in names
    for unit, layer in zip(student.waldorf.transformer_units, pretrained.encoder.layer[1:],
                           strict=True):  # the source's top 2 of 3 layers
        attention = layer.attention.self
        qkv = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
        assert torch.equal(unit.attention.qkv.weight, qkv)
        assert torch.equal(unit.attention.output.weight, layer.attention.output.dense.weight)
        assert torch.equal(unit.ffn.up.weight, layer.intermediate.dense.weight)
        assert torch.equal(unit.ffn_norm.bias, layer.output.LayerNorm.bias)
    table = pretrained.embeddings.word_embeddings.weight.detach()  # (vocab, 64)
    basis = torch.linalg.svd(table, full_matrices=False)[2][:32].T  # (64, 32)
    embeddings = student.waldorf.embeddings
    assert torch.allclose(embeddings.word_embeddings.weight, table @ basis, atol=1e-5)
    assert torch.allclose(embeddings.projection.weight, basis)  # (64, 32): back to its axes
    assert torch.equal(student.qa_outputs.weight, head)  # neither source has a span head to give


def test_projections_map_the_student_to_the_wide_teacher(wide):
    _, run, cache, source = wide
    teacher, _ = run.load()
    student = build_student("waldorf", **NARROW)
    assert front.front_layer(student, teacher.config, "top") == 0  # the teacher fills nothing
    copied_from = from_teacher.source_config(source)
    assert front.front_layer(student, teacher.config, "top", copied_from) == 2  # units <- 2, 3
    batch = {k: torch.tensor(cache[:3][k]) for k in ("input_ids", "attention_mask",
                                                      "token_type_ids")}
    stage0 = front.FrontModel(student, 96)
    assert stage0.projection.weight.shape == (96, 64)
    assert stage0(**batch).shape == (*batch["input_ids"].shape, 96)  # (batch, seq, teacher)
    assert isinstance(front.FrontModel(student, 64).projection, torch.nn.Identity)
    stage1 = stages.DistillModel(student, 96)
    assert stage1.projection.weight.shape == stage1.unit_projection.weight.shape == (96, 64)
    loss, parts = stages.intermediate_loss(teacher, 2, "top")(stage1, batch)
    assert set(parts) == {"hidden", "units", "front", "attention"}  # 6 teacher heads -> 2
    loss.backward()
    assert stage1.unit_projection.weight.grad.abs().sum() > 0


def test_the_wide_teacher_path_runs_every_stage_and_lowers_each_loss(wide):
    profile, run, cache, source = wide
    result = stages.distill("waldorf", profile, "both", teacher=run, cache=cache, augment=False,
                            init_from_teacher=True, train_args={"log_every": 1}, progress=False)
    stage1 = result.previous
    stage0 = stage1.previous
    assert [r.metadata["role"] for r in (stage0, stage1, result)] == [
        "student-front", "student-intermediate", "student-prediction"]
    assert all(r.metadata["complete"] and r.metadata["key"]["init_source"] == source
               for r in (stage0, stage1, result))
    assert set(stage0.history.rows[0]["parts"]) == {"front"}
    assert set(stage1.history.rows[0]["parts"]) == {"hidden", "units", "front", "attention"}
    for stage in (stage0, stage1, result):
        head, tail = _head_and_tail(stage.history.rows)
        assert tail < head, stage.model_dir
    saved, _ = stage1.load()  # the projections were scaffolding: only the student is saved
    assert saved.config.hidden_size == 64
    assert [k for k in saved.state_dict() if "projection" in k] == [
        "waldorf.embeddings.projection.weight", "waldorf.embeddings.projection.bias"]
    plain = dataclasses.replace(profile, student=dataclasses.replace(
        profile.student, init_checkpoint=None))
    assert stages.distill("waldorf", plain, "both", teacher=run, augment=False,
                          init_from_teacher=True, train_args={"log_every": 1},
                          reuse_only=True) is None  # without the source: another recipe
