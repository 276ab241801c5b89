"""VGG-19's features of karpa_lab.models.vgg: torchvision's layout and keys, the taps Gatys et al. use, and the
loader's checks (checksum, missing file, keys, shapes), on a file of random weights with the right keys."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.models.texture import grams, synthesize, texture_loss
from karpa_lab.models.vgg import (
    GATYS_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_SHA256_PREFIX,
    VGG19_ENV,
    VGG19Features,
    load_vgg19,
    vgg19_layer_names,
    vgg19_weights_path,
)

# torchvision's vgg19 has 143,667,240 parameters; its classifier (25088->4096->4096->1000) 123,642,856 of them.
TORCHVISION_FEATURE_PARAMETERS = 143_667_240 - (25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's keys and shapes, He-scaled random weights (activations stay O(1) down to relu5_1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in VGG19Features().state_dict().items():
        if key.endswith("weight"):
            state[key] = torch.randn(value.shape, generator=generator) * (2 / value[0].numel()) ** 0.5
        else:
            state[key] = 0.01 * torch.randn(value.shape, generator=generator)
    return state


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A saved file like torchvision's: the features with random weights and a (small) classifier entry."""
    state = random_state_dict()
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({**state, "classifier.6.bias": torch.zeros(1000)}, path)
    return path, digest(path), state


def save(state, tmp_path, name="edited.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path, digest(path)


def test_layout_is_vgg19s_features_in_torchvisions_numbering():
    model = VGG19Features()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(model.features) == 37 and len(convs) == 16
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert pools == [4, 9, 18, 27, 36]
    names = vgg19_layer_names()
    assert [names.index(name) for name in GATYS_LAYERS] == [1, 6, 11, 20, 29] == model.taps
    assert all(isinstance(model.features[i], nn.ReLU) for i in model.taps)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_FEATURE_PARAMETERS
    assert list(model.state_dict())[:2] == ["features.0.weight", "features.0.bias"]
    assert len(model.state_dict()) == 32  # 16 weights and 16 biases, nothing else (mean, std not saved)


def test_loads_a_file_with_torchvisions_keys_and_gives_the_five_feature_maps(weights):
    path, sha256, state = weights
    model = load_vgg19(path, sha256=sha256)
    assert torch.equal(model.features[34].weight, state["features.34.weight"])
    assert all(not p.requires_grad for p in model.parameters())
    maps = model(torch.rand(2, 1, 32, 32))
    assert [tuple(f.shape) for f in maps] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4),
                                              (2, 512, 2, 2)]
    assert all(bool((f >= 0).all()) and float(f.abs().max()) > 0 for f in maps)
    assert [tuple(g.shape) for g in grams(model, torch.rand(1, 3, 16, 16))][-1] == (1, 512, 512)


def test_features_are_the_normalised_image_through_torchvisions_modules(weights):
    path, sha256, state = weights
    model = load_vgg19(path, sha256=sha256)
    grey = torch.rand(1, 1, 20, 24, generator=torch.Generator().manual_seed(3))
    rgb = grey.repeat(1, 3, 1, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    relu1_1 = F.relu(F.conv2d((rgb - mean) / std, state["features.0.weight"], state["features.0.bias"], padding=1))
    maps = model(grey)
    assert torch.allclose(maps[0], relu1_1, atol=1e-5)
    for got, index in zip(maps, model.taps):
        assert torch.allclose(got, model.features[:index + 1]((rgb - mean) / std), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(maps, model(rgb)))
    only = VGG19Features(layers=("relu4_2", "relu1_2"))
    assert only.taps == [22, 3] and [f.shape[1] for f in only(rgb)] == [512, 64]


def test_texture_loss_takes_the_features_and_its_gradient_reaches_the_pixels(weights):
    path, sha256, _ = weights
    model = load_vgg19(path, sha256=sha256)
    target = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1)) ** 3
    image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2)).requires_grad_()
    loss = texture_loss(grams(model, image), grams(model, target))
    loss.backward()
    assert float(loss.detach()) > 0 and image.grad is not None and bool(torch.isfinite(image.grad).all())
    assert float(image.grad.abs().sum()) > 0
    assert all(p.grad is None for p in model.parameters())
    goal = grams(model, target)
    _, history = synthesize(lambda x: texture_loss(grams(model, x), goal), image.detach(), steps=15, lr=0.03,
                            device="cpu")
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]  # 0.12 measured


def test_the_default_checksum_is_torchvisions_and_a_changed_byte_is_refused(weights, tmp_path):
    path, sha256, _ = weights
    with pytest.raises(ValueError, match=f"has SHA-256 {sha256}, but torchvision's .* starts with "
                                         f"{TORCHVISION_SHA256_PREFIX}"):
        load_vgg19(path)
    changed = shutil.copy(path, tmp_path / "changed.pth")
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"has SHA-256 {digest(changed)}, but the digest you gave starts with "
                                         f"{sha256}: the file is damaged"):
        load_vgg19(changed, sha256=sha256)
    assert load_vgg19(path, sha256=sha256[:12].upper()).taps == [1, 6, 11, 20, 29]
    with pytest.raises(ValueError, match="sha256 must be a SHA-256 digest in hex"):
        load_vgg19(path, sha256="dcbb")


def test_a_missing_file_says_where_to_get_the_weights_and_how_to_point_at_them(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=rf"no VGG-19 weights file at .*nowhere.pth.*never downloads.*"
                                                rf"download.pytorch.org/models/vgg19-dcbb9e9d.pth.*{VGG19_ENV}="):
        load_vgg19(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError, match="no VGG-19 weights file at"):
        load_vgg19(tmp_path)  # a folder is not the file
    monkeypatch.delenv(VGG19_ENV, raising=False)
    assert vgg19_weights_path() is None
    with pytest.raises(FileNotFoundError, match=f"pass a path or set {VGG19_ENV}"):
        load_vgg19()


def test_the_environment_variable_names_the_file(weights, monkeypatch):
    path, sha256, _ = weights
    monkeypatch.setenv(VGG19_ENV, str(path))
    assert vgg19_weights_path() == path
    assert torch.equal(load_vgg19(sha256=sha256).features[0].bias, weights[2]["features.0.bias"])


def test_wrong_keys_are_named(weights, tmp_path):
    state = dict(weights[2])
    state["features.0.weights"] = state.pop("features.0.weight")
    path, sha256 = save(state, tmp_path)
    with pytest.raises(ValueError, match=r"missing 1 of VGG-19's 32 entries: features.0.weight; has 1 entries "
                                         r"VGG-19's features do not: features.0.weights"):
        load_vgg19(path, sha256=sha256)
    bare = {key.removeprefix("features."): value for key, value in weights[2].items()}
    path, sha256 = save(bare, tmp_path, "bare.pth")
    with pytest.raises(ValueError, match=r"missing 32 of VGG-19's 32 entries: features.0.weight, features.0.bias, "
                                         r"features.2.weight and 29 more"):
        load_vgg19(path, sha256=sha256)


def test_wrong_shapes_are_named(weights, tmp_path):
    state = dict(weights[2])
    state["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    path, sha256 = save(state, tmp_path)
    with pytest.raises(ValueError, match=r"1 entries have the wrong shape: features.2.weight is \(64, 32, 3, 3\), "
                                         r"VGG-19 needs \(64, 64, 3, 3\)"):
        load_vgg19(path, sha256=sha256)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path, sha256 = save([torch.zeros(3)], tmp_path)
    with pytest.raises(ValueError, match="holds a list, not a state dict of tensors"):
        load_vgg19(path, sha256=sha256)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"cannot read it as plain tensors"):
        load_vgg19(junk, sha256=digest(junk))


def test_bad_images_and_layer_names_are_refused():
    model = VGG19Features(layers=("relu1_1", "relu3_1"))
    assert model(torch.rand(1, 3, 4, 4))[1].shape == (1, 256, 1, 1)
    with pytest.raises(ValueError, match=r"H, W >= 4 \(one halving per pool before relu3_1\), got \(1, 3, 3, 8\)"):
        model(torch.rand(1, 3, 3, 8))
    with pytest.raises(ValueError, match=r"takes images \(B, 1 or 3, H, W\)"):
        model(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"takes images .* got \(3, 16, 16\)"):
        model(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="'relu6_1' is not one"):
        VGG19Features(layers=("relu1_1", "relu6_1"))
