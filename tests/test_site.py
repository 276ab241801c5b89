"""The site builder's pure parts (tools/build_site.py): key-term tables, lab pages, the README's sections.

The built site itself is checked in a browser by tests/browser/test_site_browser.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_site", REPO / "tools" / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)


def _notebook(tmp_path: Path, cells: list, name: str = "03_demo.ipynb") -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = cells
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path


def test_key_terms_come_from_the_summary_table(tmp_path):
    table = (
        "## Summary\n\nText.\n\n| English | 中文 | one line |\n|---|---|---|\n"
        "| forget gate | 遗忘门 | how much of the old cell is kept |\n"
        "| cell state | 细胞状态 | the additive memory, $c_t$ \\| kept |\n\nNext lesson."
    )
    path = _notebook(tmp_path, [nbformat.v4.new_markdown_cell("# 03 · Demo"), nbformat.v4.new_markdown_cell(table)])
    assert build_site.key_terms(path) == [
        ("forget gate", "遗忘门", "how much of the old cell is kept"),
        ("cell state", "细胞状态", "the additive memory, $c_t$ \\| kept"),
    ]
    page = build_site.glossary_page([path])
    assert "| forget gate | 遗忘门 | how much of the old cell is kept | [03](lessons/03_demo.ipynb) |" in page
    assert page.index("cell state") < page.index("forget gate")  # sorted


def test_a_lesson_without_a_table_gives_no_terms(tmp_path):
    path = _notebook(tmp_path, [nbformat.v4.new_markdown_cell("# 00 · Tour\n\n| a | b |\n|---|---|\n| 1 | 2 |")])
    assert build_site.key_terms(path) == []
    assert "No lesson has a key-term table yet." in build_site.glossary_page([path])


def test_a_lab_page_shows_the_instructions_and_grades_but_no_solution(tmp_path):
    def graded(cell, **meta):
        cell.metadata["nbgrader"] = {"schema_version": 3, "locked": False, "solution": False, "grade": False, **meta}
        return cell

    cells = [
        nbformat.v4.new_markdown_cell("# Lab 01 · Demo\n\nWrite a cell."),
        graded(
            nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION"),
            solution=True,
            grade_id="f",
        ),
        nbformat.v4.new_markdown_cell("## Part 1 · The step\n\nThe tests check the shapes."),
        graded(
            nbformat.v4.new_code_cell(
                "assert f() == 42\n### BEGIN HIDDEN TESTS\nassert f() > 41\n### END HIDDEN TESTS"
            ),
            grade=True,
            grade_id="test_f",
            points=3,
        ),
        graded(
            nbformat.v4.new_markdown_cell("**Model answer**: because the gradient is one."),
            grade=True,
            solution=True,
            grade_id="answer",
            points=2,
        ),
    ]
    page = build_site.lab_page(_notebook(tmp_path, cells, "01_demo.ipynb"))
    assert page.startswith("# Lab 01 · Demo")
    assert "### Part 1 · The step" in page  # one level down, under "What the student reads"
    assert "| `test_f` | 3 | automatic |" in page and "| `answer` | 2 | by hand |" in page
    assert "3 points graded automatically, 2 by you." in page
    for secret in ("return 42", "BEGIN", "f() > 41", "Model answer", "assert f()"):
        assert secret not in page


def test_every_lab_page_leaves_out_its_solution_cells():
    for notebook in sorted((REPO / "labs").glob("[0-9]*/[0-9]*.ipynb")):
        page = build_site.lab_page(notebook)
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            meta = cell["metadata"].get("nbgrader", {})
            if meta.get("solution") or meta.get("grade"):
                source = "".join(cell["source"])
                assert source.strip() not in page, f"{notebook.name}: cell {meta.get('grade_id')} is on its page"


def test_the_landing_page_is_made_of_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    labs = sorted((REPO / "labs").glob("[0-9]*/[0-9]*.ipynb"))
    page = build_site.landing_page(readme, labs, [])
    assert "make lab" in page and "make test" in page
    assert "(lessons/03_lstm_gates.ipynb)" in page and "docs/img/lstm_gates.png" in page
    assert "lessons/solutions/*" not in page  # no solutions folder, no such table of contents
    assert "lessons/solutions/*" in build_site.landing_page(readme, labs, [Path("lessons/solutions/03_x.ipynb")])
