"""The two photographs that ship inside scikit-learn (``china.jpg``, ``flower.jpg``), as tensors.

They are part of the scikit-learn wheel (``sklearn/datasets/images/``), so nothing is downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PHOTOS = ("china.jpg", "flower.jpg")


def load_photo(name: str = "china.jpg", height: int = 96, gray: bool = True) -> torch.Tensor:
    """A bundled photo scaled to ``height`` rows (aspect kept), values in [0, 1]: (1, H, W) grey or (3, H, W)."""
    from sklearn.datasets import load_sample_image

    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS} (the ones scikit-learn ships), got {name!r}")
    if not 8 <= height <= 427:
        raise ValueError(f"height must be between 8 and 427 pixels (the photos are 427 high), got {height}")
    image = torch.tensor(load_sample_image(name)).permute(2, 0, 1).float() / 255.0  # (3, 427, 640)
    if gray:
        image = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    width = round(image.shape[2] * height / image.shape[1])
    return F.interpolate(image[None], size=(height, width), mode="area")[0].clamp(0, 1)
