"""The overhead benchmark's statistics: the interval, the paired rounds and the verdict against a target."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "fit_overhead", Path(__file__).resolve().parents[1] / "benchmarks" / "fit_overhead.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_interval_of_equal_ratios_is_that_ratio():
    assert bench.median_interval([1.05] * 20) == (1.05, 1.05)


def test_interval_brackets_the_median_and_narrows_with_more_rounds():
    few = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.15, 1.0]
    low, high = bench.median_interval(few)
    assert low <= 1.025 <= high and high - low > 0.05
    many_low, many_high = bench.median_interval(few * 25)
    assert many_high - many_low < high - low


def test_rounds_rotate_which_runner_goes_first():
    order = []

    def runner(name):
        def run(model, loader, steps):
            order.append(name)
            return 1.0
        return run

    times = bench.time_rounds({"a": runner("a"), "b": runner("b"), "c": runner("c")}, object, object, 1, 3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert times == {"a": [1.0] * 3, "b": [1.0] * 3, "c": [1.0] * 3}


@pytest.mark.parametrize(("fit_time", "verdict"), [(1.05, "met"), (1.15, "not shown")])
def test_verdict_needs_the_whole_interval_under_the_target(capsys, fit_time, verdict):
    times = {"hand-written loop": [1.0] * 10, "karpa_lab.fit": [fit_time] * 10}
    bench.report(times, 1.10)
    assert f"target fit <= 1.10x: {verdict}" in capsys.readouterr().out


def test_a_median_under_the_target_is_not_enough_when_the_interval_crosses_it(capsys):
    times = {"hand-written loop": [1.0] * 10, "karpa_lab.fit": [1.05] * 6 + [1.2] * 4}
    bench.report(times, 1.10)
    assert "target fit <= 1.10x: not shown" in capsys.readouterr().out
