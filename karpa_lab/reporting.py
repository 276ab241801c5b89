"""How ``fit`` shows a run: a progress bar and a live loss plot in a notebook, text lines in a terminal
or under nbval, nothing with ``verbose=False``, and nothing on ranks other than 0."""

from __future__ import annotations

import math
import os
import time

from karpa_lab.distributed import is_main_process
from karpa_lab.history import History
from karpa_lab.notebook import figure_png, in_notebook, is_interactive


class Reporter:
    """Progress bar, live plot (notebook) or text lines (terminal, nbval), on the main process only;
    nothing at all with ``verbose=False``."""

    def __init__(self, total: int, progress: bool, live_plot: bool | None, log_every: int | None,
                 verbose: bool = True):
        self.enabled = verbose and is_main_process()
        self.interactive = is_interactive()
        self.live = self.enabled and (self.interactive if live_plot is None else live_plot)
        self.text = self.enabled and not self.interactive
        self.total, self.progress = total, progress
        self.log_every = log_every or max(1, total // 10)
        self.bar = None
        self.fig = self.handle = None
        self.last_draw, self.last_logged = 0.0, -1

    def begin(self, start: int) -> None:
        """Open the progress bar at step ``start`` (0, or where a resumed run continues)."""
        if not (self.enabled and self.progress):
            return
        if self.interactive:
            from tqdm.auto import tqdm
        elif not in_notebook() and os.isatty(2):
            from tqdm import tqdm
        else:
            return
        self.bar = tqdm(total=self.total, initial=start, unit="step", dynamic_ncols=True)

    def step(self, step: int, total: int, history: History) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if step % 25 == 0 and history.train_loss:
                self.bar.set_postfix(loss=f"{history.train_loss[-1]:.4g}", refresh=False)
        due = (step + 1) % self.log_every == 0 or step + 1 == total
        fresh = history.steps and history.steps[-1] != self.last_logged  # values arrive at each sync
        if self.text and self.bar is None and due and fresh:
            self.last_logged = history.steps[-1]
            lr = history.lr[-1]  # nan with an update_fn: its optimizers are its own, fit does not know the rate
            lr_part = f"lr {lr:.2e} | " if math.isfinite(lr) else ""
            print(f"step {history.steps[-1] + 1:>6}/{total} | loss {history.train_loss[-1]:.4f} | "
                  f"{lr_part}{history.steps_per_sec:7.1f} steps/s", flush=True)
        if self.live and time.perf_counter() - self.last_draw > 1.0:
            self.draw(history)

    def evaluated(self, step: int, values: dict[str, float]) -> None:
        if self.enabled and (self.text or self.bar is None):
            print(f"  eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)

    def draw(self, history: History) -> None:
        """Render the figure to PNG and show it in one display slot, replaced at every update.

        A PNG (not the Figure object) so that it shows in any front end, whether or not pyplot's inline
        backend was loaded; not a pyplot figure, so the notebook does not also show it a second time.
        """
        from IPython.display import Image, display
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if self.fig is None:
            self.fig = Figure(figsize=(11, 3.2))
            FigureCanvasAgg(self.fig)
        history.draw(self.fig)
        image = Image(data=figure_png(self.fig), format="png")
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)
        self.last_draw = time.perf_counter()

    def say(self, message: str) -> None:
        """A one-off message (resume, interrupt) on the main process, unless silenced."""
        if self.enabled:
            print(message, flush=True)

    def close(self, history: History) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.live and history.train_loss:
            self.draw(history)
