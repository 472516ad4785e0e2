"""The built book as a reader sees it: every page of the toc opened in headless Chromium.

The book is built once (``test_book.build_book``, shared with the -W build test). Then

- static checks, without a browser: every internal link, and every local script, stylesheet
  and image of every page, points at a file of the build (and at an ``id`` of it, for
  ``#anchors``); no page loads a script or stylesheet from another host; every notebook page
  has a launch button for each service of ``_config.yml``'s ``launch_buttons``; ``_static/``
  holds the plotly.js and the MathJax that ship inside installed packages
  (``waldorf/sphinx_plotly.py``);
- in Chromium (selenium driving the Debian ``chromium`` and ``chromium-driver`` packages),
  offline: every host name fails to resolve, so a page passes only if it works without the
  network. A page fails on a JavaScript error, a ``console.error``, a local file that does not
  load, any request to another host (a script from a CDN above all), a plotly figure without
  its drawn ``<svg>`` (or fewer figures than the notebook's outputs), equations that MathJax
  did not typeset, or a launch button missing from the page. A failing page leaves screenshots
  in ``_build/browser-failures/``. Without Chromium or selenium these tests skip, saying what
  to install.

Ignored, on purpose: pydata-sphinx-theme's ``console.error("Got invalid theme mode: .
Resetting to auto.")``, which it writes on a reader's first visit (nothing stored yet) before
switching to the automatic light/dark mode. Thebe's live code would load from a CDN, but only
when a reader clicks its button, which no page does here.
"""

from __future__ import annotations

import re
import shutil
import time
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
import yaml
from test_book import REPO, build_book

from waldorf import book, sphinx_plotly

FAILURES = REPO / "_build" / "browser-failures"
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
LAUNCH_KEYS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")
NOISE = ("Got invalid theme mode: . Resetting to auto.",)  # see the module docstring
FIGURE_TIMEOUT_S = 20


def toc_pages() -> list[str]:
    """The toc's files (root first), as paths without suffix: ``book/01_data_and_metric``."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return [toc["root"], *book.toc_files([toc])]


def _source(page: str) -> Path:
    notebook = REPO / f"{page}.ipynb"
    return notebook if notebook.exists() else REPO / f"{page}.md"


def expected_figures(page: str) -> int:
    """How many plotly figures the page's notebook outputs hold."""
    source = _source(page)
    if source.suffix != ".ipynb":
        return 0
    cells = nbformat.read(source, as_version=4).cells
    return sum(sphinx_plotly.FIGURE_MARK in output.get("data", {}).get("text/html", "")
               for cell in cells for output in cell.get("outputs", []))


class _Page(HTMLParser):
    """The ids of an HTML page and the local URLs it links to or loads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []  # <a href>
        self.assets: list[str] = []  # <script src>, <link href>, <img src>
        self.loaded: list[str] = []  # what the browser fetches on its own: scripts, stylesheets

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value for key, value in attrs if value is not None}
        for key in ("id", "name"):
            if key in values:
                self.ids.add(values[key])
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        elif tag in ("script", "img") and "src" in values:
            self.assets.append(values["src"])
            if tag == "script":
                self.loaded.append(values["src"])
        elif tag == "link" and "href" in values:
            self.assets.append(values["href"])
            if "stylesheet" in (values.get("rel") or "") or values.get("as") == "script":
                self.loaded.append(values["href"])


@cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_references(html: Path, path: Path) -> list[str]:
    """The local links and assets of the page at ``path`` that point at nothing in ``html``."""
    page, root, broken = _parse(path), html.resolve(), []
    for url, is_link in [(u, True) for u in page.links] + [(u, False) for u in page.assets]:
        parts = urlsplit(url)
        if parts.scheme or url.startswith("//") or url in ("", "#"):
            continue  # external (not checked: the test runs offline), or the theme's "#" buttons
        target = (path.parent / unquote(parts.path)).resolve() if parts.path else path.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(root):
            broken.append(f"{url} (outside the book)")
        elif not target.is_file():
            broken.append(f"{url} (no file {target.relative_to(root)})")
        elif is_link and parts.fragment and target.suffix == ".html":
            if unquote(parts.fragment) not in _parse(target).ids:
                broken.append(f"{url} (no id {parts.fragment!r} in {target.name})")
    return broken


def external_loads(path: Path) -> list[str]:
    """The scripts and stylesheets of the page at ``path`` that come from another host."""
    return [url for url in _parse(path).loaded if urlsplit(url).scheme or url.startswith("//")]


def launch_urls(page: str) -> dict[str, str]:
    """Launch service -> the start of its button's URL, for a notebook page, else {}."""
    if _source(page).suffix != ".ipynb":
        return {}
    buttons = CONFIG.get("launch_buttons", {})
    urls = {key: buttons[key].rstrip("/") for key in LAUNCH_KEYS if buttons.get(key)}
    if "colab_url" in urls:
        repo = CONFIG["repository"]
        org_repo = urlsplit(repo["url"]).path.strip("/")
        folder = repo.get("path_to_book", "").strip("/")
        path = f"{folder}/{page}.ipynb" if folder else f"{page}.ipynb"
        urls["colab_url"] += f"/github/{org_repo}/blob/{repo.get('branch', 'main')}/{path}"
    return urls


def missing_launch_buttons(page: str, links: list[str]) -> list[str]:
    """The launch services of ``_config.yml`` without a button (a link in ``links``)."""
    notebook = f"{page}.ipynb"
    return [f"{key} ({url}...)" for key, url in launch_urls(page).items()
            if not any(link.startswith(url) and notebook in unquote(link) for link in links)]


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built book's HTML folder (the build of tests/test_book.py, made once)."""
    done, folder = build_book(tmp_path_factory)
    if not (folder / "index.html").exists():
        pytest.fail("the book did not build: " + done.stdout[-2000:] + done.stderr[-2000:])
    return folder  # a -W build with warnings still wrote its pages: test_book reports those


PAGES = toc_pages()


@pytest.mark.parametrize("page", PAGES)
def test_links_assets_and_launch_buttons(html, page):
    path = html / f"{page}.html"
    assert path.exists(), f"{page} is in the toc but the build has no {path.name}"
    problems = [f"broken: {ref}" for ref in broken_references(html, path)]
    problems += [f"loads from another host: {url}" for url in external_loads(path)]
    problems += [f"no launch button: {key}"
                 for key in missing_launch_buttons(page, _parse(path).links)]
    assert not problems, f"{page}.html:\n  " + "\n  ".join(problems)


def test_pages_outside_the_toc_have_no_broken_links(html):
    """index.html (the redirect to the first page), search.html, genindex.html."""
    others = list(html.glob("*.html"))
    broken = {p.name: broken_references(html, p) for p in others}
    assert others and not any(broken.values()), broken


def test_the_link_check_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "b.html").write_text('<h1 id="there">B</h1>')
    page = tmp_path / "book" / "a.html"
    page.write_text('<a href="b.html#there">ok</a> <a href="b.html#gone">anchor</a>'
                    '<a href="c.html">file</a> <a href="#top">self</a> <p id="top"></p>'
                    '<a href="https://example.org/x.html">external</a> <a href="#">button</a>'
                    '<script src="../_static/missing.js?v=1"></script>')
    assert broken_references(tmp_path, page) == [
        "b.html#gone (no id 'gone' in b.html)", "c.html (no file book/c.html)",
        "../_static/missing.js?v=1 (no file _static/missing.js)"]


def test_plotly_js_comes_from_the_book_not_a_cdn(html):
    name = sphinx_plotly.static_name()
    local = html / "_static" / name
    assert local.read_bytes() == sphinx_plotly.plotly_js().read_bytes()
    for page in PAGES:
        text = (html / f"{page}.html").read_text(encoding="utf-8")
        assert "cdn.plot.ly" not in text, f"{page}.html loads plotly.js from its CDN"
        loads = f'src="{"../" * page.count("/")}_static/{name}' in text
        assert loads == (expected_figures(page) > 0), f"{page}.html: plotly.js script tag"


def test_mathjax_comes_from_the_book_not_a_cdn(html):
    entry = html / "_static" / CONFIG["sphinx"]["config"]["mathjax_path"]
    assert entry.read_bytes() == (sphinx_plotly.mathjax_es5() / entry.name).read_bytes()
    fonts = html / "_static" / "mathjax" / "output" / "chtml" / "fonts"
    assert any(fonts.rglob("*.woff")), "MathJax's fonts were not copied"
    with_math = [page for page in PAGES if 'class="math' in (html / f"{page}.html").read_text()]
    assert with_math, "no page has equations: the offline MathJax check would check nothing"
    for page in with_math:
        text = (html / f"{page}.html").read_text(encoding="utf-8")
        assert f'src="{"../" * page.count("/")}_static/mathjax/tex-chtml.js' in text, page


def test_the_page_check_flags_scripts_from_other_hosts(tmp_path):
    page = tmp_path / "a.html"
    page.write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js">'
                    '</script><script src="_static/local.js"></script><link rel="stylesheet" '
                    'href="//fonts.example.org/x.css"><link rel="icon" href="https://x.org/i">')
    assert external_loads(page) == ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js",
                                    "//fonts.example.org/x.css"]


def test_the_book_drops_its_machine_readable_outputs_but_keeps_their_text():
    from waldorf import glance

    assert glance.MIMETYPE.startswith(sphinx_plotly.DATA_PREFIX)
    assert glance.TABLE_MIMETYPE.startswith(sphinx_plotly.DATA_PREFIX)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("record()", outputs=[nbformat.v4.new_output(
        "display_data", {glance.MIMETYPE: {"value": 1.0}, "text/plain": "claim: 1.00x"})])]
    kept = nbformat.reads(sphinx_plotly.drop_data_outputs(nbformat.writes(nb)), as_version=4)
    assert kept.cells[0].outputs[0]["data"] == {"text/plain": "claim: 1.00x"}


def test_cdn_script_tags_are_stripped_from_plotly_outputs(monkeypatch):
    """On both outputs that the installed plotly's ``notebook_connected`` renderer writes."""
    import IPython.display
    import plotly.graph_objects as go
    import plotly.io as pio

    shown = []
    monkeypatch.setattr(IPython.display, "display_html", lambda html, **kw: shown.append(html))
    renderer = pio.renderers["notebook_connected"]
    renderer.activate()  # the init output, shown before a notebook's first figure
    figure = go.Figure(go.Scatter(y=[1, 3, 2])).to_dict()
    shown.append(renderer.to_mimebundle(figure)["text/html"])
    assert len(shown) == 2 and all("cdn.plot.ly" in html for html in shown)
    for html in shown:
        stripped = sphinx_plotly.strip_cdn_scripts(html)
        assert not re.search(r"https?://(cdn\.plot\.ly|cdnjs\.)", stripped), stripped
    assert "Plotly.newPlot" in sphinx_plotly.strip_cdn_scripts(shown[1])


# ---------------------------------------------------------------------------- in Chromium


def _chromium() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or why they are missing."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    return ("headless Chromium not found (Debian: apt-get install chromium chromium-driver; "
            f"found chromium={browser}, chromedriver={driver})")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for every page, with the network unreachable."""
    found = _chromium()
    if isinstance(found, str):
        pytest.skip(found)
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--host-resolver-rules=MAP * ~NOTFOUND",
                     "--disable-background-networking", "--disable-component-update",
                     "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: selenium's own driver manager (which downloads) never runs.
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.set_page_load_timeout(60)
    shutil.rmtree(FAILURES, ignore_errors=True)  # screenshots of an earlier run would mislead
    yield driver
    driver.quit()


# Per plotly figure <div>: drawn (an <svg>, a size)? And: can more figures still be drawn?
FIGURES_JS = """
var drawn = Array.from(document.querySelectorAll('.plotly-graph-div')).map(function (div) {
  var svg = div.querySelector('svg.main-svg'), box = div.getBoundingClientRect();
  return svg !== null && div.classList.contains('js-plotly-plot')
      && box.width > 0 && box.height > 0;
});
var hopeless = document.readyState === 'complete' && typeof window.Plotly === 'undefined';
return [drawn, hopeless];
"""


def drawn_figures(driver, expected: int) -> list[bool]:
    """Whether each plotly figure of the page drew, waiting up to FIGURE_TIMEOUT_S for the
    ``expected`` figures to be on the page (a cold browser can report none yet) and to draw."""
    deadline = time.monotonic() + FIGURE_TIMEOUT_S
    drawn, hopeless = driver.execute_script(FIGURES_JS)
    while ((len(drawn) < expected or not all(drawn)) and not hopeless
           and time.monotonic() < deadline):
        time.sleep(0.2)
        drawn, hopeless = driver.execute_script(FIGURES_JS)
    return drawn


def _is_problem(entry: dict) -> bool:
    """A severe console entry that is not known noise; offline, a request to another host fails
    and logs one, so this also catches every script, stylesheet or font from a CDN."""
    return entry["level"] == "SEVERE" and not any(noise in entry["message"] for noise in NOISE)


# Requests the page made to anything but its own files, and equations left untypeset.
REQUESTS_JS = """
return performance.getEntriesByType('resource').map(function (e) { return e.name; })
    .filter(function (url) { return !url.startsWith('file:') && !url.startsWith('data:'); });
"""
MATH_JS = """
return [document.querySelectorAll('.math').length,
        document.querySelectorAll('mjx-container').length];
"""


def untypeset_math(driver) -> int:
    """How many equations of the page MathJax did not typeset, waiting up to FIGURE_TIMEOUT_S."""
    deadline = time.monotonic() + FIGURE_TIMEOUT_S
    equations, typeset = driver.execute_script(MATH_JS)
    while typeset < equations and time.monotonic() < deadline:
        time.sleep(0.2)
        equations, typeset = driver.execute_script(MATH_JS)
    return max(equations - typeset, 0)


def _screenshots(driver, page: str, figures: list[bool]) -> Path:
    FAILURES.mkdir(parents=True, exist_ok=True)
    stem = page.replace("/", "__")
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(FAILURES / f"{stem}.png"))
    blank = [i for i, drawn in enumerate(figures) if not drawn][:3]
    for i in blank:
        driver.execute_script(
            "document.querySelectorAll('.plotly-graph-div')[arguments[0]]"
            ".scrollIntoView({block: 'center'})", i)
        driver.save_screenshot(str(FAILURES / f"{stem}-figure-{i}.png"))
    return FAILURES


@pytest.mark.parametrize("page", PAGES)
def test_page_in_chromium(html, browser, page):
    browser.get_log("browser")  # drop what the previous page left
    browser.get((html / f"{page}.html").resolve().as_uri())
    expected = expected_figures(page)
    figures = drawn_figures(browser, expected)
    untypeset = untypeset_math(browser)
    problems = [f"{e['source']}: {e['message']}" for e in browser.get_log("browser")
                if _is_problem(e)]
    problems += [f"requested from another host: {url}"
                 for url in browser.execute_script(REQUESTS_JS)]
    if untypeset:
        problems.append(f"{untypeset} equation(s) not typeset by MathJax")
    if len(figures) < expected:
        problems.append(f"{len(figures)} plotly figures on the page, {expected} in the notebook")
    problems += [f"plotly figure {i + 1} of {len(figures)} not drawn (no <svg>)"
                 for i, drawn in enumerate(figures) if not drawn]
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    problems += [f"no launch button: {key}" for key in missing_launch_buttons(page, links)]
    if problems:
        folder = _screenshots(browser, page, figures)
        pytest.fail(f"{page}.html in Chromium (screenshots in {folder}):\n  "
                    + "\n  ".join(problems))


def test_a_blank_figure_page_fails(tmp_path, browser):
    """The check itself: a figure whose plotly.js never loads is caught, not passed."""
    page = tmp_path / "blank.html"
    page.write_text('<div class="plotly-graph-div" style="height:100px"></div>'
                    '<script>Plotly.newPlot("x", [])</script>')
    browser.get_log("browser")
    browser.get(page.as_uri())
    assert drawn_figures(browser, expected=1) == [False]
    messages = [e["message"] for e in browser.get_log("browser") if _is_problem(e)]
    assert any(re.search(r"Plotly is not defined", m) for m in messages), messages
