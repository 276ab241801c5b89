"""scikit-learn's bundled handwritten digits (1,797 images of 8x8, values 0..16) as PyTorch tensors.

They ship inside scikit-learn, so nothing is downloaded. Splits are stratified and fixed
(``random_state=0``): 60 % train, 20 % validation, 20 % test.

    d = load_digits_splits()                 # d.x_train (N, 1, 8, 8) float in [0, 1], d.y_train (N,) int64
    train_dl, val_dl, test_dl = digits_loaders(batch_size=64)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class DigitsSplits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def load_digits_splits(size: int = 8, flatten: bool = False) -> DigitsSplits:
    """Digits scaled to [0, 1], shape (N, 1, size, size) or (N, size*size) when ``flatten``.

    ``size`` 8 is the original; 16 resizes bilinearly (for convolutional models such as the DCGAN),
    any other size is refused.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size not in (8, 16):
        raise ValueError(f"size must be 8 (the original images) or 16 (resized), got {size}")
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    if size == 16:
        x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    if flatten:
        x = x.flatten(1)
    idx = torch.arange(len(y)).numpy()
    rest, test = train_test_split(idx, test_size=0.2, random_state=0, stratify=y.numpy())
    train, val = train_test_split(rest, test_size=0.25, random_state=0, stratify=y.numpy()[rest])
    t = lambda a: torch.as_tensor(a)
    return DigitsSplits(x[t(train)], y[t(train)], x[t(val)], y[t(val)], x[t(test)], y[t(test)])


def digits_loaders(
    batch_size: int = 64, size: int = 8, flatten: bool = False, seed: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (shuffled with a seeded generator), validation and test DataLoaders of the digits."""
    d = load_digits_splits(size=size, flatten=flatten)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(d.x_train, d.y_train), batch_size=batch_size, shuffle=True, generator=g)
    val = DataLoader(TensorDataset(d.x_val, d.y_val), batch_size=256)
    test = DataLoader(TensorDataset(d.x_test, d.y_test), batch_size=256)
    return train, val, test


def digits_on_canvas(x: torch.Tensor, canvas: int = 16, copies: int = 1, seed: int = 0) -> torch.Tensor:
    """Each 8x8 digit of ``x`` (N, 1, 8, 8) pasted ``copies`` times at uniformly random places on an empty
    ``canvas`` x ``canvas`` image: (N * copies, 1, canvas, canvas), copy k of digit i at row k * N + i.

    The task where a convolution's inductive bias matters: the same digit can be anywhere (lesson 12).
    """
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        raise ValueError(f"digits_on_canvas needs digits of shape (N, 1, 8, 8), got {tuple(x.shape)}")
    if canvas < 8 or copies < 1:
        raise ValueError(f"need canvas >= 8 and copies >= 1, got canvas={canvas}, copies={copies}")
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    out = torch.zeros(n * copies, 1, canvas, canvas)
    for k in range(copies):
        top = torch.randint(0, canvas - 7, (n,), generator=g)
        left = torch.randint(0, canvas - 7, (n,), generator=g)
        for i in range(n):
            out[k * n + i, 0, top[i]:top[i] + 8, left[i]:left[i] + 8] = x[i, 0]
    return out
