"""Shared helpers of the channel-norm tests (test_chan.py, test_chan_properties.py)."""

from __future__ import annotations

import normkit as nk
import numpy as np
import reference as ref
from conftest import BF16, assert_close, randn

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
_PRECISION_ORDER = [F64, F32, np.dtype(np.float16), BF16]
LAYOUTS, LAYOUT_IDS = [1, -1], ["NC", "NHWC"]

# (N, C, *spatial): BatchNorm1d on (N, C), 1d with a length, 2d, 3d, then C and spatial across vector widths.
NAMED_SHAPES = [(2, 3), (7, 5), (3, 5, 7), (2, 4, 5, 6), (2, 3, 2, 3, 4)]
GRID_SHAPES = [(2, c, s) for c in (1, 3, 16, 17, 33) for s in (1, 7, 64, 65)]
SHAPES = NAMED_SHAPES + GRID_SHAPES


def coarser(a, b):
    """The less precise of two dtypes (parameter gradients are rounded to the weight's dtype)."""
    return max(np.dtype(a), np.dtype(b), key=_PRECISION_ORDER.index)


def stat_dtype(dtype):
    return F64 if np.dtype(dtype) == F64 else F32


def layout(nc_shape, channel_axis):
    """(N, C, *spatial) -> the array shape for channel_axis."""
    return tuple(nc_shape) if channel_axis == 1 else (nc_shape[0], *nc_shape[2:], nc_shape[1])


def to_layout(a_nc, channel_axis):
    """A (N, C, *spatial) array as a C-contiguous array in the channel_axis layout."""
    return a_nc if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(a_nc, 1, -1))


def params(rng, c, dtype):
    return randn(rng, (c,), dtype, 0.5, 1.0), randn(rng, (c,), dtype, 0.5)


def running_stats(rng, c, dtype):
    sd = stat_dtype(dtype)
    return (rng.standard_normal(c) * 0.5).astype(sd), rng.uniform(0.5, 2.0, c).astype(sd)


def chan_randn(rng, nc_shape, dtype, ca):
    """x for the value checks, in the ca layout. With two values per channel (N=2, no spatial extent) they are
    kept >= 0.5 apart: ~sqrt(eps) apart, y would amplify the float32 rounding of the mean (~ulp(x)/2) by
    rstd ~ 1/sqrt(eps) to beyond the float32 tolerance, a conditioning limit and not a kernel error."""
    x = rng.standard_normal(nc_shape) * 1.5 + 0.25
    if nc_shape[0] == 2 and int(np.prod(nc_shape[2:])) == 1:
        x[1] = x[0] + rng.choice([-1.0, 1.0], x[0].shape) * rng.uniform(0.5, 3.0, x[0].shape)
    return to_layout(x.astype(np.float32 if dtype != F64 else np.float64).astype(dtype), ca)


def check_grads(got, want, dtype, weight, count, what, dx_scale=1.0):
    (dx, dw, db), (rdx, rdw, rdb) = got, want
    pd = np.dtype(dtype) if weight is None else weight.dtype
    assert dx.dtype == dtype and dx.shape == rdx.shape, what
    assert dw.dtype == db.dtype == pd and dw.shape == db.shape == rdw.shape, what
    assert_close(dx.astype(np.float64) / dx_scale, rdx / dx_scale, dtype, "bwd", "dx", f"{what} dx")
    k = np.sqrt(max(1, count))
    for g, r, name in [(dw, rdw, "dweight"), (db, rdb, "dbias")]:
        assert_close(g.astype(np.float64) / k, r / k, coarser(dtype, pd), "bwd", "dparam", f"{what} {name}")


def check_batch_norm(rng, nc_shape, dtype, ca, affine=True, weight_dtype=None):
    c, count = nc_shape[1], int(np.prod(nc_shape)) // nc_shape[1]
    x, dy = chan_randn(rng, nc_shape, dtype, ca), randn(rng, layout(nc_shape, ca), dtype)
    w, b = params(rng, c, weight_dtype or dtype) if affine else (None, None)
    rm0, rv0 = running_stats(rng, c, dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, sm, sr = nk.batch_norm_forward(x, w, b, rm, rv, training=True, channel_axis=ca)
    ry, rsm, rsr = ref.batch_norm_train(x, w, b, channel_axis=ca)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert sm.dtype == sr.dtype == stat_dtype(dtype) and sm.shape == sr.shape == (c,)
    assert_close(y, ry, dtype, "fwd", "y", f"batch_norm train y {nc_shape}")
    assert_close(sm, rsm, dtype, "fwd", "stat", "batch_norm save_mean")
    assert_close(sr, rsr, dtype, "fwd", "stat", "batch_norm save_rstd")
    erm, erv = ref.batch_norm_running_update(rm0, rv0, x, 0.1, channel_axis=ca)
    assert_close(rm, erm, dtype, "fwd", "stat", "batch_norm running_mean")
    assert_close(rv, erv, dtype, "fwd", "stat", "batch_norm running_var")
    np.testing.assert_array_equal(nk.batch_norm(x, w, b, training=True, channel_axis=ca), y)
    got = nk.batch_norm_backward(dy, x, sm, sr, w, training=True, channel_axis=ca)
    want = ref.batch_norm_backward(dy, x, sm, sr, w, training=True, channel_axis=ca)
    check_grads(got, want, dtype, w, count, f"batch_norm train {nc_shape}")

    y, sm, sr = nk.batch_norm_forward(x, w, b, rm0, rv0, channel_axis=ca)
    ry, _, rsr = ref.batch_norm_eval(x, w, b, rm0, rv0, channel_axis=ca)
    assert_close(y, ry, dtype, "fwd", "y", f"batch_norm eval y {nc_shape}")
    np.testing.assert_array_equal(sm, rm0)
    assert_close(sr, rsr, dtype, "fwd", "stat", "batch_norm eval save_rstd")
    got = nk.batch_norm_backward(dy, x, sm, sr, w, training=False, channel_axis=ca)
    want = ref.batch_norm_backward(dy, x, sm, sr, w, training=False, channel_axis=ca)
    check_grads(got, want, dtype, w, count, f"batch_norm eval {nc_shape}")


def check_group_norm(rng, nc_shape, groups, dtype, ca, affine=True, weight_dtype=None):
    n, c = nc_shape[:2]
    x, dy = chan_randn(rng, nc_shape, dtype, ca), randn(rng, layout(nc_shape, ca), dtype)
    w, b = params(rng, c, weight_dtype or dtype) if affine else (None, None)
    y, mean, rstd = nk.group_norm_forward(x, groups, w, b, channel_axis=ca)
    ry, rmean, rrstd = ref.group_norm(x, groups, w, b, channel_axis=ca)
    what = f"group_norm G={groups} {nc_shape}"
    assert y.dtype == x.dtype and y.shape == x.shape
    assert mean.dtype == rstd.dtype == stat_dtype(dtype) and mean.shape == rstd.shape == (n, groups)
    assert_close(y, ry, dtype, "fwd", "y", f"{what} y")
    assert_close(mean, rmean, dtype, "fwd", "stat", f"{what} mean")
    assert_close(rstd, rrstd, dtype, "fwd", "stat", f"{what} rstd")
    np.testing.assert_array_equal(nk.group_norm(x, groups, w, b, channel_axis=ca), y)
    got = nk.group_norm_backward(dy, x, mean, rstd, w, num_groups=groups, channel_axis=ca)
    want = ref.group_norm_backward(dy, x, mean, rstd, w, num_groups=groups, channel_axis=ca)
    # A group of one value has dx = 0 only after cancelling terms of size rstd * |dy * w| with rstd = 1/sqrt(eps).
    dx_scale = float(rstd.max()) if x.size == n * groups else 1.0
    check_grads(got, want, dtype, w, x.size // c, what, dx_scale)


def check_instance_norm(rng, nc_shape, dtype, ca, affine=True, weight_dtype=None):
    n, c = nc_shape[:2]
    x, dy = chan_randn(rng, nc_shape, dtype, ca), randn(rng, layout(nc_shape, ca), dtype)
    w, b = params(rng, c, weight_dtype or dtype) if affine else (None, None)
    rm0, rv0 = running_stats(rng, c, dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, mean, rstd = nk.instance_norm_forward(x, w, b, rm, rv, channel_axis=ca)
    ry, rmean, rrstd = ref.instance_norm(x, w, b, channel_axis=ca)
    what = f"instance_norm {nc_shape}"
    assert y.dtype == x.dtype and y.shape == x.shape
    assert mean.dtype == rstd.dtype == stat_dtype(dtype) and mean.shape == rstd.shape == (n, c)
    assert_close(y, ry, dtype, "fwd", "y", f"{what} y")
    assert_close(mean, rmean, dtype, "fwd", "stat", f"{what} mean")
    assert_close(rstd, rrstd, dtype, "fwd", "stat", f"{what} rstd")
    erm, erv = ref.instance_norm_running_update(rm0, rv0, x, 0.1, channel_axis=ca)
    assert_close(rm, erm, dtype, "fwd", "stat", f"{what} running_mean")
    assert_close(rv, erv, dtype, "fwd", "stat", f"{what} running_var")
    np.testing.assert_array_equal(nk.instance_norm(x, w, b, channel_axis=ca), y)
    got = nk.instance_norm_backward(dy, x, mean, rstd, w, channel_axis=ca)
    check_grads(got, ref.instance_norm_backward(dy, x, mean, rstd, w, channel_axis=ca), dtype, w, x.size // c, what)

    y, mean, rstd = nk.instance_norm_forward(x, w, b, rm0, rv0, use_input_stats=False, channel_axis=ca)
    ry, rmean, rrstd = ref.instance_norm(x, w, b, rm0, rv0, use_input_stats=False, channel_axis=ca)
    assert_close(y, ry, dtype, "fwd", "y", f"{what} running-stats y")
    np.testing.assert_array_equal(mean, np.broadcast_to(rm0, (n, c)))
    assert_close(rstd, rrstd, dtype, "fwd", "stat", f"{what} running-stats rstd")
    got = nk.instance_norm_backward(dy, x, mean, rstd, w, use_input_stats=False, channel_axis=ca)
    want = ref.instance_norm_backward(dy, x, mean, rstd, w, use_input_stats=False, channel_axis=ca)
    check_grads(got, want, dtype, w, x.size // c, f"{what} running-stats")


def group_counts(c):
    return sorted({1, c} | ({2} if c % 2 == 0 else set()))


