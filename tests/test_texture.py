"""Gram matrices, the texture and content losses, the random-filter network, pixel synthesis and the spectrum
control of karpa_lab.models.texture, against loop and einsum references and autograd."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.models.texture import (
    RandomFilterNet,
    StyleTransferLoss,
    content_loss,
    gram_loss_gradient,
    gram_matrix,
    grams,
    spectrum_match,
    synthesize,
    texture_distance,
    texture_loss,
)


def gram_loops(features: torch.Tensor) -> torch.Tensor:
    b, c, h, w = features.shape
    out = torch.zeros(b, c, c, dtype=features.dtype)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                out[n, i, j] = sum(features[n, i, y, x] * features[n, j, y, x] for y in range(h) for x in range(w))
    return out / (h * w)


def test_gram_matrix_equals_loops_and_einsum():
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    got = gram_matrix(features)
    assert got.shape == (2, 3, 3)
    assert torch.allclose(got, gram_loops(features), atol=1e-12)
    assert torch.allclose(got, torch.einsum("bihw,bjhw->bij", features, features) / 20, atol=1e-12)
    assert torch.allclose(got, got.transpose(1, 2))


def test_gram_matrix_gradient_matches_autograd_and_gradcheck():
    features = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    target = gram_matrix(torch.randn(2, 4, 3, 3, dtype=torch.float64)).detach()
    assert torch.autograd.gradcheck(gram_matrix, (features,))
    loss = sum(((gram_matrix(features)[n] - target[n]).pow(2).sum() / target[n].pow(2).sum()) for n in range(2))
    loss.backward()
    assert torch.allclose(gram_loss_gradient(features.detach(), target), features.grad, atol=1e-12)


def test_gram_loss_gradient_rejects_a_mismatched_target():
    with pytest.raises(ValueError, match=r"target_gram must be \(B, C, C\)"):
        gram_loss_gradient(torch.randn(1, 4, 3, 3), torch.randn(1, 3, 3))


@pytest.mark.parametrize("bad", [torch.randn(3, 4, 5), torch.randn(4, 5), [1.0, 2.0]])
def test_gram_matrix_says_what_shape_it_needs(bad):
    with pytest.raises(ValueError, match=r"feature maps \(B, C, H, W\)"):
        gram_matrix(bad)


def test_random_filter_net_shapes_seeds_and_no_parameters():
    net = RandomFilterNet(channels=1, sizes=(3, 7), filters=5, seed=0)
    maps = net(torch.rand(2, 1, 16, 16))
    assert [tuple(m.shape) for m in maps] == [(2, 5, 14, 14), (2, 5, 10, 10)]
    assert all(bool((m >= 0).all()) for m in maps)
    assert list(net.parameters()) == []
    assert torch.allclose(net.w7.flatten(1).norm(dim=1), torch.ones(5))
    assert torch.equal(net.w3, RandomFilterNet(sizes=(3, 7), filters=5, seed=0).w3)
    assert not torch.equal(net.w3, RandomFilterNet(sizes=(3, 7), filters=5, seed=1).w3)
    assert [tuple(g.shape) for g in grams(net, torch.rand(2, 1, 16, 16))] == [(2, 5, 5), (2, 5, 5)]


def test_random_filter_net_rejects_bad_input_and_settings():
    net = RandomFilterNet(channels=1, sizes=(3, 15), filters=4)
    with pytest.raises(ValueError, match=r"takes \(B, 1, H, W\) with H, W >= 15"):
        net(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="H, W >= 15"):
        net(torch.rand(1, 1, 10, 32))
    with pytest.raises(ValueError, match="add a batch axis"):
        net(torch.rand(1, 32, 32))
    with pytest.raises(ValueError, match="filters >= 1"):
        RandomFilterNet(filters=0)


def test_texture_and_content_losses_are_relative_errors():
    net = RandomFilterNet(sizes=(3, 5), filters=4)
    x, t = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    gx, gt = grams(net, x), grams(net, t)
    want = sum(((a - b).pow(2).sum() / b.pow(2).sum()) for a, b in zip(gx, gt))
    assert torch.allclose(texture_loss(gx, gt), want)
    assert float(texture_loss(gt, gt)) == 0.0
    assert texture_distance(net, t, t) == 0.0
    fx, ft = net(x), net(t)
    assert torch.allclose(content_loss(fx, ft), sum(((a - b).pow(2).sum() / b.pow(2).sum()) for a, b in zip(fx, ft)))
    with pytest.raises(ValueError, match="same network"):
        texture_loss(gx, gt[:1])


def test_synthesize_lowers_the_texture_loss_through_fit():
    net = RandomFilterNet(sizes=(3, 5), filters=8)
    target = grams(net, torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(1)) ** 3)
    loss_fn = lambda image: texture_loss(grams(net, image), target)
    init = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(2))
    image, history = synthesize(loss_fn, init, steps=60, lr=0.02, device="cpu")
    assert image.shape == init.shape and float(image.min()) >= 0 and float(image.max()) <= 1
    assert len(history.train_loss) == 60
    assert history.train_loss[-1] < 0.2 * history.train_loss[0]
    with pytest.raises(ValueError, match="steps must be >= 1"):
        synthesize(loss_fn, init, steps=0)


def test_spectrum_match_keeps_the_power_spectrum_and_scrambles_the_image():
    image = 0.5 + 0.05 * torch.randn(1, 1, 16, 18, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    control = spectrum_match(image, seed=3)
    assert control.shape == image.shape and control.dtype == image.dtype
    assert torch.allclose(torch.fft.fft2(control).abs(), torch.fft.fft2(image).abs(), atol=1e-9)
    assert torch.allclose(control.mean(), image.mean())
    assert float((control - image).abs().mean()) > 0.01
    assert torch.equal(spectrum_match(image, seed=3), control)


def test_style_transfer_loss_weights_content_and_style_per_image():
    net = RandomFilterNet(sizes=(3, 5), filters=4)
    photo, texture = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16) ** 2
    loss = StyleTransferLoss(net, photo, texture, alpha=[0.0, 0.5, 1.0], content_scales=(0, 1))
    x = torch.rand(3, 1, 16, 16)
    content, style = loss.parts(x)
    assert content.shape == style.shape == (3,)
    assert torch.allclose(content[0], content_loss(net(x[:1]), net(photo)))
    assert torch.allclose(style[2], texture_loss(grams(net, x[2:]), grams(net, texture)))
    want = (0.5 * content[1] + 0.5 * style[1] + style[0] + content[2]) / 3
    assert torch.allclose(loss(x), want)
    assert float(loss.parts(photo.expand(3, -1, -1, -1))[0].max()) == 0.0
    with pytest.raises(ValueError, match="one each"):
        loss(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"weights in \[0, 1\]"):
        StyleTransferLoss(net, photo, texture, alpha=[1.5])
