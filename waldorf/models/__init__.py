"""The WaLDORf student and the baseline students, registered with the transformers Auto classes.

After ``import waldorf.models``, ``AutoConfig.for_model("waldorf")`` and
``AutoModelForQuestionAnswering.from_pretrained(saved_waldorf_dir)`` work like any built-in model.
Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering

from waldorf.models.baselines import (
    BASELINE_SHAPES,
    MODEL_NAMES,
    baseline_config,
    build_student,
    distilbert_style_from_teacher,
    four_layer_baseline,
)
from waldorf.models.configuration_waldorf import WaldorfConfig
from waldorf.models.counting import count_macs, count_parameters
from waldorf.models.modeling_waldorf import (
    WaldorfForQuestionAnswering,
    WaldorfModel,
    WaldorfPreTrainedModel,
    span_loss,
)
from waldorf.models.resampling import downsample_mask

# exist_ok: re-importing (e.g. importlib.reload in a notebook) must not fail.
AutoConfig.register("waldorf", WaldorfConfig, exist_ok=True)
AutoModel.register(WaldorfConfig, WaldorfModel, exist_ok=True)
AutoModelForQuestionAnswering.register(WaldorfConfig, WaldorfForQuestionAnswering, exist_ok=True)

__all__ = [
    "BASELINE_SHAPES",
    "MODEL_NAMES",
    "WaldorfConfig",
    "WaldorfForQuestionAnswering",
    "WaldorfModel",
    "WaldorfPreTrainedModel",
    "baseline_config",
    "build_student",
    "count_macs",
    "count_parameters",
    "distilbert_style_from_teacher",
    "downsample_mask",
    "four_layer_baseline",
    "span_loss",
]
