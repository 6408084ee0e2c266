"""The lexical topic head: a linear model over the word pieces of each window.

The encoder's topic head reads a mean-pooled vector; a TF-IDF linear model reads
which pieces occur. On ANT they score about the same on their own and make
different mistakes, so their logits are added (the dev set decides whether, and
with what weight: see ``training/lexical.py``). It runs in numpy beside the
encoder, on the same windows, so its cost is a sparse dot product per window.

Per window: sublinear term frequency ``1 + log(count)`` of each piece, times its
inverse document frequency, L2-normalised, dotted with one weight column per
topic label, plus a bias. Windows merge like the encoder's topic logits (weighted
by length), which is also how the training features are built.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.errors import ModelLoadError


def window_tfidf(ids: np.ndarray, idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct piece ids of a window and their L2-normalised sublinear TF-IDF values.

    Ids outside ``idf`` are ignored. Training builds its features with this same function.
    """
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[(ids >= 0) & (ids < idf.shape[0])]
    if ids.size == 0:
        return ids, np.zeros(0, dtype=np.float32)
    pieces, counts = np.unique(ids, return_counts=True)
    values = (1.0 + np.log(counts)) * idf[pieces]
    norm = float(np.linalg.norm(values))
    if norm > 0:
        values = values / norm
    return pieces, values.astype(np.float32)


@dataclass(frozen=True)
class LexicalHead:
    """Inverse document frequencies ``[vocab]``, weights ``[vocab, labels]``, bias ``[labels]``."""

    idf: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        """Reject arrays whose shapes do not fit together."""
        if self.idf.ndim != 1 or self.weights.ndim != 2 or self.bias.ndim != 1:
            raise ValueError("lexical head: idf, weights and bias must be 1-, 2- and 1-D")
        if self.weights.shape != (self.idf.shape[0], self.bias.shape[0]):
            raise ValueError(
                f"lexical head: weights {self.weights.shape} do not match "
                f"idf {self.idf.shape} and bias {self.bias.shape}"
            )

    def window_features(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct piece ids of a window and their L2-normalised TF-IDF values."""
        return window_tfidf(ids, self.idf)

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Topic logits ``[labels]`` of one window's content piece ids."""
        pieces, values = self.window_features(ids)
        return (values @ self.weights[pieces] + self.bias).astype(np.float32)

    def save(self, path: Path) -> None:
        """Write the three arrays to a ``.npz`` file."""
        np.savez(path, idf=self.idf, weights=self.weights, bias=self.bias)

    @classmethod
    def load(cls, path: Path) -> LexicalHead:
        """Read a head written by :meth:`save`.

        Raises:
            ModelLoadError: The file is missing, unreadable or inconsistent.
        """
        if not path.is_file():
            raise ModelLoadError(f"lexical topic head not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return cls(
                    idf=arrays["idf"].astype(np.float32),
                    weights=arrays["weights"].astype(np.float32),
                    bias=arrays["bias"].astype(np.float32),
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            # A truncated or overwritten .npz is a zip error, not an OSError.
            reason = str(exc) or type(exc).__name__
            raise ModelLoadError(f"cannot read lexical topic head {path}: {reason}") from exc
