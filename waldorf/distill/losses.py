"""The distillation losses: pure functions of tensors, so each can be checked by hand.

Stage 1 (intermediate) matches the student's hidden states (final and per unit) and attention
maps to the teacher's; stage 2 (prediction) matches its start/end distributions at a
temperature. Padding never counts: every function takes the window's ``attention_mask``
(1 = real token). The teacher's tokens are pooled to the student's reduced positions through
the student's own ``ReducedLayout`` (``factor`` = its ``downsample``, ``separate_cls``).

Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from waldorf.models.resampling import ReducedLayout, downsample_mask

_EPS = 1e-12  # keeps log() finite where a student probability underflows to zero


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None,
                        temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) over the last dim with padding removed from the distribution."""
    logits = logits.float() / temperature  # (batch, seq)
    if mask is not None:
        logits = logits.masked_fill(~mask.bool(), torch.finfo(logits.dtype).min)  # (batch, seq)
    return F.log_softmax(logits, dim=-1)  # (batch, seq)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * mean over the batch of -sum_j p_teacher(j; T) log p_student(j; T).

    Both distributions run over the window's real tokens only; position 0 ([CLS], "no answer")
    is one of them, so the teacher's confidence in abstaining is distilled too. The T^2 factor
    keeps gradient sizes comparable across temperatures (Hinton et al., 2015).
    Explained in book/04_distillation.ipynb.
    """
    log_p_student = _masked_log_softmax(student_logits, mask, temperature)  # (batch, seq)
    p_teacher = _masked_log_softmax(teacher_logits, mask, temperature).exp()  # (batch, seq)
    terms = p_teacher * log_p_student  # (batch, seq)
    if mask is not None:
        terms = torch.where(mask.bool(), terms, torch.zeros_like(terms))  # (batch, seq)
    return -(temperature**2) * terms.sum(-1).mean()


def hard_cross_entropy(logits: torch.Tensor, positions: torch.Tensor,
                       mask: torch.Tensor | None = None,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against gold positions, averaged over the rows where ``weight`` is true.

    Returns 0 (with a gradient path) when no row has a gold label.
    Explained in book/04_distillation.ipynb.
    """
    log_p = _masked_log_softmax(logits, mask, 1.0)  # (batch, seq)
    nll = -log_p.gather(-1, positions.long().unsqueeze(-1)).squeeze(-1)  # (batch,)
    weight = torch.ones_like(nll) if weight is None else weight.float()  # (batch,)
    return (nll * weight).sum() / weight.sum().clamp(min=1.0)


def prediction_loss(student_out, teacher_start: torch.Tensor, teacher_end: torch.Tensor,
                    start_positions: torch.Tensor | None = None,
                    end_positions: torch.Tensor | None = None,
                    has_gold: torch.Tensor | None = None, temperature: float = 1.0,
                    hard_weight: float = 0.0, mask: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage 2: (soft start + soft end) / 2 + hard_weight * (gold start + gold end) / 2.

    ``student_out`` has ``start_logits``/``end_logits`` (batch, seq). ``has_gold`` (batch,)
    marks windows whose labels are real: original SQuAD questions (answerable or not) and
    span-preserving crops. Question-word replacements and re-paired paragraphs carry no gold
    (their ``start_positions`` are placeholders), so only the teacher teaches them.
    Returns the total and its parts (``soft``, ``hard``) for logging.
    Explained in book/04_distillation.ipynb.
    """
    soft = 0.5 * (soft_cross_entropy(student_out.start_logits, teacher_start, temperature, mask)
                  + soft_cross_entropy(student_out.end_logits, teacher_end, temperature, mask))
    parts = {"soft": soft}
    total = soft
    if hard_weight > 0 and start_positions is not None and end_positions is not None:
        hard = 0.5 * (hard_cross_entropy(student_out.start_logits, start_positions, mask, has_gold)
                      + hard_cross_entropy(student_out.end_logits, end_positions, mask, has_gold))
        parts["hard"] = hard
        total = total + hard_weight * hard
    return total, parts


def pool_sequence(x: torch.Tensor, factor: int, dim: int, weight: torch.Tensor | None = None,
                  reduce: str = "mean", separate_cls: bool = False) -> torch.Tensor:
    """Weighted mean (or sum) over the tokens of each reduced position along ``dim``.

    Reduced positions are ``ReducedLayout(factor, separate_cls)``'s: groups of ``factor``
    consecutive tokens (the last one shorter), token 0 alone first with ``separate_cls``.
    ``weight`` broadcasts against ``x`` (e.g. the attention mask); groups whose weights are all
    zero come out as zeros. Explained in book/04_distillation.ipynb.
    """
    if factor == 1:
        return x
    layout = ReducedLayout(factor, separate_cls)
    x = x.movedim(dim, -1)  # (..., seq)
    w = torch.ones_like(x) if weight is None else weight.movedim(dim, -1).expand_as(x).to(x)
    x, w = layout.pad(x * w, -1), layout.pad(w, -1)  # (..., factor * seq')
    groups = x.shape[-1] // factor
    total = x.unflatten(-1, (groups, factor)).sum(-1)  # (..., seq')
    if reduce == "sum":
        return total.movedim(-1, dim)
    count = w.unflatten(-1, (groups, factor)).sum(-1)  # (..., seq')
    return (total / count.clamp(min=_EPS)).movedim(-1, dim)


def pool_mask(mask: torch.Tensor, factor: int, separate_cls: bool = False) -> torch.Tensor:
    """(batch, seq) -> (batch, seq'): a reduced position is real if any of its tokens is.

    Explained in book/04_distillation.ipynb.
    """
    return downsample_mask(mask, factor, separate_cls).bool()  # the student's own rule


def pool_attention(teacher_probs: torch.Tensor, factor: int, mask: torch.Tensor | None = None,
                   separate_cls: bool = False, pool_keys: bool = True) -> torch.Tensor:
    """Average-pool attention maps (batch, heads, seq, seq) to the student's reduced positions.

    Keys: the mass of a reduced position's keys is added up. Queries: its rows are averaged
    over its real tokens (``mask``, (batch, seq)). Rows are renormalised to sum to 1, so the
    result is again a distribution over keys. ``pool_keys=False`` leaves the keys full length:
    the map of a pool-query-only unit, (batch, heads, seq', seq). Groups follow
    ``pool_sequence``. Explained in book/04_distillation.ipynb.
    """
    if factor == 1:
        return teacher_probs
    pooled = teacher_probs  # (batch, heads, seq, seq)
    if pool_keys:
        pooled = pool_sequence(pooled, factor, -1, reduce="sum",
                               separate_cls=separate_cls)  # (batch, heads, seq, seq')
    query_w = None if mask is None else mask[:, None, :, None].float()  # (batch, 1, seq, 1)
    pooled = pool_sequence(pooled, factor, -2, query_w,
                           separate_cls=separate_cls)  # (batch, heads, seq', seq' or seq)
    return pooled / pooled.sum(-1, keepdim=True).clamp(min=_EPS)  # (b, heads, seq', seq_k)


def group_heads(teacher_probs: torch.Tensor, student_heads: int) -> torch.Tensor:
    """Match head counts: average consecutive teacher heads into each student head.

    12 teacher heads -> 4 student heads: student head h sees the mean of teacher heads
    3h..3h+2. When the counts do not divide, every student head sees the mean of all teacher
    heads. Explained in book/04_distillation.ipynb.
    """
    batch, heads, q, k = teacher_probs.shape  # (batch, t_heads, seq, seq)
    if heads == student_heads:
        return teacher_probs
    if heads % student_heads == 0:
        grouped = teacher_probs.view(batch, student_heads, heads // student_heads, q, k)
        return grouped.mean(2)  # (batch, s_heads, seq, seq)
    return teacher_probs.mean(1, keepdim=True).expand(batch, student_heads, q, k)


def attention_kl(student_probs: torch.Tensor, teacher_probs: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) of attention rows, averaged over heads and real query tokens.

    Both maps are (batch, heads, seq, seq) probabilities over keys (use ``pool_attention`` and
    ``group_heads`` first when the shapes differ). KL rather than MSE: each row is a
    distribution, and KL weighs a row's keys by where the teacher actually looks, independent
    of the sequence length (MobileBERT's choice). Explained in book/04_distillation.ipynb.
    """
    t, s = teacher_probs.float(), student_probs.float()  # (batch, heads, seq, seq)
    kl = torch.where(t > 0, t * (t.clamp(min=_EPS).log() - s.clamp(min=_EPS).log()),
                     torch.zeros_like(t)).sum(-1)  # (batch, heads, seq)
    rows = torch.ones_like(kl) if mask is None else mask[:, None, :].float().expand_as(kl)
    return (kl * rows).sum() / rows.sum().clamp(min=1.0)


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per hidden unit, averaged over real tokens only.

    ``student_hidden`` must already be projected to the teacher's width (a learned
    ``nn.Linear(student_hidden, teacher_hidden)`` in stage 1). Shapes (batch, seq, hidden).
    Explained in book/04_distillation.ipynb.
    """
    sq = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(-1)  # (batch, seq)
    rows = torch.ones_like(sq) if mask is None else mask.float()  # (batch, seq)
    return (sq * rows).sum() / rows.sum().clamp(min=1.0)


LAYER_MAPPINGS = ("top", "uniform")


def layer_map(student_layers: int, teacher_layers: int, mode: str = "uniform") -> list[int]:
    """Teacher layer (0-based) each student transformer unit learns from (and is copied from).

    ``uniform``: unit i <- teacher layer ceil((i + 1) * N_t / N_s) - 1, TinyBERT's
    g(m) = m * N/M: 3 units from 6 layers -> [1, 3, 5]; 4 from 12 -> [2, 5, 8, 11].
    ``top``: the teacher's top N_s layers, consecutive: 3 from 6 -> [3, 4, 5]. Copied layers
    then feed each other as in the teacher, and the student's units below them (WaLDORf's
    convolutions) stand in for the teacher's lower layers.
    Explained in book/04_distillation.ipynb.
    """
    if mode not in LAYER_MAPPINGS:
        raise ValueError(f"layer mapping must be one of {LAYER_MAPPINGS}, got {mode!r}")
    if mode == "top":
        return [max(0, teacher_layers - student_layers + i) for i in range(student_layers)]
    return [math.ceil((i + 1) * teacher_layers / student_layers) - 1
            for i in range(student_layers)]


def pooled_hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                      mask: torch.Tensor, factor: int = 1,
                      separate_cls: bool = False) -> torch.Tensor:
    """``hidden_mse`` per reduced position (``pool_sequence``), for units that run down-sampled.

    Such a unit reports its state repeated over the tokens of each reduced position, so it is
    compared with the mean of the teacher's states over the same real tokens. Shapes (batch,
    seq, hidden) and mask (batch, seq). Explained in book/04_distillation.ipynb.
    """
    weight = mask[..., None].float()  # (batch, seq, 1)
    student = pool_sequence(student_hidden.float(), factor, 1, weight,
                            separate_cls=separate_cls)  # (batch, seq', hidden)
    teacher = pool_sequence(teacher_hidden.float(), factor, 1, weight,
                            separate_cls=separate_cls)  # (batch, seq', hidden)
    return hidden_mse(student, teacher, pool_mask(mask, factor, separate_cls))


def attention_transfer(student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor],
                       mask: torch.Tensor, factor: int = 1,
                       mapping: Sequence[int] | None = None,
                       separate_cls: bool = False) -> torch.Tensor | None:
    """Mean attention KL of each student unit against its teacher layer in ``mapping``.

    ``mapping`` defaults to ``layer_map``'s uniform one. Teacher maps (batch, t_heads, seq,
    seq) are pooled to the student's reduced positions (``pool_attention``; over queries only
    where the student's map has full-length keys, a pool-query-only unit's) and grouped into
    the student's heads; ``mask`` is the window's (batch, seq). None when the student has no
    maps or their length still differs: such students learn from hidden states only.
    Explained in book/04_distillation.ipynb.
    """
    small_mask = pool_mask(mask, factor, separate_cls)  # (batch, seq')
    terms = []
    mapping = mapping or layer_map(len(student_maps), len(teacher_maps))
    for student_map, t in zip(student_maps, mapping, strict=True):
        teacher_map = teacher_maps[t].float()  # (batch, t_heads, seq, seq)
        full_keys = student_map.shape[-1] == teacher_map.shape[-1]
        pooled = pool_attention(teacher_map, factor, mask, separate_cls,
                                pool_keys=not full_keys)  # (b, t_heads, seq', seq_k)
        pooled = group_heads(pooled, student_map.shape[1])  # (batch, heads, seq', seq_k)
        if pooled.shape != student_map.shape:
            return None
        terms.append(attention_kl(student_map, pooled, small_mask))
    return torch.stack(terms).mean() if terms else None
