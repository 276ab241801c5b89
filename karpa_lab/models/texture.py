r"""Neural texture synthesis and style transfer on a network of random filters (no pretrained weights).

**Gram matrix** (Gatys, Ecker & Bethge 2015). Feature maps F (B, C, H, W), read as C rows of M = H W positions:

    G[b, i, j] = (1 / M) sum_m F[b, i, m] F[b, j, m]            G: (B, C, C)

the average over positions of the outer product of the feature vector with itself. Where a pattern sits is
summed away; which features fire *together* is kept: that is what a texture is made of.

**Texture loss** between an image x and a target texture t, over the scales s of the network:

    L_tex(x, t) = sum_s ||G_s(x) - G_s(t)||_F^2 / ||G_s(t)||_F^2

Gatys et al. weight layer l by w_l / (4 N_l^2 M_l^2) on un-normalised Grams; dividing each scale by its
target's size instead makes every scale count alike and the loss a relative error (noise starts near 1).
For one image, with D = G - A and A symmetric, the gradient is dL/dF = 4 D F / (M ||A||_F^2), and it flows
back through the ReLU and the convolution to the pixels (:func:`gram_loss_gradient`).

**Content loss** of a photo p: L_content(x, p) = sum_s ||F_s(x) - F_s(p)||^2 / ||F_s(p)||^2: where things are.
**Style transfer** (:class:`StyleTransferLoss`) minimises alpha L_content(x, p) + (1 - alpha) L_tex(x, t).

**The network** (Ustyuzhaninov, Brendel, Gatys & Bethge 2016, "Texture synthesis using shallow convolutional
networks with random filters"): one convolution layer of random filters of several sizes and a ReLU. Those
authors found it synthesises natural textures about as well as a trained VGG, so the course needs no weights.
If you have VGG-19's trained weights as a file, :mod:`karpa_lab.models.vgg` loads them (checked by SHA-256,
never downloaded) into a network that every function here takes in place of this one.

**Synthesis** optimises the pixels: :func:`synthesize` hands a module whose only parameter is the image to
``karpa_lab.fit`` (the one optimisation loop), with the loss as its ``step_fn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.history import History
from karpa_lab.train import fit


def _check_maps(features: torch.Tensor, name: str = "features") -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"{name} must be feature maps (B, C, H, W), got {shape}; add a batch axis with x[None]")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F F^T / M for feature maps (B, C, H, W) read as F (B, C, M = H W): returns (B, C, C)."""
    _check_maps(features)
    flat = features.flatten(2)  # (B, C, M)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def gram_loss_gradient(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """dL/dF of L = ||G(F) - A||_F^2 / ||A||_F^2 by hand: 4 (G - A) F / (M ||A||_F^2), per image, (B, C, H, W)."""
    _check_maps(features)
    if target_gram.shape != (features.shape[0], features.shape[1], features.shape[1]):
        raise ValueError(f"target_gram must be (B, C, C) = {(features.shape[0], features.shape[1], features.shape[1])}"
                         f" for features {tuple(features.shape)}, got {tuple(target_gram.shape)}")
    flat = features.flatten(2)
    diff = gram_matrix(features) - target_gram
    norm = target_gram.pow(2).sum(dim=(1, 2), keepdim=True)
    return (4 * diff @ flat / (flat.shape[2] * norm)).view_as(features)


class RandomFilterNet(nn.Module):
    """One layer of random filters at several sizes, each followed by a ReLU; nothing in it is trained.

    ``forward(x)`` takes images (B, channels, H, W) with values in [0, 1] and returns one feature map per
    size: ``relu(conv2d(x - 0.5, w_k))`` of shape (B, filters, H - k + 1, W - k + 1) (no padding, so every
    feature sees real pixels only). Each filter is Gaussian noise scaled to unit norm, drawn from ``seed``:
    two seeds give two different networks (one to optimise, one to judge with).
    """

    def __init__(self, channels: int = 1, sizes: Sequence[int] = (3, 5, 7, 11, 15), filters: int = 32,
                 seed: int = 0):
        super().__init__()
        if channels < 1 or filters < 1 or not sizes or min(sizes) < 1:
            raise ValueError(f"need channels >= 1, filters >= 1 and sizes >= 1, got channels={channels}, "
                             f"filters={filters}, sizes={tuple(sizes)}")
        self.channels, self.sizes = channels, tuple(int(k) for k in sizes)
        generator = torch.Generator().manual_seed(seed)
        for k in self.sizes:
            w = torch.randn(filters, channels, k, k, generator=generator)
            self.register_buffer(f"w{k}", w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_maps(x, "x")
        if x.shape[1] != self.channels or min(x.shape[2:]) < max(self.sizes):
            raise ValueError(f"this network takes (B, {self.channels}, H, W) with H, W >= {max(self.sizes)} (its "
                             f"largest filter), got {tuple(x.shape)}")
        return [F.relu(F.conv2d(x - 0.5, getattr(self, f"w{k}"))) for k in self.sizes]


def grams(net: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """The texture statistics of ``image`` (B, C, H, W): one Gram matrix (B, filters, filters) per scale."""
    return [gram_matrix(f) for f in net(image)]


def _relative_error(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor], what: str) -> torch.Tensor:
    """sum_s ||got_s - want_s||^2 / ||want_s||^2 for each image: (B,)."""
    if len(got) != len(want) or any(g.shape[1:] != w.shape[1:] for g, w in zip(got, want)):
        raise ValueError(f"{what}: the two lists must come from the same network (one entry per scale, same "
                         f"shapes), got {[tuple(g.shape) for g in got]} and {[tuple(w.shape) for w in want]}")
    terms = [(g - w).pow(2).flatten(1).sum(1) / w.pow(2).flatten(1).sum(1).clamp_min(1e-12) for g, w in zip(got, want)]
    return torch.stack(terms).sum(0)


def texture_loss(grams_x: Sequence[torch.Tensor], grams_t: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_s ||G_s(x) - G_s(t)||_F^2 / ||G_s(t)||_F^2, averaged over the batch (a scalar)."""
    return _relative_error(grams_x, grams_t, "texture_loss").mean()


def content_loss(features_x: Sequence[torch.Tensor], features_p: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_s ||F_s(x) - F_s(p)||^2 / ||F_s(p)||^2 over the given scales, averaged over the batch (a scalar)."""
    return _relative_error(features_x, features_p, "content_loss").mean()


class StyleTransferLoss:
    """alpha * L_content(x, photo) + (1 - alpha) * L_tex(x, texture), one alpha per image of the batch.

    Content is matched on the scales ``content_scales`` (indices into ``net``'s list: the small filters keep
    where the edges are), style on every scale's Gram matrix. Both losses are relative errors, so alpha in
    [0, 1] trades them on one scale. The targets are computed once, here.
    """

    def __init__(self, net: nn.Module, photo: torch.Tensor, texture: torch.Tensor, alpha: Sequence[float],
                 content_scales: Sequence[int] = (0,)):
        self.alpha = torch.as_tensor(alpha, dtype=torch.float32)
        if self.alpha.dim() != 1 or not bool(((self.alpha >= 0) & (self.alpha <= 1)).all()):
            raise ValueError(f"alpha must be a list of weights in [0, 1], one per image, got {alpha!r}")
        self.net, self.scales = net, tuple(content_scales)
        with torch.no_grad():
            self.content = [f.expand(len(self.alpha), -1, -1, -1) for f in self._pick(net(photo))]
            self.style = [g.expand(len(self.alpha), -1, -1) for g in grams(net, texture)]

    def _pick(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [features[s] for s in self.scales]

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The content and style losses of each image of ``x`` (B, C, H, W): two (B,) tensors."""
        if x.shape[0] != len(self.alpha):
            raise ValueError(f"x has {x.shape[0]} images but alpha has {len(self.alpha)} weights: one each")
        features = self.net(x)
        content = _relative_error(self._pick(features), self.content, "content")
        return content, _relative_error([gram_matrix(f) for f in features], self.style, "style")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        content, style = self.parts(x)
        alpha = self.alpha.to(x.device)
        return (alpha * content + (1 - alpha) * style).mean()


def texture_distance(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """How far ``x``'s texture statistics are from ``target``'s under ``net``: the texture loss, as a number."""
    with torch.no_grad():
        return float(texture_loss(grams(net, x), grams(net, target)))


class Pixels(nn.Module):
    """A module whose only parameter is an image: ``forward()`` returns it, so ``fit`` can optimise pixels."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        _check_maps(init, "init")
        self.image = nn.Parameter(init.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.image


def synthesize(loss_fn: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor, steps: int,
               lr: float = 0.02, device: torch.device | str | None = None,
               verbose: bool = False) -> tuple[torch.Tensor, History]:
    """Minimise ``loss_fn(image)`` over the pixels, starting from ``init`` (B, C, H, W), with Adam through ``fit``.

    This is not training a model: the "model" is the image. ``fit`` still gives the loop, the loss history, the
    NaN check and Ctrl-C. Float32 throughout (``amp=False``): a Gram matrix in bfloat16 loses the small
    differences the optimisation is chasing. Returns the image clamped to [0, 1] (on the CPU) and the history.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    pixels = Pixels(init)
    optimizer = torch.optim.Adam(pixels.parameters(), lr=lr)
    history = fit(pixels, lambda: None, steps=steps, optimizer=optimizer, step_fn=lambda model, _: loss_fn(model()),
                  device=device, amp=False, verbose=verbose)
    return pixels.image.detach().clamp(0, 1).cpu(), history


def spectrum_match(image: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The power-spectrum control: ``image`` (B, C, H, W) with its Fourier phases randomised.

    Keeps |FFT(x)| (so the power spectrum and the autocorrelation, every second-order statistic of the pixels)
    and replaces each phase by that of white noise (whose FFT is Hermitian, so the result is real). The mean
    is kept. Clamped to [0, 1] like a synthesised image.
    """
    _check_maps(image, "image")
    generator = torch.Generator().manual_seed(seed)
    spectrum = torch.fft.fft2(image.double())
    phase = torch.angle(torch.fft.fft2(torch.randn(image.shape, generator=generator, dtype=torch.float64)))
    phase[..., 0, 0] = 0.0
    shuffled = torch.fft.ifft2(spectrum.abs() * torch.exp(1j * phase)).real
    return shuffled.to(image.dtype).clamp(0, 1)
