r"""Generative adversarial networks: the models, the losses written on logits, one training step.

The game (Goodfellow et al. 2014): a generator G maps noise z (B, k) to samples G(z) (B, ...), a
discriminator D maps a sample to the probability that it is real, D(x) = sigmoid(l(x)) with the logit
l(x) (B,). With p_data the data and p_g the distribution of G(z),

    min_G max_D  V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))]

For a fixed G the best discriminator is D*(x) = p_data(x) / (p_data(x) + p_g(x)) and then
V(D*, G) = 2 JS(p_data || p_g) - log 4, minimal (-log 4) exactly when p_g = p_data.

The losses are computed from logits with ``binary_cross_entropy_with_logits`` (BCE), which evaluates
log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l) without ever forming a
probability that rounds to 0 or 1:

    discriminator       L_D = BCE(l_real, 1) + BCE(l_fake, 0) = -E[log D(x)] - E[log(1 - D(G(z)))]
    G, saturating       L_G = E[log(1 - D(G(z)))]  = -BCE(l_fake, 0)   (the minimax loss itself)
    G, non-saturating   L_G = -E[log D(G(z))]      =  BCE(l_fake, 1)   (same fixed point, strong early gradient)

Models: :class:`MLPGenerator` / :class:`MLPDiscriminator` (2D playground, flattened 8x8 digits) and
:class:`DCGANGenerator` / :class:`DCGANDiscriminator` (16x16 digits, Radford et al. 2016), held together
by :class:`GAN` so that ``karpa_lab.fit(gan, data, update_fn=GANUpdate(...))`` trains both.
:func:`conv_transpose2d` is the DCGAN's upsampling layer from scratch (same numbers as PyTorch's).

The 2D playground of lesson 06 (its state, stepped by ``play``) lives beside its widget, in
:mod:`karpa_lab.widgets.gan_playground`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("non_saturating", "saturating")


# --------------------------------------------------------------------------------------------- losses
def _check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.dim() != 1:
        raise ValueError(f"{name}: logits must be (batch,), got {tuple(logits.shape)}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))] from logits (B_real,) and (B_fake,), i.e. -V(D, G)."""
    _check_logits("discriminator_loss", real_logits)
    _check_logits("discriminator_loss", fake_logits)
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss from the discriminator's logits on fakes (B,).

    ``"saturating"``: E[log(1 - D(G(z)))] (the minimax objective; its gradient dies when D rejects fakes).
    ``"non_saturating"``: -E[log D(G(z))] (the heuristic of the original paper; used in practice).
    """
    _check_logits("generator_loss", fake_logits)
    if kind == "saturating":
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if kind == "non_saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    raise ValueError(f"loss kind must be one of {LOSSES}, got {kind!r}")


# --------------------------------------------------------------------------------------------- models
def _pair(name: str, value: int | tuple[int, int], least: int) -> tuple[int, int]:
    """``value`` as (height, width): an int is used for both; each must be an int >= ``least``."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in pair):
        raise ValueError(f"conv_transpose2d: {name} must be an int >= {least} or a pair of them "
                         f"(height, width), got {value!r}")
    return pair


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0) -> torch.Tensor:
    """A transposed convolution from scratch: an ordinary convolution of an input spread out with zeros.

    x (B, C_in, H, W), weight (C_in, C_out, k_h, k_w) in ``nn.ConvTranspose2d``'s layout; ``stride`` and
    ``padding`` an int or a pair (height, width). Along each axis: put stride - 1 zeros between
    neighbouring pixels ((H - 1) * stride + 1 wide), pad k - 1 - padding zeros on both sides (a
    negative amount crops), and convolve (stride 1) with the kernel flipped in space and its two channel
    axes swapped. Output (B, C_out, (H - 1) * s_h - 2 * p_h + k_h, (W - 1) * s_w - 2 * p_w + k_w): the
    same numbers as ``F.conv_transpose2d`` (without its ``output_padding``, ``groups`` and ``dilation``).
    """
    if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"conv_transpose2d: need x (B, C_in, H, W) and weight (C_in, C_out, k_h, k_w) with the "
                         f"same C_in, got x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    (s_h, s_w), (p_h, p_w) = _pair("stride", stride, 1), _pair("padding", padding, 0)
    b, c, h, w = x.shape
    k_h, k_w = weight.shape[2:]
    out_h, out_w = (h - 1) * s_h - 2 * p_h + k_h, (w - 1) * s_w - 2 * p_w + k_w
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv_transpose2d: padding {padding} leaves no output: (H - 1) * stride - 2 * padding + k "
                         f"= {out_h} x {out_w} for H x W = {h} x {w}, stride {stride}, kernel {k_h} x {k_w}")
    spread = x.new_zeros(b, c, (h - 1) * s_h + 1, (w - 1) * s_w + 1)
    spread[:, :, ::s_h, ::s_w] = x
    spread = F.pad(spread, (k_w - 1 - p_w, k_w - 1 - p_w, k_h - 1 - p_h, k_h - 1 - p_h))  # (left, right, top, bottom)
    return F.conv2d(spread, weight.flip(2, 3).transpose(0, 1), bias)


def _mlp(sizes: Sequence[int], act: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act)
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (B, latent_dim) -> x (B, out_dim) through ReLU hidden layers; ``out="sigmoid"`` for pixels in [0, 1]."""

    def __init__(self, latent_dim: int = 2, hidden: Sequence[int] = (128, 128), out_dim: int = 2,
                 out: str = "linear"):
        super().__init__()
        if out not in ("linear", "sigmoid"):
            raise ValueError(f"out must be 'linear' or 'sigmoid', got {out!r}")
        self.latent_dim, self.out_dim, self.out = latent_dim, out_dim, out
        self.net = _mlp([latent_dim, *hidden, out_dim], nn.ReLU())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"MLPGenerator: z must be (batch, {self.latent_dim}), got {tuple(z.shape)}")
        x = self.net(z)
        return torch.sigmoid(x) if self.out == "sigmoid" else x


class MLPDiscriminator(nn.Module):
    """x (B, in_dim), or images (B, 1, H, W) with H*W = in_dim, -> logits (B,), LeakyReLU(0.2) hidden layers."""

    def __init__(self, in_dim: int = 2, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.in_dim = in_dim
        self.net = _mlp([in_dim, *hidden, 1], nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1) if x.dim() > 2 else x
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLPDiscriminator: input must be (batch, {self.in_dim}), got {tuple(x.shape)}")
        return self.net(x).squeeze(1)


class DCGANGenerator(nn.Module):
    """The DCGAN generator for 16x16 images: transposed convolutions double the size, batch norm + ReLU between.

        z (B, k) -> (B, k, 1, 1)
        ConvTranspose(k -> 4w, kernel 4, stride 1, pad 0)   (B, 4w, 4, 4)    BN, ReLU
        ConvTranspose(4w -> 2w, kernel 4, stride 2, pad 1)  (B, 2w, 8, 8)    BN, ReLU
        ConvTranspose(2w -> 1, kernel 4, stride 2, pad 1)   (B, 1, 16, 16)   sigmoid: pixels in [0, 1]

    Output size of a transposed convolution: (in - 1) * stride - 2 * pad + kernel, so 1 -> 4 -> 8 -> 16.
    """

    def __init__(self, latent_dim: int = 32, width: int = 32, batch_norm: bool = True):
        super().__init__()
        self.latent_dim, self.width, self.batch_norm = latent_dim, width, batch_norm
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 4 * width, 4, 1, 0, bias=not batch_norm), norm(4 * width), nn.ReLU(),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=not batch_norm), norm(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, 1, 4, 2, 1),
        )
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"DCGANGenerator: z must be (batch, {self.latent_dim}), got {tuple(z.shape)}")
        return torch.sigmoid(self.net(z[:, :, None, None]))


class DCGANDiscriminator(nn.Module):
    """The DCGAN discriminator for 16x16 images: strided convolutions halve the size, LeakyReLU(0.2).

        x (B, 1, 16, 16)
        Conv(1 -> w, kernel 4, stride 2, pad 1)     (B, w, 8, 8)     LeakyReLU (no BN on the input layer)
        Conv(w -> 2w, kernel 4, stride 2, pad 1)    (B, 2w, 4, 4)    BN, LeakyReLU
        Conv(2w -> 1, kernel 4, stride 1, pad 0)    (B, 1, 1, 1)     -> logits (B,)
    """

    def __init__(self, width: int = 32, batch_norm: bool = True):
        super().__init__()
        self.width, self.batch_norm = width, batch_norm
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=not batch_norm),
            nn.BatchNorm2d(2 * width) if batch_norm else nn.Identity(), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 4, 1, 0),
        )
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 16, 16):
            raise ValueError(f"DCGANDiscriminator: input must be (batch, 1, 16, 16), got {tuple(x.shape)}")
        return self.net(x).flatten()


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights ~ N(0, 0.02), batch-norm scale ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class GAN(nn.Module):
    """A generator and a discriminator in one module, so ``fit`` can move, checkpoint and train both.

    ``gan.sample(n)`` draws z ~ N(0, I) (n, latent_dim) and returns G(z) without gradients.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim: int = generator.latent_dim

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generator(self.noise(n, generator))


def mlp_gan_2d(hidden: int = 128, depth: int = 2, latent_dim: int = 2) -> GAN:
    """The playground's GAN: G 2-128-128-2 (latent 2) and D 2-128-128-1."""
    return GAN(MLPGenerator(latent_dim, (hidden,) * depth, 2), MLPDiscriminator(2, (hidden,) * depth))


def mlp_gan_digits(latent_dim: int = 32, hidden: int = 256) -> GAN:
    """The 8x8-digits MLP-GAN: G 32-256-256-64 (sigmoid pixels) and D 64-256-256-1."""
    return GAN(MLPGenerator(latent_dim, (hidden, hidden), 64, out="sigmoid"), MLPDiscriminator(64, (hidden, hidden)))


def dcgan_digits(latent_dim: int = 32, width: int = 32, batch_norm: bool = True) -> GAN:
    """The 16x16-digits DCGAN (see :class:`DCGANGenerator`, :class:`DCGANDiscriminator`)."""
    return GAN(DCGANGenerator(latent_dim, width, batch_norm), DCGANDiscriminator(width, batch_norm))


# --------------------------------------------------------------------------------------------- training
@dataclass
class GANUpdate:
    """One GAN training step for ``fit(gan, data, update_fn=GANUpdate(opt_d, opt_g))``.

    Per call: ``d_steps`` discriminator updates (each on the same real batch with fresh noise, the
    fakes detached so that only D learns), then one generator update with ``loss`` ("non_saturating"
    or "saturating"; D's weights frozen meanwhile). Returns ``{"loss": L_D, "g_loss": L_G,
    "d_real": mean D(x), "d_fake": mean D(G(z))}``; ``fit`` logs ``loss`` and keeps the rest in
    ``history.extra``. ``noise`` optionally draws z from its own ``torch.Generator``.
    """

    opt_d: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    loss: str = "non_saturating"
    d_steps: int = 1
    noise: torch.Generator | None = None

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.d_steps < 0:
            raise ValueError(f"d_steps must be >= 0, got {self.d_steps}")

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers (and the noise generator): what ``fit(checkpoint=...)`` saves for a resume."""
        return {"opt_d": self.opt_d.state_dict(), "opt_g": self.opt_g.state_dict(),
                "noise": self.noise.get_state() if self.noise is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.noise is not None and state["noise"] is not None:
            self.noise.set_state(state["noise"])

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """L_D from D's outputs on a real and a fake batch (a subclass overrides it for another GAN loss)."""
        return discriminator_loss(real_out, fake_out)

    def g_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        """L_G from D's outputs on fakes (a subclass overrides it for another GAN loss)."""
        return generator_loss(fake_out, self.loss)

    def d_readout(self, out: torch.Tensor) -> torch.Tensor:
        """What D's output says about each sample: here sigma(logit), its probability of being real."""
        return torch.sigmoid(out)

    def d_step(self, gan: GAN, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update: minimise L_D on ``real`` and a fresh batch of fakes of the same size."""
        with torch.no_grad():
            fake = gan.generator(gan.noise(real.shape[0], self.noise))
        real_out, fake_out = gan.discriminator(real), gan.discriminator(fake)
        loss = self.d_loss(real_out, fake_out)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss": loss.detach(), "d_real": self.d_readout(real_out.detach()).mean(),
                "d_fake": self.d_readout(fake_out.detach()).mean()}

    def g_step(self, gan: GAN, n: int) -> dict[str, torch.Tensor]:
        """One generator update on ``n`` fresh fakes; gradients flow through D but D is not changed."""
        gan.discriminator.requires_grad_(False)
        try:
            loss = self.g_loss(gan.discriminator(gan.generator(gan.noise(n, self.noise))))
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            gan.discriminator.requires_grad_(True)
        return {"g_loss": loss.detach()}

    def __call__(self, gan: GAN, batch: Any) -> dict[str, torch.Tensor]:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        out: dict[str, torch.Tensor] = {}
        for _ in range(self.d_steps):
            out = self.d_step(gan, real)
        out.update(self.g_step(gan, real.shape[0]))
        if "loss" not in out:  # d_steps == 0: log L_D without training D
            with torch.no_grad():
                fake = gan.generator(gan.noise(real.shape[0], self.noise))
                out["loss"] = discriminator_loss(gan.discriminator(real), gan.discriminator(fake))
        return {"loss": out.pop("loss"), **out}


def gan_optimizers(gan: GAN, lr_d: float = 2e-4, lr_g: float = 2e-4,
                   betas: tuple[float, float] = (0.5, 0.999)) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for D and for G with the DCGAN paper's betas (0.5, 0.999): a shorter momentum memory suits a game."""
    return (torch.optim.Adam(gan.discriminator.parameters(), lr=lr_d, betas=betas),
            torch.optim.Adam(gan.generator.parameters(), lr=lr_g, betas=betas))
