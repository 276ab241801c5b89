"""A pytest plugin that ends a notebook run with a table of each notebook's time, slowest first.

nbval turns every cell into a test item; this adds up the items' durations per notebook (it works with
pytest-xdist, whose workers send their reports to the controller, where this runs). Enable it with
``pytest -p karpa_lab.testing.notebook_times``.
"""

from __future__ import annotations

from collections import defaultdict

_times: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def pytest_runtest_logreport(report) -> None:
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration
        if report.failed:
            _failed.add(path)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _times:
        return
    tr = terminalreporter
    tr.section("notebook times (slowest first)")
    width = max(len(p) for p in _times)
    for path, seconds in sorted(_times.items(), key=lambda kv: -kv[1]):
        mark = "FAILED" if path in _failed else "ok"
        tr.write_line(f"{path:<{width}}  {seconds:7.1f} s  {mark}")
    tr.write_line(f"{'total':<{width}}  {sum(_times.values()):7.1f} s  (summed over notebooks; two run at once)")
