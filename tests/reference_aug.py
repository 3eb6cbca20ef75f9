"""float64 NumPy oracle for normkit.augment, written from the documented streams (augment.h, normal.h).

The Philox element stream is vectorized here with uint64 NumPy arithmetic and cross-checked
against the pure-Python reference in reference.py; derived seeds use that reference directly.
"""

from __future__ import annotations

import numpy as np
import reference as ref

TAGS = {"crop": 1, "flip": 2, "noise": 3, "lighting": 4}
_DERIVE_MARK = 0x6E6B6B79
_U32 = np.uint64(0xFFFFFFFF)


def derive_seed(seed, tag):
    """c0 | c1 << 32 of Philox4x32-10 on the counter (0, 0, tag, mark) with the key of seed."""
    c0, c1, _, _ = ref.philox4x32_10((0, 0, TAGS[tag], _DERIVE_MARK), (seed & 0xFFFFFFFF, seed >> 32))
    return c0 | c1 << 32


def philox_u32(seed, idx):
    """Element stream words u32(seed, i) for an array of indices (vectorized reference.philox_u32)."""
    i = np.asarray(idx, dtype=np.uint64)
    b = (i >> np.uint64(6)) * np.uint64(16) + (i & np.uint64(15))
    c0, c1 = b & _U32, b >> np.uint64(32)
    c2 = c3 = np.zeros_like(i)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & _U32, (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & _U32
    w = (i >> np.uint64(4)) & np.uint64(3)
    return np.select([w == 0, w == 1, w == 2], [c0, c1, c2], c3)


def normal(seed, idx):
    """normal(s, i) in float64: Box-Muller on words u32(i with bit 4 clear) and u32(i with bit 4 set)."""
    i = np.asarray(idx, dtype=np.uint64)
    a = philox_u32(seed, i & ~np.uint64(16))
    b = philox_u32(seed, i | np.uint64(16))
    u1 = ((a >> np.uint64(8)) + np.uint64(1)).astype(np.float64) / 2.0**24
    u2 = (b >> np.uint64(8)).astype(np.float64) / 2.0**24
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * np.pi * u2
    return np.where(i & np.uint64(16), r * np.sin(theta), r * np.cos(theta))


def _uniform_below(u, n):
    return ((u.astype(object) * n) >> 32).astype(np.int64)


def crop_offsets(seed, n_images, hp, h, wp, w):
    s = derive_seed(seed, "crop")
    n = np.arange(n_images, dtype=np.uint64)
    oy = _uniform_below(philox_u32(s, 2 * n), hp - h + 1)
    ox = _uniform_below(philox_u32(s, 2 * n + np.uint64(1)), wp - w + 1)
    return oy, ox


def _nchw(x, channel_axis):
    """(batched NCHW view, undo function) of a rank-3/4 image array in either layout."""
    b = x if x.ndim == 4 else x[None]
    if channel_axis != 1:
        b = b.transpose(0, 3, 1, 2)

    def back(y):
        if channel_axis != 1:
            y = y.transpose(0, 2, 3, 1)
        return y if x.ndim == 4 else y[0]

    return b, back


def random_crop(x, size, padding, seed, channel_axis=1):
    """Exact: the padded window (values copied, dtype kept)."""
    h, w = (size, size) if np.isscalar(size) else size
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    b, back = _nchw(x, channel_axis)
    n, _, hh, ww = b.shape
    padded = np.pad(b, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oy, ox = crop_offsets(seed, n, hh + 2 * ph, h, ww + 2 * pw, w)
    y = np.stack([padded[k, :, oy[k] : oy[k] + h, ox[k] : ox[k] + w] for k in range(n)]) if n else padded[:, :, :h, :w]
    return back(y)


def flip_flags(seed, n_images, p):
    t = int(np.floor(p * 2.0**32))
    return philox_u32(derive_seed(seed, "flip"), np.arange(n_images)).astype(np.int64) < t


def random_flip(x, p, seed, channel_axis=1):
    b, back = _nchw(x, channel_axis)
    flags = flip_flags(seed, b.shape[0], p)
    return back(np.where(flags[:, None, None, None], b[..., ::-1], b))


def gaussian_noise(x, std, seed):
    z = normal(derive_seed(seed, "noise"), np.arange(x.size)).reshape(x.shape)
    return x.astype(np.float64) + std * z


def lighting_alpha(seed, n_images, c, std):
    return std * normal(derive_seed(seed, "lighting"), np.arange(n_images * c)).reshape(n_images, c)


def pca_lighting(x, eigvals, eigvecs, std, seed, channel_axis=1):
    b, back = _nchw(x.astype(np.float64), channel_axis)
    alpha = lighting_alpha(seed, b.shape[0], b.shape[1], std)
    shift = (alpha * np.asarray(eigvals, np.float64)) @ np.asarray(eigvecs, np.float64).T  # (N, C)
    return back(b + shift[:, :, None, None])
