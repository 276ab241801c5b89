"""A class on a real JupyterHub, end to end: an instructor and two students as system users, nbgrader's
exchange, the sandboxed grader, and one student driving JupyterLab's Assignments tab in Chromium.

The hub runs ``classroom/jupyterhub_config.py`` (JupyterHub's local-process spawner, each server as its own
user) with the configurable-http-proxy of Debian's ``node-configurable-http-proxy``. The round trip:

1. the instructor adds the labs to a course folder in their home and releases lab 01 to the exchange;
2. ada fetches it in the Assignments tab, her answers (the worked solution) are saved into her server, she
   submits in the tab; bob does the same through nbgrader's REST handlers, with one wrong answer;
3. the instructor collects, grades with ``python -m karpa_lab.autograde`` (every notebook in bubblewrap),
   generates and releases the feedback;
4. each student fetches their feedback: it shows their score and neither a hidden test nor a solution
   line they did not write; grades.csv holds one row per student with the score they earned;
5. bob tries to read ada's submission and the instructor's course folder, as himself: refused.

It needs root (it creates the users with ``useradd`` and the hub switches to them), Debian's proxy, Chromium
and bubblewrap; without them it skips with the reason, and with ``KARPA_REQUIRE_HUB=1`` (CI) it fails instead.
`make classroom` runs it (part of `make test`); the steps' times are printed at the end.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from karpa_lab.autograde.pipeline import solution_lines

pytestmark = [pytest.mark.browser, pytest.mark.hub, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ENV_BIN = Path(sys.executable).parent
LAB = "01_lstm_cell"
COURSE_ID = "karpa-lab"
INSTRUCTOR, ADA, BOB = "karpa-teacher", "karpa-ada", "karpa-bob"
# Bob's wrong answer: the bias that should keep the cell state shuts the forget gate as well.
BOB_EDIT = ("remember_bias", "bias[hidden_size:2 * hidden_size] = 20.0", "bias[hidden_size:2 * hidden_size] = -20.0")
BOB_LOSES = ["test_remember"]
# Only the instructor may read these parts of the course checkout while the class runs.
INSTRUCTOR_ONLY = ["labs", "lessons/solutions"]
START_S, STEP_S = 120, 120
LOG = REPO / "build" / "classroom" / "hub.log"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the classroom test needs root: it creates system users and the hub switches to them"
    for tool, package in (("useradd", "passwd"), ("runuser", "util-linux"), ("bwrap", "bubblewrap"),
                          ("configurable-http-proxy", "node-configurable-http-proxy"), ("chromium", "chromium")):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (Debian: apt-get install {package})"
    if shutil.which("jupyterhub", path=str(ENV_BIN)) is None:
        return "jupyterhub is not installed in this environment (pip install -e '.[classroom]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", body=None, token: str | None = None, timeout: float = 60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


def _status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@dataclass
class Classroom:
    """The hub of one test: its URL, a service token, the users' tokens, and what each step took."""

    url: str
    token: str
    password: str
    base: Path
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)

    def hub(self, method: str, path: str, body=None):
        return _request(f"{self.url}/hub/api{path}", method, body, self.token)

    def server(self, user: str, method: str, path: str, body=None):
        """A request to ``user``'s own JupyterLab server, with that user's token."""
        return _request(f"{self.url}/user/{user}/{path}", method, body, self.tokens[user])

    def start(self, user: str) -> None:
        self.tokens[user] = self.hub("POST", f"/users/{user}/tokens", {"note": "classroom test"})["token"]
        self.hub("POST", f"/users/{user}/server")

    def wait_ready(self, user: str) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.hub("GET", f"/users/{user}")["servers"].get("", {}).get("ready"):
                return
            time.sleep(0.5)
        log = (self.base / "hub.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{user}'s server did not start within {START_S} s; the hub's log ends:\n{log}")

    def run_as(self, user: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """A command as ``user`` would type it in a terminal of their server: their home, the course's settings."""
        home = Path("/home") / user
        env = dict(self.env, HOME=str(home), USER=user, LOGNAME=user,
                   JUPYTER_CONFIG_PATH=self.settings(user))
        done = subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                               *argv], cwd=cwd or home, capture_output=True, text=True, timeout=STEP_S)
        assert done.returncode == 0, f"{' '.join(argv)} as {user} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def settings(self, user: str) -> str:
        role = "instructor" if user == INSTRUCTOR else "student"
        paths = [REPO / "classroom" / "jupyter" / role, REPO / "classroom" / "jupyter" / "common",
                 REPO / "jupyter" / "common"]
        return os.pathsep.join(str(p) for p in paths)

    def timed(self, step: str, started: float) -> None:
        self.times[step] = time.monotonic() - started


def _make_user(name: str) -> None:
    subprocess.run(["userdel", "-r", name], capture_output=True)  # what a killed earlier run left
    # Debian makes homes world-readable (HOME_MODE unset, UMASK 022): a class needs them private.
    subprocess.run(["useradd", "--create-home", "--key", "HOME_MODE=0700", "--shell", "/bin/bash", "--user-group",
                    name], check=True, capture_output=True)


def _remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    subprocess.run(["userdel", "-r", name], capture_output=True)


def _open_path_for_users(restore: list[tuple[Path, int]]) -> None:
    """Let every user traverse the folders above the checkout and above the Python its environment was made
    from (the servers run them: a Python under /root is out of their reach); the instructor-only folders are
    closed to them. Each old mode is kept in ``restore``."""
    for target in (REPO, Path(sys.base_prefix).resolve(), Path(os.path.realpath(sys.executable)).parent):
        for folder in [*reversed(target.parents), target]:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if not mode & stat.S_IXOTH:
                restore.append((folder, mode))
                folder.chmod(mode | stat.S_IXOTH)
    for name in INSTRUCTOR_ONLY:
        folder = REPO / name
        restore.append((folder, stat.S_IMODE(folder.stat().st_mode)))
        folder.chmod(0o700)


def _start_hub(base: Path, env: dict[str, str]) -> subprocess.Popen:
    state = base / "hub"
    state.mkdir(mode=0o700)
    log = open(base / "hub.log", "w")
    return subprocess.Popen([str(ENV_BIN / "jupyterhub"), "-f", str(REPO / "classroom" / "jupyterhub_config.py")],
                            cwd=state, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_for_hub(url: str, hub: subprocess.Popen, base: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert hub.poll() is None, "the hub exited:\n" + (base / "hub.log").read_text(errors="replace")[-3000:]
        try:
            _request(f"{url}/hub/health", timeout=5)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"the hub did not answer within {START_S} s")


@pytest.fixture(scope="module")
def classroom() -> Iterator[Classroom]:
    reason = _missing()
    if reason:
        if os.environ.get("KARPA_REQUIRE_HUB") == "1":
            pytest.fail(f"KARPA_REQUIRE_HUB=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="karpa-hub-"))
    base.chmod(0o711)
    exchange = base / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)  # nbgrader's exchange: every user writes into it; its course folders guard themselves
    restore: list[tuple[Path, int]] = []
    token, port = secrets.token_hex(32), _free_port()
    env = {"KARPA_INSTRUCTORS": INSTRUCTOR, "KARPA_STUDENTS": f"{ADA} {BOB}", "KARPA_ENV_BIN": str(ENV_BIN),
           "KARPA_EXCHANGE": str(exchange), "KARPA_HUB_STATE": str(base / "hub"),
           "KARPA_HUB_URL": f"http://127.0.0.1:{port}", "KARPA_HUB_API_URL": f"http://127.0.0.1:{_free_port()}",
           "KARPA_PROXY_API_URL": f"http://127.0.0.1:{_free_port()}", "KARPA_HUB_AUTHENTICATOR": "dummy",
           "KARPA_HUB_PASSWORD": secrets.token_hex(8), "KARPA_HUB_SERVICE_TOKEN": token}
    hub = None
    try:
        for user in (INSTRUCTOR, ADA, BOB):
            _make_user(user)
        _open_path_for_users(restore)
        hub = _start_hub(base, env)
        room = Classroom(f"http://127.0.0.1:{port}", token, env["KARPA_HUB_PASSWORD"], base,
                         {"PATH": f"{ENV_BIN}:/usr/bin:/bin", "KARPA_EXCHANGE": str(exchange)})
        _wait_for_hub(room.url, hub, base)
        room.timed("users, hub up", started)
        yield room
        print("\nclassroom steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in room.times.items()))
    finally:
        if hub is not None:
            os.killpg(hub.pid, signal.SIGTERM)
            try:
                hub.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        for user in (INSTRUCTOR, ADA, BOB):
            _remove_user(user)
        if (base / "hub.log").exists():  # the hub's and the servers' log, for a failure's reader
            LOG.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(base / "hub.log", LOG)
        for folder, mode in reversed(restore):
            folder.chmod(mode)
        shutil.rmtree(base, ignore_errors=True)



# ------------------------------------------------------------------------------------------ the steps


def _answers() -> dict[str, str]:
    """The worked solution's answer cells, by grade id (the test reads the source, as root)."""
    nb = json.loads((REPO / "labs" / LAB / f"{LAB}.ipynb").read_text(encoding="utf-8"))
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def fill_in(room: Classroom, user: str, edit: tuple[str, str, str] | None = None) -> str:
    """Write the worked solution (with ``edit`` made in one answer cell) into ``user``'s fetched notebook, as
    their JupyterLab saves it. Returns every line they wrote."""
    path = f"api/contents/{LAB}/{LAB}.ipynb"
    nb = room.server(user, "GET", path)["content"]
    answers = _answers()
    if edit:
        cell, old, new = edit
        assert answers[cell].count(old) == 1, f"the worked solution of {cell} no longer reads {old!r}"
        answers[cell] = answers[cell].replace(old, new)
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = answers[grade_id]
    room.server(user, "PUT", path, {"type": "notebook", "format": "json", "content": nb})
    return "\n".join(answers.values())


def release_lab(room: Classroom) -> Path:
    """The instructor puts the course's labs into ~/karpa-lab and releases lab 01 to the exchange."""
    home = Path("/home") / INSTRUCTOR
    shutil.copytree(REPO / "labs", home / "labs", ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    (home / ".jupyter").mkdir(exist_ok=True)
    (home / ".jupyter" / "nbgrader_config.py").write_text(
        f"c = get_config()  # noqa: F821\nc.CourseDirectory.root = '{home / 'karpa-lab'}'\n", encoding="utf-8")
    subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(home)], check=True)
    room.run_as(INSTRUCTOR, "python", "-m", "karpa_lab.autograde", "course", "karpa-lab", "--labs", "labs")
    room.run_as(INSTRUCTOR, "nbgrader", "release_assignment", LAB, cwd=home / "karpa-lab")
    return home / "karpa-lab"


def ada_in_the_browser(room: Classroom, chromium, action: str) -> None:
    """ada logs in, opens Nbgrader > Assignment List and presses ``action`` (Fetch, Submit, Fetch Feedback)."""
    page = chromium.new_page()
    try:
        page.goto(f"{room.url}/hub/login", timeout=STEP_S * 1000)
        page.fill("#username_input", ADA)
        page.fill("#password_input", room.password)
        page.click("#login_submit")
        page.wait_for_url(re.compile(f"/user/{ADA}/lab"), timeout=STEP_S * 1000)
        page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click(timeout=STEP_S * 1000)
        items = page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel").all_inner_texts()
        assert [i for i in items if i.strip()] == ["Assignment List"], f"a student's Nbgrader menu: {items}"
        page.get_by_text("Assignment List", exact=True).click()
        lists = {"Fetch": "#released_assignments_list", "Submit": "#fetched_assignments_list",
                 "Fetch Feedback": "#submitted_assignments_list"}
        row = page.locator(lists[action]).locator(".list_item", has_text=LAB)
        row.get_by_role("button", name=action, exact=True).click(timeout=STEP_S * 1000)
        after = {"Fetch": "#fetched_assignments_list", "Submit": "#submitted_assignments_list",
                 "Fetch Feedback": "#submitted_assignments_list"}
        done = page.locator(after[action]).locator(".list_item", has_text=LAB)
        if action == "Fetch Feedback":
            done = done.get_by_text("(view feedback)")
        done.first.wait_for(timeout=STEP_S * 1000)
    finally:
        page.close()


def bob_by_rest(room: Classroom, action: str) -> None:
    """bob's server's nbgrader handlers, as the Assignments tab calls them."""
    answer = room.server(BOB, "POST", f"assignments/{action}", {"course_id": COURSE_ID, "assignment_id": LAB})
    assert answer.get("success"), f"{action} for {BOB} failed: {answer}"


def grade(room: Classroom, course: Path) -> str:
    """The instructor collects, grades in the sandbox, and releases feedback; returns the grader's report."""
    for argv in (("nbgrader", "collect", LAB),
                 ("python", "-m", "karpa_lab.autograde", "autograde", "submitted", "--course", ".", "--labs",
                  "../labs"),
                 ("nbgrader", "generate_feedback", LAB), ("nbgrader", "release_feedback", LAB)):
        started = time.monotonic()
        out = room.run_as(INSTRUCTOR, *argv, cwd=course)
        room.timed(argv[1] if argv[0] == "nbgrader" else "autograde (sandboxed)", started)
    return (course / "report.txt").read_text(encoding="utf-8") + out.stdout[:0]


def feedback_of(room: Classroom, user: str) -> str:
    """The text of the feedback page ``user`` fetched, read through their own server."""
    listing = room.server(user, "GET", f"api/contents/{LAB}/feedback")["content"]
    assert len(listing) == 1, f"{user} has {len(listing)} feedback folders"
    where = urllib.parse.quote(f"{listing[0]['path']}/{LAB}.html")
    page = room.server(user, "GET", f"api/contents/{where}?type=file&format=text")
    return html.unescape(re.sub(r"<[^>]+>", "", page["content"]))


def read_as(room: Classroom, user: str, path: Path) -> str:
    """What happens when ``user`` tries to list or read ``path``: 'refused', or what was read."""
    probe = ("import os, sys\np = sys.argv[1]\ntry:\n    print(os.listdir(p) if os.path.isdir(p) else "
             "open(p).read()[:80])\nexcept PermissionError:\n    print('refused')\n")
    return room.run_as(user, "python", "-c", probe, str(path)).stdout.strip()


def test_a_class_round_trip(classroom: Classroom, chromium):
    room = classroom
    started = time.monotonic()
    course = release_lab(room)
    room.timed("course + release", started)

    started = time.monotonic()
    for user in (INSTRUCTOR, ADA, BOB):
        room.start(user)
    for user in (INSTRUCTOR, ADA, BOB):
        room.wait_ready(user)
    room.timed("three servers", started)
    assert _status(f"{room.url}/user/{INSTRUCTOR}/formgrader", room.tokens[INSTRUCTOR]) == 200
    assert _status(f"{room.url}/user/{ADA}/formgrader", room.tokens[ADA]) == 404, "a student has the Formgrader"
    assert _status(f"{room.url}/user/{ADA}/api/contents", room.tokens[BOB]) == 403, "bob reaches ada's server"

    started = time.monotonic()
    ada_in_the_browser(room, chromium, "Fetch")
    ada_wrote = fill_in(room, ADA)
    ada_in_the_browser(room, chromium, "Submit")
    room.timed("ada fetches, answers, submits (Chromium)", started)
    started = time.monotonic()
    bob_by_rest(room, "fetch")
    bob_wrote = fill_in(room, BOB, BOB_EDIT)
    bob_by_rest(room, "submit")
    room.timed("bob fetches, answers, submits (REST)", started)

    report = grade(room, course)
    released = json.loads((course / "release" / LAB / f"{LAB}.ipynb").read_text(encoding="utf-8"))
    points = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"].get("points", 0)
              for c in released["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    auto = sum(p for gid, p in points.items() if gid.startswith("test_"))
    expected = {ADA: auto, BOB: auto - sum(points[t] for t in BOB_LOSES)}
    with open(course / "grades.csv", encoding="utf-8") as fh:
        rows = [line.split(",") for line in fh.read().splitlines()]
    header, rows = rows[0], [dict(zip(rows[0], r)) for r in rows[1:] if r and r[0] == LAB]
    assert sorted(r["student_id"] for r in rows) == [ADA, BOB], (header, rows, report)
    scores = {r["student_id"]: float(r["score"]) for r in rows}
    assert scores == expected, report

    started = time.monotonic()
    ada_in_the_browser(room, chromium, "Fetch Feedback")
    bob_by_rest(room, "fetch_feedback")
    room.timed("feedback fetched", started)
    secret = solution_lines(REPO / "labs" / LAB / f"{LAB}.ipynb")  # hidden tests and solutions, not in the release
    for user, wrote in ((ADA, ada_wrote), (BOB, bob_wrote)):
        text = feedback_of(room, user)
        assert f"(Score: {expected[user]:.1f} / " in text, f"{user}'s feedback does not show {expected[user]}"
        lines = {line.strip() for line in text.splitlines()}
        shown = sorted(secret & lines - {w.strip() for w in wrote.splitlines()})
        assert not shown, f"{user}'s feedback shows lines of the hidden tests or solutions: {shown[:3]}"

    inbound = Path(room.env["KARPA_EXCHANGE"]) / COURSE_ID / "inbound"
    attempts = {what: read_as(room, BOB, path) for what, path in (
        ("the exchange's inbound", inbound), ("ada's home", Path("/home") / ADA),
        ("ada's fetched lab", Path("/home") / ADA / LAB / f"{LAB}.ipynb"),
        ("the instructor's course", course), ("ada's collected submission", course / "submitted" / ADA),
        ("the instructor's labs", Path("/home") / INSTRUCTOR / "labs"), ("the checkout's labs", REPO / "labs"))}
    print("\nbob's reads: " + "; ".join(f"{k}: {v}" for k, v in attempts.items()))
    assert all(v == "refused" for v in attempts.values()), attempts
    print("scores: " + ", ".join(f"{k} {v:g}" for k, v in scores.items()) + f" of {auto:g} automatic")
