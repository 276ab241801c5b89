"""Build the course's static site (``make site``) from the committed notebooks, offline, into build/site/.

The pages are the stored outputs of the committed notebooks (nothing is re-executed):

- ``index``: the landing page, from the README's opening, its two commands and its lesson map, with pictures;
- ``lessons/NN_topic``: every ``lessons/NN_*.ipynb`` (and ``lessons/solutions/*.ipynb`` when that folder exists);
- ``labs/NN_topic``: for teachers, what each lab asks and grades, written from the lab notebook's markdown
  cells and its nbgrader metadata only. A lab notebook itself is never rendered: it holds the solutions and
  the hidden tests;
- ``glossary``: the key terms in English and Chinese, from the table that ends each lesson's summary;
- ``run``: how to run the course yourself, from the README's sections on running, GPUs, labs and troubles.

Sphinx reads them from build/site-src/ with site/conf.py; MathJax and the widget manager are then copied from
build/node_modules (``npm ci`` of site/package.json, run when the lock file is newer) into the site's _static.

    python tools/build_site.py [--out build/site]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
NODE = BUILD / "node_modules"

# A key-term table starts with this header row (the course's convention: English | 中文 | one line).
TERM_HEADER = re.compile(r"^\|\s*English\s*\|\s*中文\s*\|(.*)\|\s*$")
# What a lab's teacher page must never contain (nbgrader's solution and hidden-test markers).
SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

# Pictures of the landing page's gallery: docs/img/NAME.png -> the lesson it comes from.
GALLERY = {
    "rnn_gradients": "02_rnn_math",
    "lstm_memory": "03_lstm_gates",
    "char_rnn_cells": "04_char_rnn",
    "char_rnn_temperature": "04_char_rnn",
    "gan_latent": "07_dcgan",
    "attention": "08_attention",
    "nas_playground": "10_nas_search",
    "nas_live": "10_nas_search",
}


# ------------------------------------------------------------------------------------------- notebooks


def markdown_cells(notebook: Path) -> list[tuple[str, dict]]:
    """(source, nbgrader metadata) of each markdown cell of ``notebook``."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [
        ("".join(c["source"]) if isinstance(c["source"], list) else c["source"], c["metadata"].get("nbgrader", {}))
        for c in cells
        if c["cell_type"] == "markdown"
    ]


def notebook_title(notebook: Path) -> str:
    for source, _ in markdown_cells(notebook):
        for line in source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return notebook.stem


def _cells(row: str) -> list[str]:
    """The cells of one markdown table row (``\\|`` inside a cell is not a separator)."""
    parts = re.split(r"(?<!\\)\|", row.strip())
    return [p.strip() for p in parts[1:-1]]


def key_terms(notebook: Path) -> list[tuple[str, str, str]]:
    """(English, 中文, one line) of each row of the notebook's key-term table(s); [] when it has none."""
    terms = []
    for source, _ in markdown_cells(notebook):
        lines = source.splitlines()
        for i, line in enumerate(lines):
            if not TERM_HEADER.match(line.strip()):
                continue
            for row in lines[i + 1 :]:
                row = row.strip()
                if not row.startswith("|"):
                    break
                cells = _cells(row)
                if len(cells) < 2 or set("".join(cells)) <= set("-: "):
                    continue  # the |---|---| rule
                terms.append((cells[0], cells[1], cells[2] if len(cells) > 2 else ""))
    return terms


def glossary_page(lessons: list[Path]) -> str:
    """The glossary: every key term once (first lesson that defines it), sorted, with the lessons using it."""
    entries: dict[str, dict] = {}
    for notebook in lessons:
        for english, chinese, line in key_terms(notebook):
            entry = entries.setdefault(english.lower(), {"en": english, "zh": chinese, "line": line, "in": []})
            if notebook.stem not in entry["in"]:
                entry["in"].append(notebook.stem)
    text = [
        "# Glossary · 术语表",
        "",
        "The key terms of the course in English and in Chinese (中文), one rendering per concept, gathered from",
        "the table that ends each lesson's summary. The last column links the lessons that define the term.",
        "",
    ]
    if not entries:
        text.append("No lesson has a key-term table yet.")
        return "\n".join(text) + "\n"
    text += ["| English | 中文 | meaning | lesson |", "|---|---|---|---|"]
    for key in sorted(entries, key=lambda k: re.sub(r"[^a-z0-9 ]", "", k)):
        e = entries[key]
        links = ", ".join(f"[{stem[:2]}](lessons/{stem}.ipynb)" for stem in e["in"])
        text.append(f"| {e['en']} | {e['zh']} | {e['line']} | {links} |")
    return "\n".join(text) + "\n"


def lab_page(notebook: Path) -> str:
    """A teacher's page for one lab: its instructions (markdown cells that are neither solutions nor graded
    answers) and a table of what is graded (nbgrader's grade cells: id, points, automatic or by hand).
    No code cell and no solution or answer cell is copied."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    shown, graded = [], []
    for cell in cells:
        meta = cell["metadata"].get("nbgrader", {})
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if meta.get("grade"):
            manual = cell["cell_type"] == "markdown" or meta.get("solution", False)
            graded.append((meta.get("grade_id", "?"), meta.get("points", 0), "by hand" if manual else "automatic"))
        if cell["cell_type"] != "markdown" or meta.get("solution") or meta.get("grade") or meta.get("task"):
            continue
        if any(marker in source for marker in SECRET_MARKERS):
            continue
        shown.append(source)
    name = notebook.stem
    auto = sum(p for _, p, kind in graded if kind == "automatic")
    manual = sum(p for _, p, kind in graded if kind == "by hand")
    body = shown[0].splitlines() if shown else [f"# Lab {name}"]
    text = body + [
        "",
        ":::{note}",
        f"This page is for teachers: it shows what lab `{name}` asks of a student and what it grades, not its",
        "solution. The notebook itself, with the solutions and hidden tests, stays in the course's `labs/`",
        f"folder; `make release` writes the student version to `release/{name}/{name}.ipynb`.",
        ":::",
        "",
        "## What it grades",
        "",
        f"{auto} points graded automatically, {manual} by you.",
        "",
        "| graded cell | points | graded |",
        "|---|---|---|",
        *[f"| `{grade_id}` | {points} | {kind} |" for grade_id, points, kind in graded],
        "",
        "## What the student reads",
        "",
    ]
    for source in shown[1:]:
        # One level down: the page's own title is the lab's, its sections sit below "What the student reads".
        text += [re.sub(r"^(#+) ", r"#\1 ", line) for line in source.splitlines()] + [""]
    return "\n".join(text) + "\n"


# ---------------------------------------------------------------------------------------------- landing


def readme_sections(readme: str) -> dict[str, str]:
    """The README cut at its ``## `` headings; the text before the first is under ''."""
    sections, name, lines = {}, "", []
    for line in readme.splitlines():
        if line.startswith("## "):
            sections[name] = "\n".join(lines).strip() + "\n"
            name, lines = line[3:].strip(), []
        lines.append(line)
    sections[name] = "\n".join(lines).strip() + "\n"
    return sections


RUN_SECTIONS = (
    "Two commands",
    "Scaling up on a GPU",
    "For teachers: labs",
    "Make targets",
    "The course as a website",
    "Troubleshooting",
)


def run_page(readme: str) -> str:
    sections = readme_sections(readme)
    text = [
        "# Run it yourself",
        "",
        "Everything on this site runs on your own machine: get the course's folder (clone its repository or",
        "unpack an archive of it), open a terminal there and use the commands below. A laptop CPU is enough;",
        "no download is needed after the set-up.",
        "",
    ]
    # One level down from the README's: "##" sections stay "##" under this page's "#" title.
    return "\n".join(text) + "\n" + "\n".join(sections[name] for name in RUN_SECTIONS if name in sections)


def landing_page(readme: str, labs: list[Path], solutions: list[Path]) -> str:
    sections = readme_sections(readme)
    opening = sections[""].replace("# karpa-lab", "# karpa-lab: an interactive deep-learning course", 1)
    parts = [opening, sections["Two commands"], sections["The lessons"], "## In pictures", ""]
    for name, stem in GALLERY.items():
        if (REPO / "docs" / "img" / f"{name}.png").exists():
            title = notebook_title(REPO / "lessons" / f"{stem}.ipynb")
            parts += [
                f"```{{figure}} docs/img/{name}.png",
                f":alt: {name.replace('_', ' ')}",
                ":width: 100%",
                "",
                f"From [{title}](lessons/{stem}.ipynb)",
                "```",
                "",
            ]
    parts += [
        "## Around the lessons",
        "",
        "- [Run it yourself](run.md): the two commands, a GPU, teachers' set-up.",
        "- [Glossary · 术语表](glossary.md): every key term in English and Chinese.",
        "- For teachers, what each lab grades: " + ", ".join(f"[{p.stem}](labs/{p.stem}.md)" for p in labs) + ".",
        "",
    ]
    toc = [
        ("Lessons", ["lessons/[0-9]*"]),
        ("Solutions", ["lessons/solutions/*"] if solutions else []),
        ("For teachers: labs", ["labs/*"]),
        ("Reference", ["glossary", "run"]),
    ]
    for caption, globs in toc:
        if globs:
            parts += ["```{toctree}", ":hidden:", ":glob:", f":caption: {caption}", "", *globs, "```", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------- build


def write(path: Path, text: str) -> None:
    """Write only when the content changed, so that Sphinx rebuilds only what changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if (
        not target.exists()
        or target.stat().st_mtime != source.stat().st_mtime
        or target.stat().st_size != source.stat().st_size
    ):
        shutil.copy2(source, target)


def layout(src: Path) -> list[Path]:
    """Lay out the Sphinx sources in ``src``; returns the files written (stale ones are removed)."""
    lessons = sorted((REPO / "lessons").glob("[0-9]*.ipynb"))
    solutions = sorted((REPO / "lessons" / "solutions").glob("*.ipynb"))
    labs = sorted((REPO / "labs").glob("[0-9]*/[0-9]*.ipynb"))
    wanted: dict[Path, object] = {}
    for notebook in lessons + solutions:
        wanted[src / notebook.relative_to(REPO)] = notebook
    for notebook in labs:
        wanted[src / "labs" / f"{notebook.stem}.md"] = lab_page(notebook)
    for picture in sorted((REPO / "docs" / "img").glob("*.png")):
        wanted[src / picture.relative_to(REPO)] = picture
    wanted[src / "glossary.md"] = glossary_page(lessons)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    wanted[src / "run.md"] = run_page(readme)
    wanted[src / "index.md"] = landing_page(readme, labs, solutions)
    for path in [p for p in src.rglob("*") if p.is_file()] if src.exists() else []:
        if path not in wanted:
            path.unlink()
    for target, source in wanted.items():
        if isinstance(source, Path):
            copy(source, target)
        else:
            write(target, source)
    return list(wanted)


def node_modules() -> Path:
    """build/node_modules from site/package-lock.json (npm ci, only when the lock file changed)."""
    stamp = NODE / ".karpa-lock"
    lock = (REPO / "site" / "package-lock.json").read_text()
    if not stamp.exists() or stamp.read_text() != lock:
        BUILD.mkdir(exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(REPO / "site" / name, BUILD / name)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(BUILD)], check=True)
        stamp.write_text(lock)
    return NODE


def vendor(out: Path) -> None:
    """MathJax (its whole es5 folder: components load their extensions and fonts beside them) and the
    widget manager's standalone embedder with its fonts, into the site's _static."""
    modules = node_modules()
    static = out / "_static"
    shutil.copytree(modules / "mathjax" / "es5", static / "mathjax", dirs_exist_ok=True)
    shutil.copytree(
        modules / "@jupyter-widgets" / "html-manager" / "dist",
        static / "widgets",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.map", "*amd.js"),
    )


def stale(src: Path, out: Path) -> None:
    """Remove pages of documents no longer in the sources (Sphinx leaves them in the output folder)."""
    for page in out.rglob("*.html"):
        docname = page.relative_to(out).with_suffix("")
        if docname.parts[0] in ("_static", "_sources") or docname.as_posix() == "search":
            continue
        if not any((src / docname).with_suffix(suffix).exists() for suffix in (".md", ".ipynb")):
            page.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BUILD / "site")
    args = parser.parse_args(argv)
    start = time.monotonic()
    src = BUILD / "site-src"
    layout(src)
    node_modules()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-b",
            "html",
            "-q",
            "-c",
            str(REPO / "site"),
            "-d",
            str(BUILD / "site-doctrees"),
            str(src),
            str(args.out),
        ],
        check=True,
    )
    vendor(args.out)
    stale(src, args.out)
    pages = len([p for p in args.out.rglob("*.html") if "_static" not in p.relative_to(args.out).parts])
    print(
        f"site: {pages} HTML pages in {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}"
        f" ({time.monotonic() - start:.0f} s); view it with: python -m http.server -d {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
