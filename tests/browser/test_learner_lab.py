"""JupyterLab as ``make lab`` opens it for a learner, and as ``make teach`` opens it for a teacher, seen in
headless Chromium: one entry per lesson, no news prompt, nbgrader's student side only."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
LOAD_MS = 180_000
LEARNER = [REPO / "jupyter" / "learner", REPO / "jupyter" / "common"]
TEACHER = [REPO / "jupyter" / "common"]
TEACHER_TOOLS = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                 "@jupyter/nbgrader:course-list", "@jupyter/nbgrader:menu"]


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("course") / "course"
    shutil.copytree(REPO / "lessons", root / "lessons", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return root


def page_config(server) -> dict:
    with urllib.request.urlopen(f"{server.url}/lab?token={server.token}") as response:
        html = response.read().decode()
    data = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(data.group(1))


def lesson_entries(server) -> list[str]:
    listing = server.api("GET", "/api/contents/lessons")
    return sorted(item["name"] for item in listing["content"] if item["name"][:2].isdigit())


def test_learners_see_each_lesson_once_no_news_and_no_teacher_tools(start_lab, browser, course_copy, tmp_path):
    server = start_lab(course_copy, tmp_path / "state", course_config=LEARNER)
    try:
        assert lesson_entries(server) == sorted(p.name for p in (course_copy / "lessons").glob("[0-9]*.ipynb"))
        assert set(TEACHER_TOOLS) <= set(page_config(server)["disabledExtensions"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{server.url}/lab/tree/lessons?reset&token={server.token}")
            page.wait_for_function("() => typeof window.jupyterapp === 'object'", timeout=LOAD_MS)
            page.evaluate("() => window.jupyterapp.restored")
            page.wait_for_selector(".jp-DirListing-item", timeout=LOAD_MS)
            time.sleep(3)  # the news prompt, when it comes, is a toast shortly after start-up
            shown = page.eval_on_selector_all(".jp-DirListing-item .jp-DirListing-itemText",
                                              "els => els.map(e => e.textContent.trim())")
            lessons = sorted(n for n in shown if n[:2].isdigit())
            assert lessons == lesson_entries(server) and not any(n.endswith(".py") for n in lessons), shown
            menus = page.eval_on_selector_all(".lm-MenuBar-itemLabel", "els => els.map(e => e.textContent)")
            assert "Nbgrader" not in menus and "File" in menus, menus
            assert not page.locator("text=Create Assignment").count()
            toasts = page.locator(".Toastify__toast").all_inner_texts()
            assert not any("news" in t.lower() for t in toasts), toasts
            fetch_news = page.evaluate(
                """() => window.jupyterapp.serviceManager.settings
                           .fetch('@jupyterlab/apputils-extension:notification')
                           .then(s => s.schema.properties.fetchNews.default)""")  # the course default
            assert fetch_news == "false"
        finally:
            context.close()
    finally:
        server.stop()


def test_teachers_get_the_nbgrader_tools_and_the_twins(start_lab, course_copy, tmp_path):
    server = start_lab(course_copy, tmp_path / "state", course_config=TEACHER)
    try:
        assert not set(TEACHER_TOOLS) & set(page_config(server)["disabledExtensions"])
        entries = lesson_entries(server)
        assert "03_lstm_gates.py" in entries and "03_lstm_gates.ipynb" in entries
    finally:
        server.stop()
