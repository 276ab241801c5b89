"""The 2D GAN playground (in the spirit of GAN Lab): watch a generator and a discriminator play.

The state first: a :class:`Playground` (data, networks, optimizers, random stream), stepped by the pure
:func:`play` (D, G or both, N times), re-set by :func:`configure` (learning rates, D steps per G step,
loss type) and read by :func:`readout` (losses, modes covered), all deterministic given the seed of
:func:`new_playground`. The networks, losses and training step are those of :mod:`karpa_lab.models.gan`.

Then pure functions of a state (tested headless):

- :func:`playground_arrays`: the numbers behind the picture: real and fake points, the discriminator's
  probability D(x) on a grid, and for a subset of fakes the direction the generator's loss pushes them,
  -dL_G/dx (the "gradient arrows": where each fake sample would like to move);
- :func:`playground_figure`: a matplotlib ``Figure`` of those arrays;
- :func:`readout_html`: the text readout of :func:`readout`.

Then :func:`playground_widget`, which only wires buttons to :func:`play` and :func:`configure` (each
click replaces the state by a new one). Structure (stable
for browser tests)::

    VBox(class "karpa-gan")
    |-- HBox: Button "step D", Button "step G", Button "step both", Button "run N", IntText "N",
    |         Button "reset"
    |-- HBox: FloatLogSlider "lr D", FloatLogSlider "lr G", IntSlider "D steps", Dropdown "loss"
    |-- Output (the figure as a PNG, redrawn in place by ``show_figure``)
    `-- HTML (class "karpa-gan-readout"), whose markup is
          <div class="karpa-gan-readout">
            <span class="karpa-gan-steps" data-d="12" data-g="10">D updates 12, G updates 10</span>
            <span class="karpa-gan-losses" data-d-loss="1.2345" data-g-loss="0.6789">...</span>
            <span class="karpa-gan-modes" data-modes="3" data-of="8">modes covered 3 / 8 ...</span>
            <span class="karpa-gan-settings">lr D 1e-03, lr G 1e-03, 1 D step(s) per G step, non_saturating</span>
            <span class="karpa-gan-note">...</span>          (only when an input was clipped or refused)
          </div>

``run N`` accepts 1 <= N <= 2000 (clipped, with a note): the run blocks the kernel while it trains.
"""

from __future__ import annotations

import copy
import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from karpa_lab.data.synthetic import GaussianMixture2D
from karpa_lab.metrics import mode_coverage
from karpa_lab.models.gan import (
    GAN,
    LOSSES,
    GANUpdate,
    discriminator_loss,
    gan_optimizers,
    generator_loss,
    mlp_gan_2d,
)
from karpa_lab.widgets import serialized, show_figure

MAX_RUN = 2000


# ------------------------------------------------------------------------------------------ the state
ACTIONS = ("d", "g", "both")


@dataclass
class Playground:
    """Everything a 2D GAN experiment is: the data, both networks, both optimizers, the random stream.

    ``update`` (a :class:`GANUpdate`) holds the optimizers, the loss type and D steps per G step; ``rng``
    draws both the real batches and the noise, so a run is a function of the seed alone. Train it with
    ``fit(pg.gan, pg.real_batch, steps=N, update_fn=pg.update)`` (in place) or step it with :func:`play`
    (which returns a new state and leaves the old one as it was). ``z_eval`` (n_eval, k) and ``x_eval``
    (n_eval, 2) are fixed noise and real points used for every readout and picture.
    """

    mixture: GaussianMixture2D
    gan: GAN
    update: GANUpdate
    rng: torch.Generator
    batch_size: int
    z_eval: torch.Tensor
    x_eval: torch.Tensor

    def real_batch(self) -> torch.Tensor:
        """A batch of real points (batch_size, 2) from the mixture, drawn from this state's ``rng``."""
        return self.mixture.sample(self.batch_size, generator=self.rng)

    @property
    def d_updates(self) -> int:
        """Discriminator updates so far (read from Adam's step counter)."""
        return _adam_steps(self.update.opt_d)

    @property
    def g_updates(self) -> int:
        """Generator updates so far."""
        return _adam_steps(self.update.opt_g)


def _adam_steps(opt: torch.optim.Optimizer) -> int:
    for state in opt.state.values():
        if "step" in state:
            return int(state["step"])
    return 0


def new_playground(
    data: str | GaussianMixture2D = "ring", seed: int = 0, lr_d: float = 1e-3, lr_g: float = 1e-3, d_steps: int = 1,
    loss: str = "non_saturating", batch_size: int = 256, hidden: int = 128, latent_dim: int = 2,
    betas: tuple[float, float] = (0.5, 0.999), n_eval: int = 2000,
) -> Playground:
    """A fresh playground: ``data`` is ``"ring"`` (8 Gaussians), ``"grid"`` (5x5) or a ``GaussianMixture2D``;
    the networks are 2-``hidden``-``hidden`` MLPs (:func:`mlp_gan_2d`), both trained by Adam(``betas``)."""
    if isinstance(data, str):
        if data not in ("ring", "grid"):
            raise ValueError(f"data must be 'ring', 'grid' or a GaussianMixture2D, got {data!r}")
        data = GaussianMixture2D.ring() if data == "ring" else GaussianMixture2D.grid()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gan = mlp_gan_2d(hidden, latent_dim=latent_dim)
    rng = torch.Generator().manual_seed(seed)
    evaluation = torch.Generator().manual_seed(10_000 + seed)
    opt_d, opt_g = gan_optimizers(gan, lr_d, lr_g, betas)
    return Playground(data, gan, GANUpdate(opt_d, opt_g, loss, d_steps, noise=rng), rng, batch_size,
                      z_eval=torch.randn(n_eval, latent_dim, generator=evaluation),
                      x_eval=data.sample(n_eval, generator=evaluation))


def configure(pg: Playground, lr_d: float | None = None, lr_g: float | None = None, d_steps: int | None = None,
              loss: str | None = None) -> Playground:
    """A copy of ``pg`` with new learning rates, D steps per G step or loss type (``None``: unchanged)."""
    for name, lr in (("lr_d", lr_d), ("lr_g", lr_g)):
        if lr is not None and not lr > 0:
            raise ValueError(f"{name} must be > 0, got {lr}")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if d_steps is not None and d_steps < 1:
        raise ValueError(f"d_steps must be >= 1, got {d_steps}")
    new = copy.deepcopy(pg)
    for opt, lr in ((new.update.opt_d, lr_d), (new.update.opt_g, lr_g)):
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr
    if d_steps is not None:
        new.update.d_steps = d_steps
    if loss is not None:
        new.update.loss = loss
    return new


def play(pg: Playground, action: str = "both", n: int = 1) -> Playground:
    """Return the state after ``n`` actions, ``pg`` itself untouched (a deep copy is stepped).

    ``"d"``: one discriminator update per action; ``"g"``: one generator update; ``"both"``: one
    training step, D ``update.d_steps`` times then G once, exactly what ``fit(update_fn=pg.update)`` does.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    new = copy.deepcopy(pg)
    new.gan.train()
    for _ in range(n):
        if action == "g":
            new.update.g_step(new.gan, new.batch_size)
        elif action == "d":
            new.update.d_step(new.gan, new.real_batch())
        else:
            new.update(new.gan, new.real_batch())
    return new


@torch.no_grad()
def readout(pg: Playground, min_share: float = 0.01) -> dict[str, Any]:
    """The playground's numbers, measured on its fixed evaluation points (no randomness, no training):
    updates so far, L_D and L_G, mean D on real and fake, modes covered (see ``metrics.mode_coverage``)
    and the settings."""
    gan = pg.gan
    fake = gan.generator(pg.z_eval)
    real_logits, fake_logits = gan.discriminator(pg.x_eval), gan.discriminator(fake)
    cover = mode_coverage(pg.mixture, fake, min_share=min_share)
    return {
        "d_updates": pg.d_updates, "g_updates": pg.g_updates,
        "d_loss": float(discriminator_loss(real_logits, fake_logits)),
        "g_loss": float(generator_loss(fake_logits, pg.update.loss)),
        "d_real": float(torch.sigmoid(real_logits).mean()), "d_fake": float(torch.sigmoid(fake_logits).mean()),
        "modes": cover["modes"], "of": cover["of"], "quality": cover["quality"],
        "lr_d": pg.update.opt_d.param_groups[0]["lr"], "lr_g": pg.update.opt_g.param_groups[0]["lr"],
        "d_steps": pg.update.d_steps, "loss": pg.update.loss,
    }


# ------------------------------------------------------------------------------------------ the picture


def _extent(pg: Playground) -> float:
    return float(pg.mixture.centers.abs().max()) + 1.0


def playground_arrays(pg: Playground, grid: int = 60, n_points: int = 500, n_arrows: int = 60) -> dict[str, Any]:
    """What the playground shows, as NumPy arrays.

    Returns ``real`` (n_points, 2) and ``fake`` (n_points, 2) from the fixed evaluation points,
    ``xs`` and ``ys`` (grid,) and ``d_prob`` (grid, grid), D(x) at (xs[j], ys[i]) in row i, column j,
    ``extent`` (half-width of the square shown), and ``arrow_xy`` / ``arrow_uv`` (n_arrows, 2): fake
    points and -dL_G/dx at each, the per-sample gradient of the generator's loss with respect to the
    sample (the loss summed over samples, so one sample's arrow does not shrink with the batch size).
    """
    if grid < 2 or n_points < 1 or n_arrows < 0:
        raise ValueError(f"need grid >= 2, n_points >= 1, n_arrows >= 0; got {grid}, {n_points}, {n_arrows}")
    gan, ext = pg.gan, _extent(pg)
    was_training = gan.training
    gan.eval()
    try:
        with torch.no_grad():
            fake = gan.generator(pg.z_eval[:n_points])
            xs = torch.linspace(-ext, ext, grid)
            gy, gx = torch.meshgrid(xs, xs, indexing="ij")
            d_prob = torch.sigmoid(gan.discriminator(torch.stack([gx.flatten(), gy.flatten()], 1))).reshape(grid, grid)
        points = fake[:n_arrows].clone().requires_grad_(True)
        loss = generator_loss(gan.discriminator(points), pg.update.loss) * points.shape[0]
        (grad,) = torch.autograd.grad(loss, points) if n_arrows else (torch.zeros(0, 2),)
    finally:
        gan.train(was_training)
    return {
        "real": pg.x_eval[:n_points].numpy(), "fake": fake.numpy(), "xs": xs.numpy(), "ys": xs.numpy(),
        "d_prob": d_prob.numpy(), "extent": ext,
        "arrow_xy": points.detach().numpy(), "arrow_uv": (-grad).numpy(),
    }


def playground_figure(pg: Playground, fig=None, arrays: dict[str, Any] | None = None):
    """The playground's picture on ``fig`` (cleared) or a new ``Figure``: D(x) as a heatmap (pink: D
    says fake, green: D says real), real points (black), fakes (orange) and their gradient arrows."""
    from matplotlib.figure import Figure

    a = arrays if arrays is not None else playground_arrays(pg)
    r = readout(pg)
    fig = fig if fig is not None else Figure(figsize=(5.2, 4.6))
    fig.clear()
    ax = fig.subplots()
    ext = a["extent"]
    im = ax.imshow(a["d_prob"], origin="lower", extent=(-ext, ext, -ext, ext), cmap="PiYG", vmin=0, vmax=1,
                   alpha=0.75)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="D(x)")
    uv = a["arrow_uv"]
    if len(uv):
        norm = np.linalg.norm(uv, axis=1, keepdims=True)
        scaled = uv / max(float(norm.max()), 1e-12) * 0.15 * ext  # longest arrow: 15 % of the half-width
        ax.quiver(*a["arrow_xy"].T, *scaled.T, angles="xy", scale_units="xy", scale=1, width=0.003,
                  color="tab:red", label="-dL_G/dx", zorder=2)
    ax.scatter(*a["fake"].T, s=4, c="tab:orange", label="fake G(z)", zorder=3)
    ax.scatter(*a["real"].T, s=4, c="black", label="real", zorder=4)
    ax.set(xlim=(-ext, ext), ylim=(-ext, ext), aspect="equal",
           title=f"D {r['d_updates']} / G {r['g_updates']} updates, modes {r['modes']}/{r['of']}")
    ax.legend(loc="upper right", fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig


def readout_html(r: dict[str, Any], note: str = "") -> str:
    """The HTML readout of :func:`readout`'s dict (markup in the module docstring)."""
    note_html = f'<br><span class="karpa-gan-note">{html.escape(note)}</span>' if note else ""
    return (
        '<div class="karpa-gan-readout">'
        f'<span class="karpa-gan-steps" data-d="{r["d_updates"]}" data-g="{r["g_updates"]}">'
        f'D updates {r["d_updates"]}, G updates {r["g_updates"]}</span><br>'
        f'<span class="karpa-gan-losses" data-d-loss="{r["d_loss"]:.4f}" data-g-loss="{r["g_loss"]:.4f}">'
        f'L_D {r["d_loss"]:.4f}, L_G {r["g_loss"]:.4f} (mean D(real) {r["d_real"]:.3f}, '
        f'mean D(fake) {r["d_fake"]:.3f})</span><br>'
        f'<span class="karpa-gan-modes" data-modes="{r["modes"]}" data-of="{r["of"]}">'
        f'modes covered {r["modes"]} / {r["of"]}, {100 * r["quality"]:.1f} % of fakes near a mode</span><br>'
        f'<span class="karpa-gan-settings">lr D {r["lr_d"]:.0e}, lr G {r["lr_g"]:.0e}, '
        f'{r["d_steps"]} D step(s) per G step, {r["loss"]}</span>{note_html}</div>'
    )


def clip_run(n: Any) -> tuple[int, str]:
    """The number of steps ``run N`` takes, clipped to 1..MAX_RUN, and a note when it was changed."""
    try:
        value = int(n)
    except (TypeError, ValueError):
        return 1, f"N={n!r} is not a number; ran 1 step"
    clipped = min(max(value, 1), MAX_RUN)
    return clipped, (f"N={value} is outside 1..{MAX_RUN}; ran {clipped}" if clipped != value else "")


def playground_widget(pg: Playground | None = None, data: str = "ring", seed: int = 0):
    """Buttons to step D, step G, step both or run N steps; sliders for the learning rates and D steps per
    G step; a dropdown for the loss. Starts from ``pg`` (default: a fresh ``new_playground(data, seed)``).
    The current state is ``box.state()`` (structure in the module docstring). Returns the ``VBox``."""
    import ipywidgets as W
    from matplotlib.figure import Figure

    first = pg if pg is not None else new_playground(data, seed=seed)
    holder = {"pg": first}
    r0 = readout(first)
    buttons = {name: W.Button(description=name, layout=W.Layout(width="90px"))
               for name in ("step D", "step G", "step both", "run N", "reset")}
    n_box = W.IntText(value=200, description="N", layout=W.Layout(width="130px"))
    lr_d = W.FloatLogSlider(value=r0["lr_d"], base=10, min=-5, max=-1, step=0.25, description="lr D",
                            continuous_update=False, readout_format=".0e")
    lr_g = W.FloatLogSlider(value=r0["lr_g"], base=10, min=-5, max=-1, step=0.25, description="lr G",
                            continuous_update=False, readout_format=".0e")
    d_steps = W.IntSlider(value=r0["d_steps"], min=1, max=10, description="D steps", continuous_update=False)
    loss = W.Dropdown(options=list(LOSSES), value=r0["loss"], description="loss")
    out = W.Output()
    html_out = W.HTML()
    html_out.add_class("karpa-gan-readout")
    fig = Figure(figsize=(5.2, 4.6))

    def redraw(note: str = "") -> None:
        pg_now = holder["pg"]
        playground_figure(pg_now, fig=fig)
        html_out.value = readout_html(readout(pg_now), note)
        show_figure(out, fig)

    @serialized
    def act(action: str, n: int = 1, note: str = "") -> None:
        holder["pg"] = play(holder["pg"], action, n)
        redraw(note)

    @serialized
    def run_n(_) -> None:
        n, note = clip_run(n_box.value)
        act("both", n, note)

    @serialized
    def reset(_) -> None:
        holder["pg"] = configure(first, lr_d=lr_d.value, lr_g=lr_g.value, d_steps=d_steps.value, loss=loss.value)
        redraw()

    @serialized
    def settings(_) -> None:
        holder["pg"] = configure(holder["pg"], lr_d=lr_d.value, lr_g=lr_g.value, d_steps=d_steps.value,
                                 loss=loss.value)
        redraw()

    buttons["step D"].on_click(lambda _: act("d"))
    buttons["step G"].on_click(lambda _: act("g"))
    buttons["step both"].on_click(lambda _: act("both"))
    buttons["run N"].on_click(run_n)
    buttons["reset"].on_click(reset)
    for control in (lr_d, lr_g, d_steps, loss):
        control.observe(settings, names="value")
    redraw()
    box = W.VBox([W.HBox([*buttons.values(), n_box]), W.HBox([lr_d, lr_g, d_steps, loss]), out, html_out])
    box.add_class("karpa-gan")
    box.state = lambda: holder["pg"]
    return box
