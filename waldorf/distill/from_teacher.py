"""Initialising a student from its teacher, so distillation starts from the teacher's function.

Copy what fits (embeddings, mapped transformer layers, span head) and start every new
residual piece as a no-op, so the new pieces are learned on top of the copied ones. Without
down-sampling and with full-width embeddings the student at step 0 then computes exactly the
teacher's copied layers; with WaLDORf's defaults it still differs (narrower embeddings, merged
tokens, the up-sampling's skip connection), as chapter 4 measures. A teacher wider than the
student (BERT-Large) has no layer that fits: the student then starts from a pretrained model
of its own width (``init_source``; MiniLM-L6-H384 on the gpu profile) the same way.
Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from waldorf.config import resolve_checkpoint
from waldorf.distill import losses
from waldorf.models import WaldorfPreTrainedModel

# WaLDORf transformer unit parameter prefix <- BERT layer parameter prefix (same post-LN layout).
FROM_BERT_LAYER = {"attention.output.": "attention.output.dense.", "ffn.up.": "intermediate.dense.",
                   "attention_norm.": "attention.output.LayerNorm.", "ffn.down.": "output.dense.",
                   "ffn_norm.": "output.LayerNorm."}


def copy_from_teacher(student: nn.Module, teacher: nn.Module,
                      mapping: str = "uniform") -> list[str]:
    """Copy what fits from the teacher; return the names of the parts copied or reset.

    Embedding tables: copied when the widths match; when the student embeds narrower
    (WaLDORf's factorised 128 vs 384), each table is projected onto the top right-singular
    vectors V of the teacher's word table (the best rank-k linear summary of it), and the
    student's up-projection becomes V^T when it maps back to the teacher's width. Transformer
    units of the teacher's exact shape get their ``losses.layer_map`` teacher layer
    (``mapping``: "uniform" or "top"; a pool-query-only unit has the same parameters, so it is
    copied the same way); the span head gets the teacher's. WaLDORf's
    convolutional units start as identities and its down-sampling as a plain mean.
    ``teacher`` may also be a pretrained encoder without a span head (``initialise_student``).
    Explained in book/04_distillation.ipynb.
    """
    t_emb, s_emb = teacher.base_model.embeddings, student.base_model.embeddings
    tables = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    width, t_width = s_emb.word_embeddings.embedding_dim, t_emb.word_embeddings.embedding_dim
    copied = []
    with torch.no_grad():
        basis = torch.eye(t_width)  # (t_width, width)
        if width < t_width:
            basis = torch.linalg.svd(t_emb.word_embeddings.weight.float(), full_matrices=False)[2]
            basis = basis[:width].T  # (t_width, width)
        if width <= t_width:
            for name in tables:
                source = getattr(t_emb, name).weight.float() @ basis  # (rows, width)
                target = getattr(s_emb, name).weight
                rows = min(len(source), len(target))
                target[:rows] = source[:rows].to(target.dtype)
                copied.append(f"embeddings.{name}")
            norm = getattr(s_emb, "LayerNorm", getattr(s_emb, "layer_norm", None))
            if width == t_width and norm is not None:
                norm.load_state_dict(t_emb.LayerNorm.state_dict())
            projection = getattr(s_emb, "projection", None)
            if isinstance(projection, nn.Linear) and projection.out_features == t_width:
                projection.weight.copy_(basis)  # (t_width, width): back to the teacher's axes
                projection.bias.zero_()
                copied.append("embeddings.projection")
        copied += _copy_layers(student, teacher, mapping)
        head = getattr(teacher, "qa_outputs", None)  # a pretrained encoder has none
        if head is not None and student.qa_outputs.weight.shape == head.weight.shape:
            student.qa_outputs.load_state_dict(head.state_dict())
            copied.append("qa_outputs")
        if isinstance(student, WaldorfPreTrainedModel):
            copied += _start_as_identity(student.base_model)
    return copied


def _shape(config: PretrainedConfig) -> tuple[int, int, int]:
    return config.hidden_size, config.intermediate_size, config.num_attention_heads


def source_config(checkpoint: str | None) -> PretrainedConfig | None:
    """The configuration of an initialisation source (None for None), without its weights.

    Explained in book/04_distillation.ipynb.
    """
    return AutoConfig.from_pretrained(resolve_checkpoint(checkpoint)) if checkpoint else None


def init_source(student: nn.Module, teacher_config: PretrainedConfig,
                checkpoint: str | None) -> str | None:
    """The pretrained model a teacher-initialised ``student`` starts from instead of its
    teacher (``checkpoint``, the profile's ``student.init_checkpoint``), or None: the teacher.

    Only where the teacher's width differs from the student's, so that none of its layers fit,
    and ``checkpoint`` has the student's shape (width, feed-forward size and heads), so that its
    layers do; the student's recipe then names it (artifact key ``init_source``).
    Explained in book/04_distillation.ipynb.
    """
    config = student.config
    if checkpoint is None or config.hidden_size == teacher_config.hidden_size:
        return None
    source = source_config(checkpoint)
    if _shape(source) != _shape(config):
        return None
    if source.vocab_size != config.vocab_size:
        raise ValueError(f"{checkpoint}: vocabulary of {source.vocab_size} tokens, the "
                         f"student's has {config.vocab_size}")
    return checkpoint


def initialise_student(student: nn.Module, teacher: nn.Module, mapping: str,
                       source: str | None = None) -> list[str]:
    """``copy_from_teacher`` from the teacher, or from ``source`` (``init_source``'s answer):
    its embeddings and its ``losses.layer_map`` layers; the span head stays new. Returns the
    names of the parts copied or reset, each naming its source.

    Explained in book/04_distillation.ipynb.
    """
    if source is None:
        return copy_from_teacher(student, teacher, mapping)
    pretrained = AutoModel.from_pretrained(resolve_checkpoint(source))
    return [f"{part} (from {source})" for part in copy_from_teacher(student, pretrained, mapping)]


def _copy_layers(student: nn.Module, teacher: nn.Module, mapping: str) -> list[str]:
    t_layers = teacher.base_model.encoder.layer
    waldorf = isinstance(student, WaldorfPreTrainedModel)
    units = student.base_model.transformer_units if waldorf else student.base_model.encoder.layer
    copied = []
    for i, t in enumerate(losses.layer_map(len(units), len(t_layers), mapping)):
        state, own = t_layers[t].state_dict(), units[i].state_dict()
        if waldorf:
            state = {new + k[len(old):]: v for new, old in FROM_BERT_LAYER.items()
                     for k, v in state.items() if k.startswith(old)} | {
                f"attention.qkv.{end}": torch.cat([state[f"attention.self.{n}.{end}"]
                                                   for n in ("query", "key", "value")])
                for end in ("weight", "bias")}
        if state.keys() == own.keys() and all(v.shape == own[k].shape for k, v in state.items()):
            units[i].load_state_dict(state)
            copied.append(f"unit {i} <- teacher layer {t}")
    return copied


def _start_as_identity(model: nn.Module) -> list[str]:
    """Zero the residual branches of the conv units; make a conv down-sampling a mean."""
    reset = []
    for name in ("conv_units", "post_conv_units"):
        for unit in getattr(model, name):
            unit.pointwise.weight.zero_()  # the unit's output is then its input
            unit.pointwise.bias.zero_()
        if len(getattr(model, name)):
            reset.append(f"{name} start as identity")
    down = model.downsample
    if down is not None and down.mode == "conv":
        down.depthwise.weight.fill_(1.0 / down.factor)  # (hidden, 1, factor): a mean per group
        down.depthwise.bias.zero_()
        down.pointwise.weight.copy_(torch.eye(down.pointwise.in_features))
        down.pointwise.bias.zero_()
        reset.append("downsample starts as a mean")
    return reset


__all__ = ["FROM_BERT_LAYER", "copy_from_teacher", "init_source", "initialise_student",
           "source_config"]
