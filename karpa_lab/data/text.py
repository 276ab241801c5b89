"""A text corpus that is already on every machine: this Python's own standard-library source.

Karpathy's char-rnn learned C from the Linux kernel source; we learn Python from Python. The corpus is
a deterministic choice of ``.py`` files (sorted by path, tests and vendored code left out) up to a
size, so two runs on the same Python read exactly the same characters.

    corpus = TextCorpus.python_stdlib(max_chars=1_000_000)
    x, y = corpus.random_batch("train", batch_size=32, block_size=64)   # (32, 64) int64 each
    corpus.decode(x[0])
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

SKIP_PARTS = {"test", "tests", "site-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__", "ensurepip"}


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted by relative path, without tests and vendored code."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if any(p in SKIP_PARTS or p.startswith("test") for p in parts):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def python_source_text(max_chars: int = 1_000_000, root: Path | None = None) -> str:
    """Concatenate standard-library files (sorted, whole files) until ``max_chars`` is reached.

    Each file is prefixed with a ``# file: name`` line. Characters outside printable ASCII plus
    newline are dropped, which keeps the vocabulary near 100 symbols (a handful of files have
    non-ASCII names or docstrings).
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    root = Path(root or sysconfig.get_paths()["stdlib"])
    pieces: list[str] = []
    total = 0
    for path in stdlib_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = "".join(ch for ch in text.replace("\t", "    ") if ch == "\n" or 32 <= ord(ch) < 127)
        piece = f"# file: {path.relative_to(root).as_posix()}\n{text}\n"
        pieces.append(piece)
        total += len(piece)
        if total >= max_chars:
            break
    if not pieces:
        raise FileNotFoundError(f"no Python source files found under {root}")
    return "".join(pieces)[:max_chars]


class CharTokenizer:
    """Characters to integer ids and back. The vocabulary is the sorted set of characters seen."""

    def __init__(self, text: str):
        self.chars: list[str] = sorted(set(text))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """A string to a 1-D ``int64`` tensor of ids; unknown characters are an error that names them."""
        try:
            return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)
        except KeyError:
            unknown = sorted({ch for ch in text if ch not in self.stoi})
            raise ValueError(
                f"characters {unknown!r} are not in this tokenizer's vocabulary of {self.vocab_size}; "
                "build the tokenizer from a text that contains them"
            ) from None

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Ids (a tensor or a list) back to a string."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)


@dataclass
class TextCorpus:
    """A character-level corpus with a train/val split by position (the last ``val_fraction``)."""

    text: str
    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1) -> TextCorpus:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        tokenizer = CharTokenizer(text)
        ids = tokenizer.encode(text)
        cut = int(len(ids) * (1 - val_fraction))
        return cls(text=text, tokenizer=tokenizer, train=ids[:cut], val=ids[cut:])

    @classmethod
    def python_stdlib(cls, max_chars: int = 1_000_000, val_fraction: float = 0.1) -> TextCorpus:
        """The standard-library corpus: the first ``1 - val_fraction`` of it to train, the rest to validate."""
        return cls.from_text(python_source_text(max_chars), val_fraction)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def encode(self, text: str) -> torch.Tensor:
        return self.tokenizer.encode(text)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return self.tokenizer.decode(ids)

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val

    def random_batch(
        self, split: str, batch_size: int, block_size: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` windows at random offsets: inputs ``x`` (B, T) and next characters ``y`` (B, T)."""
        data = self.split(split)
        if len(data) <= block_size + 1:
            raise ValueError(f"the {split} split has {len(data)} characters, too few for block_size={block_size}")
        starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
        x = torch.stack([data[s : s + block_size] for s in starts.tolist()])
        y = torch.stack([data[s + 1 : s + block_size + 1] for s in starts.tolist()])
        return x, y

    def batch_fn(self, split: str, batch_size: int, block_size: int):
        """A zero-argument callable returning random batches: the form ``fit`` takes as data."""
        return lambda: self.random_batch(split, batch_size, block_size)

    def stream_batches(
        self, split: str, batch_size: int, block_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Contiguous batches for truncated BPTT: row b of batch k+1 continues row b of batch k.

        The split is cut into ``batch_size`` equal streams; each batch takes the next ``block_size``
        characters of every stream, so a recurrent model may carry its hidden state from one batch to
        the next (detached) and see dependencies longer than ``block_size``. One pass is one epoch.
        """
        data = self.split(split)
        n = (len(data) - 1) // batch_size
        if n <= block_size:
            raise ValueError(f"the {split} split is too short for {batch_size} streams of block_size={block_size}")
        xs = data[: n * batch_size].view(batch_size, n)
        ys = data[1 : n * batch_size + 1].view(batch_size, n)
        for start in range(0, n - block_size + 1, block_size):
            yield xs[:, start : start + block_size], ys[:, start : start + block_size]
