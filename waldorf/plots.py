"""Plotly figures that look alike in every chapter and stay small in the notebooks.

The default Jupyter renderers embed all of plotly.js (about 4 MB) in every notebook that shows a
figure. The ``notebook_connected`` renderer instead writes the figure's data plus a ``<script>``
tag that loads plotly.js from its CDN, so the committed notebooks stay small and the HTML book
(built offline) shows live, zoomable figures when it is read online. Explained in book/intro.md.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

RENDERER = "notebook_connected"
TEMPLATE = "plotly_white"
HEIGHT = 420  # pixels; the width follows the page

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
    """Style ``fig`` and display it through the CDN-connected renderer.

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
