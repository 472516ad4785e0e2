"""The book's plotly figures: one look, and small outputs that load plotly.js from the CDN."""

from __future__ import annotations

from types import SimpleNamespace

import IPython.display
import numpy as np
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
        by_name.setdefault(trace.legendgroup, set()).add(trace.line.color)
    assert all(len(colours) == 1 for colours in by_name.values())  # one colour per model
    assert by_name["a"] != by_name["b"]
    raw_y, smooth_y = (t for t in fig.data if t.legendgroup == "a" and t.xaxis == "x2")
    assert list(raw_y.y) == [2.0, 1.0] and raw_y.opacity == plots.RAW_OPACITY
    assert list(smooth_y.y) == list(plots.ema([2.0, 1.0]))
    assert all(len(t.y) == 0 for t in fig.data if t.legendgroup == "b" and t.xaxis == "x2")
    assert fig.layout.yaxis.type == "log"


def test_loss_curves_show_the_moving_average_over_faint_raw_values():
    noisy = [4.0, 1.0, 4.0, 1.0, 4.0, 1.0, 4.0, 1.0]
    smoothed = plots.ema(noisy, span=3)  # weight 0.5 on the newest value
    assert smoothed[0] == 4.0  # starts at the first value, not pulled towards 0
    assert smoothed[1] == (0.5 * 4.0 + 1.0) / 1.5  # weights 0.5, 1 over their sum
    assert np.ptp(smoothed[4:]) < np.ptp(noisy[4:]) / 2  # the zig-zag is damped
    fig = plots.add_smoothed(go.Figure(), list(range(8)), noisy, "student", "#123456")
    raw, main = fig.data
    assert raw.line.color == main.line.color == "#123456"
    assert raw.opacity < 0.5 and main.opacity is None and not raw.showlegend
    assert list(main.y) == list(plots.ema(noisy)) and main.name == "student"
