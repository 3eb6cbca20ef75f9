"""Stateful layers for NumPy training loops, on normkit's native forward and backward kernels.

Each layer is used like a PyTorch module whose autograd is written out by hand::

    bn = nk.nn.BatchNorm(64)
    y = bn(x)                      # forward: caches what the backward needs
    dx = bn.backward(dy)           # gradient w.r.t. x; bn.grads["weight"], bn.grads["bias"]
    bn.eval()                      # running statistics from now on
    np.savez("bn.npz", **bn.state_dict())
    bn.load_state_dict(np.load("bn.npz"))

``params`` and ``grads`` are dicts keyed ``"weight"`` and ``"bias"`` (empty without an affine
transform). ``backward`` writes fresh gradient arrays into ``grads`` (it never accumulates) and
uses the statistics saved by the latest ``forward``. ``load_state_dict`` copies into the existing
parameter and buffer arrays, so references held by an optimizer stay valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from . import random as _random
from .channel import (
    batch_norm_backward,
    batch_norm_forward,
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
)
from .dropout import dropout, dropout_backward
from .lrn import local_response_norm_backward, local_response_norm_forward
from .norm import layer_norm_backward, layer_norm_forward, rms_norm_backward, rms_norm_forward

Array = np.ndarray
DTypeLike = Any

__all__ = [
    "BatchNorm",
    "Dropout",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LocalResponseNorm",
    "Module",
    "RMSNorm",
]

_BF16 = np.dtype(ml_dtypes.bfloat16)
_PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), _BF16)


def _param_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32, float64, float16 or bfloat16, got {dtype!r}") from None
    if dt not in _PARAM_DTYPES:
        raise TypeError(f"dtype must be float32, float64, float16 or bfloat16, got {dt.name}")
    return dt


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _shape(normalized_shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    try:
        dims = tuple(normalized_shape)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}") from None
    if not dims:
        raise ValueError("normalized_shape must have at least one dimension")
    return tuple(_positive_int(d, "normalized_shape") for d in dims)


def _channel_axis(channel_axis: object) -> int:
    if channel_axis not in (1, -1) or isinstance(channel_axis, bool):
        raise ValueError(f"channel_axis must be 1 or -1, got {channel_axis!r}")
    return int(channel_axis)  # type: ignore[call-overload]


def _momentum(momentum: object) -> float:
    m = float(momentum)  # type: ignore[arg-type]
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return m


def _eps(eps: object) -> float:
    e = float(eps)  # type: ignore[arg-type]
    if not e > 0.0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    return e


def _as_array(x: object) -> Array:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    return x


class Module:
    """Base class: parameters, buffers (running statistics), train/eval mode and state dicts.

    Attributes
    ----------
    params : dict of str to ndarray, the learnable parameters (``"weight"``, ``"bias"``)
    grads : dict of str to ndarray, their gradients from the latest ``backward`` (zeros before)
    buffers : dict of str to ndarray, non-learned state (``"running_mean"``, ``"running_var"``)
    training : bool, True in training mode (the default)
    """

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.training = True
        self._cache: tuple[Any, ...] | None = None

    # -- mode
    def train(self, mode: bool = True) -> Module:
        """Sets training mode (``mode=False``: eval mode); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Sets eval mode (running statistics, no dropout); returns self."""
        return self.train(False)

    # -- forward / backward
    def forward(self, x: Array) -> Array:  # pragma: no cover - overridden
        raise NotImplementedError

    def backward(self, dy: Array) -> Array:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def _saved(self) -> tuple[Any, ...]:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def _init_affine(self, shape: tuple[int, ...], dtype: np.dtype, weight: bool, bias: bool) -> None:
        if weight:
            self.params["weight"] = np.ones(shape, dtype)
        if bias:
            self.params["bias"] = np.zeros(shape, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def _set_grads(self, dweight: Array, dbias: Array | None = None) -> None:
        grads = {}
        if "weight" in self.params:
            grads["weight"] = dweight
        if "bias" in self.params and dbias is not None:
            grads["bias"] = dbias
        self.grads = grads

    # -- state
    def state_dict(self) -> dict[str, Array]:
        """Copies of the parameters and buffers, keyed by name (``np.savez(path, **sd)`` saves them)."""
        return {k: v.copy() for k, v in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> Module:
        """Copies ``state`` (e.g. ``np.load(path)`` of a saved ``state_dict()``) into the layer.

        Values are cast to the existing arrays' dtypes and written in place. Returns self.

        Raises
        ------
        ValueError
            Missing or unexpected keys, or an array of another shape.
        TypeError
            ``state`` is not a mapping, or a value is not a real-valued array.
        """
        if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
            raise TypeError(f"state must be a mapping of names to arrays, got {type(state).__name__}")
        targets = {**self.params, **self.buffers}
        keys = set(state.keys())
        missing, unexpected = sorted(set(targets) - keys), sorted(keys - set(targets))
        if missing or unexpected:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected} "
                f"(expected {sorted(targets)})"
            )
        values = {}
        for name, dst in targets.items():
            src = np.asarray(state[name])
            if src.dtype.kind == "V" and src.dtype.names is None and src.dtype.itemsize == 2 and dst.dtype == _BF16:
                src = src.view(_BF16)  # bfloat16 comes back from .npz as raw 2-byte records
            if src.dtype.kind not in "fiu" and src.dtype != _BF16:
                raise TypeError(f"state[{name!r}] must be a real-valued array, got dtype {src.dtype}")
            if src.shape != dst.shape:
                raise ValueError(f"state[{name!r}]: expected shape {dst.shape}, got {src.shape}")
            values[name] = src
        for name, src in values.items():
            targets[name][...] = src
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class _RowNorm(Module):
    """LayerNorm/RMSNorm: normalize each sample over its trailing ``normalized_shape`` axes."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = _eps(eps)

    def _axis(self, x: Array) -> int:
        n = len(self.normalized_shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n:]) != self.normalized_shape:
            raise ValueError(
                f"{type(self).__name__}: x's trailing dimensions must be {self.normalized_shape}, got shape {x.shape}"
            )
        return x.ndim - n


class LayerNorm(_RowNorm):
    """Layer normalization over the trailing ``normalized_shape`` axes (``torch.nn.LayerNorm``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance of each sample.

    Parameters
    ----------
    normalized_shape : int or tuple of ints, the trailing dimensions of x to normalize over
    eps : float > 0, added to the variance inside the square root
    affine : bool, learn ``weight`` (ones) and, with ``bias``, ``bias`` (zeros) of shape
        ``normalized_shape``
    bias : bool, learn a bias (only with ``affine``)
    dtype : float32 (default), float64, float16 or bfloat16, the parameters' dtype
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], *, eps: float = 1e-5, affine: bool = True,
                 bias: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__(normalized_shape, eps)
        self.affine, self.use_bias = bool(affine), bool(bias)
        self._init_affine(self.normalized_shape, _param_dtype(dtype), self.affine, self.affine and self.use_bias)

    def forward(self, x: Array) -> Array:
        axis = self._axis(_as_array(x))
        w, b = self.params.get("weight"), self.params.get("bias")
        y, mean, rstd = layer_norm_forward(x, w, b, axis=axis, eps=self.eps)
        self._cache = (x, mean, rstd, w, axis)
        return y

    def backward(self, dy: Array) -> Array:
        x, mean, rstd, w, axis = self._saved()
        dx, dw, db = layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
        self._set_grads(dw, db)
        return dx

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, affine={self.affine}, bias={self.use_bias}"


class RMSNorm(_RowNorm):
    """RMS normalization over the trailing ``normalized_shape`` axes (``torch.nn.RMSNorm``).

    ``y = x / sqrt(mean(x**2) + eps) * weight``.

    Parameters
    ----------
    normalized_shape : int or tuple of ints, the trailing dimensions of x to normalize over
    eps : float > 0, added to the mean square inside the square root
    affine : bool, learn ``weight`` (ones) of shape ``normalized_shape``
    dtype : float32 (default), float64, float16 or bfloat16, the parameters' dtype
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], *, eps: float = 1e-6, affine: bool = True,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(normalized_shape, eps)
        self.affine = bool(affine)
        self._init_affine(self.normalized_shape, _param_dtype(dtype), self.affine, False)

    def forward(self, x: Array) -> Array:
        axis = self._axis(_as_array(x))
        w = self.params.get("weight")
        y, rstd = rms_norm_forward(x, w, axis=axis, eps=self.eps)
        self._cache = (x, rstd, w, axis)
        return y

    def backward(self, dy: Array) -> Array:
        x, rstd, w, axis = self._saved()
        dx, dw = rms_norm_backward(dy, x, rstd, w, axis=axis)
        self._set_grads(dw)
        return dx

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, affine={self.affine}"


class _ChannelNorm(Module):
    """Shared checks of the channel-wise norms: x is (N, C, ...) or (N, ..., C)."""

    def __init__(self, num_features: int, eps: float, channel_axis: int) -> None:
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps = _eps(eps)
        self.channel_axis = _channel_axis(channel_axis)

    def _check(self, x: object) -> Array:
        x = _as_array(x)
        if x.ndim < 2 or x.shape[self.channel_axis] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: x must have rank >= 2 and {self.num_features} channels on axis "
                f"{self.channel_axis}, got shape {x.shape}"
            )
        return x

    def _init_running(self, dtype: np.dtype) -> None:
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype)

    def _init_tracked(self, momentum: float, affine: bool, track_running_stats: bool, dtype: DTypeLike) -> None:
        """Momentum, optional per-channel affine parameters and running statistics (BatchNorm, InstanceNorm)."""
        self.momentum = _momentum(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dt = _param_dtype(dtype)
        self._init_affine((self.num_features,), dt, self.affine, self.affine)
        if self.track_running_stats:
            self._init_running(dt)


class BatchNorm(_ChannelNorm):
    """Batch normalization of any rank (``torch.nn.BatchNorm1d/2d/3d`` in one layer).

    Training mode normalizes with the batch statistics over every axis but ``channel_axis`` and
    updates ``running_mean``/``running_var`` in place:
    ``r = (1 - momentum) * r + momentum * batch_stat`` (unbiased variance for ``running_var``).
    Eval mode normalizes with the running statistics. Without ``track_running_stats`` there are
    no running statistics and both modes use the batch statistics.

    Parameters
    ----------
    num_features : int, the number of channels C
    eps : float > 0
    momentum : float in [0, 1], weight of the new batch in the running statistics
    affine : bool, learn ``weight`` (ones) and ``bias`` (zeros) of shape ``(C,)``
    track_running_stats : bool, keep ``running_mean`` (zeros) and ``running_var`` (ones)
    channel_axis : 1 (``(N, C, *spatial)``) or -1 (channels-last ``(N, *spatial, C)``)
    dtype : float32 (default), float64, float16 or bfloat16, the parameters' and running
        statistics' dtype
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, channel_axis: int = 1, dtype: DTypeLike = np.float32) -> None:
        super().__init__(num_features, eps, channel_axis)
        self._init_tracked(momentum, affine, track_running_stats, dtype)

    def forward(self, x: Array) -> Array:
        x = self._check(x)
        w, b = self.params.get("weight"), self.params.get("bias")
        rm, rv = self.buffers.get("running_mean"), self.buffers.get("running_var")
        batch_stats = self.training or not self.track_running_stats
        y, mean, rstd = batch_norm_forward(x, w, b, rm, rv, training=batch_stats, momentum=self.momentum,
                                           eps=self.eps, channel_axis=self.channel_axis)
        self._cache = (x, mean, rstd, w, batch_stats)
        return y

    def backward(self, dy: Array) -> Array:
        x, mean, rstd, w, batch_stats = self._saved()
        dx, dw, db = batch_norm_backward(dy, x, mean, rstd, w, training=batch_stats, channel_axis=self.channel_axis)
        self._set_grads(dw, db)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, channel_axis={self.channel_axis}")


class GroupNorm(_ChannelNorm):
    """Group normalization (``torch.nn.GroupNorm``): statistics per sample and group of
    ``num_channels // num_groups`` channels, over the group's channels and spatial positions.

    Parameters
    ----------
    num_groups : int, must divide ``num_channels``
    num_channels : int, the number of channels C
    eps : float > 0
    affine : bool, learn per-channel ``weight`` (ones) and ``bias`` (zeros) of shape ``(C,)``
    channel_axis : 1 or -1
    dtype : float32 (default), float64, float16 or bfloat16, the parameters' dtype
    """

    def __init__(self, num_groups: int, num_channels: int, *, eps: float = 1e-5, affine: bool = True,
                 channel_axis: int = 1, dtype: DTypeLike = np.float32) -> None:
        super().__init__(num_channels, eps, channel_axis)
        self.num_groups = _positive_int(num_groups, "num_groups")
        if self.num_features % self.num_groups:
            raise ValueError(f"num_groups ({self.num_groups}) must divide num_channels ({self.num_features})")
        self.affine = bool(affine)
        self._init_affine((self.num_features,), _param_dtype(dtype), self.affine, self.affine)

    @property
    def num_channels(self) -> int:
        return self.num_features

    def forward(self, x: Array) -> Array:
        x = self._check(x)
        w, b = self.params.get("weight"), self.params.get("bias")
        y, mean, rstd = group_norm_forward(x, self.num_groups, w, b, eps=self.eps, channel_axis=self.channel_axis)
        self._cache = (x, mean, rstd, w)
        return y

    def backward(self, dy: Array) -> Array:
        x, mean, rstd, w = self._saved()
        dx, dw, db = group_norm_backward(dy, x, mean, rstd, w, num_groups=self.num_groups,
                                         channel_axis=self.channel_axis)
        self._set_grads(dw, db)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_features}, eps={self.eps}, affine={self.affine}, "
                f"channel_axis={self.channel_axis}")


class InstanceNorm(_ChannelNorm):
    """Instance normalization of any rank (``torch.nn.InstanceNorm1d/2d/3d``): statistics per
    sample and channel over the spatial positions.

    With ``track_running_stats``, training mode also updates ``running_mean``/``running_var``
    with the batch averages of the instance statistics, and eval mode normalizes with them;
    otherwise both modes use the instance statistics (PyTorch's behaviour).

    Parameters
    ----------
    num_features : int, the number of channels C
    eps : float > 0
    momentum : float in [0, 1], weight of the new batch in the running statistics
    affine : bool, learn ``weight`` (ones) and ``bias`` (zeros) of shape ``(C,)`` (default False)
    track_running_stats : bool (default False)
    channel_axis : 1 or -1
    dtype : float32 (default), float64, float16 or bfloat16, the parameters' and running
        statistics' dtype
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False, channel_axis: int = 1, dtype: DTypeLike = np.float32) -> None:
        super().__init__(num_features, eps, channel_axis)
        self._init_tracked(momentum, affine, track_running_stats, dtype)

    def forward(self, x: Array) -> Array:
        x = self._check(x)
        w, b = self.params.get("weight"), self.params.get("bias")
        rm, rv = self.buffers.get("running_mean"), self.buffers.get("running_var")
        input_stats = self.training or not self.track_running_stats
        y, mean, rstd = instance_norm_forward(x, w, b, rm, rv, use_input_stats=input_stats, momentum=self.momentum,
                                              eps=self.eps, channel_axis=self.channel_axis)
        self._cache = (x, mean, rstd, w, input_stats)
        return y

    def backward(self, dy: Array) -> Array:
        x, mean, rstd, w, input_stats = self._saved()
        dx, dw, db = instance_norm_backward(dy, x, mean, rstd, w, channel_axis=self.channel_axis,
                                            use_input_stats=input_stats)
        self._set_grads(dw, db)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, channel_axis={self.channel_axis}")


class LocalResponseNorm(Module):
    """Local response normalization across channels (``torch.nn.LocalResponseNorm``, AlexNet):
    ``y = x * (k + alpha / size * window_sum(x**2)) ** -beta``. No parameters.

    Parameters
    ----------
    size : int >= 1, channels in the window
    alpha, beta, k : float
    channel_axis : 1 or -1
    """

    def __init__(self, size: int, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 channel_axis: int = 1) -> None:
        super().__init__()
        self.size = _positive_int(size, "size")
        self.alpha, self.beta, self.k = float(alpha), float(beta), float(k)
        self.channel_axis = _channel_axis(channel_axis)

    def forward(self, x: Array) -> Array:
        x = _as_array(x)
        y, scale = local_response_norm_forward(x, self.size, alpha=self.alpha, beta=self.beta, k=self.k,
                                               channel_axis=self.channel_axis)
        self._cache = (x, y, scale)
        return y

    def backward(self, dy: Array) -> Array:
        x, y, scale = self._saved()
        (dx,) = local_response_norm_backward(dy, x, y, scale, self.size, alpha=self.alpha, beta=self.beta,
                                             channel_axis=self.channel_axis)
        return dx

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, channel_axis={self.channel_axis}"


class Dropout(Module):
    """Inverted dropout (``torch.nn.Dropout``): in training, ``y = mask * x / (1 - p)`` with a
    fresh mask per call; in eval mode the identity.

    Each training call draws a new 64-bit seed, from a generator seeded with ``seed`` when given
    (so a run is reproducible), otherwise from :func:`normkit.random.default_seed`. The mask is
    never stored: ``backward`` regenerates it from that seed (``last_seed``).

    Parameters
    ----------
    p : float in [0, 1), the probability of dropping an element
    seed : int >= 0, optional
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
        self.p, self.seed = p, seed
        self._gen = None if seed is None else np.random.Generator(np.random.PCG64(int(seed)))
        self.last_seed: int | None = None

    def _next_seed(self) -> int:
        if self._gen is None:
            return _random.default_seed()
        return int(self._gen.integers(0, 2**64, dtype=np.uint64))

    def forward(self, x: Array) -> Array:
        x = _as_array(x)
        if not self.training or self.p == 0.0:
            self._cache = (None, x.shape)
            return x
        s = self._next_seed()
        self.last_seed = s
        self._cache = (s, x.shape)
        return dropout(x, self.p, seed=s)

    def backward(self, dy: Array) -> Array:
        s, shape = self._saved()
        if np.shape(dy) != shape:
            raise ValueError(f"Dropout.backward: dy must have the forward input's shape {shape}, got {np.shape(dy)}")
        if s is None:
            return dy
        (dx,) = dropout_backward(dy, p=self.p, seed=s)
        return dx

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}"
