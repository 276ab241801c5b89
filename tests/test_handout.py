"""make handout: a copy of the course without the worked solutions and without links to them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_handout_has_no_solutions_and_no_dead_links(tmp_path):
    dest = tmp_path / "handout"
    subprocess.run([sys.executable, str(ROOT / "tools" / "handout.py"), str(dest)], check=True, cwd=ROOT)
    assert (dest / "lessons" / "12_cnns.ipynb").exists() and (dest / "Makefile").exists()
    assert not (dest / "lessons" / "solutions").exists()
    for path in (dest / "lessons").glob("[0-9]*.*"):
        assert "](solutions/" not in path.read_text(encoding="utf-8"), path.name
    assert "](solutions/" in (ROOT / "lessons" / "12_cnns.py").read_text(encoding="utf-8")  # the original keeps it
    json.loads((dest / "lessons" / "12_cnns.ipynb").read_text(encoding="utf-8"))
    import jupytext

    py = jupytext.read(dest / "lessons" / "12_cnns.py")
    nb = json.loads((dest / "lessons" / "12_cnns.ipynb").read_text(encoding="utf-8"))
    src = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
    assert [src(c).strip() for c in py["cells"]] == [src(c).strip() for c in nb["cells"]]  # still a pair


def test_a_second_handout_into_the_same_folder_is_refused(tmp_path):
    (tmp_path / "exists").mkdir()
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "handout.py"), str(tmp_path / "exists")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "exists already" in result.stderr
