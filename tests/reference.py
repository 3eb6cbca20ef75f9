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


# ---------------------------------------------------------------- channel-wise norms
#
# x is (N, C, *spatial) for channel_axis=1 and (N, *spatial, C) for channel_axis=-1. Each function
# moves the channel axis to position 1, computes there in float64, and moves it back.


def _nc(x, channel_axis):
    """float64 x as (N, C, *spatial)."""
    x64 = _f64(x)
    return x64 if channel_axis == 1 else np.moveaxis(x64, -1, 1)


def _from_nc(a, channel_axis):
    """Inverse of _nc."""
    return a if channel_axis == 1 else np.moveaxis(a, 1, -1)


def _chan(v, ndim):
    """A per-channel (C,) vector shaped to broadcast against (N, C, *spatial)."""
    return _f64(v).reshape((1, -1) + (1,) * (ndim - 2))


def _not_channel(ndim):
    """Every axis of (N, C, *spatial) but the channel axis."""
    return (0, *range(2, ndim))


def _affine(xhat, weight, bias):
    y = xhat if weight is None else xhat * _chan(weight, xhat.ndim)
    return y if bias is None else y + _chan(bias, xhat.ndim)


def momentum_update(running, batch_stat, momentum):
    """PyTorch convention: running = (1 - momentum) * running + momentum * batch_stat."""
    return (1.0 - momentum) * _f64(running) + momentum * _f64(batch_stat)


def batch_norm_train(x, weight=None, bias=None, eps=1e-5, channel_axis=1):
    """Training BatchNorm, statistics over every axis but C. Returns (y, save_mean, save_rstd)."""
    xc = _nc(x, channel_axis)
    axes = _not_channel(xc.ndim)
    mean = xc.mean(axis=axes)
    var = ((xc - _chan(mean, xc.ndim)) ** 2).mean(axis=axes)  # biased
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (xc - _chan(mean, xc.ndim)) * _chan(rstd, xc.ndim)
    return _from_nc(_affine(xhat, weight, bias), channel_axis), mean, rstd


def batch_norm_running_update(running_mean, running_var, x, momentum=0.1, channel_axis=1):
    """(running_mean, running_var) after one training step: batch mean and UNBIASED batch variance."""
    xc = _nc(x, channel_axis)
    axes = _not_channel(xc.ndim)
    count = xc.size // xc.shape[1]
    mean = xc.mean(axis=axes)
    var_unbiased = ((xc - _chan(mean, xc.ndim)) ** 2).sum(axis=axes) / (count - 1)
    return momentum_update(running_mean, mean, momentum), momentum_update(running_var, var_unbiased, momentum)


def batch_norm_eval(x, weight, bias, running_mean, running_var, eps=1e-5, channel_axis=1):
    """Eval BatchNorm with the running statistics. Returns (y, save_mean, save_rstd)."""
    xc = _nc(x, channel_axis)
    mean = _f64(running_mean)
    rstd = 1.0 / np.sqrt(_f64(running_var) + eps)
    xhat = (xc - _chan(mean, xc.ndim)) * _chan(rstd, xc.ndim)
    return _from_nc(_affine(xhat, weight, bias), channel_axis), mean, rstd


def batch_norm_backward(dy, x, save_mean, save_rstd, weight=None, training=True, channel_axis=1):
    """Returns (dx, dweight, dbias). Training: through the batch statistics; eval: the affine map's."""
    xc, d = _nc(x, channel_axis), _nc(dy, channel_axis)
    nd, axes = xc.ndim, _not_channel(xc.ndim)
    w = np.ones(xc.shape[1]) if weight is None else _f64(weight)
    s = _chan(save_rstd, nd)
    xhat = (xc - _chan(save_mean, nd)) * s
    if training:
        dx = _chan(w, nd) * s * (d - d.mean(axis=axes, keepdims=True) - xhat * (d * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = d * _chan(w, nd) * s
    return _from_nc(dx, channel_axis), (d * xhat).sum(axis=axes), d.sum(axis=axes)


def _grouped(a, num_groups):
    """(N, C, *spatial) -> (N, G, C/G * spatial)."""
    n, c = a.shape[:2]
    return a.reshape(n, num_groups, (c // num_groups) * int(np.prod(a.shape[2:], dtype=np.int64)))


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, channel_axis=1):
    """Statistics per (sample, group of C/G consecutive channels). Returns (y, mean, rstd), (N, G)."""
    xc = _nc(x, channel_axis)
    g = _grouped(xc, num_groups)
    mean = g.mean(axis=2)
    var = ((g - mean[..., None]) ** 2).mean(axis=2)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = ((g - mean[..., None]) * rstd[..., None]).reshape(xc.shape)
    return _from_nc(_affine(xhat, weight, bias), channel_axis), mean, rstd


def group_norm_backward(dy, x, mean, rstd, weight=None, num_groups=1, channel_axis=1):
    """Returns (dx, dweight, dbias): LayerNorm's backward per group with g = dy * weight[c]."""
    xc, d = _nc(x, channel_axis), _nc(dy, channel_axis)
    nd = xc.ndim
    w = np.ones(xc.shape[1]) if weight is None else _f64(weight)
    s = _f64(rstd)[..., None]
    xhat = (_grouped(xc, num_groups) - _f64(mean)[..., None]) * s
    g = _grouped(d * _chan(w, nd), num_groups)
    dx = s * (g - g.mean(axis=2, keepdims=True) - xhat * (g * xhat).mean(axis=2, keepdims=True))
    xhat = xhat.reshape(xc.shape)
    axes = _not_channel(nd)
    return _from_nc(dx.reshape(xc.shape), channel_axis), (d * xhat).sum(axis=axes), d.sum(axis=axes)


def instance_norm(x, weight=None, bias=None, running_mean=None, running_var=None, use_input_stats=True,
                  eps=1e-5, channel_axis=1):
    """Statistics per (sample, channel) over spatial, or the running ones broadcast to (N, C) when
    use_input_stats=False. Returns (y, mean, rstd), (N, C)."""
    xc = _nc(x, channel_axis)
    n, c = xc.shape[:2]
    spatial = tuple(range(2, xc.ndim))
    if use_input_stats:
        mean = xc.mean(axis=spatial)
        rstd = 1.0 / np.sqrt(((xc - mean.reshape(n, c, *(1,) * len(spatial))) ** 2).mean(axis=spatial) + eps)
    else:
        mean = np.broadcast_to(_f64(running_mean), (n, c))
        rstd = np.broadcast_to(1.0 / np.sqrt(_f64(running_var) + eps), (n, c))
    full = (n, c) + (1,) * len(spatial)
    xhat = (xc - mean.reshape(full)) * rstd.reshape(full)
    return _from_nc(_affine(xhat, weight, bias), channel_axis), mean, rstd


def instance_norm_running_update(running_mean, running_var, x, momentum=0.1, channel_axis=1):
    """PyTorch: the batch average of the per-instance means and of the per-instance UNBIASED variances."""
    xc = _nc(x, channel_axis)
    spatial = tuple(range(2, xc.ndim))
    mean = xc.mean(axis=spatial, keepdims=True)
    var_unbiased = ((xc - mean) ** 2).sum(axis=spatial) / (int(np.prod(xc.shape[2:])) - 1)
    return (momentum_update(running_mean, mean.reshape(xc.shape[:2]).mean(axis=0), momentum),
            momentum_update(running_var, var_unbiased.mean(axis=0), momentum))


def instance_norm_backward(dy, x, mean, rstd, weight=None, use_input_stats=True, channel_axis=1):
    """Returns (dx, dweight, dbias); with use_input_stats=False the affine map's."""
    xc, d = _nc(x, channel_axis), _nc(dy, channel_axis)
    nd = xc.ndim
    full = xc.shape[:2] + (1,) * (nd - 2)
    spatial = tuple(range(2, nd))
    w = np.ones(xc.shape[1]) if weight is None else _f64(weight)
    s = _f64(rstd).reshape(full)
    xhat = (xc - _f64(mean).reshape(full)) * s
    g = d * _chan(w, nd)
    if use_input_stats:
        dx = s * (g - g.mean(axis=spatial, keepdims=True) - xhat * (g * xhat).mean(axis=spatial, keepdims=True))
    else:
        dx = g * s
    axes = _not_channel(nd)
    return _from_nc(dx, channel_axis), (d * xhat).sum(axis=axes), d.sum(axis=axes)


# ---- dropout: the documented Philox4x32-10 element stream (pure Python integers)

_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_U32 = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    """Philox4x32-10 of a 4-word counter and 2-word key (Salmon et al., SC'11)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & _U32, (k1 + _W1) & _U32
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0), p1 & _U32, ((p0 >> 32) ^ c3 ^ k1), p0 & _U32
    return c0, c1, c2, c3


def philox_u32(seed, i):
    """Word of element i: block (i // 64) * 16 + i % 16, word (i % 64) // 16."""
    b = (i // 64) * 16 + i % 16
    return philox4x32_10((b & _U32, b >> 32, 0, 0), (seed & _U32, seed >> 32))[(i % 64) // 16]


def dropout_keep(seed, p, indices):
    t = int(np.floor(p * 2.0**32))
    return np.array([philox_u32(seed, int(i)) >= t for i in indices], dtype=bool)


# ---- local response norm (PyTorch centring: size // 2 before, (size - 1) // 2 after)


def _lrn_window(v, size, channel_axis, before, after):
    """sum over the window along the channel axis, zero padded (float64)."""
    c = channel_axis % v.ndim
    vm = np.moveaxis(v, c, -1)
    C = vm.shape[-1]
    pad = np.zeros(vm.shape[:-1] + (C + before + after,))
    pad[..., before : before + C] = vm
    out = sum(pad[..., d : d + C] for d in range(size))
    return np.moveaxis(out, -1, c)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, channel_axis=1):
    """Returns (y, scale) in float64."""
    x64 = _f64(x)
    scale = k + alpha / size * _lrn_window(x64 * x64, size, channel_axis, size // 2, (size - 1) // 2)
    return x64 * scale**-beta, scale


def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0, channel_axis=1):
    """dx in float64 (from x; the forward is recomputed in float64)."""
    y, scale = local_response_norm(x, size, alpha, beta, k, channel_axis)
    dy64, x64 = _f64(dy), _f64(x)
    t = _lrn_window(dy64 * y / scale, size, channel_axis, (size - 1) // 2, size // 2)
    return dy64 * scale**-beta - 2.0 * alpha * beta / size * x64 * t
