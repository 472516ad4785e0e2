"""The book's plotly figures: one look, and small outputs that load plotly.js from the CDN."""

from __future__ import annotations

import IPython.display
import plotly.express as px
import plotly.graph_objects as go

from waldorf import plots


def test_style_applies_the_book_template_and_page_width():
    fig = plots.style(go.Figure(go.Scatter(y=[1, 2])), height=300)
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert fig.layout.width is None and fig.layout.height == 300


def test_show_writes_small_html_that_loads_plotly_from_the_cdn(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    plots.show(px.bar(x=["a", "b"], y=[1, 2], title="t"))
    (bundle,) = shown
    html = bundle["text/html"]
    assert "cdn.plot.ly" in html
    assert len(html) < 100_000  # plotly.js itself (megabytes) is not embedded
