"""Channel-wise normalizations: BatchNorm, GroupNorm, InstanceNorm (forward and backward).

``x`` has shape ``(N, C, *spatial)`` with ``channel_axis=1`` or ``(N, *spatial, C)`` with
``channel_axis=-1`` (channels-last, run by its own kernels without transposing). Any rank >= 2:
BatchNorm1d on ``(N, C)`` or ``(N, C, L)``, 2d, 3d. ``weight``/``bias`` have shape ``(C,)`` and
x's dtype or float32. Statistics are float32 (float64 for float64 input); arithmetic is float32
(float64) with double-precision merges of per-chunk statistics, so results are bitwise identical
for any thread count.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._args import clear_arg_errors

Array = np.ndarray


@clear_arg_errors
def batch_norm(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    *,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    channel_axis: int = 1,
    out: Array | None = None,
) -> Array:
    """Batch normalization: ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``.

    Training (``training=True``) normalizes with the batch statistics over every axis but the
    channel axis (biased variance) and, when ``running_mean``/``running_var`` are given, updates
    them in place: ``r = (1 - momentum) * r + momentum * batch_stat`` with the unbiased batch
    variance for ``running_var`` (PyTorch's convention; see :func:`keras_momentum`). Eval mode
    (the default, as in ``torch.nn.functional.batch_norm``) normalizes with the running
    statistics, which it requires.

    Parameters
    ----------
    x : ndarray, float32/float64/float16/bfloat16, rank >= 2
    weight, bias : ndarray of shape ``(C,)``, optional
    running_mean, running_var : ndarray of shape ``(C,)``, any float dtype, optional (both or
        neither); updated in place in training
    training : bool
    momentum : float in [0, 1], weight of the new batch in the running statistics
    eps : float > 0
    channel_axis : 1 or -1
    out : ndarray, optional; C-contiguous, x's shape and dtype; may be ``x`` itself

    Returns
    -------
    y : ndarray, x's shape and dtype

    Raises
    ------
    ValueError
        Fewer than 2 values per channel in training, running statistics missing in eval mode,
        bad shapes, ``channel_axis``, ``eps`` or ``momentum``.
    """
    args = (x, weight, bias, running_mean, running_var, training, momentum, eps, channel_axis, out, False)
    return _core.batch_norm_forward(*args)


@clear_arg_errors
def batch_norm_forward(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    *,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    channel_axis: int = 1,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """:func:`batch_norm` that also returns ``(save_mean, save_rstd)`` of shape ``(C,)``: the
    batch statistics in training, the running ones (``1 / sqrt(running_var + eps)``) in eval."""
    args = (x, weight, bias, running_mean, running_var, training, momentum, eps, channel_axis, out, True)
    return _core.batch_norm_forward(*args)


@clear_arg_errors
def batch_norm_backward(
    dy: Array,
    x: Array,
    save_mean: Array,
    save_rstd: Array,
    weight: Array | None = None,
    *,
    training: bool = True,
    channel_axis: int = 1,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`batch_norm`: ``(dx, dweight, dbias)``.

    With ``xhat = (x - save_mean) * save_rstd``: ``dweight = sum(dy * xhat)``, ``dbias = sum(dy)``
    over every axis but the channel. Training: ``dx = weight * save_rstd * (dy - mean(dy) -
    xhat * mean(dy * xhat))``. Eval (``training=False``, constant statistics): ``dx = dy * weight *
    save_rstd``. ``out`` receives ``dx`` and may be ``dy`` itself.
    """
    args = (dy, x, save_mean, save_rstd, weight, training, channel_axis, out)
    return _core.batch_norm_backward(*args)


@clear_arg_errors
def group_norm(
    x: Array,
    num_groups: int,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int = 1,
    out: Array | None = None,
) -> Array:
    """Group normalization: statistics per (sample, group of ``C // num_groups`` channels) over the
    group's channels and all spatial positions; ``weight``/``bias`` per channel.

    ``num_groups=1`` is LayerNorm over ``(C, *spatial)``; ``num_groups=C`` is InstanceNorm.
    ``num_groups`` must divide C (``ValueError`` otherwise).
    """
    args = (x, num_groups, weight, bias, eps, channel_axis, out, False)
    return _core.group_norm_forward(*args)


@clear_arg_errors
def group_norm_forward(
    x: Array,
    num_groups: int,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int = 1,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """:func:`group_norm` that also returns ``(mean, rstd)`` of shape ``(N, num_groups)``."""
    args = (x, num_groups, weight, bias, eps, channel_axis, out, True)
    return _core.group_norm_forward(*args)


@clear_arg_errors
def group_norm_backward(
    dy: Array,
    x: Array,
    mean: Array,
    rstd: Array,
    weight: Array | None = None,
    *,
    num_groups: int,
    channel_axis: int = 1,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`group_norm`: ``(dx, dweight, dbias)``. Per group, with ``g = dy *
    weight[c]``: ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``."""
    args = (dy, x, mean, rstd, weight, num_groups, channel_axis, out)
    return _core.group_norm_backward(*args)


@clear_arg_errors
def instance_norm(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    *,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    channel_axis: int = 1,
    out: Array | None = None,
) -> Array:
    """Instance normalization: statistics per (sample, channel) over the spatial positions.

    ``use_input_stats=True`` (default) normalizes with the instance statistics and, when running
    statistics are given, updates them in place with the batch averages of the per-instance mean
    and unbiased variance (PyTorch's behaviour). ``use_input_stats=False`` normalizes with the
    running statistics, which it requires. ``affine`` is optional: omit ``weight``/``bias``.
    """
    args = (x, weight, bias, running_mean, running_var, use_input_stats, momentum, eps, channel_axis, out, False)
    return _core.instance_norm_forward(*args)


@clear_arg_errors
def instance_norm_forward(
    x: Array,
    weight: Array | None = None,
    bias: Array | None = None,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    *,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    channel_axis: int = 1,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """:func:`instance_norm` that also returns ``(mean, rstd)`` of shape ``(N, C)``."""
    args = (x, weight, bias, running_mean, running_var, use_input_stats, momentum, eps, channel_axis, out, True)
    return _core.instance_norm_forward(*args)


@clear_arg_errors
def instance_norm_backward(
    dy: Array,
    x: Array,
    mean: Array,
    rstd: Array,
    weight: Array | None = None,
    *,
    channel_axis: int = 1,
    use_input_stats: bool = True,
    out: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`instance_norm`: ``(dx, dweight, dbias)``. With
    ``use_input_stats=False`` (running statistics, constants) the backward is the affine map's."""
    args = (dy, x, mean, rstd, weight, channel_axis, use_input_stats, out)
    return _core.instance_norm_backward(*args)


def keras_momentum(momentum: float) -> float:
    """Convert a Keras/ONNX momentum (weight of the old running value) to normkit's/PyTorch's
    (weight of the new batch): ``1 - momentum``."""
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return 1.0 - m


__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_forward",
    "group_norm",
    "group_norm_backward",
    "group_norm_forward",
    "instance_norm",
    "instance_norm_backward",
    "instance_norm_forward",
    "keras_momentum",
]
