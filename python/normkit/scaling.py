"""Feature scaling (input normalization): standardization and min-max scaling, as functions and
as scikit-learn-style scalers.

Statistics come from one native pass over the data: per-feature mean and M2 (two-pass within
fixed row chunks, chunks merged with Chan's formula in float64 in chunk order), minimum and
maximum, so they are accurate for features with a large mean and bitwise identical for any
thread count. The scaled output is one native ``y = (x - a) * b + c`` pass in float32 (float64
for float64 input), rounded once to the input's dtype.

Conventions (as scikit-learn): population statistics (``ddof=0``); a constant feature
(min == max) has standard deviation 0 and is divided by 1 instead, as is a feature with zero
range in min-max scaling. Unlike scikit-learn, a NaN is not ignored: it makes every statistic of
its own feature NaN (the other features are unaffected). Statistics are returned as float64 for
float64 input and float32 otherwise.
"""

from __future__ import annotations

import numpy as np

from . import _core, _gpu

Array = np.ndarray


def _stat_dtype(x: Array) -> np.dtype:
    return np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)


def _check_array(x: object, name: str = "x") -> Array:
    if not isinstance(x, np.ndarray):
        if _gpu.any_on_gpu(x):
            raise TypeError(f"feature scaling has no CUDA kernel: {name} is {_gpu._where(x)}; pass NumPy arrays")
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    return x


def _axis(axis: object, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array of {ndim} dimension(s); "
                         f"expected -{ndim} <= axis < {ndim}" if ndim else "x must have ndim >= 1")
    return int(axis) % ndim


def _samples_first(x: Array, axis: int) -> Array:
    """x with the sample axis first, as (n_samples, n_features) (a view when possible)."""
    xm = np.moveaxis(x, axis, 0)
    return xm.reshape(xm.shape[0], int(np.prod(xm.shape[1:], dtype=np.int64)))


def _from_samples_first(y2: Array, x: Array, axis: int) -> Array:
    y = np.moveaxis(y2.reshape(np.moveaxis(x, axis, 0).shape), 0, axis)
    return y if axis == 0 else np.ascontiguousarray(y)


def _stats(x2: Array) -> tuple[Array, Array, Array, Array]:
    """(mean, var, min, max) per column of a 2-D array, float64; var is exactly 0 where min == max."""
    mean, m2, mn, mx = _core.col_stats(x2)
    var = m2 / max(x2.shape[0], 1)
    var[mn == mx] = 0.0
    return mean, var, mn, mx


def _nonzero(scale: Array) -> Array:
    return np.where(scale == 0.0, 1.0, scale)


def standardize(x: Array, *, axis: int = 0, eps: float = 0.0) -> tuple[Array, Array, Array]:
    """Standardizes each feature: ``y = (x - mean) / s`` with ``s = sqrt(std**2 + eps)``, and
    ``s = 1`` where that is 0 (constant features give ``y = 0``).

    ``axis`` is the sample axis: the statistics are taken over it, one per position of the other
    axes (``mean = x.mean(axis=axis)``, ``std = x.std(axis=axis)``, population ``ddof=0``).

    Parameters
    ----------
    x : ndarray, float32/float64/float16/bfloat16, ndim >= 1, any strides
    axis : int, the sample axis (0: rows are samples, as scikit-learn)
    eps : float >= 0, added to the variance inside the square root

    Returns
    -------
    y : ndarray, x's shape and dtype (C-contiguous)
    mean : ndarray, shape ``x.shape`` without ``axis``; float64 for float64 x, else float32
    std : ndarray, same shape and dtype as ``mean``: ``sqrt(var)``, without eps

    Notes
    -----
    The division is a multiplication by ``1 / s`` computed in float64 then rounded to the compute
    type (within one rounding of scikit-learn's ``(x - mean) / scale``).
    """
    x = _check_array(x)
    ax = _axis(axis, x.ndim)
    eps = float(eps)
    if not (eps >= 0.0 and np.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    x2 = _samples_first(x, ax)
    mean, var, _, _ = _stats(x2)
    scale = _nonzero(np.sqrt(var + eps))
    y = _from_samples_first(_core.col_affine(x2, mean, 1.0 / scale, np.zeros_like(mean)), x, ax)
    feat = x.shape[:ax] + x.shape[ax + 1:]
    sd = _stat_dtype(x)
    return y, mean.astype(sd).reshape(feat), np.sqrt(var).astype(sd).reshape(feat)


def _check_range(feature_range: object) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in feature_range)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"feature_range must be a pair of numbers (min, max), got {feature_range!r}") from None
    if not (lo < hi and np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"feature_range must be finite with min < max, got {feature_range!r}")
    return lo, hi


def minmax_scale(
    x: Array, *, axis: int = 0, feature_range: tuple[float, float] = (0.0, 1.0)
) -> tuple[Array, Array, Array]:
    """Scales each feature to ``feature_range``:
    ``y = (x - data_min) * (hi - lo) / (data_max - data_min) + lo``, with a zero range replaced
    by 1 (a constant feature maps to ``lo``).

    Parameters
    ----------
    x : ndarray, float32/float64/float16/bfloat16, ndim >= 1, any strides
    axis : int, the sample axis (statistics are taken over it)
    feature_range : (lo, hi), finite, lo < hi

    Returns
    -------
    y : ndarray, x's shape and dtype (C-contiguous)
    data_min, data_max : ndarray, shape ``x.shape`` without ``axis``; float64 for float64 x,
        else float32
    """
    x = _check_array(x)
    ax = _axis(axis, x.ndim)
    lo, hi = _check_range(feature_range)
    x2 = _samples_first(x, ax)
    _, _, mn, mx = _stats(x2)
    scale = (hi - lo) / _nonzero(mx - mn)
    y = _from_samples_first(_core.col_affine(x2, mn, scale, np.full_like(mn, lo)), x, ax)
    feat = x.shape[:ax] + x.shape[ax + 1:]
    sd = _stat_dtype(x)
    return y, mn.astype(sd).reshape(feat), mx.astype(sd).reshape(feat)


class _Scaler:
    """Shared checks of the scalers: 2-D input, fitted state, feature count."""

    def _check_x(self, X: object) -> Array:
        X = _check_array(X, "X")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        return X

    def _check_fitted(self, X: Array) -> None:
        if getattr(self, "n_samples_seen_", None) is None:
            raise ValueError(f"This {type(self).__name__} instance is not fitted yet; call fit(X) first")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")

    def fit_transform(self, X: Array) -> Array:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)


class StandardScaler(_Scaler):
    """Standardizes features: ``transform(X) = (X - mean_) / scale_`` (scikit-learn semantics).

    Parameters
    ----------
    with_mean : bool, subtract the mean
    with_std : bool, divide by the standard deviation (population, ``ddof=0``; 1 for a constant
        feature)

    Attributes
    ----------
    mean_ : ndarray (n_features,) or None (when neither with_mean nor with_std)
    var_ : ndarray (n_features,) or None (without with_std)
    scale_ : ndarray (n_features,) or None (without with_std): ``sqrt(var_)``, 1 where that is 0
    n_samples_seen_ : int
    n_features_in_ : int

    Statistics are float64 when fitted on float64 data, float32 otherwise. ``partial_fit``
    merges batches with Chan's formula in float64.
    """

    def __init__(self, with_mean: bool = True, with_std: bool = True):
        self.with_mean, self.with_std = with_mean, with_std
        self.n_samples_seen_: int | None = None

    def fit(self, X: Array) -> StandardScaler:
        """Computes the statistics of X (n_samples, n_features); returns self."""
        self.n_samples_seen_ = None
        return self.partial_fit(X)

    def partial_fit(self, X: Array) -> StandardScaler:
        """Updates the statistics with one more batch of samples; returns self."""
        X = self._check_x(X)
        mean, var, _, _ = _stats(X)
        n = X.shape[0]
        if self.n_samples_seen_ is None:
            self.n_features_in_ = X.shape[1]
            self._mean, self._m2, self.n_samples_seen_ = mean, var * n, n
        else:
            self._check_fitted(X)
            na, tot = self.n_samples_seen_, self.n_samples_seen_ + n
            if n:
                d = mean - self._mean
                self._mean = self._mean + d * (n / tot)
                self._m2 = self._m2 + var * n + d * d * (na * n / tot)
            self.n_samples_seen_ = tot
        sd = np.dtype(np.float64) if X.dtype == np.float64 else np.dtype(np.float32)
        var_all = self._m2 / max(self.n_samples_seen_, 1)
        self.mean_ = self._mean.astype(sd) if (self.with_mean or self.with_std) else None
        self.var_ = var_all.astype(sd) if self.with_std else None
        self.scale_ = _nonzero(np.sqrt(var_all)).astype(sd) if self.with_std else None
        return self

    def _coefs(self) -> tuple[Array, Array]:
        f = self.n_features_in_
        m = self._mean if self.with_mean else np.zeros(f)
        s = _nonzero(np.sqrt(self._m2 / max(self.n_samples_seen_, 1))) if self.with_std else np.ones(f)
        return m, s

    def transform(self, X: Array) -> Array:
        """``(X - mean_) / scale_`` (each part only when enabled); X's dtype."""
        X = self._check_x(X)
        self._check_fitted(X)
        m, s = self._coefs()
        return _core.col_affine(X, m, 1.0 / s, np.zeros_like(m))

    def inverse_transform(self, X: Array) -> Array:
        """``X * scale_ + mean_``; X's dtype."""
        X = self._check_x(X)
        self._check_fitted(X)
        m, s = self._coefs()
        return _core.col_affine(X, np.zeros_like(m), s, m)


class MinMaxScaler(_Scaler):
    """Scales features to ``feature_range``: ``transform(X) = X * scale_ + min_`` (scikit-learn
    semantics).

    Parameters
    ----------
    feature_range : (lo, hi), finite, lo < hi
    clip : bool, clip transformed values to ``feature_range``

    Attributes
    ----------
    data_min_, data_max_, data_range_ : ndarray (n_features,)
    scale_ : ndarray (n_features,): ``(hi - lo) / data_range_`` (range 0 counts as 1)
    min_ : ndarray (n_features,): ``lo - data_min_ * scale_``
    n_samples_seen_ : int
    n_features_in_ : int

    Attributes are float64 when fitted on float64 data, float32 otherwise.
    """

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0), clip: bool = False):
        self.feature_range, self.clip = feature_range, clip
        self.n_samples_seen_: int | None = None

    def fit(self, X: Array) -> MinMaxScaler:
        """Computes the per-feature minimum and maximum of X; returns self."""
        self.n_samples_seen_ = None
        return self.partial_fit(X)

    def partial_fit(self, X: Array) -> MinMaxScaler:
        """Updates the minimum and maximum with one more batch; returns self."""
        lo, hi = _check_range(self.feature_range)
        X = self._check_x(X)
        _, _, mn, mx = _stats(X)
        if self.n_samples_seen_ is None:
            self.n_features_in_ = X.shape[1]
            self._min, self._max, self.n_samples_seen_ = mn, mx, X.shape[0]
        else:
            self._check_fitted(X)
            if X.shape[0]:
                nan = np.isnan(self._min) | np.isnan(mn)
                self._min = np.where(nan, np.nan, np.minimum(self._min, mn))
                self._max = np.where(nan, np.nan, np.maximum(self._max, mx))
            self.n_samples_seen_ += X.shape[0]
        self._scale = (hi - lo) / _nonzero(self._max - self._min)
        self._offset = lo - self._min * self._scale
        sd = np.dtype(np.float64) if X.dtype == np.float64 else np.dtype(np.float32)
        self.data_min_, self.data_max_ = self._min.astype(sd), self._max.astype(sd)
        self.data_range_ = (self._max - self._min).astype(sd)
        self.scale_, self.min_ = self._scale.astype(sd), self._offset.astype(sd)
        return self

    def transform(self, X: Array) -> Array:
        """``X * scale_ + min_``, clipped to ``feature_range`` when ``clip``; X's dtype."""
        X = self._check_x(X)
        self._check_fitted(X)
        y = _core.col_affine(X, np.zeros_like(self._scale), self._scale, self._offset)
        if self.clip:
            lo, hi = _check_range(self.feature_range)
            np.clip(y, np.asarray(lo, y.dtype), np.asarray(hi, y.dtype), out=y)
        return y

    def inverse_transform(self, X: Array) -> Array:
        """``(X - min_) / scale_``; X's dtype."""
        X = self._check_x(X)
        self._check_fitted(X)
        return _core.col_affine(X, self._offset, 1.0 / self._scale, np.zeros_like(self._scale))
