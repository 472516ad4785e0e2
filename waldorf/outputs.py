"""Outputs a reader should see: what ``waldorf book`` removes from executed notebooks.

Progress bars help while a cell runs and are noise once it has finished; kernel warnings, local
absolute paths and plotly's CDN script tags (the book serves plotly.js itself) are noise always.
Every executed notebook is cleaned before it is saved, and the committed ones can be cleaned
without executing them (``waldorf book --clean-outputs``). Explained in book/intro.md.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from waldorf.config import ARTIFACTS_ENV, DATA_ENV

REPO = Path(__file__).resolve().parents[1]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# A tqdm line: "Map: 100%|██████████| 83/83 [00:00<00:00, 2712.77it/s]", or without a total
# "Map: 1000 examples [00:00, 5000.00 examples/s]".
PROGRESS = re.compile(r"\d+%\|.*\||: *\d[\d.]*[kMG]? ?[\w/]* \[\d+:\d\d(?::\d\d)?, [^\]]*\]$")
# Kernel and library noise on stderr: glog lines ("W1126 06:38:00.573000 2224 file.py:107] ..."),
# profiler probes ("USDT:..."), and Python warnings (the line and its indented source line).
NOISE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\] |USDT:|\S.*:\d+: \w*Warning: )")
HOMES = (r"/root", r"/home/[\w.-]+", r"/Users/[\w.-]+")
# Other absolute paths under the usual roots of scratch, data and work folders: their last part.
LOCAL = re.compile(r"(?<![\w.~/:-])/(?:tmp|var|work|data|mnt|srv|opt|scratch|content|media)"
                   r"(?:/[\w.+@-]+)+/?")


def _drop_noise(text: str) -> str:
    """``text`` (a stderr stream) without progress bars, kernel warnings and warning sources."""
    kept, warning = [], False
    for line in text.split("\n"):
        shown = line.rsplit("\r", 1)[-1]  # what a terminal shows after tqdm's carriage returns
        if warning and shown[:1].isspace():
            continue  # the source line Python prints under a warning
        warning = bool(NOISE.match(shown))
        if not warning and not PROGRESS.search(shown):
            kept.append(shown)
    return "\n".join(kept)


def local_paths(text: str) -> str:
    """``text`` with this machine's absolute paths shortened: home folders to ``~``, the data
    and artifact folders (``WALDORF_DATA_DIR``, ``WALDORF_ARTIFACTS``), the checkout and
    scratch folders to their last part. Explained in book/intro.md.
    """
    for env in (DATA_ENV, ARTIFACTS_ENV):
        if os.environ.get(env):
            folder = Path(os.environ[env]).resolve()
            text = text.replace(str(folder), folder.name).replace(os.environ[env], folder.name)
    homes = "|".join((re.escape(str(Path.home())), *HOMES))
    text = re.sub(rf"(?<![\w.~/-])(?:{homes})(?![\w.-])", "~", text.replace(f"{REPO}/", ""))
    return LOCAL.sub(lambda m: Path(m.group().rstrip("/")).name, text)


def _widget_views(nb) -> list[str]:
    return [output["data"][WIDGET_VIEW].get("model_id", "") for cell in nb.cells
            for output in cell.get("outputs", []) if WIDGET_VIEW in output.get("data", {})]


def _prune_widget_state(nb) -> int:
    """Keep only the widget models that a remaining widget output (or its children) uses, without
    CDN scripts; 1 when that removed any, else 0."""
    saved = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    if saved is None:
        return 0
    before = json.dumps(saved)
    state, todo, keep = saved.get("state", {}), _widget_views(nb), set()
    while todo:
        model = todo.pop()
        if model in state and model not in keep:
            keep.add(model)
            todo += re.findall(r"IPY_MODEL_(\w+)", json.dumps(state[model]))
    if keep:
        saved["state"] = {model: _without_cdn(state[model]) for model in state if model in keep}
        return int("<script" in before and json.dumps(saved).count("<script")
                   < before.count("<script"))
    del nb.metadata["widgets"]
    return 0


def _without_cdn(value):
    """A saved widget's state with every HTML string's CDN scripts removed (its Output widgets
    keep figures, e.g. a slider's)."""
    from waldorf.sphinx_plotly import strip_cdn_scripts

    if isinstance(value, dict):
        return {key: _without_cdn(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_cdn(item) for item in value]
    return strip_cdn_scripts(value) if isinstance(value, str) and "<script" in value else value


def _clean_output(output: dict, counts: dict[str, int]) -> bool:
    """Clean one output in place; False when nothing of it should stay."""
    from waldorf.sphinx_plotly import strip_cdn_scripts

    data = output.get("data", {})
    if WIDGET_VIEW in data and PROGRESS.search(str(data.get("text/plain", ""))):
        counts["progress bars"] += 1
        return False
    if output.get("output_type") == "stream":
        text = output["text"]
        if output.get("name") == "stderr":
            text = _drop_noise(text)
            counts["noise lines"] += output["text"].count("\n") - text.count("\n")
        output["text"] = local_paths(text)
        counts["paths"] += output["text"] != text
        return bool(output["text"].strip())
    for mime, value in data.items():
        if mime.startswith("text/") and isinstance(value, str):
            stripped = strip_cdn_scripts(value) if "plotly" in value else value
            data[mime] = local_paths(stripped)
            counts["cdn scripts"] += stripped != value
            counts["paths"] += data[mime] != stripped
    return True


def clean_outputs(nb) -> dict[str, int]:
    """Remove what a reader should not see from ``nb``'s outputs, in place; count each kind.

    Progress bars (tqdm text or widgets: only the live notebook needs them), kernel and library
    warning lines on stderr, local absolute paths (see :func:`local_paths`), and the CDN
    ``<script>`` tags of plotly's outputs (the book serves plotly.js itself,
    :mod:`waldorf.sphinx_plotly`). Explained in book/intro.md.
    """
    counts = dict.fromkeys(("progress bars", "noise lines", "paths", "cdn scripts"), 0)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [out for out in cell["outputs"] if _clean_output(out, counts)]
    counts["cdn scripts"] += _prune_widget_state(nb)
    return counts


def clean_notebooks(paths: list[Path]) -> dict[Path, dict[str, int]]:
    """Apply :func:`clean_outputs` to committed notebooks without executing them; a notebook
    is only rewritten when something changed. Explained in book/intro.md.
    """
    import nbformat

    changed = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        counts = clean_outputs(nb)
        if any(counts.values()):
            nbformat.write(nb, path)
            changed[path] = counts
    return changed


def clean_committed(paths: list[Path]) -> int:
    """Clean ``paths`` in place (:func:`clean_notebooks`) and say what changed; 0. What
    ``waldorf book --clean-outputs`` does to the toc's notebooks, without executing any.

    Explained in book/intro.md.
    """
    changed = clean_notebooks(paths)
    for path, counts in changed.items():
        print(f"{path}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n))
    print(f"cleaned {len(changed)} of {len(paths)} notebook(s)")
    return 0


__all__ = ["clean_committed", "clean_notebooks", "clean_outputs", "local_paths"]
