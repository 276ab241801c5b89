"""The GAN widgets' pure functions (playground picture and readout, latent interpolation) and their wiring."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from karpa_lab import metrics
from karpa_lab.models.gan import MLPGenerator
from karpa_lab.widgets.gan_latent import (
    interpolate_latents,
    interpolation_figure,
    interpolation_frame,
    interpolation_images,
    latent_widget,
)
from karpa_lab.widgets.gan_latent import readout_html as latent_readout_html
from karpa_lab.widgets.gan_playground import (
    MAX_RUN,
    clip_run,
    configure,
    new_playground,
    play,
    playground_arrays,
    playground_figure,
    playground_widget,
    readout,
    readout_html,
)


@pytest.fixture
def quick_classifier(monkeypatch):
    """An untrained digits classifier in the cache: these tests check the widgets' wiring, not the judge
    (tests/test_metrics.py trains and checks the real one)."""
    torch.manual_seed(0)
    monkeypatch.setitem(metrics._CLASSIFIERS, 8, metrics.DigitsClassifier(8).eval().requires_grad_(False))


@pytest.fixture(scope="module")
def trained():
    """A playground after a few hundred steps, so D is no longer flat."""
    return play(new_playground("ring", seed=0, hidden=32, batch_size=64), "both", 150)


# ------------------------------------------------------------------------------------------ playground
@pytest.mark.parametrize("grid,n_points,n_arrows", [(2, 1, 0), (16, 50, 5), (40, 500, 60)])
@pytest.mark.parametrize("data", ["ring", "grid"])
def test_playground_arrays_shapes_and_ranges(data, grid, n_points, n_arrows):
    pg = new_playground(data, seed=1, hidden=16)
    a = playground_arrays(pg, grid=grid, n_points=n_points, n_arrows=n_arrows)
    assert a["real"].shape == (n_points, 2) and a["fake"].shape == (n_points, 2)
    assert a["xs"].shape == (grid,) and a["d_prob"].shape == (grid, grid)
    assert ((a["d_prob"] >= 0) & (a["d_prob"] <= 1)).all()
    assert a["arrow_xy"].shape == (n_arrows, 2) and a["arrow_uv"].shape == (n_arrows, 2)
    assert a["extent"] == pytest.approx(3.0)  # ring radius 2 or grid half-width 2, plus 1
    np.testing.assert_allclose(a["fake"], pg.gan.generator(pg.z_eval[:n_points]).detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("loss", ["non_saturating", "saturating"])
def test_arrows_point_where_the_discriminator_says_real(trained, loss):
    """A small move along an arrow raises D(x): the generator's loss falls for that sample."""
    pg = configure(trained, loss=loss)
    a = playground_arrays(pg, n_arrows=40)
    xy, uv = torch.tensor(a["arrow_xy"]), torch.tensor(a["arrow_uv"])
    moving = uv.norm(dim=1) > 1e-6
    assert moving.sum() >= 20
    step = 1e-3 * uv[moving] / uv[moving].norm(dim=1, keepdim=True)
    with torch.no_grad():
        before = pg.gan.discriminator(xy[moving])
        after = pg.gan.discriminator(xy[moving] + step)
    assert (after > before).float().mean() > 0.95


def test_d_heatmap_rows_are_y_and_columns_are_x(trained):
    a = playground_arrays(trained, grid=9, n_arrows=0)
    i, j = 2, 7
    with torch.no_grad():
        d = torch.sigmoid(trained.gan.discriminator(torch.tensor([[a["xs"][j], a["ys"][i]]])))
    assert a["d_prob"][i, j] == pytest.approx(float(d), abs=1e-6)


def test_playground_arrays_are_pure(trained):
    before = [p.clone() for p in trained.gan.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in trained.gan.parameters()]
    training = trained.gan.training
    first = playground_arrays(trained)
    second = playground_arrays(trained)
    np.testing.assert_array_equal(first["d_prob"], second["d_prob"])
    assert all(torch.equal(a, b) for a, b in zip(before, trained.gan.parameters()))
    assert trained.gan.training == training
    for g, p in zip(grads, trained.gan.parameters()):  # the arrows' autograd leaves .grad alone
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)


def test_playground_arrays_refuse_bad_sizes(trained):
    with pytest.raises(ValueError, match="grid >= 2"):
        playground_arrays(trained, grid=1)


def test_playground_figure_and_readout(trained):
    fig = playground_figure(trained)
    assert len(fig.axes) == 2  # the picture and the colour bar
    assert "modes" in fig.axes[0].get_title()
    r = readout(trained)
    text = readout_html(r)
    for cls in ("karpa-gan-readout", "karpa-gan-steps", "karpa-gan-losses", "karpa-gan-modes", "karpa-gan-settings"):
        assert f'class="{cls}"' in text
    assert f'data-modes="{r["modes"]}"' in text and f'data-g="{r["g_updates"]}"' in text
    assert re.search(r'data-d-loss="(\d+\.\d{4})"', text).group(1) == f"{r['d_loss']:.4f}"
    assert "karpa-gan-note" not in text and "karpa-gan-note" in readout_html(r, "clipped")


@pytest.mark.parametrize("value,expected", [(5, (5, "")), (0, (1, "N=0 is outside")), (10**6, (MAX_RUN, "outside")),
                                            ("x", (1, "not a number"))])
def test_clip_run(value, expected):
    n, note = clip_run(value)
    assert n == expected[0] and expected[1] in note


def test_playground_widget_buttons_step_the_state():
    pytest.importorskip("ipywidgets")
    box = playground_widget(new_playground("ring", seed=2, hidden=16, batch_size=32))
    html = box.children[-1]
    assert "karpa-gan" in box._dom_classes and "karpa-gan-readout" in html._dom_classes
    buttons = {b.description: b for b in box.children[0].children if hasattr(b, "on_click")}
    buttons["step D"].click()
    buttons["step G"].click()
    buttons["step both"].click()
    assert (box.state().d_updates, box.state().g_updates) == (2, 2)
    box.children[0].children[-1].value = 3  # N
    buttons["run N"].click()
    assert box.state().g_updates == 5 and 'data-g="5"' in html.value
    box.children[1].children[2].value = 2  # D steps per G step
    buttons["step both"].click()
    assert (box.state().d_updates, box.state().g_updates) == (7, 6)
    box.children[0].children[-1].value = -4
    buttons["run N"].click()
    assert "karpa-gan-note" in html.value and box.state().g_updates == 7
    buttons["reset"].click()
    assert box.state().g_updates == 0 and box.state().update.d_steps == 2


# ------------------------------------------------------------------------------------------ latent interpolation
@pytest.mark.parametrize("k", [1, 2, 32])
@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolate_latents_ends_and_norms(k, mode):
    g = torch.Generator().manual_seed(k)
    z0, z1 = torch.randn(k, generator=g), torch.randn(k, generator=g)
    path = interpolate_latents(z0, z1, torch.linspace(0, 1, 7), mode)
    assert path.shape == (7, k)
    torch.testing.assert_close(path[0], z0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[-1], z1, atol=1e-5, rtol=1e-5)


def test_slerp_keeps_the_norm_and_linear_shrinks_it():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(64, generator=g)
    z1 = torch.randn(64, generator=g)
    z1 = z1 / z1.norm() * z0.norm()
    mid_slerp = interpolate_latents(z0, z1, [0.5], "slerp")[0]
    mid_linear = interpolate_latents(z0, z1, [0.5], "linear")[0]
    assert mid_slerp.norm() == pytest.approx(float(z0.norm()), rel=1e-5)
    assert mid_linear.norm() < 0.85 * z0.norm()  # nearly orthogonal in 64 dimensions: about 1/sqrt(2)
    parallel = interpolate_latents(z0, 2 * z0, [0.5], "slerp")[0]
    torch.testing.assert_close(parallel, 1.5 * z0)


@pytest.mark.parametrize("zero_end", [0, 1, 2])
def test_slerp_from_or_to_a_zero_vector_is_the_straight_line(zero_end):
    z = torch.tensor([3.0, -4.0, 0.5])
    z0, z1 = {0: (torch.zeros(3), z), 1: (z, torch.zeros(3)), 2: (torch.zeros(3), torch.zeros(3))}[zero_end]
    ts = torch.linspace(0, 1, 5)
    path = interpolate_latents(z0, z1, ts, "slerp")
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, interpolate_latents(z0, z1, ts, "linear"))


@pytest.mark.parametrize("k", [2, 3, 32])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_slerp_between_opposite_vectors_turns_half_a_circle(k, scale):
    z0 = torch.randn(k, generator=torch.Generator().manual_seed(k))
    z1 = -scale * z0
    ts = torch.linspace(0, 1, 9)
    path = interpolate_latents(z0, z1, ts, "slerp")
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path.norm(dim=1), (1 - ts) * z0.norm() + ts * z1.norm())  # never through 0
    mid = path[4]
    assert abs(float(torch.dot(mid, z0))) < 1e-4 * float(z0.norm() * mid.norm())  # at t = 1/2: perpendicular


def test_slerp_in_one_dimension_and_for_parallel_vectors_is_the_line():
    ts = torch.linspace(0, 1, 5)
    one_d = interpolate_latents(torch.tensor([2.0]), torch.tensor([-1.0]), ts, "slerp")
    torch.testing.assert_close(one_d[:, 0], 2.0 - 3.0 * ts)
    z = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(interpolate_latents(z, 3 * z, ts, "slerp"), (1 + 2 * ts)[:, None] * z)


def test_interpolate_latents_refuses_non_finite_fractions():
    for ts in ([float("nan")], [0.5, float("inf")]):
        for mode in ("linear", "slerp"):
            with pytest.raises(ValueError, match="ts must be finite"):
                interpolate_latents(torch.ones(3), torch.tensor([1.0, -1.0, 0.0]), ts, mode)


def test_interpolate_latents_checks_inputs():
    with pytest.raises(ValueError, match=r"\(k,\).*\(3,\) and \(4,\)"):
        interpolate_latents(torch.zeros(3), torch.zeros(4), [0.5])
    with pytest.raises(ValueError, match="mode"):
        interpolate_latents(torch.zeros(3), torch.ones(3), [0.5], "cubic")


def test_interpolation_images_frame_figure_and_readout(quick_classifier):
    torch.manual_seed(0)
    gen = MLPGenerator(8, (16,), 64, out="sigmoid")
    z0, z1 = torch.randn(8), torch.randn(8)
    strip = interpolation_images(gen, z0, z1, n=5)
    assert strip.shape == (5, 1, 8, 8)
    torch.testing.assert_close(strip[0, 0], gen(z0[None]).detach().reshape(8, 8))
    frame = interpolation_frame(gen, z0, z1, 1.0)
    torch.testing.assert_close(frame["image"], strip[-1])
    assert 0 <= frame["label"] <= 9 and 0.1 <= frame["confidence"] <= 1 and frame["note"] == ""
    assert frame["label"] == int(metrics.classify(strip[-1:]).argmax())
    clipped = interpolation_frame(gen, z0, z1, 1.7)
    assert clipped["t"] == 1.0 and "outside" in clipped["note"]
    text = latent_readout_html(clipped)
    assert 'class="karpa-latent-class"' in text and f'data-class="{clipped["label"]}"' in text
    assert 'data-t="1.00"' in text and "karpa-latent-note" in text
    assert len(interpolation_figure(strip, frame).axes) == 6
    with pytest.raises(ValueError, match="n must be >= 2"):
        interpolation_images(gen, z0, z1, n=1)


def test_latent_widget_follows_the_slider(quick_classifier):
    pytest.importorskip("ipywidgets")
    torch.manual_seed(0)
    gen = MLPGenerator(8, (16,), 64, out="sigmoid")
    z0, z1 = torch.randn(8), torch.randn(8)
    box = latent_widget(gen, z0, z1, n=5)
    slider, html = box.children[0], box.children[-1]
    assert "karpa-latent" in box._dom_classes and "karpa-latent-readout" in html._dom_classes
    slider.value = 0.25
    expected = interpolation_frame(gen, z0, z1, 0.25)
    assert html.value == latent_readout_html(expected)
