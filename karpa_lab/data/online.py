"""Optional online data: MNIST, downloaded once into a cache and checked with SHA-256.

Nothing in the course calls this by default; every lesson runs on offline data. Offline, a missing file
is an error that says where to put it. A file whose checksum does not match is never used.

    x_train, y_train, x_test, y_test = load_mnist()                # from the cache only
    load_mnist(download=True)                                      # fetch what is missing, once
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


class DataUnavailableError(RuntimeError):
    """An optional data set is not in the cache and could not (or may not) be downloaded."""


def cache_dir() -> Path:
    """Where optional downloads live: ``$KARPA_CACHE``, else ``~/.cache/karpa_lab``."""
    return Path(os.environ.get("KARPA_CACHE", Path.home() / ".cache" / "karpa_lab"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, sha256: str, folder: Path, mirrors: tuple[str, ...], download: bool) -> Path:
    """Return ``folder/name`` after checking its SHA-256, downloading it first when allowed.

    A download goes to a temporary file and is moved into place only when its checksum matches, so an
    interrupted or corrupted download never leaves a file that looks valid.
    """
    path = folder / name
    if path.exists():
        actual = sha256_of(path)
        if actual == sha256:
            return path
        if not download:
            raise DataUnavailableError(
                f"{path} has SHA-256 {actual[:16]}..., expected {sha256[:16]}...: the file is damaged or "
                "a different version. Delete it and copy a correct one there, or pass download=True."
            )
    if not download:
        raise DataUnavailableError(
            f"{name} is not in the cache {folder}. karpa_lab never downloads by default: copy the file "
            f"there by hand (from {mirrors[0]}{name}), or call again with download=True on a machine "
            "that reaches the internet. The lessons themselves need no download."
        )
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in mirrors:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + name, timeout=30) as resp:
                shutil.copyfileobj(resp, out)
            actual = sha256_of(Path(tmp))
            if actual != sha256:
                errors.append(f"{mirror}: checksum {actual[:16]}... does not match")
                continue
            os.replace(tmp, path)
            return path
        except OSError as exc:
            errors.append(f"{mirror}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DataUnavailableError(f"could not download {name}: " + "; ".join(errors))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not): the MNIST format of a magic number, dims, then bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {body.size} values")
    return body.reshape(dims)


def load_mnist(
    folder: Path | None = None, download: bool = False, checksums: dict[str, str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST as ``(x_train, y_train, x_test, y_test)``: images float32 (N, 1, 28, 28) in [0, 1], labels int64.

    ``checksums`` replaces the published SHA-256 table (the tests use small files they write).
    """
    folder = Path(folder) if folder is not None else cache_dir() / "mnist"
    sums = checksums or MNIST_SHA256
    arrays = {name: read_idx(fetch(name, sha, folder, MNIST_MIRRORS, download)) for name, sha in sums.items()}
    img = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)
    lab = lambda a: torch.from_numpy(a.astype(np.int64))
    return (
        img(arrays["train-images-idx3-ubyte.gz"]),
        lab(arrays["train-labels-idx1-ubyte.gz"]),
        img(arrays["t10k-images-idx3-ubyte.gz"]),
        lab(arrays["t10k-labels-idx1-ubyte.gz"]),
    )
