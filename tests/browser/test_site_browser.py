"""The course's static site (tools/build_site.py, ``make site``) in headless Chromium, served from a deep folder.

The site is built once per session (incremental after the first time; a lock keeps two xdist workers from
building at once), then served by a local HTTP server from a folder that is not the site's root, as anyone
could put it. Every page is opened with every request recorded: none may go to another host, every equation
must be typeset by MathJax, every picture loaded, every saved widget drawn, every link to a page of the site
(and its anchor) resolve. The search page must find lesson 03 for "forget gate", and Chinese must render in a
CJK font.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

# One xdist worker runs them all (make unit's --dist loadgroup): they share one visit of every page.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("site")]

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "build" / "site"
BUILD_S = 300
# Console messages that are not faults: pydata-sphinx-theme's note when it first finds no stored light/dark mode.
BENIGN_CONSOLE = re.compile(r"^Got invalid theme mode")
TEXT_FILES = {".html", ".js", ".txt", ".md", ".ipynb", ".json"}
CJK = re.compile(r"[\u4e00-\u9fff]")

# Raw TeX that MathJax should have replaced, looked for in text outside code, pre and the typeset output.
RAW_TEX_JS = r"""() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest('pre, code, script, style, textarea, mjx-container, .highlight')) continue;
    if (/\$\$|\\\(|\\\[|\\begin\{/.test(node.textContent)) found.push(node.textContent.trim().slice(0, 80));
  }
  return found;
}"""

# Wait for the page's own scripts: MathJax's first typeset, the widget manager drawing every saved view.
SETTLED_JS = """() => {
  const mathjax = !document.querySelector('.math') || !!window.MathJax?.startup?.promise;
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  const drawn = document.querySelectorAll('.jupyter-widgets').length;
  return mathjax && (views === 0 || drawn >= views);
}"""


@pytest.fixture(scope="session")
def site() -> Path:
    """build/site, (re)built by tools/build_site.py under a lock (one build at a time across workers), or
    as ``make site`` left it when KARPA_SITE_BUILT=1 (make unit sets it after building the site)."""
    if os.environ.get("KARPA_SITE_BUILT") == "1" and (SITE / "index.html").exists():
        return SITE
    SITE.parent.mkdir(exist_ok=True)
    with open(SITE.parent / ".site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, str(REPO / "tools" / "build_site.py")], check=True, timeout=BUILD_S, env=env)
    return SITE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def site_url(site, tmp_path_factory) -> str:
    """The site served on 127.0.0.1 from a folder three levels below the server's root (a symlink)."""
    root = tmp_path_factory.mktemp("served")
    folder = root / "any" / "folder"
    folder.mkdir(parents=True)
    (folder / "karpa").symlink_to(site, target_is_directory=True)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/any/folder/karpa/"
    finally:
        server.shutdown()
        server.server_close()


def pages(site: Path) -> list[str]:
    """Every HTML page of the site, relative to its root (theme templates under _static excluded)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.parts[len(site.parts)] != "_static")


@pytest.fixture(scope="session")
def visited(chromium, site, site_url) -> dict:
    """Open every page once; what each requested, showed and linked to."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    results = {}
    for name in pages(site):
        page = context.new_page()
        requests, errors = [], []
        page.on("request", lambda request, requests=requests: requests.append(request.url))
        page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
        page.on(
            "console",
            lambda m, errors=errors: (
                errors.append(m.text) if m.type == "error" and not BENIGN_CONSOLE.search(m.text) else None
            ),
        )
        page.on("requestfailed", lambda r, errors=errors: errors.append(f"failed: {r.url} {r.failure}"))
        page.on(
            "response", lambda r, errors=errors: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
        )
        response = page.goto(site_url + name, wait_until="load")
        page.wait_for_function(SETTLED_JS, timeout=60_000, polling=200)
        # MathJax's startup promise resolves once its first typeset of the page is done.
        page.evaluate("() => window.MathJax?.startup?.promise?.then(() => null)")
        page.evaluate("() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
        results[name] = {
            "status": response.status,
            "requests": requests,
            "errors": errors,
            "math": page.evaluate(
                """() => [...document.querySelectorAll('.math')].map(m => ({
                     typeset: !!m.querySelector('mjx-container'), error: !!m.querySelector('mjx-merror'),
                     tex: m.textContent.slice(0, 60)}))"""
            ),
            "raw_tex": page.evaluate(RAW_TEX_JS),
            "images": page.evaluate(
                "() => [...document.images].map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth}))"
            ),
            "widgets": page.evaluate(
                """() => ({views: document.querySelectorAll(
                             'script[type="application/vnd.jupyter.widget-view+json"]').length,
                           drawn: document.querySelectorAll('.jupyter-widgets').length,
                           sliders: document.querySelectorAll('.widget-slider').length})"""
            ),
            "links": page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"),
            "ids": set(page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)")),
        }
        page.close()
    context.close()
    return results


def test_site_has_its_pages(site):
    names = pages(site)
    lessons = sorted(p.stem for p in (REPO / "lessons").glob("[0-9]*.ipynb"))
    labs = sorted(p.stem for p in (REPO / "labs").glob("[0-9]*/[0-9]*.ipynb"))
    solutions = sorted(p.stem for p in (REPO / "lessons" / "solutions").glob("*.ipynb"))
    expected = (
        ["index.html", "glossary.html", "run.html", "search.html"]
        + [f"lessons/{s}.html" for s in lessons]
        + [f"lessons/solutions/{s}.html" for s in solutions]
        + [f"labs/{s}.html" for s in labs]
    )
    assert not set(expected) - set(names), f"missing pages: {sorted(set(expected) - set(names))}"
    # A lab notebook is never published: no page and no source copy of it.
    assert not [p for p in site.rglob("*.ipynb") if p.stem in labs]


def _secret_lines(notebook: Path) -> set[str]:
    """Distinctive lines of a lab's solution, answer and test cells (what a student must never see)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = set()
    for cell in cells:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") or meta.get("grade"):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines |= {line.strip() for line in source.splitlines() if len(line.strip()) >= 40}
    return lines


def test_no_lab_solution_or_test_on_the_site(site):
    secrets = set().union(*(_secret_lines(p) for p in (REPO / "labs").glob("[0-9]*/[0-9]*.ipynb")))
    # A line the lessons themselves print (the lesson teaches the same step) is not a secret.
    lessons = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "lessons").glob("[0-9]*.py"))
    secrets = {line for line in secrets if line not in lessons}
    assert len(secrets) > 20
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*") if p.suffix in TEXT_FILES}
    leaked = [f"{p.relative_to(site)}: {line}" for p, text in texts.items() for line in secrets if line in text]
    assert not leaked, "\n".join(leaked[:20])


def test_no_request_leaves_the_local_server(visited, site_url):
    origin = urlsplit(site_url).netloc
    outside = {
        name: [
            u for u in page["requests"] if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != origin
        ]
        for name, page in visited.items()
    }
    assert not any(outside.values()), {k: v for k, v in outside.items() if v}
    assert all(page["status"] == 200 for page in visited.values())
    errors = [f"{name}: {error}" for name, page in visited.items() for error in page["errors"]]
    assert not errors, "\n".join(errors)
    print({name: len(page["requests"]) for name, page in visited.items()})


def test_every_equation_is_typeset(visited):
    untypeset = {n: [m["tex"] for m in p["math"] if not m["typeset"] or m["error"]] for n, p in visited.items()}
    assert not any(untypeset.values()), {k: v for k, v in untypeset.items() if v}
    raw = {n: p["raw_tex"] for n, p in visited.items() if p["raw_tex"]}
    assert not raw, raw
    assert sum(len(p["math"]) for n, p in visited.items() if n.startswith("lessons/")) > 100


def test_every_image_loads(visited):
    broken = {n: [i["src"] for i in p["images"] if i["width"] == 0] for n, p in visited.items()}
    assert not any(broken.values()), {k: v for k, v in broken.items() if v}
    assert len(visited["index.html"]["images"]) >= 3  # the landing page's pictures


def test_saved_widgets_are_drawn(visited):
    lesson03 = visited["lessons/03_lstm_gates.html"]["widgets"]
    assert lesson03["views"] > 0 and lesson03["drawn"] >= lesson03["views"] and lesson03["sliders"] > 0
    undrawn = {n: p["widgets"] for n, p in visited.items() if p["widgets"]["drawn"] < p["widgets"]["views"]}
    assert not undrawn, undrawn


def test_no_broken_internal_link(visited, site_url):
    origin = urlsplit(site_url).netloc
    broken, checked, others = [], 0, {}
    by_url = {site_url + name: page for name, page in visited.items()}
    for name, page in visited.items():
        for link in page["links"]:
            if urlsplit(link).netloc != origin:
                continue
            target, anchor = urldefrag(link)
            target = target.split("?")[0]
            if target.endswith("/"):
                target += "index.html"
            checked += 1
            if target in by_url:
                if anchor and anchor not in by_url[target]["ids"]:
                    broken.append(f"{name}: {link} (no anchor #{anchor})")
            elif target not in others:
                try:
                    with urllib.request.urlopen(target, timeout=10) as reply:
                        others[target] = reply.status
                except urllib.error.HTTPError as error:
                    others[target] = error.code
            if target not in by_url and others[target] != 200:
                broken.append(f"{name}: {link} ({others[target]})")
    assert not broken, "\n".join(broken)
    assert checked > 100
    print(f"{checked} internal links checked, {len(others)} non-page targets fetched")


def test_search_finds_lesson_03(chromium, site_url):
    page = chromium.new_page()
    try:
        page.goto(site_url + "search.html?q=forget+gate")
        results = page.locator("#search-results li a")
        results.first.wait_for(timeout=60_000)
        hrefs = results.evaluate_all("links => links.map(a => a.href)")
        assert any("lessons/03_lstm_gates.html" in h for h in hrefs), hrefs
    finally:
        page.close()


def _cjk_page(site: Path) -> str:
    """The glossary when it lists terms; otherwise a lesson whose text carries Chinese terms."""
    if re.search(r"<td[^>]*>(<p>)?[^<]*[\u4e00-\u9fff]", (site / "glossary.html").read_text(encoding="utf-8")):
        return "glossary.html"
    for name in pages(site):
        if name.startswith("lessons/") and CJK.search((site / name).read_text(encoding="utf-8")):
            return name
    pytest.fail("no page of the site has Chinese text")


def test_chinese_renders_in_a_cjk_font(chromium, site, site_url):
    name = _cjk_page(site)
    page = chromium.new_page()
    try:
        page.goto(site_url + name)
        # In the glossary, a term in its table's body; elsewhere, the first Chinese text of the lesson.
        selector = "article table td" if name == "glossary.html" else "article"
        found = page.evaluate(
            """
            selector => {
              for (const root of document.querySelectorAll(selector)) {
              const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
              while (walker.nextNode()) {
                const node = walker.currentNode, at = node.textContent.search(/[\\u4e00-\\u9fff]/);
                if (at < 0 || !node.parentElement.checkVisibility()) continue;
                const range = document.createRange();
                range.setStart(node, at); range.setEnd(node, at + 1);
                node.parentElement.setAttribute('data-cjk-probe', '1');
                return {glyph: node.textContent[at], width: range.getBoundingClientRect().width,
                        size: parseFloat(getComputedStyle(node.parentElement).fontSize)};
              }
              }
              return null;
            }""",
            selector,
        )
        assert found, f"{name}: no Chinese text on the page"
        # A CJK glyph is about one em wide; a missing glyph's box is narrower or zero.
        assert found["width"] > 0.8 * found["size"], found
        cdp = page.context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        document = cdp.send("DOM.getDocument")
        node = cdp.send("DOM.querySelector", {"nodeId": document["root"]["nodeId"], "selector": "[data-cjk-probe]"})
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
        assert any("CJK" in f["familyName"] for f in fonts), (name, found, fonts)
        print(f"CJK glyph {found} on {name} drawn in {fonts}")
    finally:
        page.close()
