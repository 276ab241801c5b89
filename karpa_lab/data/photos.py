"""Photographs and textures that ship inside installed wheels, as tensors; nothing is downloaded.

scikit-learn's two photos (``china.jpg``, ``flower.jpg``, in ``sklearn/datasets/images/``) and scikit-image's
``astronaut`` and ``coffee`` photos and ``brick``, ``grass`` and ``gravel`` textures (512 x 512 grey, in
``skimage/data/``: the images scikit-image ships rather than fetches on first use).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PHOTOS = ("china.jpg", "flower.jpg", "astronaut", "coffee")
TEXTURES = ("brick", "grass", "gravel")


def _grey(image: torch.Tensor) -> torch.Tensor:
    return (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)


def load_photo(name: str = "china.jpg", height: int = 96, gray: bool = True) -> torch.Tensor:
    """A bundled photo scaled to ``height`` rows (aspect kept), values in [0, 1]: (1, H, W) grey or (3, H, W)."""
    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS} (the ones scikit-learn and scikit-image ship), got {name!r}")
    if name in ("astronaut", "coffee"):
        import skimage.data

        pixels = getattr(skimage.data, name)()
    else:
        from sklearn.datasets import load_sample_image

        pixels = load_sample_image(name)
    if not 8 <= height <= pixels.shape[0]:
        raise ValueError(f"height must be between 8 and {pixels.shape[0]} pixels ({name} is {pixels.shape[0]} "
                         f"high), got {height}")
    image = torch.tensor(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 255.0  # (3, H0, W0)
    if gray:
        image = _grey(image)
    width = round(image.shape[2] * height / image.shape[1])
    return F.interpolate(image[None], size=(height, width), mode="area")[0].clamp(0, 1)


def load_texture(name: str = "brick", size: int = 64) -> torch.Tensor:
    """One of scikit-image's grey textures, the whole 512 x 512 image scaled to ``size`` x ``size``: (1, size, size)."""
    if name not in TEXTURES:
        raise ValueError(f"texture must be one of {TEXTURES} (the ones scikit-image ships), got {name!r}")
    if not 16 <= size <= 512:
        raise ValueError(f"size must be between 16 and 512 pixels (the textures are 512 x 512), got {size}")
    import skimage.data

    image = torch.tensor(getattr(skimage.data, name)()).float()[None, None] / 255.0  # (1, 1, 512, 512)
    return F.interpolate(image, size=(size, size), mode="area")[0].clamp(0, 1)
