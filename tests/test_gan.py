"""GAN losses, models and the training step (karpa_lab.models.gan); the 2D playground's state stepped by them
(karpa_lab.widgets.gan_playground)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from karpa_lab import fit
from karpa_lab.models.gan import (
    GAN,
    DCGANDiscriminator,
    DCGANGenerator,
    GANUpdate,
    MLPDiscriminator,
    MLPGenerator,
    conv_transpose2d,
    dcgan_digits,
    discriminator_loss,
    gan_optimizers,
    generator_loss,
    mlp_gan_2d,
    mlp_gan_digits,
)
from karpa_lab.widgets.gan_playground import configure, new_playground, play, readout


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ losses
@pytest.mark.parametrize("n_real,n_fake", [(1, 1), (7, 3), (64, 64)])
def test_losses_equal_the_formulas_in_probabilities(n_real, n_fake):
    g = torch.Generator().manual_seed(n_real)
    lr = 3 * torch.randn(n_real, generator=g, dtype=torch.float64)
    lf = 3 * torch.randn(n_fake, generator=g, dtype=torch.float64)
    d_real, d_fake = torch.sigmoid(lr), torch.sigmoid(lf)
    expected_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    torch.testing.assert_close(discriminator_loss(lr, lf), expected_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(generator_loss(lf, "saturating"), torch.log(1 - d_fake).mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(generator_loss(lf, "non_saturating"), -torch.log(d_fake).mean(), rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(generator_loss(lf), torch.nn.BCEWithLogitsLoss()(lf, torch.ones_like(lf)))


def test_losses_stay_finite_where_the_probability_formula_does_not():
    logits = torch.tensor([-200.0, 200.0])
    assert torch.isinf(torch.log(torch.sigmoid(logits))).any()  # the naive form breaks here
    for value in (discriminator_loss(logits, logits), generator_loss(logits, "saturating"), generator_loss(logits)):
        assert torch.isfinite(value)


def test_generator_loss_gradients_with_respect_to_the_logit():
    """dL/dl = -D / B for the saturating loss and -(1 - D) / B for the non-saturating one."""
    logits = torch.linspace(-6, 6, 9, dtype=torch.float64, requires_grad=True)
    d = torch.sigmoid(logits.detach())
    (g_sat,) = torch.autograd.grad(generator_loss(logits, "saturating"), logits)
    (g_ns,) = torch.autograd.grad(generator_loss(logits, "non_saturating"), logits)
    torch.testing.assert_close(g_sat, -d / 9)
    torch.testing.assert_close(g_ns, -(1 - d) / 9)


def test_loss_inputs_are_checked():
    with pytest.raises(ValueError, match=r"\(batch,\), got \(4, 1\)"):
        discriminator_loss(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="loss kind"):
        generator_loss(torch.zeros(3), "wasserstein")


# ------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("h,stride,padding,k", [(1, 1, 0, 4), (4, 2, 1, 4), (3, 3, 2, 5), (1, 2, 1, 4), (5, 1, 1, 3)])
def test_conv_transpose2d_from_scratch_equals_pytorch(h, stride, padding, k):
    g = torch.Generator().manual_seed(h * 10 + k)
    x = torch.randn(2, 3, h, h + 1, generator=g, dtype=torch.float64)
    w = torch.randn(3, 5, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(conv_transpose2d(x, w, b, stride, padding), F.conv_transpose2d(x, w, b, stride, padding))
    torch.testing.assert_close(conv_transpose2d(x[:1], w, None, stride, padding),
                               F.conv_transpose2d(x[:1], w, None, stride, padding))


@pytest.mark.parametrize("kernel", [(1, 1), (3, 5), (5, 3), (4, 4), (2, 3)])
@pytest.mark.parametrize("stride", [1, 2, (1, 3), (3, 2)])
@pytest.mark.parametrize("padding", [0, 1, (0, 2), (2, 1), (3, 3)])
def test_conv_transpose2d_any_kernel_stride_and_padding_equals_pytorch_forward_and_backward(kernel, stride, padding):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    s, p = (stride,) * 2 if isinstance(stride, int) else stride, (padding,) * 2 if isinstance(padding, int) else padding
    size = [(n - 1) * s[i] - 2 * p[i] + kernel[i] for i, n in enumerate((4, 5))]
    if min(size) < 1:
        with pytest.raises(ValueError, match="leaves no output"):
            conv_transpose2d(x, w, b, stride, padding)
        return
    mine = conv_transpose2d(x, w, b, stride, padding)
    ref = F.conv_transpose2d(x, w, b, stride, padding)
    assert mine.shape == ref.shape == (2, 2, *size)
    torch.testing.assert_close(mine, ref)
    upstream = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(mine, (x, w, b), upstream)
    for got, want in zip(grads, torch.autograd.grad(ref, (x, w, b), upstream)):
        torch.testing.assert_close(got, want)


def test_conv_transpose2d_checks_its_inputs():
    with pytest.raises(ValueError, match=r"x \(1, 2, 3, 3\) and weight \(3, 1, 4, 4\)"):
        conv_transpose2d(torch.zeros(1, 2, 3, 3), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="padding 4 leaves no output"):
        conv_transpose2d(torch.zeros(1, 3, 3, 3), torch.zeros(3, 1, 4, 4), padding=4)
    for bad in (dict(stride=0), dict(stride=(1, 2, 3)), dict(padding=-1), dict(padding=(1, 1.5)), dict(stride=True)):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=rf"{name} must be an int >= \d or a pair of them \(height, width\)"):
            conv_transpose2d(torch.zeros(1, 3, 3, 3), torch.zeros(3, 1, 4, 4), **bad)


@pytest.mark.parametrize("batch", [1, 5])
@torch.no_grad()
def test_model_shapes(batch):
    z2, z32 = torch.randn(batch, 2), torch.randn(batch, 32)
    gan = mlp_gan_2d()
    assert gan(z2).shape == (batch, 2) and gan.discriminator(gan(z2)).shape == (batch,)
    digits = mlp_gan_digits()
    x = digits(z32)
    assert x.shape == (batch, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert digits.discriminator(x.reshape(batch, 1, 8, 8)).shape == (batch,)
    for bn in (True, False):
        dc = dcgan_digits(batch_norm=bn).eval()
        img = dc(z32)
        assert img.shape == (batch, 1, 16, 16) and 0 <= float(img.min()) and float(img.max()) <= 1
        assert dc.discriminator(img).shape == (batch,)
        has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in dc.modules())
        assert has_bn == bn


def test_dcgan_generator_layers_match_conv_transpose_from_scratch():
    gen = DCGANGenerator(latent_dim=8, width=4, batch_norm=False)
    z = torch.randn(3, 8)
    h = z[:, :, None, None]
    convs = [m for m in gen.net if isinstance(m, torch.nn.ConvTranspose2d)]
    for i, conv in enumerate(convs):
        h = conv_transpose2d(h, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
        if i < len(convs) - 1:
            h = torch.relu(h)
    torch.testing.assert_close(torch.sigmoid(h), gen(z))


def test_model_inputs_are_checked():
    with pytest.raises(ValueError, match=r"\(batch, 2\), got \(4, 3\)"):
        MLPGenerator(2)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(batch, 64\), got \(4, 63\)"):
        MLPDiscriminator(64)(torch.zeros(4, 63))
    with pytest.raises(ValueError, match=r"\(batch, 32\), got \(4, 32, 1\)"):
        DCGANGenerator(32)(torch.zeros(4, 32, 1))
    with pytest.raises(ValueError, match=r"\(batch, 1, 16, 16\), got \(4, 1, 8, 8\)"):
        DCGANDiscriminator()(torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="out must be"):
        MLPGenerator(out="tanh")


# ------------------------------------------------------------------------------------------ training step
def test_gan_update_equals_a_hand_written_step():
    torch.manual_seed(0)
    gan = mlp_gan_2d(hidden=16)
    twin = mlp_gan_2d(hidden=16)
    twin.load_state_dict(gan.state_dict())
    real = torch.randn(8, 2)
    step = GANUpdate(*gan_optimizers(gan, 1e-2, 1e-2), noise=torch.Generator().manual_seed(1))
    out = step(gan, (real, torch.zeros(8)))
    assert set(out) == {"loss", "g_loss", "d_real", "d_fake"}

    opt_d, opt_g = gan_optimizers(twin, 1e-2, 1e-2)
    noise = torch.Generator().manual_seed(1)
    fake = twin.generator(torch.randn(8, 2, generator=noise)).detach()
    d_loss = -(F.logsigmoid(twin.discriminator(real)).mean() + F.logsigmoid(-twin.discriminator(fake)).mean())
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = -F.logsigmoid(twin.discriminator(twin.generator(torch.randn(8, 2, generator=noise)))).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    torch.testing.assert_close(out["loss"], d_loss.detach())
    torch.testing.assert_close(out["g_loss"], g_loss.detach())
    for a, b in zip(gan.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


def test_d_step_changes_only_d_and_g_step_only_g():
    torch.manual_seed(0)
    gan = mlp_gan_2d(hidden=8)
    step = GANUpdate(*gan_optimizers(gan, 1e-2, 1e-2))
    g0, d0 = _params(gan.generator), _params(gan.discriminator)
    step.d_step(gan, torch.randn(4, 2))
    assert _same(_params(gan.generator), g0) and not _same(_params(gan.discriminator), d0)
    d1 = _params(gan.discriminator)
    step.g_step(gan, 4)
    assert not _same(_params(gan.generator), g0) and _same(_params(gan.discriminator), d1)
    assert all(p.requires_grad for p in gan.discriminator.parameters())


def test_gan_update_settings_are_checked():
    gan = mlp_gan_2d(hidden=8)
    with pytest.raises(ValueError, match="loss must be"):
        GANUpdate(*gan_optimizers(gan), loss="hinge")
    with pytest.raises(ValueError, match="d_steps"):
        GANUpdate(*gan_optimizers(gan), d_steps=-1)


def test_fit_runs_the_gan_update_and_records_both_losses():
    torch.manual_seed(0)
    gan = GAN(MLPGenerator(4, (16,), 64, out="sigmoid"), MLPDiscriminator(64, (16,)))
    step = GANUpdate(*gan_optimizers(gan, 1e-3, 1e-3), d_steps=2)
    history = fit(gan, lambda: torch.rand(8, 1, 8, 8), steps=5, update_fn=step, device="cpu", progress=False,
                  log_every=100)
    assert len(history.train_loss) == 5 and len(history.extra["g_loss"]) == 5
    opt_d_steps = next(iter(step.opt_d.state.values()))["step"]
    assert int(opt_d_steps) == 10  # two D updates per step


# ------------------------------------------------------------------------------------------ playground state
def test_play_is_pure_and_deterministic():
    pg = new_playground("ring", seed=3, hidden=16, batch_size=32)
    before = _params(pg.gan)
    a, b = play(pg, "both", 4), play(pg, "both", 4)
    assert _same(_params(pg.gan), before) and pg.g_updates == 0
    assert _same(_params(a.gan), _params(b.gan)) and not _same(_params(a.gan), before)
    assert (a.d_updates, a.g_updates) == (4, 4)
    c = play(new_playground("ring", seed=4, hidden=16, batch_size=32), "both", 4)
    assert not _same(_params(a.gan), _params(c.gan))


def test_play_both_equals_fit_with_the_playground_update():
    pg = new_playground("grid", seed=1, hidden=16, batch_size=32, d_steps=2)
    stepped = play(pg, "both", 6)
    fit(pg.gan, pg.real_batch, steps=6, update_fn=pg.update, device="cpu", progress=False, log_every=100)
    for a, b in zip(stepped.gan.parameters(), pg.gan.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (pg.d_updates, pg.g_updates) == (12, 6)


def test_play_actions_and_configure():
    pg = new_playground("ring", seed=0, hidden=16, batch_size=16)
    d = play(pg, "d", 3)
    assert (d.d_updates, d.g_updates) == (3, 0) and _same(_params(d.gan.generator), _params(pg.gan.generator))
    g = play(d, "g", 2)
    assert (g.d_updates, g.g_updates) == (3, 2) and _same(_params(g.gan.discriminator), _params(d.gan.discriminator))
    c = configure(g, lr_d=5e-3, lr_g=2e-4, d_steps=3, loss="saturating")
    r = readout(c)
    assert (r["lr_d"], r["lr_g"], r["d_steps"], r["loss"]) == (5e-3, 2e-4, 3, "saturating")
    assert readout(g)["lr_d"] == 1e-3  # the original is untouched
    assert (play(c, "both", 1).d_updates, play(c, "both", 1).g_updates) == (6, 3)
    assert play(c, "both", 0).g_updates == 2


def test_readout_is_deterministic_and_counts_modes():
    pg = new_playground("ring", seed=0, hidden=16)
    r1, r2 = readout(pg), readout(pg)
    assert r1 == r2 and r1["of"] == 8 and 0 <= r1["modes"] <= 8
    assert 0 < r1["d_real"] < 1 and r1["d_loss"] > 0
    # put the generator's output exactly on the real evaluation points: every mode is covered
    pg.gan.generator = _Copy(pg.x_eval)
    assert readout(pg)["modes"] == 8
    assert abs(readout(pg)["quality"] - 0.989) < 0.01  # P(|x - centre| < 3 std) = 1 - exp(-4.5) in 2D


class _Copy(torch.nn.Module):
    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = x
        self.latent_dim = 2
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.x[: z.shape[0]] + 0 * self.w


def test_playground_inputs_are_checked():
    pg = new_playground("ring", hidden=8)
    with pytest.raises(ValueError, match="action"):
        play(pg, "jump")
    with pytest.raises(ValueError, match="n must be"):
        play(pg, "both", -1)
    with pytest.raises(ValueError, match="lr_d"):
        configure(pg, lr_d=0)
    with pytest.raises(ValueError, match="d_steps"):
        configure(pg, d_steps=0)
    with pytest.raises(ValueError, match="data must be"):
        new_playground("spiral")
