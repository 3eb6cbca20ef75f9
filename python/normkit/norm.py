"""Row normalizations over trailing axes: LayerNorm and RMSNorm, forward and backward.

``axis`` is the first normalized axis (ONNX semantics): the input is viewed as ``M`` rows of
``N = prod(x.shape[axis:])`` values. Arithmetic is float32 (float64 for float64 input); saved
statistics ``mean``/``rstd`` have shape ``x.shape[:axis]`` and dtype float32 (float64 for
float64 input).
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._args import clear_arg_errors

Array = np.ndarray


def _fwd(rms, x, res, w, b, axis, eps, out, want_stats):
    return _core.row_norm_forward(rms, x, res, w, b, axis, eps, out, want_stats)


def _bwd(rms, dy, x, mean, rstd, w, axis, out):
    return _core.row_norm_backward(rms, dy, x, mean, rstd, w, axis, out)


@clear_arg_errors
def layer_norm(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-5,
    out: Array | None = None,
) -> Array:
    """Layer normalization over ``x.shape[axis:]``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance of each row.

    Parameters
    ----------
    x : ndarray, float32/float64/float16/bfloat16, any shape and strides
    weight, bias : ndarray of shape ``x.shape[axis:]``, x's dtype or float32, optional
    axis : int, first normalized axis (default -1: the last axis)
    eps : float > 0, added to the variance inside the square root
    out : ndarray, optional; C-contiguous, x's shape and dtype; may be ``x`` itself

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    return _fwd(False, x, None, weight, bias, axis, eps, out, False)


@clear_arg_errors
def layer_norm_forward(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-5,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """:func:`layer_norm` that also returns the statistics the backward needs.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean : ndarray of shape ``x.shape[:axis]``, float32 (float64 for float64 x)
    rstd : ndarray like ``mean``, ``1 / sqrt(var + eps)``
    """
    return _fwd(False, x, None, weight, bias, axis, eps, out, True)


@clear_arg_errors
def layer_norm_backward(
    dy: Array,
    x: Array,
    mean: Array,
    rstd: Array,
    weight: Array | None = None,
    *,
    axis: int = -1,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`layer_norm`.

    With ``xhat = (x - mean) * rstd`` and ``g = dy * weight`` (per row of N values):
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``, ``dweight = sum(dy * xhat)`` and
    ``dbias = sum(dy)`` over the rows.

    Parameters
    ----------
    dy : ndarray, x's shape and dtype
    x, mean, rstd : the forward's input and its saved statistics
    weight : the forward's weight, optional
    axis : the forward's axis
    out : ndarray for ``dx``, optional; may be ``dy`` or ``x`` itself

    Returns
    -------
    dx : ndarray, x's shape and dtype
    dweight, dbias : ndarrays of shape ``x.shape[axis:]`` in weight's dtype (x's dtype when no
        weight was given: the gradient of an implicit weight of ones / bias of zeros)
    """
    return _bwd(False, dy, x, mean, rstd, weight, axis, out)


@clear_arg_errors
def rms_norm(
    x: Array,
    weight: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-6,
    out: Array | None = None,
) -> Array:
    """RMS normalization over ``x.shape[axis:]``: ``y = x / sqrt(mean(x**2) + eps) * weight``.

    Parameters and return value as in :func:`layer_norm` (no bias).
    """
    return _fwd(True, x, None, weight, None, axis, eps, out, False)


@clear_arg_errors
def rms_norm_forward(
    x: Array,
    weight: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-6,
    out: Array | None = None,
) -> tuple[Array, Array]:
    """:func:`rms_norm` that also returns ``rstd = 1 / sqrt(mean(x**2) + eps)`` (shape
    ``x.shape[:axis]``)."""
    return _fwd(True, x, None, weight, None, axis, eps, out, True)


@clear_arg_errors
def rms_norm_backward(
    dy: Array,
    x: Array,
    rstd: Array,
    weight: Array | None = None,
    *,
    axis: int = -1,
    out: Array | None = None,
) -> tuple[Array, Array]:
    """Gradients of :func:`rms_norm`: with ``xhat = x * rstd``, ``g = dy * weight``,
    ``dx = rstd * (g - xhat * mean(g * xhat))`` and ``dweight = sum(dy * xhat)`` over the rows.

    Returns ``(dx, dweight)``; see :func:`layer_norm_backward` for dtypes and ``out``.
    """
    return _bwd(True, dy, x, None, rstd, weight, axis, out)


@clear_arg_errors
def add_layer_norm(
    x: Array,
    residual: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-5,
) -> tuple[Array, Array]:
    """Fused residual add and LayerNorm: ``h = x + residual`` (rounded to x's dtype),
    ``y = layer_norm(h)``.

    Returns ``(y, h)``; ``y`` equals ``layer_norm(h, weight, bias)`` bitwise, so the backward is
    :func:`layer_norm_backward` on ``h`` (its ``dx`` is also the gradient of ``residual``).
    """
    return _fwd(False, x, residual, weight, bias, axis, eps, None, False)


@clear_arg_errors
def add_layer_norm_forward(
    x: Array,
    residual: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-5,
) -> tuple[Array, Array, Array, Array]:
    """:func:`add_layer_norm` that also returns the statistics: ``(y, h, mean, rstd)``."""
    return _fwd(False, x, residual, weight, bias, axis, eps, None, True)


@clear_arg_errors
def add_rms_norm(
    x: Array,
    residual: Array,
    weight: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-6,
) -> tuple[Array, Array]:
    """Fused residual add and RMSNorm: ``h = x + residual``, ``y = rms_norm(h)``; returns ``(y, h)``."""
    return _fwd(True, x, residual, weight, None, axis, eps, None, False)


@clear_arg_errors
def add_rms_norm_forward(
    x: Array,
    residual: Array,
    weight: Array | None = None,
    *,
    axis: int = -1,
    eps: float = 1e-6,
) -> tuple[Array, Array, Array]:
    """:func:`add_rms_norm` that also returns ``rstd``: ``(y, h, rstd)``."""
    return _fwd(True, x, residual, weight, None, axis, eps, None, True)


__all__ = [
    "add_layer_norm",
    "add_layer_norm_forward",
    "add_rms_norm",
    "add_rms_norm_forward",
    "layer_norm",
    "layer_norm_backward",
    "layer_norm_forward",
    "rms_norm",
    "rms_norm_backward",
    "rms_norm_forward",
]
