"""Parameters and multiply-accumulates by component, for WaLDORf and the BERT-shaped baselines.

Both functions return the same keys for every model, so their results line up in one table.
MACs are analytic (one multiply-accumulate per weight per position, plus attention's two
``seq x seq`` products); lookups, norms, activations and additions are not counted.

Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

from torch import nn
from transformers import BertConfig

from waldorf.models.configuration_waldorf import WaldorfConfig
from waldorf.models.resampling import ReducedLayout

PARAMETER_COMPONENTS = ("embeddings", "conv", "resample", "attention", "ffn", "head", "other")
MAC_COMPONENTS = (
    "embeddings", "conv", "resample", "attention_proj", "attention_scores", "ffn", "head",
)


def _component(name: str) -> str:
    """Which component a parameter belongs to, from its name in WaLDORf or BERT."""
    rules = (
        ("embeddings.", "embeddings"),
        ("conv_units.", "conv"),
        ("downsample.", "resample"),
        ("upsample.", "resample"),
        (".attention", "attention"),  # BERT: attention.*; WaLDORf: attention, attention_norm
        (".ffn", "ffn"),
        (".intermediate.", "ffn"),  # BERT's FFN: intermediate.dense + output.dense/LayerNorm
        (".output.", "ffn"),
        ("qa_outputs.", "head"),
    )
    dotted = "." + name
    return next((component for key, component in rules if key in dotted), "other")


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters by component, plus ``total``.

    Explained in book/03_architecture.ipynb.
    """
    counts = dict.fromkeys(PARAMETER_COMPONENTS, 0)
    for name, param in model.named_parameters():
        counts[_component(name)] += param.numel()
    counts["total"] = sum(counts.values())
    return counts


def count_macs(config: WaldorfConfig | BertConfig, seq_len: int) -> dict[str, int]:
    """Multiply-accumulates to encode one sequence of ``seq_len`` tokens, by component.

    Attention scores grow with ``seq_len**2``; everything else grows linearly. WaLDORf's
    transformer units see the merged positions (``ReducedLayout``); with ``pool_query_only`` the
    first of them projects keys and values at full length and scores every query against
    every token. Explained in book/03_architecture.ipynb.
    """
    hidden = config.hidden_size
    macs = dict.fromkeys(MAC_COMPONENTS, 0)
    if isinstance(config, WaldorfConfig):
        layers = config.num_transformer_layers
        short = ReducedLayout(config.downsample, config.separate_cls).length(seq_len)
        if config.pool_query_only and config.downsample > 1 and layers:
            macs["attention_proj"] = 2 * (seq_len - short) * hidden * hidden  # K, V at full length
            macs["attention_scores"] = 2 * short * (seq_len - short) * hidden  # longer key rows
        if config.factorized_embeddings:
            macs["embeddings"] = seq_len * config.embedding_size * hidden
        conv_units = config.num_conv_layers + config.num_post_conv_layers
        macs["conv"] = conv_units * seq_len * (hidden * config.conv_kernel_size + hidden * hidden)
        if config.downsample > 1 and config.downsample_mode == "conv":
            macs["resample"] = short * (hidden * config.downsample + hidden * hidden)
    elif isinstance(config, BertConfig):
        layers, short = config.num_hidden_layers, seq_len
    else:
        kind = type(config).__name__
        raise TypeError(f"count_macs takes a WaldorfConfig or BertConfig, not {kind}")
    macs["attention_proj"] += layers * short * 4 * hidden * hidden  # Q, K, V and output
    macs["attention_scores"] += layers * 2 * short * short * hidden  # Q K^T and probs V
    macs["ffn"] = layers * short * 2 * hidden * config.intermediate_size
    macs["head"] = seq_len * hidden * 2
    macs["total"] = sum(macs.values())
    return macs


__all__ = ["MAC_COMPONENTS", "PARAMETER_COMPONENTS", "count_macs", "count_parameters"]
