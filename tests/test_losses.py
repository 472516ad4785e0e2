"""Tests of waldorf.distill.losses for Funnel-shaped students: pooling the teacher to a layout
that keeps [CLS] apart, and to a pool-query-only unit's full-length keys, on hand-made tensors."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from waldorf.distill import losses, stages
from waldorf.models import build_student
from waldorf.teacher import teacher_features

# rows: queries 0..3 of one head over keys 0..3; query 3 is padding
PROBS = torch.tensor([[[[0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.6, 0.0],
                        [0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]]]])  # (1, 1, 4, 4)
MASK = torch.tensor([[1, 1, 1, 0]])  # (batch, seq)


def test_pool_sequence_keeps_cls_alone_with_separate_cls():
    x = torch.tensor([[1.0, 2.0, 4.0, 6.0, 8.0]])  # (batch, seq)
    assert losses.pool_sequence(x, 2, 1).tolist() == [[1.5, 5.0, 8.0]]  # {0,1} {2,3} {4}
    apart = losses.pool_sequence(x, 2, 1, separate_cls=True)  # {0} {1,2} {3,4}
    assert apart.tolist() == [[1.0, 3.0, 7.0]]
    real = torch.tensor([[1, 1, 1, 1, 0]])
    assert losses.pool_sequence(x, 2, 1, real, separate_cls=True).tolist() == [[1.0, 3.0, 6.0]]
    summed = losses.pool_sequence(x, 2, 1, reduce="sum", separate_cls=True)
    assert summed.tolist() == [[1.0, 6.0, 14.0]]


def test_pool_mask_keeps_cls_alone_with_separate_cls():
    mask = torch.tensor([[1, 1, 0, 0]])
    assert losses.pool_mask(mask, 2).tolist() == [[True, False]]  # {0,1} {2,3}
    assert losses.pool_mask(mask, 2, separate_cls=True).tolist() == [[True, True, False]]


def test_pool_attention_over_queries_only_keeps_every_key():
    pooled = losses.pool_attention(PROBS, 2, MASK, pool_keys=False)  # queries {0,1} {2,(3)}
    assert pooled.shape == (1, 1, 2, 4)
    assert pooled[0, 0].tolist() == [pytest.approx([0.35, 0.35, 0.3, 0.0]),
                                     pytest.approx([0.0, 0.0, 1.0, 0.0])]  # query 3 ignored
    apart = losses.pool_attention(PROBS, 2, MASK, separate_cls=True, pool_keys=False)
    assert apart[0, 0].tolist() == [pytest.approx([0.5, 0.5, 0.0, 0.0]),  # {0}
                                    pytest.approx([0.1, 0.1, 0.8, 0.0]),  # {1, 2}
                                    pytest.approx([0.0, 0.0, 0.0, 0.0])]  # {3}: padding only
    both = losses.pool_attention(PROBS, 2, MASK, separate_cls=True)  # keys {0} {1,2} {3} too
    assert both[0, 0].tolist() == [pytest.approx([0.5, 0.5, 0.0]), pytest.approx([0.1, 0.9, 0.0]),
                                   pytest.approx([0.0, 0.0, 0.0])]


def test_pooled_hidden_mse_follows_the_layout_with_separate_cls():
    teacher = torch.tensor([[[1.0], [3.0], [5.0], [9.0]]])  # (1, 4, 1); token 3 is padding
    stretched = torch.tensor([[[1.0], [4.0], [4.0], [7.0]]])  # {0} = 1, {1,2} = 4, {3} padding
    assert losses.pooled_hidden_mse(stretched, teacher, MASK, 2,
                                    separate_cls=True).item() == pytest.approx(0.0)
    off = stretched + torch.tensor([[[1.0], [0.0], [0.0], [0.0]]])  # [CLS] off by 1
    assert losses.pooled_hidden_mse(off, teacher, MASK, 2,
                                    separate_cls=True).item() == pytest.approx(0.5)
    assert losses.pooled_hidden_mse(stretched, teacher, MASK, 2).item() > 0  # other groups


@pytest.mark.parametrize("separate_cls", [False, True])
def test_attention_transfer_pools_the_pool_query_only_map_over_queries_only(separate_cls):
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])  # (batch, seq)
    teacher_maps = [torch.softmax(torch.randn(2, 4, 6, 6), -1) for _ in range(4)]
    short = 4 if separate_cls else 3  # {0} {1,2} {3,4} {5} or {0,1} {2,3} {4,5}
    student_maps = [torch.softmax(torch.randn(2, 2, short, 6), -1),  # pool-query-only unit
                    torch.softmax(torch.randn(2, 2, short, short), -1)]
    got = losses.attention_transfer(student_maps, teacher_maps, mask, 2, [1, 3], separate_cls)
    small = losses.pool_mask(mask, 2, separate_cls)

    def term(student, teacher, pool_keys):
        pooled = losses.pool_attention(teacher, 2, mask, separate_cls, pool_keys)
        return losses.attention_kl(student, losses.group_heads(pooled, 2), small)

    expected = (term(student_maps[0], teacher_maps[1], False)
                + term(student_maps[1], teacher_maps[3], True)) / 2
    assert got.item() == pytest.approx(expected.item())
    assert losses.pool_attention(teacher_maps[1], 2, mask, separate_cls,
                                 pool_keys=False).shape == (2, 4, short, 6)


def test_stage1_loss_of_a_funnel_student_matches_every_map():
    """Both switches on an even-length window, where keeping [CLS] apart adds a reduced
    position: the attention term exists only if the teacher is pooled to the student's layout."""
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64)).eval()
    student = build_student("waldorf", vocab_size=100, embedding_size=16, hidden_size=32,
                            num_attention_heads=2, intermediate_size=64, num_conv_layers=1,
                            num_transformer_layers=2, pool_query_only=True, separate_cls=True,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids = torch.randint(1, 100, (2, 12))  # (batch, seq)
    inputs = dict(input_ids=ids, token_type_ids=torch.zeros_like(ids),
                  attention_mask=torch.ones_like(ids))
    inputs["attention_mask"][1, 7:] = 0
    model = stages.DistillModel(student, 32)
    loss, parts = stages.intermediate_loss(teacher, 2, "top")(model, inputs)
    assert set(parts) == {"hidden", "units", "front", "attention"}
    maps = student(**inputs, output_attentions=True).attentions
    assert maps[0].shape == (2, 2, 7, 12) and maps[1].shape == (2, 2, 7, 7)
    target = teacher_features(teacher, inputs, (-4, -3, -2, -1))["attentions"]
    expected = losses.attention_transfer(maps, target, inputs["attention_mask"], 2, [2, 3],
                                         separate_cls=True)
    assert parts["attention"] == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert student.waldorf.transformer_units[0].attention.qkv.weight.grad.abs().sum() > 0
