"""Local response normalization across channels (AlexNet), forward and backward.

PyTorch / ONNX / Caffe conventions: with ``before = size // 2`` and ``after = (size - 1) // 2``
(PyTorch's centring) and zero padding outside the channels,

    scale[c] = k + alpha / size * sum(x[c']**2 for c' in [c - before, c + after])
    y[c]     = x[c] * scale[c] ** -beta

computed in one fused pass (window sums of squares in double precision, arithmetic in float32,
float64 for float64 data). ``x`` is ``(N, C, *spatial)`` with ``channel_axis=1`` or
``(N, *spatial, C)`` with ``channel_axis=-1``.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._args import clear_arg_errors

Array = np.ndarray

__all__ = ["local_response_norm", "local_response_norm_backward", "local_response_norm_forward"]


@clear_arg_errors
def local_response_norm(
    x: Array,
    size: int,
    *,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    channel_axis: int = 1,
    out: Array | None = None,
) -> Array:
    """Local response normalization: ``y = x * (k + alpha/size * window_sum(x**2)) ** -beta``.

    Parameters
    ----------
    x : ndarray, float32/float64/float16/bfloat16, rank >= 2
    size : int >= 1, channels in the window
    alpha, beta : float; k : float > 0
    channel_axis : 1 or -1
    out : ndarray, optional; C-contiguous, x's shape and dtype; may be ``x`` itself

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    return _core.local_response_norm(x, size, alpha, beta, k, channel_axis, out, False)


@clear_arg_errors
def local_response_norm_forward(
    x: Array,
    size: int,
    *,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    channel_axis: int = 1,
    out: Array | None = None,
) -> tuple[Array, Array]:
    """:func:`local_response_norm` that also returns ``scale`` for the backward.

    Returns
    -------
    y : ndarray, x's shape and dtype
    scale : ndarray, x's shape, float32 (float64 for float64 x): ``k + alpha/size * window_sum(x**2)``
    """
    return _core.local_response_norm(x, size, alpha, beta, k, channel_axis, out, True)


@clear_arg_errors
def local_response_norm_backward(
    dy: Array,
    x: Array,
    y: Array,
    scale: Array,
    size: int,
    *,
    alpha: float = 1e-4,
    beta: float = 0.75,
    channel_axis: int = 1,
) -> tuple[Array]:
    """Backward of :func:`local_response_norm`.

    ``dx[c] = dy[c] * scale[c]**-beta - 2*alpha*beta/size * x[c] * sum(dy[j] * y[j] / scale[j])``
    over the channels ``j`` whose window holds ``c`` (``j`` in ``[c - after, c + before]``).

    Returns
    -------
    (dx,) : ndarray, x's shape and dtype
    """
    return _core.local_response_norm_backward(dy, x, y, scale, size, alpha, beta, 1.0, channel_axis, None)
