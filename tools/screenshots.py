"""Save a PNG of each course widget, after its controls were moved, into docs/img/ (``make screenshots``).

The pictures come from the browser tests themselves (tests/browser, JupyterLab in headless Chromium):
each widget test saves its picture at the point where it has moved the sliders and checked the readout
against the widget's pure function, so the docs never show a state the tests did not verify. Only the
tests that take a picture run (``-k``); Chromium must be on PATH (a missing one is an error here).

    python tools/screenshots.py [OUT_DIR]        # default: docs/img
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Tests that only check the harness or a fresh kernel save no picture.
NO_PICTURE = "not harness and not fresh_kernel"


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve() if argv else REPO / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, KARPA_SCREENSHOTS_DIR=str(out), KARPA_REQUIRE_BROWSER="1")
    started = time.time()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "browser", "-k", NO_PICTURE,
               str(REPO / "tests" / "browser")]
    code = subprocess.call(command, cwd=REPO, env=env)
    written = sorted(p for p in out.glob("*.png") if p.stat().st_mtime >= started)
    print(f"{len(written)} picture(s) written to {out}:")
    for path in written:
        print(f"  {path.name}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
