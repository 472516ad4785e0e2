"""Plotly figures that look alike in every chapter and stay small in the notebooks.

The default Jupyter renderers embed all of plotly.js (about 4 MB) in every notebook that shows a
figure. The ``notebook_connected`` renderer instead writes the figure's data plus a ``<script>``
tag that loads plotly.js from its CDN, so the committed notebooks stay small; Jupyter and Colab
load it from there. The HTML book serves its own copy instead (``waldorf.sphinx_plotly`` copies
the one inside the ``plotly`` package into ``_static/`` and drops the CDN tags), so its figures
are live and zoomable offline and online alike. Explained in book/intro.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

RENDERER = "notebook_connected"
TEMPLATE = "plotly_white"
HEIGHT = 420  # pixels; the width follows the page
SMOOTHING_SPAN = 10  # logged rows averaged by a loss curve's moving average (ema)
RAW_OPACITY = 0.25  # the faint raw line under a smoothed curve

# Figures made with plotly.express after importing this module get the template too.
pio.templates.default = TEMPLATE


def style(fig: go.Figure, height: int | None = None) -> go.Figure:
    """Apply the book's look: white template, width of the page, compact margins.

    Explained in book/intro.md.
    """
    fig.update_layout(
        template=TEMPLATE,
        autosize=True,
        width=None,
        height=height or fig.layout.height or HEIGHT,
        margin=dict(l=60, r=20, t=60 if fig.layout.title.text else 30, b=50),
    )
    return fig


def show(fig: go.Figure, height: int | None = None) -> None:
    """Style ``fig`` and display it with the small ``notebook_connected`` renderer.

    Explained in book/intro.md.
    """
    style(fig, height).show(renderer=RENDERER, config={"displaylogo": False, "responsive": True})


def span_bars(fig: go.Figure, probs: dict, row: int | None = None, col: int | None = None,
              legend: bool = True) -> go.Figure:
    """Add a paragraph's P(start) and P(end) bars to ``fig``, overlaid, one bar per token.

    ``probs`` is ``qa.span_probabilities``'s result. The two bars left of the paragraph (at
    x = -3 and -2) are the [CLS] position's start and end: the "no answer" mass.
    Explained in book/02_teacher.ipynb.
    """
    x = np.arange(len(probs["tokens"]))
    for key, color, cls_x in (("start", "#1f77b4", -3), ("end", "#d62728", -2)):
        fig.add_bar(x=np.r_[cls_x, x], y=np.r_[probs[f"null_{key}"], probs[key]],
                    name=f"P({key})", marker_color=color, opacity=0.7, showlegend=legend,
                    customdata=["[CLS] no answer"] + list(probs["tokens"]),
                    hovertemplate="%{customdata}: %{y:.3f}<extra>" + key + "</extra>",
                    row=row, col=col)
    return fig


def ema(values: Sequence[float], span: int = SMOOTHING_SPAN) -> np.ndarray:
    """Exponential moving average with weight ``2 / (span + 1)`` on the newest value, corrected
    for its start (the first value is itself, not pulled towards 0). Explained in
    book/05_baselines.ipynb.
    """
    alpha, level, weight = 2 / (span + 1), 0.0, 0.0
    smoothed = np.empty(len(values))
    for i, value in enumerate(values):
        level = (1 - alpha) * level + alpha * value
        weight = (1 - alpha) * weight + alpha
        smoothed[i] = level / weight
    return smoothed


def add_smoothed(fig: go.Figure, steps: Sequence[float], values: Sequence[float], name: str,
                 color: str, showlegend: bool = True, row: int | None = None,
                 col: int | None = None) -> go.Figure:
    """Add a per-step loss curve: the raw values as a faint line, their :func:`ema` as the main
    line, both in ``color``. Batch-to-batch noise hides the trend of a raw loss; the faint line
    keeps that noise in sight. Explained in book/05_baselines.ipynb.
    """
    fig.add_scatter(x=steps, y=values, mode="lines", name=f"{name} (raw)", legendgroup=name,
                    line=dict(color=color, width=1), opacity=RAW_OPACITY, showlegend=False,
                    hoverinfo="skip", row=row, col=col)
    fig.add_scatter(x=steps, y=ema(values), mode="lines", name=name, legendgroup=name,
                    line=dict(color=color), showlegend=showlegend, row=row, col=col)
    return fig


def term_curves(histories: dict[str, dict], terms: Sequence[tuple[str, str]],
                title: str) -> go.Figure:
    """One panel per logged loss term, one colour per model in every panel, log scale: each
    model's smoothed curve over its faint raw values (:func:`add_smoothed`).

    ``histories``: model name -> stage name -> ``train.History``; ``terms``: (stage, term) pairs
    naming a part of the stage's logged loss. A model without the term has no line in its panel.
    Explained in book/05_baselines.ipynb.
    """
    fig = make_subplots(rows=1, cols=len(terms), subplot_titles=[f"{s}: {t}" for s, t in terms])
    for color, (name, stages) in zip(qualitative.Plotly, histories.items(), strict=False):
        for col, (stage, term) in enumerate(terms, start=1):
            rows = [row for row in stages[stage].rows if term in row["parts"]]
            add_smoothed(fig, [row["step"] for row in rows], [row["parts"][term] for row in rows],
                         name, color, showlegend=col == 1, row=1, col=col)
            fig.update_xaxes(title_text="optimizer step", row=1, col=col)
    fig.update_yaxes(type="log")
    fig.update_layout(title=title)
    return fig
