"""The helpers every widget uses: figures as PNGs (karpa_lab.notebook), and callbacks that never overlap."""

import threading
import time

from matplotlib.figure import Figure

from karpa_lab.notebook import figure_png
from karpa_lab.widgets import serialized, show_figure


def test_figure_png_is_a_png_of_the_figure():
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    png = figure_png(fig, dpi=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 100  # width: 2 inches at 50 dpi


def test_show_figure_puts_an_image_not_the_figure_repr(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))

    class FakeOutput:  # the part of ipywidgets.Output that show_figure uses
        cleared = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def clear_output(self, wait=False):
            self.cleared += 1

    out = FakeOutput()
    show_figure(out, Figure(figsize=(1, 1)))
    assert out.cleared == 1
    assert len(shown) == 1 and shown[0].format == "png" and shown[0].data[:4] == b"\x89PNG"


def test_serialized_callbacks_never_overlap_and_the_last_reads_the_last_value():
    """Two threads (two comm subshells) fire callbacks at once: one runs at a time, and the callback that
    runs last sees the final slider value, which is what the readout must end on."""
    state = {"value": 0, "inside": 0, "max_inside": 0, "shown": None}

    @serialized
    def redraw():
        state["inside"] += 1
        state["max_inside"] = max(state["max_inside"], state["inside"])
        seen = state["value"]  # read the current value under the lock, as the widgets do
        time.sleep(0.002)
        state["shown"] = seen
        state["inside"] -= 1

    def mover(values):
        for v in values:
            state["value"] = v
            redraw()

    threads = [threading.Thread(target=mover, args=(range(k, 60, 2),)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["max_inside"] == 1
    assert state["shown"] == state["value"]
    assert redraw.__name__ == "redraw"


def test_outside_a_kernel_nothing_is_interactive(monkeypatch):
    from karpa_lab.notebook import in_notebook, is_interactive

    monkeypatch.delenv("KARPA_HEADLESS", raising=False)
    assert not in_notebook() and not is_interactive()
