"""Data for the demo: scikit-learn's bundled handwritten digits, or the user's ``.npz``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import normkit as nk

Array = np.ndarray

INSTALL_HINT = 'the digits data set needs scikit-learn: pip install "normkit[demo]" (or give --data file.npz)'


@dataclass
class Dataset:
    """Samples as rows of features (``X``, float32) with integer labels ``y`` in ``[0, n_classes)``.

    ``image_shape`` is ``(C, H, W)`` when the samples are images (then augmentation applies),
    else None.
    """

    name: str
    X: Array
    y: Array
    n_classes: int
    image_shape: tuple[int, int, int] | None


@dataclass
class Splits:
    """Disjoint index sets, fixed by the seed.

    ``pool`` trains the normalization study; ``small`` (a subset of ``pool``) trains the
    regularization study and ``val`` (also from ``pool``, disjoint from ``small``) is its
    early-stopping monitor; ``test`` is held out from everything and only reported.
    """

    pool: Array
    small: Array
    val: Array
    test: Array


class InputScaler:
    """Input standardization with :class:`normkit.StandardScaler`, fitted on training samples.

    Feature vectors are scaled per feature (scikit-learn's convention). Images are scaled per
    channel, with one mean and standard deviation over all pixels: per-pixel statistics would
    blow up a border pixel that is almost always background once a random crop moves ink onto it.
    """

    def __init__(self, image_shape: tuple[int, int, int] | None) -> None:
        self.image_shape = image_shape
        self.scaler = nk.StandardScaler()

    def _columns(self, X: Array) -> Array:
        if self.image_shape is None:
            return X
        c = self.image_shape[0]
        return X.reshape(len(X), c, -1).transpose(0, 2, 1).reshape(-1, c)

    def fit(self, X: Array) -> InputScaler:
        self.scaler.fit(self._columns(X))
        return self

    def transform(self, X: Array) -> Array:
        """Scaled float32 copy of ``X`` (``(N, D)``), the same shape."""
        y = self.scaler.transform(self._columns(X))
        if self.image_shape is not None:
            c = self.image_shape[0]
            y = y.reshape(len(X), -1, c).transpose(0, 2, 1).reshape(len(X), -1)
        return np.ascontiguousarray(y, dtype=np.float32)


def load_digits() -> Dataset:
    """The 1,797 8x8 digit images bundled with scikit-learn (no download)."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise SystemExit(f"normkit demo: {INSTALL_HINT}") from None
    d = _load()
    return Dataset("digits (scikit-learn, 1797 8x8 images)", d.data.astype(np.float32), d.target.astype(np.int64),
                   10, (1, 8, 8))


def load_npz(path: str) -> Dataset:
    """Arrays ``X`` (``(N, D)`` features, ``(N, H, W)`` or ``(N, C, H, W)`` images) and ``y``
    (``(N,)`` labels of any kind, mapped to ``0..K-1``). ``(N, D)`` with a square ``D`` is taken
    as ``(N, 1, sqrt(D), sqrt(D))`` images."""
    with np.load(path, allow_pickle=False) as f:
        missing = {"X", "y"} - set(f.files)
        if missing:
            raise SystemExit(f"normkit demo: {path} must hold arrays 'X' and 'y' (missing {sorted(missing)})")
        X, y = np.asarray(f["X"]), np.asarray(f["y"])
    if X.ndim < 2 or X.ndim > 4 or y.ndim != 1 or len(X) != len(y):
        raise SystemExit(f"normkit demo: {path}: X must be (N, D), (N, H, W) or (N, C, H, W) and y (N,), "
                         f"got X {X.shape} and y {y.shape}")
    if X.dtype.kind not in "fiub":
        raise SystemExit(f"normkit demo: {path}: X must be numeric, got dtype {X.dtype}")
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2 or len(X) < 20:
        raise SystemExit(f"normkit demo: {path}: need at least 20 samples of 2 or more classes, got {len(X)} "
                         f"samples of {len(classes)}")
    image_shape = None
    if X.ndim == 4:
        image_shape = X.shape[1:]
    elif X.ndim == 3:
        image_shape = (1, *X.shape[1:])
    elif math.isqrt(X.shape[1]) ** 2 == X.shape[1] and X.shape[1] >= 4:
        side = math.isqrt(X.shape[1])
        image_shape = (1, side, side)
    X2 = X.reshape(len(X), -1).astype(np.float32)
    if not np.isfinite(X2).all():
        raise SystemExit(f"normkit demo: {path}: X has NaN or infinite values")
    return Dataset(f"{path} ({len(X)} samples, {X2.shape[1]} features, {len(classes)} classes)", X2,
                   labels.astype(np.int64), len(classes), image_shape)


def split(n: int, seed: int, small: int = 100, val: int = 300) -> Splits:
    """A third of the samples (at most 600) for test, the rest the pool; ``small`` and ``val`` are
    taken from the pool (scaled down for small data sets)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(600, n // 3)
    test, pool = order[:n_test], order[n_test:]
    n_small = min(small, len(pool) // 2)
    n_val = min(val, len(pool) - n_small)
    return Splits(pool=pool, small=pool[:n_small], val=pool[n_small:n_small + n_val], test=test)
