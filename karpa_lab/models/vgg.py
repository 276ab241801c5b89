r"""VGG-19's convolutional layers in plain PyTorch, for the texture losses, with weights you supply yourself.

Gatys, Ecker & Bethge (2015) took their Gram matrices from VGG-19 (Simonyan & Zisserman 2014), a network
trained on ImageNet. The course runs without it (:class:`~karpa_lab.models.texture.RandomFilterNet` needs no
weights); if you have the trained weights as a file, :func:`load_vgg19` reads them and :class:`VGG19Features`
is a drop-in for the random network: ``grams(vgg, image)``, ``texture_loss``, ``synthesize``,
``StyleTransferLoss`` and ``texture_distance`` all take it.

**The layout** is torchvision's ``vgg19().features``: 16 convolutions 3x3 (padding 1), each followed by a
ReLU, in five blocks of 64, 128, 256, 512, 512 channels (2, 2, 4, 4, 4 convolutions), each block closed by a
2x2 max pool; 37 modules in all. The module here is an ``nn.Sequential`` called ``features``, so its
state-dict keys are torchvision's (``features.0.weight`` ... ``features.34.bias``) and torchvision's file
``vgg19-dcbb9e9d.pth`` loads as it is (its ``classifier.*`` entries are not needed and are skipped).

**The features** are those Gatys et al. match: relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1, the first
ReLU of each block, at torchvision's indices 1, 6, 11, 20 and 29. Images in [0, 1] are normalised with
ImageNet's channel mean and standard deviation, as the network was trained; a grey image is repeated into
the three colour channels.

**Nothing downloads.** :func:`load_vgg19` reads a local file only and checks its SHA-256 first: against the
digest you pass, or by default against ``dcbb9e9d``, the start of the digest that torchvision writes into
its file's name. Point the lessons at the file with the environment variable ``KARPA_VGG19``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from karpa_lab.data.online import sha256_of

VGG19_ENV = "KARPA_VGG19"
VGG19_SHA256_ENV = "KARPA_VGG19_SHA256"
TORCHVISION_VGG19 = "vgg19-dcbb9e9d.pth"
TORCHVISION_VGG19_URL = "https://download.pytorch.org/models/" + TORCHVISION_VGG19
TORCHVISION_SHA256_PREFIX = "dcbb9e9d"

# torchvision's configuration "E": output channels of each 3x3 convolution, "M" for a 2x2 max pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")
GATYS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg19_layer_names() -> tuple[str, ...]:
    """The name of each module of ``features`` in torchvision's order: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names, block, index = [], 1, 1
    for item in VGG19_LAYOUT:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return tuple(names)


def vgg19_layers() -> nn.Sequential:
    """VGG-19's ``features`` with fresh (untrained) weights: Conv2d 3x3 + ReLU, MaxPool2d 2x2, as laid out above."""
    modules: list[nn.Module] = []
    channels = 3
    for item in VGG19_LAYOUT:
        if item == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*modules)


class VGG19Features(nn.Module):
    """VGG-19's convolutional layers, returning the feature maps of ``layers`` (after their ReLU).

    ``forward(x)`` takes images (B, 1 or 3, H, W) with values in [0, 1] and returns one feature map per layer,
    in the order given, like ``RandomFilterNet``: for the default layers and H = W = 64, shapes (B, 64, 64, 64),
    (B, 128, 32, 32), (B, 256, 16, 16), (B, 512, 8, 8), (B, 512, 4, 4). The weights are frozen: synthesis
    optimises the image, never the network. Build it with :func:`load_vgg19` to get trained weights.
    """

    def __init__(self, layers: Sequence[str] = GATYS_LAYERS):
        super().__init__()
        names = vgg19_layer_names()
        unknown = [name for name in layers if name not in names]
        if not layers or unknown:
            raise ValueError(f"layers must be names of VGG-19's layers such as {GATYS_LAYERS}, got {tuple(layers)}"
                             f"{f' ({unknown[0]!r} is not one)' if unknown else ''}")
        self.layers = tuple(layers)
        self.taps = [names.index(name) for name in self.layers]
        self.features = vgg19_layers()
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.min_size = 2 ** sum(name.startswith("pool") for name in names[:max(self.taps)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] in (1, 3)
                and min(x.shape[2:]) >= self.min_size):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"VGG-19 takes images (B, 1 or 3, H, W) in [0, 1] with H, W >= {self.min_size} (one "
                             f"halving per pool before {self.layers[-1]}), got {shape}")
        h = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        out = {}
        for index, module in enumerate(self.features[:max(self.taps) + 1]):
            h = module(h)
            if index in self.taps:
                out[index] = h
        return [out[index] for index in self.taps]


def vgg19_weights_path() -> Path | None:
    """The file that ``$KARPA_VGG19`` names (``~`` expanded), or None when the variable is unset or empty."""
    value = os.environ.get(VGG19_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _how_to_get_it() -> str:
    return (f"The course never downloads weights. To use VGG-19, get torchvision's ImageNet weights "
            f"{TORCHVISION_VGG19} (about 550 MB) on a machine with internet, from {TORCHVISION_VGG19_URL}, and "
            f"set {VGG19_ENV}=/path/to/{TORCHVISION_VGG19}. A file of your own with the same features.* entries "
            f"works too: give its full SHA-256 (`sha256sum FILE`) as sha256=, or in {VGG19_SHA256_ENV}.")


def _check_checksum(path: Path, sha256: str | None) -> None:
    expected = (sha256 or TORCHVISION_SHA256_PREFIX).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", expected):
        raise ValueError(f"sha256 must be a SHA-256 digest in hex (64 characters, or its first 8 or more), got "
                         f"{sha256!r}")
    got = sha256_of(path)
    if not got.startswith(expected):
        whose = "the digest you gave" if sha256 else f"torchvision's {TORCHVISION_VGG19} (its name carries it)"
        raise ValueError(f"{path} has SHA-256 {got}, but {whose} starts with {expected}: the file is damaged, "
                         f"truncated or a different one, and is not used. Copy it again; if it is a file you made "
                         f"yourself, pass its own digest as sha256= (or {VGG19_SHA256_ENV}).")


def _first(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _check_state_dict(state: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise, naming the first few, if ``state`` lacks keys of ``want``, has others, or has other shapes."""
    missing = [key for key in want if key not in state]
    unexpected = [key for key in state if key not in want]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} of VGG-19's {len(want)} entries: {_first(missing)}")
    if unexpected:
        problems.append(f"has {len(unexpected)} entries VGG-19's features do not: {_first(unexpected)}")
    wrong = [f"{key} is {tuple(state[key].shape)}, VGG-19 needs {tuple(want[key].shape)}"
             for key in want if key in state and state[key].shape != want[key].shape]
    if wrong:
        problems.append(f"{len(wrong)} entries have the wrong shape: {_first(wrong)}")
    if problems:
        raise ValueError(f"{path} is not VGG-19's weights in torchvision's layout (features.N.weight/bias): "
                         + "; ".join(problems) + ". Use torchvision's vgg19 state dict, or its features.* entries.")


def load_vgg19(path: str | os.PathLike | None = None, sha256: str | None = None,
               layers: Sequence[str] = GATYS_LAYERS) -> VGG19Features:
    """VGG-19's features with the trained weights from a local file: checksum first, then the keys and shapes.

    ``path`` defaults to ``$KARPA_VGG19``. ``sha256`` is the file's expected SHA-256 (all 64 hex digits, or the
    first 8 or more); by default ``dcbb9e9d``, the prefix in the name of torchvision's ``vgg19-dcbb9e9d.pth``.
    The file is a state dict (torchvision's whole ``vgg19`` one, or only its ``features.*`` entries), read
    with ``torch.load(weights_only=True)``. Nothing is downloaded; every failure says what to do.
    """
    if path is None:
        path = vgg19_weights_path()
        if path is None:
            raise FileNotFoundError(f"no VGG-19 weights given: pass a path or set {VGG19_ENV}. " + _how_to_get_it())
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no VGG-19 weights file at {path}. " + _how_to_get_it())
    _check_checksum(path, sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling or format error: say which file, keep the reason
        raise ValueError(f"{path} passed its checksum but torch.load(weights_only=True) cannot read it as "
                         f"plain tensors ({type(exc).__name__}: {exc}). Save a state dict of tensors.") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors (name -> tensor): "
                         "save model.state_dict(), as torchvision's file is.")
    model = VGG19Features(layers)
    features = {key: value for key, value in state.items() if not key.startswith("classifier.")}
    _check_state_dict(features, model.state_dict(), path)
    model.load_state_dict(features)
    return model.eval()
