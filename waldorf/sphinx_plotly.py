"""Sphinx extension: the HTML book serves plotly.js and MathJax from its own ``_static/`` folder.

The chapters show their figures with plotly's ``notebook_connected`` renderer
(``waldorf.plots.show``), whose outputs load plotly.js, and MathJax, from public CDNs: right in
Jupyter and Colab, but a page read offline (or behind a firewall) then shows blank figures. At
build time this extension

- copies ``plotly.min.js`` out of the installed ``plotly`` package into ``_static/`` (the file
  is never committed) and adds it, as a plain synchronous ``<script>`` in the head, to the pages
  that show a figure, so ``window.Plotly`` exists before the figures' inline scripts run;
- removes from plotly's HTML outputs the ``<script>`` tags that load plotly.js or MathJax from
  a CDN (the committed notebook outputs stay as they are; no figure of the book uses LaTeX);
- drops the notebooks' ipywidgets state, an inert JSON blob (about 100 KB a page, holding more
  CDN tags) that nothing reads while ``nb_ipywidgets_js`` is empty, as it is in ``_config.yml``;
- copies MathJax 3 (the ``es5`` build that the ``django-static-mathjax`` package ships; it
  needs no Django) into ``_static/mathjax/`` when ``mathjax_path`` names a file there, as
  ``_config.yml`` does, so equations render offline too; a missing package stops the build;
- drops the book's machine-readable outputs (``application/vnd.waldorf.*``, the numbers that
  :mod:`waldorf.glance` collects) before myst-nb reads a notebook: their text form shows;
- writes each inline ``<script>`` once: Sphinx 7.4 repeats those that an extension adds after
  the builder started (sphinx-thebe's ``const THEBE_JS_URL = ...``, whose second copy throws
  "Identifier 'THEBE_JS_URL' has already been declared" on every page).

``_config.yml`` loads it from the installed package (``extra_extensions``), so that the working
copies of ``waldorf book``, which leave ``waldorf/`` out, build the same way. Explained in
book/intro.md.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
DATA_PREFIX = "application/vnd.waldorf."  # waldorf.glance's JSON outputs, for code not pages
FIGURE_MARK = "plotly-graph-div"  # the class of every figure's <div> in plotly's HTML output

# <script ... src="https://cdn.plot.ly/plotly-4.1.1.min.js" ...></script>, and the same for
# MathJax (plotly's include_mathjax="cdn": cdnjs.cloudflare.com/ajax/libs/mathjax/...).
_CDN_SRC = re.compile(
    r"<script\b[^>]*\bsrc=[\"']https?://(?:cdn\.plot\.ly/|cdnjs\.cloudflare\.com/ajax/libs/mathjax/)"
    r"[^\"']*[\"'][^>]*>\s*</script>",
    re.IGNORECASE,
)
# plotly>=6's notebook init: <script type="module">import "https://cdn.plot.ly/plotly-X.min"</script>
_CDN_IMPORT = re.compile(
    r"<script\b[^>]*>\s*import\s+[\"']https?://cdn\.plot\.ly/[^\"']*[\"']\s*;?\s*</script>",
    re.IGNORECASE,
)


def plotly_js() -> Path:
    """The ``plotly.min.js`` that ships inside the installed ``plotly`` package.

    Explained in book/intro.md.
    """
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly (pip install plotly)")
    return path


def static_name() -> str:
    """Name of the copy in ``_static/``, with plotly.js's version: ``plotly-4.1.1.min.js``.

    Explained in book/intro.md.
    """
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def strip_cdn_scripts(html: str) -> str:
    """``html`` without the ``<script>`` tags that load plotly.js or MathJax from a CDN.

    Explained in book/intro.md.
    """
    return _CDN_IMPORT.sub("", _CDN_SRC.sub("", html))


def unique_scripts(scripts: list[Any]) -> list[Any]:
    """``scripts`` (Sphinx's ``script_files``) without repeats, a missing file name being ``''``.

    Sphinx 7.4 registers ``add_js_file(None, body=...)`` under ``None`` and again under ``''``.
    Explained in book/intro.md.
    """
    seen, kept = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        key = (str(getattr(js, "filename", js) or ""), getattr(js, "priority", None),
               repr(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    return kept


MATHJAX_FOLDER = "mathjax"  # under _static/; _config.yml's mathjax_path points into it


def mathjax_es5() -> Path:
    """The folder of MathJax 3's browser build (``tex-chtml.js``, its fonts and extensions)
    inside the installed ``django-static-mathjax`` package. Explained in book/intro.md.
    """
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec and spec.origin:
        folder = Path(spec.origin).parent / "static" / "mathjax" / "es5"
        if (folder / "tex-chtml.js").is_file():
            return folder
    raise FileNotFoundError("MathJax 3 for the book's offline equations is missing: "
                            "pip install django-static-mathjax (in the book extra)")


def _copy_mathjax(app: Sphinx) -> None:
    path = app.config.mathjax_path
    if app.builder.format != "html" or "//" in path or not path.startswith(f"{MATHJAX_FOLDER}/"):
        return
    source, target = mathjax_es5(), Path(app.outdir) / "_static" / MATHJAX_FOLDER
    entry = Path(path).relative_to(MATHJAX_FOLDER)
    copied = target / entry
    if not copied.exists() or copied.read_bytes() != (source / entry).read_bytes():
        shutil.copytree(source, target, dirs_exist_ok=True)


def drop_data_outputs(notebook: str) -> str:
    """A notebook's JSON text without the ``DATA_PREFIX`` mimetypes of its outputs.

    Explained in book/glance.ipynb.
    """
    nb = json.loads(notebook)
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime in [m for m in data if m.startswith(DATA_PREFIX)]:
                del data[mime]
    return json.dumps(nb, indent=1, ensure_ascii=False)


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if DATA_PREFIX in source[0] and str(app.env.doc2path(docname)).endswith(".ipynb"):
        source[0] = drop_data_outputs(source[0])


def _copy_plotly_js(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / static_name()
    source = plotly_js()
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _rewrite_outputs(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html":
        return
    for node in doctree.findall(nodes.raw):
        if "html" not in node.get("format", "").split():
            continue
        text = node.astext()
        if "plotly" not in text.lower():
            continue  # only plotly's own outputs: other raw HTML keeps its scripts
        stripped = strip_cdn_scripts(text)
        if stripped != text:
            node.clear()
            node += nodes.Text(stripped)


def _page_assets(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                 doctree: Any) -> None:
    if app.builder.format != "html":
        return
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        scripts[:] = unique_scripts(scripts)
        if not app.config.nb_ipywidgets_js:
            scripts[:] = [js for js in scripts
                          if getattr(js, "attributes", {}).get("type") != WIDGET_STATE]
    if FIGURE_MARK in context.get("body", ""):
        app.add_js_file(static_name())


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the extension with Sphinx. Explained in book/intro.md."""
    app.setup_extension("myst_nb")  # nb_ipywidgets_js and the widget state come from myst-nb
    app.connect("builder-inited", _copy_plotly_js)
    app.connect("builder-inited", _copy_mathjax)
    app.connect("source-read", _source_read)
    app.connect("doctree-resolved", _rewrite_outputs)
    app.connect("html-page-context", _page_assets, priority=900)  # after myst-nb's (500)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
