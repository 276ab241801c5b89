"""Offline data for the course; one optional online loader (MNIST) that never runs by default."""

from karpa_lab.data.digits import DigitsSplits, digits_loaders, digits_on_canvas, load_digits_splits
from karpa_lab.data.online import DataUnavailableError, load_mnist
from karpa_lab.data.photos import PHOTOS, TEXTURES, load_photo, load_texture
from karpa_lab.data.scenes import CaptionScenes, caption_splits, make_scenes
from karpa_lab.data.synthetic import (
    GaussianMixture2D,
    next_value_batches,
    random_walk,
    recall_task,
    recall_vocab_size,
    seasonal_series,
)
from karpa_lab.data.text import CharTokenizer, TextCorpus, python_source_text

__all__ = [
    "PHOTOS",
    "TEXTURES",
    "CaptionScenes",
    "CharTokenizer",
    "DataUnavailableError",
    "DigitsSplits",
    "GaussianMixture2D",
    "TextCorpus",
    "caption_splits",
    "digits_loaders",
    "digits_on_canvas",
    "load_digits_splits",
    "load_mnist",
    "load_photo",
    "load_texture",
    "make_scenes",
    "next_value_batches",
    "python_source_text",
    "random_walk",
    "recall_task",
    "recall_vocab_size",
    "seasonal_series",
]
