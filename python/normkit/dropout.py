"""Inverted dropout, forward and backward, on counter-based random numbers.

Element ``i`` (in C order of ``x``) is kept iff ``philox_u32(seed, i) >= floor(p * 2**32)``,
where ``philox_u32(seed, i)`` is word ``w = (i % 64) // 16`` of Philox4x32-10 (Salmon et al.,
SC'11) applied to block ``b = (i // 64) * 16 + i % 16``, i.e. to the counter
``(b mod 2**32, b >> 32, 0, 0)``, with the key ``(seed mod 2**32, seed >> 32)``: groups of 64
elements come from 16 blocks laid out word-major, so that vector lanes compute consecutive
elements (see ``cpp/src/rng/philox.h``). Kept values are ``x / (1 - p)`` (computed as ``x * (1 / (1 - p))`` in
float32, float64 for float64 data); dropped ones are exactly 0, also for inf or NaN inputs. The
mask therefore depends only on ``(seed, x.shape)``: the same for every thread count and ISA, and
the backward can regenerate it from the seed instead of storing it.
"""

from __future__ import annotations

import numpy as np

from . import _core
from . import random as _random
from ._args import clear_arg_errors

Array = np.ndarray

__all__ = ["dropout", "dropout_backward", "dropout_forward"]


def _seed(seed: int | None) -> int:
    return _random.default_seed() if seed is None else seed


@clear_arg_errors
def dropout(
    x: Array, p: float = 0.5, *, training: bool = True, seed: int | None = None, out: Array | None = None
) -> Array:
    """Inverted dropout: ``y = mask * x / (1 - p)`` with ``P(mask = 0) = p``.

    Parameters
    ----------
    x : ndarray, float32/float64/float16/bfloat16, any shape and strides
    p : float in [0, 1), the probability of dropping an element
    training : bool; ``False`` returns ``x`` unchanged (copied into ``out`` when given)
    seed : int in [0, 2**64), optional; ``None`` takes :func:`normkit.random.default_seed`
    out : ndarray, optional; C-contiguous, x's shape and dtype; may be ``x`` itself

    Returns
    -------
    y : ndarray, x's shape and dtype

    Raises
    ------
    ValueError
        ``p`` outside [0, 1), ``seed`` outside [0, 2**64), bad ``out``.
    """
    if not training:
        return _core.dropout_identity(x, p, out)
    return _core.dropout(x, p, _seed(seed), out, False)


@clear_arg_errors
def dropout_forward(x: Array, p: float = 0.5, *, seed: int | None = None) -> tuple[Array, Array]:
    """Training forward of :func:`dropout` that also returns the mask.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mask : ndarray of bool, x's shape; True where the element was kept
    """
    return _core.dropout(x, p, _seed(seed), None, True)


@clear_arg_errors
def dropout_backward(
    dy: Array, mask: Array | None = None, *, p: float = 0.5, seed: int | None = None
) -> tuple[Array]:
    """Backward of :func:`dropout`: ``dx = mask * dy / (1 - p)``.

    Give the forward's ``mask``, or the ``seed`` it used (the mask is then regenerated on the
    fly, with no mask memory); ``p`` must be the forward's.

    Returns
    -------
    (dx,) : ndarray, dy's shape and dtype

    Raises
    ------
    ValueError
        Neither ``mask`` nor ``seed`` given, ``mask`` of another shape, bad ``p``.
    TypeError
        ``mask`` not a bool array.
    """
    return (_core.dropout_backward(dy, mask, p, seed, None),)
