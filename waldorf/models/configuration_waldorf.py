"""The WaLDORf student's configuration: every architectural choice, its default, and why.

The paper does not publish its exact layer list, so this is a reconstruction. Each block is a
switch here, so every ablation in the book is just another ``WaldorfConfig``.

Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

DOWNSAMPLE_MODES = ("conv", "pool")
FUNNEL_SWITCHES = ("pool_query_only", "separate_cls")  # written to dicts only when on


@strict
class WaldorfConfig(PreTrainedConfig):
    """Sizes and switches of the hybrid convolution + transformer span-extraction student.

    Data flow: embeddings -> ``num_conv_layers`` convolutional units -> (down-sample by
    ``downsample``) -> ``num_transformer_layers`` transformer units -> (up-sample + skip from
    the last full-length state) -> ``num_post_conv_layers`` convolutional units -> span head.

    Explained in book/03_architecture.ipynb.
    """

    model_type = "waldorf"

    # --- embeddings ---
    vocab_size: int = 30522  # the teacher's BERT uncased vocabulary: logits align token by token
    factorized_embeddings: bool = True  # ALBERT-style: embed small, then project up to hidden_size
    embedding_size: int = 128  # ALBERT's: a 3.9M-parameter vocab table, not 11.7M (if factorized)
    max_position_embeddings: int = 512  # BERT's limit; SQuAD windows are 128-384 tokens
    type_vocab_size: int = 2  # question vs context segment, as the teacher's tokenizer emits
    pad_token_id: int | None = 0  # [PAD] in the BERT uncased vocabulary
    # --- width shared by every unit ---
    hidden_size: int = 384  # the teacher's (MiniLM-L6-H384): stage-1 distillation, no projection
    hidden_act: str = "gelu"  # as in BERT and QANet's successors
    # --- convolutional units (QANet): local, linear in length; replace lower transformer units ---
    num_conv_layers: int = 2  # BERT's lower layers attend mostly locally; convolution is cheaper
    conv_kernel_size: int = 7  # QANet's embedding-encoder kernel; two units see 13 tokens
    # --- down-sampling: attention and feed-forward run on a shorter sequence ---
    downsample: int = 2  # 1 = off; 2 halves the sequence so attention costs 4x less, FFN 2x less
    downsample_mode: str = "conv"  # "conv": strided depthwise-separable conv; "pool": masked mean
    # --- transformer units (post-LN like BERT, so the teacher's layers could be copied in) ---
    # global reasoning between question and context, copied from the teacher's top layers; four
    # kept more of its margin (dev) but ran only 1.08x TinyBERT-4's shape on an Intel CPU, three
    # keep the paper's 1.24x with a margin (1.32-1.37x there), and two fell to the floor (the
    # appendix, book/development.md "At TinyBERT-4's speed"; chapter 9 measures the front)
    num_transformer_layers: int = 3
    num_attention_heads: int = 12  # the teacher's (head size 32): maps compare head to head
    intermediate_size: int = 1536  # 4x hidden, as in BERT and the teacher
    # --- Funnel-Transformer's shape switches (Dai et al., 2020); no-ops when downsample = 1 ---
    # the first transformer unit after down-sampling takes its queries from the merged sequence
    # but its keys and values from every token (the last conv unit's output), so merged pairs
    # still read each token's detail; costs full-length K/V projections and scores in one unit
    pool_query_only: bool = False
    # [CLS] (position 0, the span head's "no answer") stays out of the merge: reduced sequence
    # = [x_0] + merge(x_1 .. x_{n-1}), so the no-answer score never mixes with token 1
    separate_cls: bool = False
    # --- after up-sampling: token-level detail meets pair-level context before the span head ---
    num_post_conv_layers: int = 1  # 0 = none; one cheap unit lets paired tokens disagree again
    # --- regularisation and initialisation (BERT's values) ---
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def to_dict(self) -> dict:
        """All fields, less the Funnel switches while they are off: a student built before they
        existed keeps its dict, hence its artifact keys and the config.json it saves."""
        out = super().to_dict()
        for name in FUNNEL_SWITCHES:
            if not out[name]:
                del out[name]
        return out

    def validate_architecture(self):
        """Reject shapes the modules cannot build, naming the offending fields."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.conv_kernel_size % 2 != 1:
            raise ValueError(
                f"conv_kernel_size must be odd so outputs stay centred, got {self.conv_kernel_size}"
            )
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1 (1 = off), got {self.downsample}")
        if self.downsample_mode not in DOWNSAMPLE_MODES:
            raise ValueError(
                f"downsample_mode must be one of {DOWNSAMPLE_MODES}, got {self.downsample_mode!r}"
            )


__all__ = ["WaldorfConfig"]
