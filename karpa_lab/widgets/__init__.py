"""Interactive views: each widget wires sliders to a pure, tested function in the same module.

Two helpers every widget uses, because a browser is not nbval:

- :func:`show_figure` draws a matplotlib ``Figure`` into an ``ipywidgets.Output`` as a PNG
  (:func:`karpa_lab.notebook.figure_png`). A bare
  ``display(fig)`` prints ``<Figure size ... with 2 Axes>`` in a fresh kernel where pyplot has not yet
  started the inline backend, which is exactly what a learner who restarts and runs the widget cell sees.
- :func:`serialized` runs widget callbacks one at a time. JupyterLab 4 may deliver widget messages on a
  kernel subshell, so two slider callbacks can run at once in two threads; without the lock they redraw one
  shared figure at the same time and the readout can end on a stale value. Each callback reads the sliders'
  *current* values when it gets the lock, so the last one to run shows the last values.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from karpa_lab.notebook import figure_png

_CALLBACK_LOCK = threading.RLock()


def show_figure(out: Any, fig: Any) -> None:
    """Replace what the ``Output`` widget ``out`` shows with ``fig`` rendered as a PNG."""
    from IPython.display import Image, display

    png = figure_png(fig)
    with out:
        out.clear_output(wait=True)
        display(Image(data=png, format="png"))


def serialized(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` wrapped so that no two widget callbacks of the course run at the same time."""

    @functools.wraps(callback)
    def run_alone(*args: Any, **kwargs: Any) -> Any:
        with _CALLBACK_LOCK:
            return callback(*args, **kwargs)

    return run_alone
