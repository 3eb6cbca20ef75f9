"""Batched, seeded image augmentation: random crop, horizontal flip, Gaussian noise, PCA lighting.

Images are ``(N, C, H, W)`` (``channel_axis=1``) or ``(N, H, W, C)`` (``channel_axis=-1``); a
rank-3 array is one image of that layout without the batch axis (``(C, H, W)`` / ``(H, W, C)``).
Every function returns a new array of the input's dtype (float32, float64, float16 or bfloat16)
and never modifies its input.

Random decisions come from the same counter-based generator as :func:`normkit.dropout`
(Philox4x32-10): each op uses the element stream ``u32(s', i)`` of its own seed
``s' = derive_seed(seed, tag)`` (crop 1, flip 2, noise 3, lighting 4) and a Box-Muller normal
stream on it; ``cpp/include/normkit/augment.h`` and ``cpp/src/rng/normal.h`` document both so
the results can be reproduced. Image ``n``'s decisions depend only on ``(seed, n)``, so results
are identical for every thread count and ISA. ``seed=None`` takes the next
:func:`normkit.random.default_seed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from . import _core
from . import random as _random
from ._args import clear_arg_errors

Array = np.ndarray
IntPair = Union[int, Sequence[int]]

__all__ = [
    "IMAGENET_EIGVALS",
    "IMAGENET_EIGVECS",
    "gaussian_noise",
    "pca_lighting",
    "random_crop",
    "random_flip",
]

#: Eigenvalues and eigenvectors (columns) of the RGB covariance of ImageNet pixels scaled to
#: [0, 1], as used by fb.resnet.torch / torchvision recipes for AlexNet-style PCA lighting.
IMAGENET_EIGVALS = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_EIGVECS = np.array(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ]
)


def _seed(seed: int | None) -> int:
    return _random.default_seed() if seed is None else seed


def _pair(v: IntPair, name: str) -> tuple[int, int]:
    """An int or a pair of ints as (rows, columns)."""
    items = (v, v) if isinstance(v, (int, np.integer)) else v
    try:
        a, b = items  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {v!r}") from None
    for e in (a, b):
        if not isinstance(e, (int, np.integer)) or isinstance(e, (bool, np.bool_)):
            raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {v!r}")
    return int(a), int(b)


@clear_arg_errors
def random_crop(
    images: Array, size: IntPair, *, padding: IntPair = 0, seed: int | None = None, channel_axis: int = 1
) -> Array:
    """Zero-pad each image, then crop a random ``size`` window out of it.

    ``y[n, :, i, j] = x_pad[n, :, oy_n + i, ox_n + j]`` where ``x_pad`` is ``x`` with ``pad_h``
    zero rows above and below and ``pad_w`` zero columns left and right, and the offsets are
    uniform over every valid position: ``oy_n`` in ``[0, H + 2 pad_h - h]``, ``ox_n`` in
    ``[0, W + 2 pad_w - w]``, independently per image.

    Parameters
    ----------
    images : ndarray (N, C, H, W) or (N, H, W, C), or one image (C, H, W) / (H, W, C)
        float32/float64/float16/bfloat16, any strides.
    size : int or (h, w)
        Output height and width, ``1 <= h <= H + 2 pad_h`` and ``1 <= w <= W + 2 pad_w``.
    padding : int or (pad_h, pad_w), >= 0
    seed : int in [0, 2**64), optional
    channel_axis : 1 (NCHW) or -1 (NHWC)

    Returns
    -------
    ndarray (N, C, h, w) / (N, h, w, C) (or without N), images' dtype; values copied exactly.

    Notes
    -----
    Offsets: ``oy_n = (u32(s', 2n) * (H + 2 pad_h - h + 1)) >> 32`` and
    ``ox_n = (u32(s', 2n + 1) * (W + 2 pad_w - w + 1)) >> 32`` with ``s' = derive_seed(seed, 1)``.
    """
    h, w = _pair(size, "size")
    pad_h, pad_w = _pair(padding, "padding")
    return _core.random_crop(images, h, w, pad_h, pad_w, _seed(seed), channel_axis)


@clear_arg_errors
def random_flip(images: Array, *, p: float = 0.5, seed: int | None = None, channel_axis: int = 1) -> Array:
    """Flip each image horizontally (along W) with probability ``p``.

    ``y[n] = x[n, ..., ::-1, :]`` (NHWC) / ``x[n, ..., ::-1]`` (NCHW) if image ``n`` is flipped,
    else ``x[n]``; image ``n`` is flipped iff ``u32(s', n) < floor(p * 2**32)`` with
    ``s' = derive_seed(seed, 2)``.

    Parameters
    ----------
    images : ndarray (N, C, H, W) or (N, H, W, C), or one image (C, H, W) / (H, W, C)
    p : float in [0, 1]; 0 copies, 1 flips every image
    seed : int in [0, 2**64), optional
    channel_axis : 1 (NCHW) or -1 (NHWC)

    Returns
    -------
    ndarray, images' shape and dtype; values copied exactly.
    """
    return _core.random_flip(images, p, _seed(seed), channel_axis)


@clear_arg_errors
def gaussian_noise(images: Array, std: float, *, seed: int | None = None) -> Array:
    """Additive Gaussian noise: ``y = x + std * z`` with ``z ~ N(0, 1)`` per element.

    ``z_i = normal(s', i)`` for element ``i`` in C order of ``images``, ``s' = derive_seed(seed, 3)``:
    float32 Box-Muller normals (``|z| <= 5.77``) from the Philox stream. The sum is computed in
    float32 (float64 for float64 data) and rounded once to the input's dtype.

    Parameters
    ----------
    images : ndarray of any shape (elementwise), float32/float64/float16/bfloat16
    std : float >= 0; 0 returns an exact copy
    seed : int in [0, 2**64), optional

    Returns
    -------
    ndarray, images' shape and dtype.
    """
    return _core.gaussian_noise(images, std, _seed(seed))


@clear_arg_errors
def pca_lighting(
    images: Array,
    eigvals: Array,
    eigvecs: Array,
    *,
    std: float = 0.1,
    seed: int | None = None,
    channel_axis: int = 1,
) -> Array:
    """AlexNet PCA lighting: add ``eigvecs @ (alpha * eigvals)`` to every pixel of each image.

    Per image ``n``, ``alpha_k = std * normal(s', n * C + k)`` (``k < C``,
    ``s' = derive_seed(seed, 4)``) and ``y[n, c, h, w] = x[n, c, h, w] + shift[n, c]`` with
    ``shift[n] = eigvecs @ (alpha * eigvals)`` (Krizhevsky et al., 2012).

    Parameters
    ----------
    images : ndarray (N, C, H, W) or (N, H, W, C), or one image (C, H, W) / (H, W, C)
    eigvals : array_like (C,), real; e.g. :data:`IMAGENET_EIGVALS` for RGB in [0, 1]
    eigvecs : array_like (C, C), real; column ``k`` is the eigenvector of ``eigvals[k]``
    std : float >= 0; 0 returns an exact copy
    seed : int in [0, 2**64), optional
    channel_axis : 1 (NCHW) or -1 (NHWC)

    Returns
    -------
    ndarray, images' shape and dtype.

    Notes
    -----
    ``shift`` is computed in float64 from the float32 normals and added in float32 (float64 for
    float64 data), rounded once to the input's dtype.
    """
    ev, evec = np.asarray(eigvals), np.asarray(eigvecs)
    return _core.pca_lighting(images, ev, evec, std, _seed(seed), channel_axis)
