"""Cleaning executed notebooks: no progress bars, warnings, local paths or CDN tags."""

from __future__ import annotations

import nbformat

from waldorf import outputs


def _output(kind: str, **fields) -> dict:
    if kind == "stream":
        return nbformat.v4.new_output("stream", name=fields.get("name", "stdout"),
                                      text=fields["text"])
    return nbformat.v4.new_output("display_data", fields["data"])


VIEW = "application/vnd.jupyter.widget-view+json"
CDN_FIGURE = ('<div><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/'
              'tex-svg.min.js"></script><script charset="utf-8" src="https://cdn.plot.ly/'
              'plotly-4.1.1.min.js"></script><div class="plotly-graph-div"></div>'
              '<script>Plotly.newPlot("x", [])</script></div>')


def _noisy_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    stderr = ("Map: 100%|██████████| 83/83 [00:00<00:00, 2712.77it/s]\n"
              "W1126 06:38:00.573000 2224 torch/onnx/_registration.py:107] torchvision is not "
              "installed. Skipping torchvision::nms\n"
              "/usr/lib/python3/site.py:12: FutureWarning: old\n  warnings.warn(\n"
              "USDT:2026-11-26 06:37:53 2224:2224 Handler.cpp:52] profiler_start\n"
              "\rFilter:   0%|          | 0/9 [00:00<?, ? examples/s]"
              "\rFilter: 9 examples [00:00, 900.00 examples/s]\n"
              "a real message\n")
    nb.cells = [nbformat.v4.new_code_cell("", outputs=[
        _output("display_data", data={VIEW: {"model_id": "bar"}, "text/plain":
                                      "Loading weights: 100%|##| 83/83 [00:00<00:00]"}),
        _output("display_data", data={VIEW: {"model_id": "slider"}, "text/plain": "interactive"}),
        _output("stream", name="stderr", text=stderr),
        _output("stream", text="found it: /root/.cache/waldorf/teacher/cpu-1\ndata in "
                               "/work/shared/data/squad2, scratch /tmp/pytest-7/run/x.json\n"
                               "keep windows/s and https://example.org/tmp/a/b\n"),
        _output("display_data", data={"text/html": CDN_FIGURE, "text/plain": "<Figure>"}),
    ])]
    state = {"bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_bar_html"]}},
             "bar_html": {"model_name": "HTMLModel", "state": {}},
             "slider": {"model_name": "FloatSliderModel",
                        "state": {"layout": "IPY_MODEL_slider_layout"}},
             "slider_layout": {"model_name": "LayoutModel", "state": {"outputs": [
                 {"data": {"text/html": CDN_FIGURE}}]}}}
    nb.metadata["widgets"] = {outputs.WIDGET_STATE: {"state": state}}
    return nb


def test_clean_outputs_removes_what_a_reader_should_not_see():
    nb = _noisy_notebook()
    counts = outputs.clean_outputs(nb)
    cell = nb.cells[0].outputs
    assert [o.get("name") or list(o["data"]) for o in cell] == [
        [VIEW, "text/plain"], "stderr", "stdout", ["text/html", "text/plain"]]
    assert cell[0]["data"]["text/plain"] == "interactive"  # other widgets stay
    assert cell[1]["text"] == "a real message\n"
    assert cell[2]["text"] == ("found it: ~/.cache/waldorf/teacher/cpu-1\n"
                                  "data in squad2, scratch x.json\n"
                                  "keep windows/s and https://example.org/tmp/a/b\n")
    html = cell[3]["data"]["text/html"]
    assert "cdn.plot.ly" not in html and "cdnjs" not in html and "Plotly.newPlot" in html
    state = nb.metadata["widgets"][outputs.WIDGET_STATE]["state"]
    assert set(state) == {"slider", "slider_layout"}
    saved_figure = state["slider_layout"]["state"]["outputs"][0]["data"]["text/html"]
    assert "cdn.plot.ly" not in saved_figure and "Plotly.newPlot" in saved_figure
    assert counts == {"progress bars": 1, "noise lines": 6, "paths": 1, "cdn scripts": 2}
    assert not any(outputs.clean_outputs(nb).values())  # a clean notebook stays as it is


def test_local_paths_use_the_data_and_artifact_folders_names(monkeypatch):
    monkeypatch.setenv("WALDORF_DATA_DIR", "/srv/corpora/squad-offline")
    monkeypatch.setenv("WALDORF_ARTIFACTS", "/nfs/team/waldorf-artifacts")
    text = ("/srv/corpora/squad-offline/dev.json and /nfs/team/waldorf-artifacts/teacher/x "
            f"and {outputs.REPO}/_build/run-cpu, /home/ann/notes, /rootless stays")
    assert outputs.local_paths(text) == ("squad-offline/dev.json and waldorf-artifacts/teacher/x "
                                      "and _build/run-cpu, ~/notes, /rootless stays")
