"""Browser tests of the course's widgets: a real JupyterLab, driven by Playwright in Debian's Chromium.

Headless notebook runs (nbval) only execute a widget's starting value; these tests move the sliders in a
browser, as a learner does, and check that the readout changes the way the widget's pure function says.

- ``lab_server`` (session): copies ``lessons/`` into a temporary directory, starts
  ``python -m jupyter lab`` from this virtual environment there on 127.0.0.1, a free port and a random
  token, with its own config/data/runtime/settings directories (nothing from ``~/.jupyter`` leaks in),
  waits for ``/api/status``, and at the end stops the server it started by its process id and process
  group, then kills any process it had spawned (kernels) that is still alive.
- ``browser`` (session): Chromium from PATH (``shutil.which("chromium")``, never ``playwright install``),
  started with the flags that work on a closed network as root, in a fresh profile.
- ``lab_page`` (session): one JupyterLab page, loaded once. Loading JupyterLab costs Chromium about 7 s
  of CPU, which each test paid when it had a page of its own. After a failed test the page is thrown
  away and the next test loads a new one, so one failure cannot spill into the next test.
- ``lab`` (per test): a :class:`Lab` on that page, with the helpers below. It sees only its own console
  messages and server log. After the test its notebooks are closed and their kernels shut down.

When ``chromium`` (or playwright) is missing the tests skip with the reason; with
``KARPA_REQUIRE_BROWSER=1`` (CI) a missing browser is an error instead. With ``KARPA_SCREENSHOTS_DIR``
set, :meth:`Lab.save_picture` writes PNGs there (``tools/screenshots.py`` uses it for ``docs/img/``).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 180  # JupyterLab imports a lot; a shared 2-core machine needs time
PAGE_LOAD_S = 180
RUN_ALL_S = 300
WIDGET_UPDATE_S = 60

# Console messages that are not about the course's widgets: a resource JupyterLab probes and may not find.
BENIGN_CONSOLE = [re.compile(r"^Failed to load resource: the server responded with a status of 404")]
# What a failing callback leaves in the log console or in the kernel's stderr (the server's log).
TRACEBACK = re.compile(r"Traceback|Exception in callback|\w+Error: ")

# Idle: JupyterLab is up, no cell of the open notebook shows [*] (queued or running), a run-all this page
# started has finished, and the STATUS BAR reads "... | Idle" (the toolbar marker reads idle between cells),
# all of it without a break for IDLE_STABLE_MS: a kernel's busy/idle flickers between cells and callbacks,
# and outputs render a moment after the message that carries them.
IDLE_STABLE_MS = 500
WAIT_IDLE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const bar = document.querySelector('#jp-main-statusbar')?.innerText ?? '';
  const idle = !!panel && typeof window.jupyterapp === 'object' && window.__karpaRun !== 'running'
    && ![...panel.querySelectorAll('.jp-InputPrompt')].some(p => p.innerText.includes('*'))
    && /\\|\\s*Idle\\b/.test(bar);
  const now = performance.now();
  if (!idle) { window.__karpaIdleSince = null; return false; }
  window.__karpaIdleSince ??= now;
  return now - window.__karpaIdleSince >= STABLE_MS;
}""".replace("STABLE_MS", str(IDLE_STABLE_MS))


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if shutil.which("chromium") is None:
        return "chromium is not on PATH (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[browser]')"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("KARPA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"KARPA_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in ticks), to tell a process from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live process below ``root`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            start = _proc_start_time(child)
            if start is not None:
                found.append((child, start))
                todo.append(child)
    return found


@dataclass
class LabServer:
    """A JupyterLab server this test session started, serving ``root``."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: dict | None = None):
        """Call the server's REST API; returns the decoded JSON (None for an empty reply)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            data = reply.read()
        return json.loads(data) if data else None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        """Stop the server by its own pid/process group; then kill any of its children still alive."""
        spawned = _descendants(self.process.pid)
        if self.process.poll() is None:
            try:
                self.shutdown_kernels()
            except (OSError, urllib.error.URLError):
                pass
            os.killpg(self.process.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        for pid, start in spawned:  # kernels run in their own sessions: not in the server's group
            if _proc_start_time(pid) == start:
                os.kill(pid, signal.SIGKILL)


def _settings(directory: Path) -> None:
    """User settings of the test JupyterLab: no news/update pop-ups, every cell rendered (no windowing)."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def start_lab_server(root: Path, state: Path, course_config: list[Path] | None = None) -> LabServer:
    """Start JupyterLab from this venv on 127.0.0.1 serving ``root``; ``state`` holds its own config dirs.

    ``course_config``: start it as ``make lab``/``make teach`` do, with those folders of ``jupyter/`` on
    ``JUPYTER_CONFIG_PATH`` and nothing of the test's own (no settings, every nbgrader extension as installed).
    """
    for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
        (state / name).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if course_config is None:
        _settings(state / "settings")
        # nbgrader's server extensions take seconds to import and play no part in a widget test.
        nbgrader = [
            f"nbgrader.server_extensions.{name}"
            for name in ("assignment_list", "course_list", "formgrader", "validate_assignment")
        ]
        (state / "config" / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": dict.fromkeys(nbgrader, False)}})
        )
    else:
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(str(p) for p in course_config)
    env.pop("MPLBACKEND", None)  # the kernel must use the inline backend, as for a learner
    env.update(
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_DATA_DIR=str(state / "data"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        IPYTHONDIR=str(state / "ipython"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    token = secrets.token_hex(24)
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to run JupyterLab's own commands
    ]  # fmt: skip
    if course_config is None:
        command.append("--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log_path = state / "jupyterlab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabServer(root=root, port=port, token=token, process=process, log_path=log_path)
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            server.api("GET", "/api/status")
            return server
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError(
                    f"JupyterLab did not answer in {SERVER_START_S} s:\n{server.log_text()[-3000:]}"
                ) from None
            time.sleep(0.25)


@pytest.fixture(scope="session")
def start_lab():
    """:func:`start_lab_server`, for a test that starts JupyterLab the way ``make lab`` or ``make teach`` do."""
    reason = browser_missing()
    if reason:
        _skip_or_fail(reason)
    return start_lab_server


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory) -> Iterator[LabServer]:
    """JupyterLab serving a temporary copy of the course (``lessons/`` plus the tests' own notebooks)."""
    reason = browser_missing()
    if reason:
        _skip_or_fail(reason)
    base = tmp_path_factory.mktemp("karpa_browser")
    root = base / "course"
    root.mkdir()
    if (REPO / "lessons").is_dir():
        skip = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
        shutil.copytree(REPO / "lessons", root / "lessons", ignore=skip)
    server = start_lab_server(root, base / "state")
    try:
        yield server
    finally:
        server.stop()


# -------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """Debian's Chromium, headless, in a fresh profile (Playwright makes a new one per launch)."""
    reason = browser_missing()
    if reason:
        _skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def browser(lab_server, chromium) -> Iterator:
    """The Chromium of the JupyterLab tests (started after their server)."""
    yield chromium


@dataclass
class Slider:
    """An ipywidgets 8 slider (noUiSlider) found by its description."""

    lab: Lab
    root: object  # playwright Locator of the .widget-slider

    @property
    def handle(self):
        return self.root.locator(".noUi-handle").first

    @property
    def value(self) -> float:
        """The value the browser shows: the slider's readout (aria-valuenow is rounded to 1 decimal)."""
        readout = self.root.locator(".widget-readout")
        if readout.count() and readout.first.is_visible():
            return float(readout.first.inner_text().replace("\u2212", "-"))  # d3-format writes U+2212
        return float(self.handle.get_attribute("aria-valuenow"))

    def press(self, key: str, times: int = 1) -> float:
        """Focus the handle and press ``key`` (ArrowRight/Left, Home, End, PageUp...); returns the value."""
        self.handle.focus()
        for _ in range(times):
            self.handle.press(key)
        return self.value

    def drag_to(self, fraction: float) -> float:
        """Drag the handle with the mouse to ``fraction`` of the track's width; returns the value."""
        handle = self.handle.bounding_box()
        track = self.root.locator(".noUi-base").first.bounding_box()
        y = handle["y"] + handle["height"] / 2
        mouse = self.lab.page.mouse
        mouse.move(handle["x"] + handle["width"] / 2, y)
        mouse.down()
        mouse.move(track["x"] + fraction * track["width"], y, steps=8)
        mouse.up()
        return self.value


@dataclass
class Lab:
    """One browser page on the test JupyterLab, and the helpers a widget test needs."""

    server: LabServer
    page: object  # playwright Page
    console: list[tuple[str, str]] = field(default_factory=list)
    log_offset: int = 0

    # -- notebooks -----------------------------------------------------------------------------------
    @property
    def notebook(self):
        """The notebook panel on show (every widget locator is scoped to it)."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook of code cells into the served course; returns its path relative to the root."""
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        }
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        path = Path("browser_tests") / f"{name}.ipynb"
        (self.server.root / path).parent.mkdir(exist_ok=True)
        nbformat.write(notebook, self.server.root / path)
        return path.as_posix()

    def open(self, path: str) -> None:
        """Open a notebook in a new tab (its own kernel) and wait until the status bar reads Idle."""
        # .then(() => null): evaluate() would otherwise serialize the NotebookPanel the command returns, a
        # large object graph that took Chromium 3-5 s of CPU per notebook.
        self.page.evaluate(
            "path => window.jupyterapp.commands.execute('docmanager:open', {path}).then(() => null)", path
        )
        self.page.wait_for_function(
            "path => window.jupyterapp.shell.currentWidget?.context?.path === path",
            arg=path,
            timeout=PAGE_LOAD_S * 1000,
        )
        self._wait_steady_idle(PAGE_LOAD_S)

    def run_all(self, timeout_s: float = RUN_ALL_S) -> None:
        """Run every cell (JupyterLab's notebook:run-all-cells) and wait until the kernel is idle.

        Idle means: the command's promise resolved, no cell shows ``[*]``, and the status bar (not the
        toolbar marker, which reads idle between cells) says Idle. A cell that raised fails the test.
        """
        self.page.evaluate(
            """() => { window.__karpaRun = 'running';
                 window.jupyterapp.commands.execute('notebook:run-all-cells')
                   .then(ok => { window.__karpaRun = ok ? 'ok' : 'failed'; },
                         err => { window.__karpaRun = 'error: ' + err; }); }"""
        )
        self.wait_idle(timeout_s)
        prompts = self.notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        errors = self.output_tracebacks()
        status = self.page.evaluate("() => window.__karpaRun")
        unrun = [p for p in prompts if not re.search(r"\[\d+\]", p)]
        assert status == "ok" and not unrun and not errors, (
            f"run-all: {status}; prompts {prompts}; errors:\n" + "\n".join(errors)
        )

    def wait_idle(self, timeout_s: float = WIDGET_UPDATE_S) -> None:
        """Wait until the kernel has done everything asked of it so far and the page shows the results.

        The status bar reading Idle (steadily, see WAIT_IDLE_JS) is not enough after a widget callback:
        an Output widget renders what the callback printed a moment after the kernel went idle. So in
        between, a silent empty execute_request goes to the kernel, which answers it only after every
        message sent before it on the main shell has been handled and its output flushed. (JupyterLab 4.6
        may send widget messages over a kernel subshell, another thread: the steady Idle after the
        barrier covers those.)
        """
        self._wait_steady_idle(timeout_s)
        self.page.evaluate(
            """() => { const kernel = window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel;
                 window.__karpaBarrier = kernel ? 'waiting' : 'no kernel';
                 kernel?.requestExecute({code: '', silent: true, store_history: false}).done
                   .then(() => { window.__karpaBarrier = 'done'; },
                         err => { window.__karpaBarrier = 'error: ' + err; }); }"""
        )
        self.page.wait_for_function("() => window.__karpaBarrier !== 'waiting'", timeout=timeout_s * 1000)
        self._wait_steady_idle(timeout_s)

    def _wait_steady_idle(self, timeout_s: float) -> None:
        self.page.evaluate("() => { window.__karpaIdleSince = null; }")
        self.page.wait_for_function(WAIT_IDLE_JS, timeout=timeout_s * 1000, polling=100)

    # -- widgets -------------------------------------------------------------------------------------
    def widget(self, nth: int = 0):
        """The nth top-level widget displayed in an output area."""
        return self.notebook.locator(".jp-OutputArea-output > .jupyter-widgets").nth(nth)

    def slider(self, description: str, nth: int = 0) -> Slider:
        """A slider whose description label reads ``description`` exactly."""
        label = re.compile(rf"^\s*{re.escape(description)}\s*$")
        root = self.notebook.locator(".widget-slider").filter(
            has=self.page.locator(".widget-label", has_text=label)
        )
        root.nth(nth).wait_for(timeout=WIDGET_UPDATE_S * 1000)
        return Slider(self, root.nth(nth))

    def html(self, nth: int = 0, css_class: str | None = None):
        """The rendered content of the nth ipywidgets.HTML (of those with ``css_class``, when given)."""
        widget = ".widget-html" + (f".{css_class}" if css_class else "")
        return self.notebook.locator(f"{widget} .widget-html-content").nth(nth)

    def dropdown(self, description: str):
        """The <select> of an ipywidgets Dropdown whose description reads ``description``."""
        label = re.compile(rf"^\s*{re.escape(description)}\s*$")
        box = self.notebook.locator(".widget-dropdown").filter(has=self.page.locator(".widget-label", has_text=label))
        return box.first.locator("select")

    def button(self, text: str):
        """An ipywidgets Button whose label reads ``text``."""
        return self.notebook.locator("button.jupyter-button", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))

    def wait_for_html(self, locator, expected: str, timeout_s: float = WIDGET_UPDATE_S) -> None:
        """Wait until ``locator`` (an HTML widget's content) holds exactly the markup ``expected``, then
        until the kernel is idle (so that the next move never overlaps a callback still running).

        Both sides go through the browser's HTML parser, so the comparison is of the same DOM, not of
        two spellings of it (quotes, entities, <br> vs <br/>).
        """
        handle = locator.element_handle(timeout=timeout_s * 1000)
        same = """([el, html]) => { const t = document.createElement('template'); t.innerHTML = html;
                                   return el.innerHTML === t.innerHTML; }"""
        try:
            self.page.wait_for_function(same, arg=[handle, expected], timeout=timeout_s * 1000, polling=100)
        except Exception as error:  # playwright's TimeoutError: say what differs
            shown = locator.inner_text()
            want = self.page.evaluate(
                "html => { const d = document.createElement('div'); d.innerHTML = html; return d.textContent; }",
                expected,
            )
            raise AssertionError(f"readout shows\n  {shown!r}\nexpected\n  {want!r}") from error
        self.wait_idle(timeout_s)  # the callback that wrote it may still be drawing: let it finish

    def wait_for_text(self, locator, expected: str, timeout_s: float = WIDGET_UPDATE_S) -> None:
        """Wait until ``locator``'s text equals ``expected`` (whitespace collapsed); fail showing it."""
        from playwright.sync_api import expect

        want = re.compile(r"^\s*" + r"\s+".join(map(re.escape, expected.split())) + r"\s*$")
        expect(locator).to_have_text(want, timeout=timeout_s * 1000)
        self.wait_idle(timeout_s)  # the callback that wrote it may still be drawing: let it finish

    def wait_for_new_image(self, container, old_src: str | None, timeout_s: float = WIDGET_UPDATE_S) -> str:
        """Wait until the <img> in ``container`` shows a picture other than ``old_src``; returns its src."""
        image = container.locator("img").first
        image.wait_for(timeout=timeout_s * 1000)
        deadline = time.monotonic() + timeout_s
        while (src := image.get_attribute("src")) == old_src:
            assert time.monotonic() < deadline, "the widget's picture did not change"
            self.page.wait_for_timeout(100)
        return src

    def png(self, locator) -> bytes:
        """A screenshot of one element (animations off, caret hidden)."""
        return locator.screenshot(animations="disabled", caret="hide")

    @staticmethod
    def image_change(before: bytes, after: bytes) -> float:
        """Fraction of pixels that differ between two PNGs (1.0 when their sizes differ)."""
        import numpy as np
        from PIL import Image

        a = np.asarray(Image.open(io.BytesIO(before)).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(io.BytesIO(after)).convert("RGB"), dtype=np.int16)
        if a.shape != b.shape:
            return 1.0
        return float((np.abs(a - b).max(axis=2) > 16).mean())

    @property
    def taking_pictures(self) -> bool:
        """Whether this run saves the docs' pictures ($KARPA_SCREENSHOTS_DIR set, as ``make screenshots`` does)."""
        return bool(os.environ.get("KARPA_SCREENSHOTS_DIR"))

    def save_picture(self, locator, name: str) -> Path | None:
        """Save ``locator`` as NAME.png under $KARPA_SCREENSHOTS_DIR (when set; the docs' pictures)."""
        if not self.taking_pictures:
            return None
        directory = os.environ["KARPA_SCREENSHOTS_DIR"]
        path = Path(directory) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.png(locator))
        return path

    # -- errors --------------------------------------------------------------------------------------
    def output_tracebacks(self) -> list[str]:
        """Tracebacks shown in the notebook's output areas (a cell's error, or an Output widget's)."""
        stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        texts = self.notebook.locator(stderr).all_inner_texts()
        return [t for t in texts if "Traceback" in t or "Error" in t]

    def log_console(self) -> str:
        """What the notebook's log console holds: ipywidgets sends a callback's uncaught output there."""
        self.page.evaluate(  # the command toggles: run it only while no log console is open
            """() => { if (!document.querySelector('.jp-LogConsolePanel')) {
                         return window.jupyterapp.commands.execute('logconsole:open').then(() => null); } }"""
        )
        panel = self.page.locator(".jp-LogConsolePanel").first
        panel.wait_for(timeout=WIDGET_UPDATE_S * 1000)
        return panel.inner_text()

    def widget_errors(self) -> list[str]:
        """Every sign of a failing widget since the test began.

        Browser console errors and page errors (the widget manager logs there), tracebacks in the output
        areas, tracebacks in the log console (an exception in a slider callback lands there), and
        tracebacks the kernel wrote to the server's log ("Exception in callback ...").
        """
        found = [
            f"console {kind}: {text}"
            for kind, text in self.console
            if kind in ("error", "pageerror") and not any(p.search(text) for p in BENIGN_CONSOLE)
        ]
        found += [f"output: {t}" for t in self.output_tracebacks()]
        log = self.log_console()
        if TRACEBACK.search(log):
            found.append(f"log console: {log}")
        server_log = self.server.log_text()[self.log_offset :]
        found += [f"kernel: {line}" for line in server_log.splitlines() if TRACEBACK.search(line)]
        return found

    def assert_no_widget_errors(self) -> None:
        errors = self.widget_errors()
        assert not errors, "widget errors:\n" + "\n".join(errors)


@dataclass
class LabPage:
    """The session's one JupyterLab page, loaded on first use and again after a test failed on it."""

    browser: object  # playwright Browser
    server: LabServer
    page: object | None = None  # playwright Page
    console: list[tuple[str, str]] = field(default_factory=list)  # since the current test began

    def get(self):
        """The page with JupyterLab started on an empty workspace and the left sidebar collapsed."""
        if self.page is None:
            context = self.browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            page = context.new_page()
            page.set_default_timeout(WIDGET_UPDATE_S * 1000)
            page.on("console", lambda message: self.console.append((message.type, message.text)))
            page.on("pageerror", lambda error: self.console.append(("pageerror", str(error))))
            # ?reset: an empty workspace, not a layout the server remembered.
            page.goto(f"{self.server.url}/lab?reset&token={self.server.token}")
            page.wait_for_function("() => typeof window.jupyterapp === 'object'", timeout=PAGE_LOAD_S * 1000)
            page.evaluate("() => window.jupyterapp.restored.then(() => window.jupyterapp.shell.collapseLeft())")
            self.page = page
        return self.page

    def close_tabs(self) -> None:
        """Close every tab of the main area (notebooks, log console) without a save prompt."""
        self.page.evaluate(
            """() => { for (const widget of Array.from(window.jupyterapp.shell.widgets('main'))) {
                         widget.dispose(); } }"""
        )
        self.page.wait_for_function("() => document.querySelector('.jp-NotebookPanel') === null")

    def discard(self) -> None:
        self.page.context.close()
        self.page = None


@pytest.fixture(scope="session")
def lab_page(browser, lab_server) -> Iterator[LabPage]:
    shared = LabPage(browser, lab_server)
    try:
        yield shared
    finally:
        if shared.page is not None:
            shared.discard()


@pytest.fixture
def lab(lab_page, lab_server, request) -> Iterator[Lab]:
    """A test's view of the shared JupyterLab page; its notebooks are closed and kernels shut down afterwards."""
    page = lab_page.get()
    lab_page.console.clear()
    helper = Lab(server=lab_server, page=page, console=lab_page.console, log_offset=len(lab_server.log_text()))
    try:
        yield helper
    finally:
        try:
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                shot = lab_server.root.parent / f"{request.node.name}.png"
                page.screenshot(path=str(shot))
                print(f"screenshot of the failed page: {shot}")
                lab_page.discard()
            else:
                try:
                    lab_page.close_tabs()
                except Exception:
                    lab_page.discard()  # the next test starts on a new page
                    raise
        finally:
            lab_server.shutdown_kernels()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so the ``lab`` fixture knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
