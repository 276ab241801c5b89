"""Offline data: deterministic, no network, and the optional MNIST loader checked on files the test writes."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from karpa_lab.data import (
    PHOTOS,
    TEXTURES,
    CharTokenizer,
    DataUnavailableError,
    GaussianMixture2D,
    TextCorpus,
    load_digits_splits,
    load_mnist,
    load_photo,
    load_texture,
    python_source_text,
    random_walk,
    recall_task,
    recall_vocab_size,
    seasonal_series,
)


def test_corpus_is_deterministic_and_offline(no_network):
    a = python_source_text(200_000)
    b = python_source_text(200_000)
    assert a == b and len(a) == 200_000
    assert a.startswith("# file: ") and "def " in a
    corpus = TextCorpus.from_text(a)
    assert corpus.decode(corpus.encode("def f(x):")) == "def f(x):"
    assert len(corpus.train) == 180_000 and len(corpus.val) == 20_000
    torch.manual_seed(0)
    x, y = corpus.random_batch("train", 4, 16)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one character


def test_stream_batches_continue_each_row():
    corpus = TextCorpus.from_text("abcdefghijklmnopqrstuvwxyz" * 20)
    batches = list(corpus.stream_batches("train", batch_size=2, block_size=5))
    (x0, y0), (x1, _) = batches[0], batches[1]
    assert x0.shape == (2, 5)
    assert torch.equal(x1[:, 0], y0[:, -1])  # the next batch starts where the last target ended


def test_tokenizer_names_unknown_characters():
    with pytest.raises(ValueError, match="'z'"):
        CharTokenizer("abc").encode("abz")


def test_digits_splits(no_network):
    d = load_digits_splits()
    assert d.x_train.shape[1:] == (1, 8, 8) and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    assert len(d.y_test) == 360 and set(d.y_test.tolist()) == set(range(10))
    assert torch.equal(load_digits_splits().x_test, d.x_test)  # fixed split
    assert load_digits_splits(size=16, flatten=True).x_val.shape[1] == 256
    with pytest.raises(ValueError, match="8 .* or 16"):
        load_digits_splits(size=12)


def test_recall_task():
    g = torch.Generator().manual_seed(0)
    x, y = recall_task(64, lag=10, generator=g)
    assert x.shape == (64, 12) and torch.equal(x[:, 0], y)
    assert (x[:, 1:-1] >= 4).all() and (x[:, -1] == recall_vocab_size() - 1).all()


def test_mixture_coverage():
    ring = GaussianMixture2D.ring(8)
    g = torch.Generator().manual_seed(0)
    samples = ring.sample(2000, generator=g)
    assert ring.modes_covered(samples) == 8 and ring.quality(samples) > 0.97
    collapsed = ring.centers[0] + 0.01 * torch.randn(500, 2, generator=g)
    assert ring.modes_covered(collapsed) == 1
    assert GaussianMixture2D.grid(5).n_modes == 25
    assert torch.isfinite(ring.log_prob(samples)).all()


def test_time_series():
    s = seasonal_series(240, period=24, noise=0.0, trend=0.0)
    assert torch.allclose(s[:24], s[24:48], atol=1e-5)
    w = random_walk(100, seed=1)
    assert torch.equal(w, random_walk(100, seed=1)) and w.shape == (100,)


def write_idx(path, array: np.ndarray) -> str:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_mnist(tmp_path):
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 28, 28))
    sums = {
        "train-images-idx3-ubyte.gz": write_idx(tmp_path / "train-images-idx3-ubyte.gz", images(5)),
        "train-labels-idx1-ubyte.gz": write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5)),
        "t10k-images-idx3-ubyte.gz": write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images(3)),
        "t10k-labels-idx1-ubyte.gz": write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(3)),
    }
    return tmp_path, sums


def test_mnist_loads_from_cache_with_checksums(tiny_mnist, no_network):
    folder, sums = tiny_mnist
    x_train, y_train, x_test, y_test = load_mnist(folder, checksums=sums)
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert y_train.tolist() == [0, 1, 2, 3, 4] and 0 <= x_train.min() and x_train.max() <= 1


def test_mnist_refuses_a_damaged_file(tiny_mnist, no_network):
    folder, sums = tiny_mnist
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DataUnavailableError, match="damaged"):
        load_mnist(folder, checksums=sums)


def test_mnist_missing_offline_says_what_to_do(tmp_path, no_network):
    with pytest.raises(DataUnavailableError, match="never downloads by default.*copy the file"):
        load_mnist(tmp_path)


def test_mnist_failed_download_leaves_nothing(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataUnavailableError, match="could not download"):
        load_mnist(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_bundled_photos_and_textures_load_offline(no_network):
    for name in PHOTOS:
        photo = load_photo(name, height=32)
        assert photo.shape[:2] == (1, 32) and 0 <= float(photo.min()) and float(photo.max()) <= 1
    assert load_photo("astronaut", height=32, gray=False).shape == (3, 32, 32)
    textures = [load_texture(name, size=48) for name in TEXTURES]
    assert all(t.shape == (1, 48, 48) and 0 <= float(t.min()) and float(t.max()) <= 1 for t in textures)
    assert min(float((a - b).abs().mean()) for a in textures for b in textures if a is not b) > 0.02


def test_photo_and_texture_names_and_sizes_are_checked():
    with pytest.raises(ValueError, match="the ones scikit-image ships"):
        load_texture("marble")
    with pytest.raises(ValueError, match="between 16 and 512"):
        load_texture("brick", size=8)
    with pytest.raises(ValueError, match="coffee is 400 high"):
        load_photo("coffee", height=500)
