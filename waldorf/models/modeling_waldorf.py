"""The WaLDORf student: a hybrid of convolutional and transformer units with a BERT span head.

Reporting convention for distillation (``output_hidden_states`` / ``output_attentions``):

- ``hidden_states`` has ``1 + num_conv_layers + num_transformer_layers + num_post_conv_layers``
  entries: the embeddings' output, then each unit's output, all ``(batch, seq, hidden)``.
  Transformer units that run on the down-sampled sequence are reported *up-sampled*, each reduced
  position repeated over the tokens it covers, so every entry lines up token by token with the
  teacher's hidden states. No skip connection is added to these reports.
- ``attentions`` has one entry per transformer unit, the softmax probabilities before dropout:
  ``(batch, heads, seq', seq')`` over the reduced sequence, whose tokens and mask
  ``resampling.ReducedLayout`` and ``resampling.downsample_mask`` give (``seq' =
  ceil(seq / downsample)``; ``1 + ceil((seq - 1) / downsample)`` with ``separate_cls``). With
  ``pool_query_only`` the first unit's is ``(batch, heads, seq', seq)``: full-length keys.

Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, QuestionAnsweringModelOutput

from waldorf.models.configuration_waldorf import WaldorfConfig
from waldorf.models.resampling import WaldorfDownsample, WaldorfUpsample, key_bias


def depthwise_conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Depthwise ``conv`` (odd kernel, stride 1) along ``seq`` of a (batch, seq, hidden) tensor.

    Same numbers as ``conv(x.transpose(1, 2)).transpose(1, 2)``, computed as a weighted sum of
    shifted copies: no layout copies, about 3x faster on CPU at batch size 1.
    Explained in book/03_architecture.ipynb.
    """
    k, seq = conv.kernel_size[0], x.shape[1]
    weight = conv.weight[:, 0].t()  # (kernel, hidden)
    padded = F.pad(x, (0, 0, k // 2, k // 2))  # (batch, seq + kernel - 1, hidden)
    out = torch.addcmul(conv.bias, padded[:, :seq], weight[0])  # (batch, seq, hidden)
    for shift in range(1, k):
        window = padded[:, shift:shift + seq]  # (batch, seq, hidden)
        out = torch.addcmul(out, window, weight[shift])  # (batch, seq, hidden)
    return out


class WaldorfEmbeddings(nn.Module):
    """Word + position + segment embeddings at ``embedding_size``, projected to ``hidden_size``.

    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        width = config.embedding_size if config.factorized_embeddings else config.hidden_size
        self.max_positions = config.max_position_embeddings
        self.word_embeddings = nn.Embedding(config.vocab_size, width, config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.layer_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        factorized = config.factorized_embeddings
        self.projection = nn.Linear(width, config.hidden_size) if factorized else nn.Identity()

    def forward(self, input_ids, token_type_ids=None, position_ids=None) -> torch.Tensor:
        seq = input_ids.shape[1]
        if seq > self.max_positions:
            raise ValueError(
                f"sequence of {seq} tokens exceeds max_position_embeddings={self.max_positions}"
            )
        if position_ids is None:
            position_ids = torch.arange(seq, device=input_ids.device)[None]  # (1, seq)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # (batch, seq)
        x = self.word_embeddings(input_ids)  # (batch, seq, width)
        x = x + self.position_embeddings(position_ids)  # (batch, seq, width)
        x = x + self.token_type_embeddings(token_type_ids)  # (batch, seq, width)
        x = self.dropout(self.layer_norm(x))  # (batch, seq, width)
        return self.projection(x)  # (batch, seq, hidden)


class WaldorfConvUnit(nn.Module):
    """QANet unit: LayerNorm -> depthwise conv -> pointwise conv -> GELU -> residual.

    Padding is zeroed after the norm, so padding never leaks into real tokens' outputs.
    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        hidden, k = config.hidden_size, config.conv_kernel_size
        self.layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.depthwise = nn.Conv1d(hidden, hidden, k, padding=k // 2, groups=hidden)
        self.pointwise = nn.Linear(hidden, hidden)  # a 1x1 convolution
        self.act = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.layer_norm(x)  # (batch, seq, hidden)
        if mask is not None:
            h = h * mask  # (batch, seq, hidden); mask is (batch, seq, 1)
        h = depthwise_conv1d(h, self.depthwise)  # (batch, seq, hidden)
        h = self.act(self.pointwise(h))  # (batch, seq, hidden)
        return x + self.dropout(h)  # (batch, seq, hidden)


class WaldorfSelfAttention(nn.Module):
    """Multi-head attention: fused QKV projection, SDPA kernel unless maps are requested.

    Queries come from ``x``; keys and values from ``source`` when given (pool-query-only: the
    full-length sequence), else from ``x`` too. Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # one GEMM, not three
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, output_attentions: bool = False,
                source: torch.Tensor | None = None):
        batch, seq, hidden = x.shape  # seq: queries; keys number seq_k (= seq without source)
        if source is None:
            qkv = self.qkv(x).view(batch, seq, 3, self.heads, self.head_size)  # (b, s, 3, h, d)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_size)
        else:  # the fused weights' rows, applied apart: the parameters stay the teacher's layout
            w, b = self.qkv.weight, self.qkv.bias  # (3 * hidden, hidden), (3 * hidden,)
            q = F.linear(x, w[:hidden], b[:hidden]).view(batch, seq, self.heads, self.head_size)
            q = q.transpose(1, 2)  # (batch, heads, seq, head_size)
            kv = F.linear(source, w[hidden:], b[hidden:])  # (batch, seq_k, 2 * hidden)
            kv = kv.view(batch, -1, 2, self.heads, self.head_size)  # (b, seq_k, 2, heads, d)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq_k, head_size)
        p = self.dropout_p if self.training else 0.0
        probs = None
        if output_attentions:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (b, heads, s, s_k)
            if bias is not None:
                scores = scores + bias  # (batch, heads, seq, seq_k)
            probs = scores.softmax(dim=-1)  # (batch, heads, seq, seq_k)
            context = F.dropout(probs, p, self.training) @ v  # (batch, heads, seq, head_size)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)  # same
        context = context.transpose(1, 2).reshape(batch, seq, hidden)  # (batch, seq, hidden)
        return self.output(context), probs  # (batch, seq, hidden), (b, heads, s, s_k) or None


class WaldorfFeedForward(nn.Module):
    """Position-wise feed-forward network. Explained in book/03_architecture.ipynb."""

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))  # (batch, seq, hidden)


class WaldorfTransformerUnit(nn.Module):
    """Post-LN transformer layer exactly as in BERT: attention, add & norm, FFN, add & norm.

    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__()
        self.attention = WaldorfSelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = WaldorfFeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, output_attentions: bool = False,
                source: torch.Tensor | None = None):
        h, probs = self.attention(x, bias, output_attentions, source)  # (batch, seq, hidden)
        x = self.attention_norm(x + self.dropout(h))  # (batch, seq, hidden)
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))  # (batch, seq, hidden)
        return x, probs


class WaldorfPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the WaLDORf models.

    Explained in book/03_architecture.ipynb.
    """

    config_class = WaldorfConfig
    base_model_prefix = "waldorf"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's scheme: N(0, initializer_range) weights, zero biases, identity LayerNorms."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            loaded = getattr(module.weight, "_is_hf_initialized", False)  # a slice loses the flag
            if module.padding_idx is not None and not loaded:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class WaldorfModel(WaldorfPreTrainedModel):
    """The encoder: embeddings, conv, (down-sample), transformer, (up-sample + skip), conv units.

    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__(config)
        units = nn.ModuleList
        self.embeddings = WaldorfEmbeddings(config)
        self.conv_units = units(WaldorfConvUnit(config) for _ in range(config.num_conv_layers))
        resample = config.downsample > 1
        self.downsample = WaldorfDownsample(config) if resample else None
        self.pool_query_only = config.pool_query_only and resample  # else plain self-attention
        self.transformer_units = units(
            WaldorfTransformerUnit(config) for _ in range(config.num_transformer_layers)
        )
        self.upsample = WaldorfUpsample(config) if resample else None
        post = config.num_post_conv_layers
        self.post_conv_units = units(WaldorfConvUnit(config) for _ in range(post))
        self.post_init()

    def front(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The embeddings and conv units, the part that stands in for the teacher's lower layers.

        Returns the embedding output and each conv unit's output (``hidden_states``' first
        entries), and the padding mask the rest of the encoder uses. Distillation's stage 0
        trains this part alone. Explained in book/04_distillation.ipynb.
        """
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (batch, seq, hidden)
        # No padding: skip every masking step (same numbers, fewer ops). A traced graph (ONNX,
        # torch.compile) cannot branch on data, so it always keeps the mask.
        mask = None
        tracing = torch.compiler.is_compiling()
        if attention_mask is not None and (tracing or not bool(attention_mask.all())):
            mask = attention_mask[..., None].to(x.dtype)  # (batch, seq, 1)
        states = [x]
        for unit in self.conv_units:
            states.append(unit(states[-1], mask))  # (batch, seq, hidden)
        return states, mask

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None, output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        keep_states = _or_default(output_hidden_states, self.config.output_hidden_states)
        keep_maps = _or_default(output_attentions, self.config.output_attentions)
        seq = input_ids.shape[1]
        states, mask = self.front(input_ids, attention_mask, token_type_ids, position_ids)
        maps, x = [], states[-1]  # (batch, seq, hidden)
        skip, small_mask = x, mask  # (batch, seq, hidden), (batch, seq, 1)
        if self.downsample is not None:
            x, small_mask = self.downsample(x, mask)  # (batch, seq', hidden), (batch, seq', 1)
        bias = key_bias(small_mask, x.dtype)  # (batch, 1, 1, seq') or None
        for i, unit in enumerate(self.transformer_units):
            if i == 0 and self.pool_query_only:  # merged queries, every token's keys and values
                x, probs = unit(x, key_bias(mask, x.dtype), keep_maps, source=skip)  # (b, s', h)
            else:
                x, probs = unit(x, bias, keep_maps)  # (batch, seq', hidden)
            states.append(self.upsample.stretch(x, seq) if self.upsample is not None else x)
            maps.append(probs)
        if self.upsample is not None:
            x = self.upsample(x, skip)  # (batch, seq, hidden)
        for unit in self.post_conv_units:
            x = unit(x, mask)  # (batch, seq, hidden)
            states.append(x)
        out = BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(states) if keep_states else None,
            attentions=tuple(maps) if keep_maps else None,
        )
        return out if _or_default(return_dict, self.config.return_dict) else out.to_tuple()


class WaldorfForQuestionAnswering(WaldorfPreTrainedModel):
    """WaLDORf encoder + BERT's span head: start/end logits per token; CLS (position 0) = no answer.

    Explained in book/03_architecture.ipynb.
    """

    def __init__(self, config: WaldorfConfig):
        super().__init__(config)
        self.waldorf = WaldorfModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None, end_positions: torch.Tensor | None = None,
        output_hidden_states: bool | None = None, output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> QuestionAnsweringModelOutput | tuple:
        encoded = self.waldorf(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.qa_outputs(encoded.last_hidden_state)  # (batch, seq, 2)
        start_logits, end_logits = logits.unbind(dim=-1)  # (batch, seq) each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        out = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits.contiguous(),
            end_logits=end_logits.contiguous(),
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
        return out if _or_default(return_dict, self.config.return_dict) else out.to_tuple()


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """BERT's SQuAD loss: mean of start and end cross-entropy; positions past the window ignored.

    Explained in book/03_architecture.ipynb.
    """
    ignored = start_logits.shape[1]
    start = start_positions.reshape(-1).clamp(0, ignored)  # (batch,)
    end = end_positions.reshape(-1).clamp(0, ignored)  # (batch,)
    start_loss = F.cross_entropy(start_logits, start, ignore_index=ignored)  # ()
    end_loss = F.cross_entropy(end_logits, end, ignore_index=ignored)  # ()
    return (start_loss + end_loss) / 2  # ()


def _or_default(value: bool | None, default: bool) -> bool:
    return default if value is None else value


__all__ = ["WaldorfForQuestionAnswering", "WaldorfModel", "WaldorfPreTrainedModel",
           "depthwise_conv1d", "span_loss"]
