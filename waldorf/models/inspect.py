"""Looking inside the WaLDORf student: its stages, their shapes, and a diagram drawn from a config.

``stages`` says what every stage must output, from the configuration alone; ``trace_shapes``
runs a real forward pass and records what every stage did output, so the two can be compared;
``diagram`` draws the stages with widths proportional to the sequence length each one runs on,
which is where the student's speed comes from.

Explained in book/03_architecture.ipynb.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import torch
from torch import nn

from waldorf.models.configuration_waldorf import WaldorfConfig

KIND_COLORS = {
    "embeddings": "#9ecae1", "conv": "#fdae6b", "resample": "#bcbddc",
    "transformer": "#74c476", "head": "#fb6a4a",
}


def _stage(name: str, kind: str, module: str, seq: int, width: int, detail: str) -> dict:
    return dict(name=name, kind=kind, module=module, seq=seq, width=width, detail=detail)


def stages(config: WaldorfConfig, seq_len: int) -> list[dict]:
    """The student's stages in data-flow order, each with the output shape it must have.

    Each row: ``name``, ``kind`` (a key of ``KIND_COLORS``), ``module`` (its path inside a
    ``WaldorfForQuestionAnswering``), ``seq`` and ``width`` of its output for one sequence of
    ``seq_len`` tokens, and a one-line ``detail``. Explained in book/03_architecture.ipynb.
    """
    hidden, factor = config.hidden_size, config.downsample
    short = math.ceil(seq_len / factor)
    kernel = f"depthwise k={config.conv_kernel_size} + pointwise {hidden}x{hidden}"
    if config.factorized_embeddings:
        embed = f"{config.vocab_size} x {config.embedding_size}, projected to {hidden}"
    else:
        embed = f"{config.vocab_size} x {hidden}"
    rows = [_stage("embeddings", "embeddings", "waldorf.embeddings", seq_len, hidden, embed)]
    rows += [_stage(f"conv unit {i + 1}", "conv", f"waldorf.conv_units.{i}", seq_len, hidden,
                    kernel) for i in range(config.num_conv_layers)]
    if factor > 1:
        how = "strided conv" if config.downsample_mode == "conv" else "masked mean pool"
        rows.append(_stage(f"down-sample /{factor}", "resample", "waldorf.downsample", short,
                           hidden, f"{how}, {factor} tokens -> 1"))
    heads, ffn = config.num_attention_heads, config.intermediate_size
    rows += [_stage(f"transformer unit {i + 1}", "transformer", f"waldorf.transformer_units.{i}",
                    short, hidden, f"{heads} heads, FFN {ffn}, post-LN")
             for i in range(config.num_transformer_layers)]
    if factor > 1:
        rows.append(_stage("up-sample + skip", "resample", "waldorf.upsample", seq_len, hidden,
                           f"repeat x{factor}, add skip, LayerNorm"))
    first = config.num_conv_layers
    rows += [_stage(f"conv unit {first + i + 1}", "conv", f"waldorf.post_conv_units.{i}",
                    seq_len, hidden, kernel) for i in range(config.num_post_conv_layers)]
    rows.append(_stage("span head", "head", "qa_outputs", seq_len, 2,
                       "start and end logit per token; [CLS] = no answer"))
    return rows


def trace_shapes(model: nn.Module, **inputs: torch.Tensor):
    """Run one forward pass and record every stage's real output shape and parameter count.

    Returns ``(rows, output)``: the rows of ``stages`` plus ``shape`` (with the batch
    dimension) and ``parameters``, and the model's output. Forward hooks are removed after.
    Explained in book/03_architecture.ipynb.
    """
    if not isinstance(getattr(model, "config", None), WaldorfConfig):
        raise TypeError(f"trace_shapes needs a WaldorfForQuestionAnswering, got "
                        f"{type(model).__name__}")
    rows = stages(model.config, inputs["input_ids"].shape[1])
    handles = []
    for row in rows:
        module = model.get_submodule(row["module"])
        row["parameters"] = sum(p.numel() for p in module.parameters())

        def record(_module, _args, output, row=row):
            tensor = output[0] if isinstance(output, tuple) else output  # (batch, seq, width)
            row["shape"] = tuple(tensor.shape)

        handles.append(module.register_forward_hook(record))
    try:
        with torch.inference_mode():
            output = model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return rows, output


def diagram(config: WaldorfConfig, seq_len: int) -> go.Figure:
    """The student as boxes from input (top) to span head (bottom), drawn from ``config``.

    A box's width is proportional to the sequence length its stage runs on, so the shorter
    sequence of the transformer units is visible at a glance; the skip connection runs from
    the last full-length state to the up-sampling. Explained in book/03_architecture.ipynb.
    """
    rows = stages(config, seq_len)
    fig = go.Figure()
    step, height = 1.0, 0.7  # vertical distance between stages; box height
    for i, row in enumerate(rows):
        half, y = 0.5 * row["seq"] / seq_len, -i * step
        fig.add_shape(type="rect", x0=-half, x1=half, y0=y - height / 2, y1=y + height / 2,
                      fillcolor=KIND_COLORS[row["kind"]], line=dict(color="#444", width=1))
        fig.add_annotation(x=0, y=y, text=f"<b>{row['name']}</b>", showarrow=False,
                           font=dict(size=12))
        fig.add_annotation(x=0.62, y=y, text=f"({row['seq']}, {row['width']}) · {row['detail']}",
                           showarrow=False, xanchor="left", font=dict(size=11, color="#555"))
        if i:
            fig.add_annotation(x=0, y=y + height / 2, ax=0, ay=y + step - height / 2,
                               xref="x", yref="y", axref="x", ayref="y", text="",
                               showarrow=True, arrowhead=2, arrowwidth=1.2)
    if config.downsample > 1:
        source = config.num_conv_layers  # the last full-length state (embeddings when 0)
        target = [row["name"] for row in rows].index("up-sample + skip")
        path = (f"M 0.5 {-source * step} L 0.57 {-source * step} "
                f"L 0.57 {-target * step} L 0.5 {-target * step}")
        fig.add_shape(type="path", path=path, line=dict(color="#d62728", width=2, dash="dot"))
        fig.add_annotation(x=0.57, y=-(source + target) * step / 2, text="skip", showarrow=False,
                           xanchor="right", font=dict(color="#d62728"), textangle=-90)
    for kind, color in KIND_COLORS.items():  # legend entries for the box colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=kind,
                                 marker=dict(symbol="square", size=12, color=color)))
    fig.add_annotation(x=0, y=step * 0.75, text=f"input: ({seq_len},) token ids",
                       showarrow=False, font=dict(size=12))
    fig.update_xaxes(visible=False, range=[-0.55, 1.75])
    fig.update_yaxes(visible=False, range=[-(len(rows) - 0.4) * step, step * 1.05])
    fig.update_layout(title=f"The WaLDORf student on a window of {seq_len} tokens "
                      "(box width ~ positions; right: output shape)",
                      height=90 + 48 * len(rows), legend=dict(orientation="h", y=-0.02))
    return fig


__all__ = ["KIND_COLORS", "diagram", "stages", "trace_shapes"]
