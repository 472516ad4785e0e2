"""The students WaLDORf is compared with: BERT shapes sharing its vocabulary and span head.

Every model here is a ``BertForQuestionAnswering`` on the BERT uncased vocabulary, so the same
tokenizer, teacher logits and post-processing serve all of them. ``build_student`` turns a name
into a freshly initialised model, so distillation and benchmarks ask for models by name.

Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForQuestionAnswering, PreTrainedModel

from waldorf.models.configuration_waldorf import WaldorfConfig
from waldorf.models.modeling_waldorf import WaldorfForQuestionAnswering

# Shapes from the papers WaLDORf is compared with (layers, hidden, heads, FFN).
BASELINE_SHAPES: dict[str, dict] = {
    # TinyBERT-4 (Jiao et al. 2019): 14.5M parameters with its pooler and fit layer.
    "tinybert4": dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12,
                      intermediate_size=1200),
    # DistilBERT / BERT-PKD with 4 layers: BERT-Base cut to its width, 4 of 12 layers.
    "distilbert4": dict(num_hidden_layers=4, hidden_size=768, num_attention_heads=12,
                        intermediate_size=3072),
    "bert_pkd4": dict(num_hidden_layers=4, hidden_size=768, num_attention_heads=12,
                      intermediate_size=3072),
    "bert_base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                      intermediate_size=3072),
    "bert_large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
                       intermediate_size=4096),
    # The offline teacher's backbone, MiniLM-L6-H384 (what the cpu profile distils from).
    "teacher-shape": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12,
                          intermediate_size=1536),
    # DistilBERT-4 / BERT-PKD-4 scaled to the offline teacher: 4 of its layers at its width, so
    # every layer can start from a teacher layer (chapter 5's baseline on the cpu profile).
    # teacher1-3: the shallower cuts that draw the speed-accuracy front with it (chapter 5).
    **{f"teacher{depth}": dict(num_hidden_layers=depth, hidden_size=384, num_attention_heads=12,
                               intermediate_size=1536) for depth in (1, 2, 3, 4)},
    # The same cut of the gpu profile's teacher, BERT-Large: 4 layers at its width.
    "bert_large4": dict(num_hidden_layers=4, hidden_size=1024, num_attention_heads=16,
                        intermediate_size=4096),
}

MODEL_NAMES: tuple[str, ...] = ("waldorf", *BASELINE_SHAPES)
# Teacher width -> the four-layer cut of that teacher (chapter 5's baseline).
FOUR_LAYERS_AT_WIDTH = {BASELINE_SHAPES[name]["hidden_size"]: name
                        for name in ("teacher4", "bert_large4")}


def baseline_config(name: str, **overrides) -> BertConfig:
    """The ``BertConfig`` of a named baseline shape; keyword overrides replace any field.

    Explained in book/03_architecture.ipynb.
    """
    if name not in BASELINE_SHAPES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINE_SHAPES)}")
    return BertConfig(**{**BASELINE_SHAPES[name], **overrides})


def four_layer_baseline(teacher_config: BertConfig) -> str:
    """The baseline shape with four layers at the teacher's width, so each can start from one.

    Explained in book/05_baselines.ipynb.
    """
    width = teacher_config.hidden_size
    if width not in FOUR_LAYERS_AT_WIDTH:
        raise ValueError(f"no four-layer baseline for a teacher of width {width}; "
                         f"known widths: {sorted(FOUR_LAYERS_AT_WIDTH)}")
    return FOUR_LAYERS_AT_WIDTH[width]


def build_student(name: str | WaldorfConfig | BertConfig, **overrides) -> PreTrainedModel:
    """A randomly initialised QA model: ``"waldorf"``, a baseline name, or a config object.

    ``overrides`` are config fields, e.g. ``build_student("waldorf", downsample=1)`` (an ablation).
    Explained in book/03_architecture.ipynb.
    """
    if isinstance(name, WaldorfConfig | BertConfig):
        config = name.__class__.from_dict({**name.to_dict(), **overrides})
    elif name == "waldorf":
        config = WaldorfConfig(**overrides)
    elif name in BASELINE_SHAPES:
        config = baseline_config(name, **overrides)
    else:
        raise ValueError(f"unknown student {name!r}; choose one of {list(MODEL_NAMES)}")
    if isinstance(config, WaldorfConfig):
        return WaldorfForQuestionAnswering(config)
    return BertForQuestionAnswering(config)


def distilbert_style_from_teacher(
    teacher_model: PreTrainedModel, layers: tuple[int, ...] = (0, 2, 4)
) -> BertForQuestionAnswering:
    """A shallower BERT initialised from some of the teacher's layers, as DistilBERT does.

    DistilBERT copies every other layer of its teacher; from the 6-layer offline teacher the
    default keeps layers 0, 2 and 4. Embeddings (and the span head, when the teacher has one)
    are copied too. ``teacher_model`` is a ``BertModel`` or ``BertForQuestionAnswering``.
    Explained in book/03_architecture.ipynb.
    """
    teacher_config = teacher_model.config
    depth = teacher_config.num_hidden_layers
    if not layers or any(not 0 <= i < depth for i in layers):
        raise ValueError(f"layers {layers} must be non-empty indices into the teacher's {depth}")
    config = BertConfig.from_dict({**teacher_config.to_dict(), "num_hidden_layers": len(layers)})
    student = BertForQuestionAnswering(config)
    teacher_state = teacher_model.base_model.state_dict()
    new_index = {f"encoder.layer.{old}.": f"encoder.layer.{new}." for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher_state.items():
        if key.startswith("pooler."):
            continue  # the QA model has no pooler
        if key.startswith("encoder.layer."):
            prefix = ".".join(key.split(".")[:3]) + "."
            if prefix not in new_index:
                continue
            key = new_index[prefix] + key[len(prefix):]
        state[key] = value
    student.base_model.load_state_dict(state, strict=True)
    head = getattr(teacher_model, "qa_outputs", None)
    if head is not None:
        with torch.no_grad():
            student.qa_outputs.load_state_dict(head.state_dict())
    return student


__all__ = [
    "BASELINE_SHAPES",
    "FOUR_LAYERS_AT_WIDTH",
    "MODEL_NAMES",
    "baseline_config",
    "build_student",
    "distilbert_style_from_teacher",
    "four_layer_baseline",
]
