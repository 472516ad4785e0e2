"""Plotly figures that look alike in every chapter and stay small in the notebooks.

The default Jupyter renderers embed all of plotly.js (about 4 MB) in every notebook that shows a
figure. The ``notebook_connected`` renderer instead writes the figure's data plus a ``<script>``
tag that loads plotly.js from its CDN, so the committed notebooks stay small and the HTML book
(built offline) shows live, zoomable figures when it is read online. Explained in book/intro.md.
"""

from __future__ import annotations

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
