"""float64 NumPy oracle for the regularizers and feature scaling, written from the formulas in API.md."""

from __future__ import annotations

import numpy as np


def _f64(a):
    return np.asarray(a).astype(np.float64)


def l1_penalty(w, lam):
    return lam * np.abs(_f64(w)).sum()


def l2_penalty(w, lam):
    return lam * np.square(_f64(w)).sum()


def add_l1_grad(grad, w, lam):
    return _f64(grad) + lam * np.sign(_f64(w))


def add_l2_grad(grad, w, lam):
    return _f64(grad) + 2.0 * lam * _f64(w)


def l1_prox(w, threshold):
    w64 = _f64(w)
    return np.sign(w64) * np.maximum(np.abs(w64) - threshold, 0.0)


def weight_decay(w, lr, wd):
    return _f64(w) * (1.0 - lr * wd)


def slice_norms(w, axis):
    """L2 norm of each slice w[..., i, ...] of `axis`, over all the other axes."""
    w64 = np.moveaxis(_f64(w), axis, 0)
    return np.sqrt(np.square(w64.reshape(w64.shape[0], -1)).sum(axis=1))


def max_norm(w, max_value, axis):
    norms = slice_norms(w, axis)
    scale = np.where(norms > max_value, max_value / np.where(norms > 0, norms, 1.0), 1.0)
    shape = [1] * np.ndim(w)
    shape[axis] = -1
    return _f64(w) * scale.reshape(shape)


def standardize(x, axis=0, eps=0.0):
    """Returns (y, mean, std) in float64; s = sqrt(var + eps), 1 where 0."""
    x64 = _f64(x)
    mean = x64.mean(axis=axis)
    var = np.square(x64 - np.expand_dims(mean, axis)).mean(axis=axis)
    s = np.sqrt(var + eps)
    s = np.where(s == 0, 1.0, s)
    y = (x64 - np.expand_dims(mean, axis)) / np.expand_dims(s, axis)
    return y, mean, np.sqrt(var)


def minmax_scale(x, axis=0, feature_range=(0.0, 1.0)):
    """Returns (y, data_min, data_max) in float64; a zero range counts as 1."""
    lo, hi = feature_range
    x64 = _f64(x)
    mn, mx = x64.min(axis=axis), x64.max(axis=axis)
    rng = np.where(mx - mn == 0, 1.0, mx - mn)
    y = (x64 - np.expand_dims(mn, axis)) * np.expand_dims((hi - lo) / rng, axis) + lo
    return y, mn, mx
