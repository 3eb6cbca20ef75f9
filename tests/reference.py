"""float64 NumPy oracle, written from the formulas in API.md (forward and analytic backward)."""

from __future__ import annotations

import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def _rows(x, axis):
    """View x (float64) as (M, N) rows over x.shape[axis:]."""
    axis = axis % x.ndim
    m = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(m, -1), x.shape[:axis]


def layer_norm(x, weight=None, bias=None, axis=-1, eps=1e-5):
    """Returns (y, mean, rstd) in float64."""
    x64 = _f64(x)
    r, lead = _rows(x64, axis)
    mean = r.mean(axis=1)
    var = ((r - mean[:, None]) ** 2).mean(axis=1)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (r - mean[:, None]) * rstd[:, None]
    if weight is not None:
        y = y * _f64(weight).reshape(-1)
    if bias is not None:
        y = y + _f64(bias).reshape(-1)
    return y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead)


def layer_norm_backward(dy, x, mean, rstd, weight=None, axis=-1):
    """Returns (dx, dweight, dbias) in float64, from the given saved statistics."""
    x64, dy64 = _f64(x), _f64(dy)
    r, _ = _rows(x64, axis)
    d, _ = _rows(dy64, axis)
    n = r.shape[1]
    w = np.ones(n) if weight is None else _f64(weight).reshape(-1)
    m = _f64(mean).reshape(-1, 1)
    s = _f64(rstd).reshape(-1, 1)
    xhat = (r - m) * s
    g = d * w
    dx = s * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    fshape = x.shape[axis % x.ndim:]
    return dx.reshape(x.shape), (d * xhat).sum(axis=0).reshape(fshape), d.sum(axis=0).reshape(fshape)


def rms_norm(x, weight=None, axis=-1, eps=1e-6):
    """Returns (y, rstd) in float64."""
    x64 = _f64(x)
    r, lead = _rows(x64, axis)
    rstd = 1.0 / np.sqrt((r * r).mean(axis=1) + eps)
    y = r * rstd[:, None]
    if weight is not None:
        y = y * _f64(weight).reshape(-1)
    return y.reshape(x.shape), rstd.reshape(lead)


def rms_norm_backward(dy, x, rstd, weight=None, axis=-1):
    """Returns (dx, dweight) in float64."""
    x64, dy64 = _f64(x), _f64(dy)
    r, _ = _rows(x64, axis)
    d, _ = _rows(dy64, axis)
    n = r.shape[1]
    w = np.ones(n) if weight is None else _f64(weight).reshape(-1)
    s = _f64(rstd).reshape(-1, 1)
    xhat = r * s
    g = d * w
    dx = s * (g - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx.reshape(x.shape), (d * xhat).sum(axis=0).reshape(x.shape[axis % x.ndim:])


def numerical_grad(f, a, eps=1e-6):
    """Central finite differences of the scalar function f at float64 array a."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g
