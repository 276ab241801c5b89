"""Where the code runs and how a picture gets to the page: in a notebook or not, with a person or not.

Both the training loop (its live loss plot) and the widgets need these, and neither should import the
other for them, so they live here:

- :func:`in_notebook`: inside a Jupyter kernel (not a terminal, not a script);
- :func:`is_interactive`: a notebook with a person in front of it (not nbval, not ``KARPA_HEADLESS=1``);
- :func:`figure_png`: a matplotlib ``Figure`` as PNG bytes, which every front end shows, whether or not
  pyplot's inline backend was loaded.
"""

from __future__ import annotations

import io
import os
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ``ZMQInteractiveShell``)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def is_interactive() -> bool:
    """A notebook with a person in front of it (not nbval, not ``KARPA_HEADLESS=1``)."""
    return in_notebook() and os.environ.get("KARPA_HEADLESS", "0") != "1"


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """The figure as PNG bytes, whatever matplotlib backend is active."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
