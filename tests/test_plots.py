"""The book's plotly figures: one look, and small outputs that load plotly.js from the CDN."""

from __future__ import annotations

from types import SimpleNamespace

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


def test_span_bars_put_the_no_answer_mass_left_of_the_paragraph():
    probs = {"tokens": ["the", "cat"], "start": [0.7, 0.1], "end": [0.1, 0.6],
             "null_start": 0.2, "null_end": 0.3}
    fig = plots.span_bars(go.Figure(), probs)
    start, end = fig.data
    assert list(start.x) == [-3, 0, 1] and list(start.y) == [0.2, 0.7, 0.1]
    assert list(end.x) == [-2, 0, 1] and list(end.y) == [0.3, 0.1, 0.6]
    assert start.customdata[0] == "[CLS] no answer" and end.customdata[2] == "cat"


def test_term_curves_draw_each_model_in_one_colour_and_skip_missing_terms():
    def history(rows):
        return SimpleNamespace(rows=[{"step": i, "parts": parts} for i, parts in enumerate(rows)])
    histories = {"a": {"stage 1": history([{"x": 1.0, "y": 2.0}, {"x": 0.5, "y": 1.0}])},
                 "b": {"stage 1": history([{"x": 0.9}, {"x": 0.4}])}}
    fig = plots.term_curves(histories, [("stage 1", "x"), ("stage 1", "y")], "t")
    by_name = {}
    for trace in fig.data:
        by_name.setdefault(trace.name, set()).add(trace.line.color)
    assert all(len(colours) == 1 for colours in by_name.values())  # one colour per model
    assert by_name["a"] != by_name["b"]
    assert list(fig.data[1].y) == [2.0, 1.0] and len(fig.data[3].y) == 0  # "b" logs no "y"
    assert fig.layout.yaxis.type == "log"
