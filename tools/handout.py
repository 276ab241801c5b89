"""Copy the course without its worked solutions, for teachers who set the lessons' exercises as homework.

    python tools/handout.py DEST        # or: make handout DEST=../course-handout

Copies every file git tracks except ``lessons/solutions/``, into ``DEST`` (which must not exist yet), and
drops the line that links each lesson's exercises to their solutions from both the ``.py`` and the
``.ipynb`` of the lesson, so the copy has no dead link. The copy is a course that runs as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = "lessons/solutions/"
LINK = re.compile(r"^(# )?Worked solutions, each one run and checked: \[solutions/[^\]]+\]\(solutions/[^)]+\)\.\s*$")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [f for f in out.split("\0") if f and not f.startswith(SOLUTIONS)]


def without_link_py(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not LINK.match(line.rstrip("\n")))


def without_link_ipynb(text: str) -> str:
    notebook = json.loads(text)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            source = cell["source"] if isinstance(cell["source"], list) else cell["source"].splitlines(True)
            kept = [line for line in source if not LINK.match(line.rstrip("\n"))]
            if kept and kept[-1].endswith("\n") and len(kept) < len(source):
                kept[-1] = kept[-1].rstrip("\n")  # the cell's last line carries no newline, as jupytext writes it
            cell["source"] = kept
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    dest = parser.parse_args().dest.resolve()
    if dest.exists():
        print(f"handout: {dest} exists already; give a new folder", file=sys.stderr)
        return 2
    for name in tracked_files():
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.startswith("lessons/") and name.endswith(".py"):
            target.write_text(without_link_py(source.read_text(encoding="utf-8")), encoding="utf-8")
        elif name.startswith("lessons/") and name.endswith(".ipynb"):
            target.write_text(without_link_ipynb(source.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            shutil.copy2(source, target)
    print(f"handout: the course without {SOLUTIONS} is in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
