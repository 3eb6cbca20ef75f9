"""Channel-wise norms: numerical properties, layouts, determinism, bad inputs, PyTorch cross-check."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference as ref
from chan_helpers import (
    F32,
    LAYOUT_IDS,
    LAYOUTS,
    layout,
    params,
    running_stats,
    to_layout,
)
from conftest import DTYPE_IDS, DTYPES, assert_close, randn

# ---------------------------------------------------------------- numerical properties


def forward_all(x, ca, w=None, b=None, groups=2):
    """name -> ((y, mean, rstd), float64 reference (y, mean, rstd)) for every op, training statistics."""
    return {
        "batch_norm": (nk.batch_norm_forward(x, w, b, training=True, channel_axis=ca),
                       ref.batch_norm_train(x, w, b, channel_axis=ca)),
        "group_norm": (nk.group_norm_forward(x, groups, w, b, channel_axis=ca),
                       ref.group_norm(x, groups, w, b, channel_axis=ca)),
        "instance_norm": (nk.instance_norm_forward(x, w, b, channel_axis=ca),
                          ref.instance_norm(x, w, b, channel_axis=ca)),
    }


def backward(name, dy, x, mean, rstd, w, ca, groups=2):
    """The training-mode backward of forward_all's op `name`."""
    kw = {"num_groups": groups} if name == "group_norm" else {}
    return getattr(nk, f"{name}_backward")(dy, x, mean, rstd, w, channel_axis=ca, **kw)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_large_mean_channels_keep_precision(isa, rng, ca):
    # per channel (and per group of 2 channels) offsets of +-1e4 with unit spread
    offsets = np.array([1e4, 1e4, -1e4, -1e4, 5e3, 5e3]).reshape(1, 6, 1, 1)
    x = to_layout((offsets + rng.standard_normal((4, 6, 32, 32))).astype(np.float32), ca)
    input_precision = np.spacing(np.float32(1e4)) / 2  # each float32 input is only known to this
    results = forward_all(x, ca, groups=3)
    _, sm, sr = results["batch_norm"][0]
    rv = sr**-2 - np.float32(1e-5)  # eval with running statistics equal to this batch's
    results["batch_norm eval"] = (nk.batch_norm_forward(x, None, None, sm, rv, channel_axis=ca),
                                  ref.batch_norm_eval(x, None, None, sm, rv, channel_axis=ca))
    for name, ((y, _mean, rstd), (ry, _, rrstd)) in results.items():
        assert np.isfinite(y).all(), name
        err = np.abs(y - ry).max()
        assert err < 4 * input_precision, (name, err)
        np.testing.assert_allclose(rstd, rrstd, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("outlier", [0.0, 30.0, 3000.0])
def test_outlier_rows_keep_variance_precise(isa, rng, ca, outlier):
    # Large means plus an outlier in every 32nd (n, h, w) row (in channels-last, where the
    # statistics take shifted sums over chunks of rows, those rows start the chunks: the worst
    # shift). The variance must stay as precise as float32 allows, far tighter than the usual
    # tolerance.
    x = 1e4 + rng.standard_normal((16, 32, 32, 12))
    x.reshape(-1, 12)[::32] += outlier
    x = to_layout(np.moveaxis(x, -1, 1).astype(np.float32), ca)
    for name, ((_, mean, rstd), (_, rmean, rrstd)) in forward_all(x, ca, groups=3).items():
        assert np.abs(mean - rmean).max() <= 2 * np.spacing(np.float32(1e4 + outlier)), name  # float32 means
        assert np.abs(rstd / rrstd - 1).max() < 1e-6, name


@pytest.mark.parametrize("outlier", [0.0, 30.0, 3000.0])
def test_grouped_short_spans_keep_variance_precise(isa, rng, outlier):
    # NCHW spans of 14 x 14 = 196 values: BatchNorm's statistics group 83 samples of a channel
    # per unit (blocks of 83 and 17 here). Large means plus an outlier at the start of every span
    # (the first value of each unit's runs); rstd as precise as float32 allows.
    x = 1e4 + rng.standard_normal((100, 5, 14, 14))
    x[:, :, 0, 0] += outlier
    x = x.astype(np.float32)
    _, mean, rstd = nk.batch_norm_forward(x, training=True)
    _, rmean, rrstd = ref.batch_norm_train(x, None, None, channel_axis=1)
    assert np.abs(mean - rmean).max() <= 2 * np.spacing(np.float32(1e4 + outlier))
    assert np.abs(rstd / rrstd - 1).max() < 1e-6


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_constant_channels_equal_bias(isa, rng, dtype, ca):
    consts = np.array([3.25, 3.25, -1.5, -1.5]).reshape(1, 4, 1, 1)  # constant per channel and per group
    x = to_layout(np.broadcast_to(consts, (3, 4, 5, 7)).astype(dtype), ca)
    w, b = params(rng, 4, dtype)
    bias_full = to_layout(np.broadcast_to(b.reshape(1, 4, 1, 1), (3, 4, 5, 7)), ca)
    dy = randn(rng, x.shape, dtype)
    expected_mean = {"batch_norm": consts.reshape(4), "group_norm": np.tile([3.25, -1.5], (3, 1)),
                     "instance_norm": np.tile(consts.reshape(4), (3, 1))}
    for name, ((y, mean, rstd), _) in forward_all(x, ca, w, b).items():
        assert np.isfinite(y.astype(np.float64)).all(), name
        np.testing.assert_array_equal(y, bias_full, err_msg=name)
        np.testing.assert_array_equal(mean, expected_mean[name], err_msg=name)
        np.testing.assert_allclose(rstd, 1 / np.sqrt(1e-5), rtol=1e-6, err_msg=name)
        for g in backward(name, dy, x, mean, rstd, w, ca):
            assert np.isfinite(g.astype(np.float64)).all(), name


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nonfinite_confined(isa, rng, dtype, ca, bad):
    nc_shape = (3, 4, 5, 6)
    x_nc = randn(rng, nc_shape, dtype)
    x_nc[1, 2, 3, 4] = bad  # sample 1, channel 2, group 1 of 2
    x, dy = to_layout(x_nc, ca), randn(rng, layout(nc_shape, ca), dtype)
    masks = {name: np.zeros(nc_shape, bool) for name in ("batch_norm", "group_norm", "instance_norm")}
    masks["batch_norm"][:, 2] = True
    masks["group_norm"][1, 2:4] = True
    masks["instance_norm"][1, 2] = True
    bad_channels = {"batch_norm": [2], "group_norm": [2, 3], "instance_norm": [2]}
    rm, rv = running_stats(rng, 4, dtype)
    nk.batch_norm(x, None, None, rm, rv, training=True, channel_axis=ca)
    assert np.isfinite(np.delete(rm, 2)).all() and np.isfinite(np.delete(rv, 2)).all()
    with np.errstate(invalid="ignore"):  # inf - inf in the reference
        results = forward_all(x, ca)
    for name, ((y, mean, rstd), (ry, _, _)) in results.items():
        mask = to_layout(masks[name], ca)
        assert not np.isfinite(y[mask].astype(np.float64)).all(), name
        assert_close(y[~mask], ry[~mask], dtype, "fwd", "y", f"{name} outside the bad block")
        dx, dw, db = backward(name, dy, x, mean, rstd, None, ca)
        assert np.isfinite(dx[~mask].astype(np.float64)).all(), name
        for g in (dw, db):
            assert np.isfinite(np.delete(g, bad_channels[name]).astype(np.float64)).all(), name


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_float16_channels_near_300(isa, rng, ca):
    # 1024 to 4096 values ~300 per statistic: their sum (and sum of squares) overflows float16.
    x = to_layout((300 + rng.standard_normal((4, 2, 32, 32))).astype(np.float16), ca)
    for name, ((y, mean, rstd), (ry, rmean, rrstd)) in forward_all(x, ca, groups=1).items():
        assert np.isfinite(y.astype(np.float64)).all(), name
        assert_close(y, ry, np.float16, "fwd", "y", f"{name} y")
        assert_close(mean, rmean, np.float16, "fwd", "stat", f"{name} mean")
        assert_close(rstd, rrstd, np.float16, "fwd", "stat", f"{name} rstd")


# ---------------------------------------------------------------- layouts


def views(base, ca):
    """Non-contiguous, negative-stride, transposed, other-layout and misaligned views of the same values."""
    n = base.shape[-1]
    wide = np.zeros(base.shape[:-1] + (n + 5,), base.dtype)
    wide[..., 2 : n + 2] = base
    every_other = np.zeros((2 * base.shape[0],) + base.shape[1:], base.dtype)
    every_other[::2] = base
    other = (np.moveaxis(np.ascontiguousarray(np.moveaxis(base, 1, -1)), -1, 1) if ca == 1 else
             np.moveaxis(np.ascontiguousarray(np.moveaxis(base, -1, 1)), 1, -1))
    raw = np.zeros(base.nbytes + 1, np.uint8)
    mis = raw[1:].view(base.dtype).reshape(base.shape)
    mis[...] = base
    assert not mis.flags.aligned
    return {
        "inner-strided": wide[..., 2 : n + 2],
        "batch-strided": every_other[::2],
        "negative-strides": np.ascontiguousarray(base[::-1, ..., ::-1])[::-1, ..., ::-1],
        "fortran-order": np.asfortranarray(base),
        "other-layout-memory": other,
        "misaligned": mis,
    }


def run_all(x, dy, w, b, rm, rv, ca, groups=3):
    rm, rv = rm.copy(), rv.copy()
    out = []
    y, m, s = nk.batch_norm_forward(x, w, b, rm, rv, training=True, channel_axis=ca)
    out += [y, m, s, rm, rv, *nk.batch_norm_backward(dy, x, m, s, w, channel_axis=ca)]
    y, m, s = nk.batch_norm_forward(x, w, b, rm, rv, channel_axis=ca)
    out += [y, m, s, *nk.batch_norm_backward(dy, x, m, s, w, training=False, channel_axis=ca)]
    y, m, s = nk.group_norm_forward(x, groups, w, b, channel_axis=ca)
    out += [y, m, s, *nk.group_norm_backward(dy, x, m, s, w, num_groups=groups, channel_axis=ca)]
    y, m, s = nk.instance_norm_forward(x, w, b, channel_axis=ca)
    out += [y, m, s, *nk.instance_norm_backward(dy, x, m, s, w, channel_axis=ca)]
    return out


def run_all_inputs(rng, nc_shape, dtype, ca):
    """Random x, dy (shape nc_shape in layout ca), weight, bias and running statistics for run_all."""
    shape, c = layout(nc_shape, ca), nc_shape[1]
    return (randn(rng, shape, dtype), randn(rng, shape, dtype), *params(rng, c, dtype), *running_stats(rng, c, dtype))


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_views_match_contiguous(isa, rng, dtype, ca):
    x, dy, w, b, rm, rv = run_all_inputs(rng, (3, 6, 5, 7), dtype, ca)
    expected = run_all(x, dy, w, b, rm, rv, ca)
    dys = views(dy, ca)
    for name, xv in views(x, ca).items():
        for i, (a, e) in enumerate(zip(run_all(xv, dys[name], w, b, rm, rv, ca), expected)):
            np.testing.assert_array_equal(a, e, err_msg=f"{name} output {i}")
    wv, bv = np.zeros(12, w.dtype)[::2], b[::-1].copy()[::-1]
    wv[...] = w
    for i, (a, e) in enumerate(zip(run_all(x, dy, wv, bv, rm, rv, ca), expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"strided parameters, output {i}")
    mean, rstd = expected[15], expected[16]  # group_norm's (N, G) statistics
    got = nk.group_norm_backward(dy, x, np.asfortranarray(mean), rstd[::-1].copy()[::-1], w, num_groups=3,
                                 channel_axis=ca)
    for a, e in zip(got, expected[17:20]):
        np.testing.assert_array_equal(a, e, err_msg="strided group statistics")


def at_offset(a, k):
    """A copy of a whose data starts k elements past a 64-byte boundary."""
    raw = np.zeros(a.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + k * a.itemsize
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("c", [48, 144])
def test_results_do_not_depend_on_alignment(isa, rng, dtype, ca, c):
    # C = 48 and 144 channels are whole vectors, so channels-last rows all start at the same
    # offset from a vector boundary. Rows of up to 8 vectors (48 channels, but not on the scalar
    # ISA) are one channel block, loaded unaligned; longer rows are cut so that their blocks load
    # aligned. Every offset must give the same bits.
    x, dy, w, b, rm, rv = run_all_inputs(rng, (3, c, 5, 7), dtype, ca)
    expected = run_all(at_offset(x, 0), at_offset(dy, 0), w, b, rm, rv, ca)
    for k in range(1, 64 // x.itemsize):
        got = run_all(at_offset(x, k), at_offset(dy, k), w, b, rm, rv, ca)
        for i, (a, e) in enumerate(zip(got, expected)):
            np.testing.assert_array_equal(a, e, err_msg=f"offset {k} elements, output {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nchw_backward_sums_do_not_depend_on_alignment(isa, rng, dtype):
    # NCHW spans of 99 values: when x and dy are equally misaligned, the backward sums load them
    # from the vector boundary below each span and rotate their accumulators back (float32 and
    # float64, every ISA); otherwise they load at the span. Equal offsets and some unequal pairs
    # must all give the same bits, also with a channel whose dy is all -0.0.
    x, dy, w, b, rm, rv = run_all_inputs(rng, (3, 4, 9, 11), dtype, 1)
    dy[:, 1] = -0.0
    expected = run_all(at_offset(x, 0), at_offset(dy, 0), w, b, rm, rv, 1, groups=2)
    n = 64 // x.itemsize
    for kx, kd in [(k, k) for k in range(1, n)] + [(1, 2), (3, 0), (0, n - 1)]:
        got = run_all(at_offset(x, kx), at_offset(dy, kd), w, b, rm, rv, 1, groups=2)
        for i, (a, e) in enumerate(zip(got, expected)):
            np.testing.assert_array_equal(a.view(np.uint8), e.view(np.uint8), err_msg=f"offsets {kx}, {kd}: output {i}")


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_running_statistics(isa, rng, dtype, ca):
    x = randn(rng, layout((3, 6, 5, 7), ca), dtype)
    w, b = params(rng, 6, dtype)
    rm, rv = running_stats(rng, 6, dtype)
    expected = run_all(x, x, w, b, rm, rv, ca)
    # A non-contiguous running statistic is either updated through the view or rejected, never silently ignored.
    rm_buf, rv_buf = np.zeros(12, rm.dtype), np.zeros(12, rv.dtype)
    rm_view, rv_view = rm_buf[::2], rv_buf[::2]
    rm_view[...], rv_view[...] = rm, rv
    try:
        nk.batch_norm(x, w, b, rm_view, rv_view, training=True, channel_axis=ca)
    except ValueError:
        np.testing.assert_array_equal(rm_view, rm)
        np.testing.assert_array_equal(rv_view, rv)
    else:
        np.testing.assert_array_equal(rm_view, expected[3])
        np.testing.assert_array_equal(rv_view, expected[4])
    np.testing.assert_array_equal(rm_buf[1::2], 0)
    rm_view[...], rv_view[...] = rm, rv  # eval mode reads them through the view
    np.testing.assert_array_equal(nk.batch_norm(x, w, b, rm_view, rv_view, channel_axis=ca),
                                  nk.batch_norm(x, w, b, rm, rv, channel_axis=ca), err_msg="strided running stats")
    np.testing.assert_array_equal(
        nk.instance_norm(x, w, b, rm_view, rv_view, use_input_stats=False, channel_axis=ca),
        nk.instance_norm(x, w, b, rm, rv, use_input_stats=False, channel_axis=ca), err_msg="strided running stats")


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_out_and_in_place(isa, rng, ca):
    x = randn(rng, layout((3, 6, 5, 7), ca), F32)
    w, b = params(rng, 6, F32)
    rm0, rv0 = running_stats(rng, 6, F32)
    calls = {
        "batch_norm train": lambda a, rm, rv, **kw: nk.batch_norm(a, w, b, rm, rv, training=True, channel_axis=ca, **kw),
        "batch_norm eval": lambda a, rm, rv, **kw: nk.batch_norm(a, w, b, rm, rv, channel_axis=ca, **kw),
        "group_norm": lambda a, rm, rv, **kw: nk.group_norm(a, 3, w, b, channel_axis=ca, **kw),
        "instance_norm": lambda a, rm, rv, **kw: nk.instance_norm(a, w, b, rm, rv, channel_axis=ca, **kw),
    }
    for name, fn in calls.items():
        rm, rv = rm0.copy(), rv0.copy()
        y = fn(x, rm, rv)
        out = np.empty_like(x)
        rm2, rv2 = rm0.copy(), rv0.copy()
        assert fn(x, rm2, rv2, out=out) is out, name
        np.testing.assert_array_equal(out, y, err_msg=name)
        inplace, rm3, rv3 = x.copy(), rm0.copy(), rv0.copy()
        fn(inplace, rm3, rv3, out=inplace)
        np.testing.assert_array_equal(inplace, y, err_msg=name)
        for rm_, rv_ in ((rm2, rv2), (rm3, rv3)):  # statistics come from x, read before it is overwritten
            np.testing.assert_array_equal(rm_, rm, err_msg=name)
            np.testing.assert_array_equal(rv_, rv, err_msg=name)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("nc_shape", [(0, 4, 3, 5), (0, 4), (2, 4, 0)], ids=str)
def test_zero_size(ca, nc_shape):
    x = np.zeros(layout(nc_shape, ca), np.float32)
    w = np.ones(4, np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    y, sm, sr = nk.batch_norm_forward(x, w, w, rm, rv, channel_axis=ca)
    assert y.shape == x.shape and sm.shape == sr.shape == (4,)
    dx, dw, db = nk.batch_norm_backward(x, x, sm, sr, w, training=False, channel_axis=ca)
    assert dx.shape == x.shape and dw.shape == db.shape == (4,)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    with pytest.raises(ValueError):  # no values per channel to take training statistics from
        nk.batch_norm(x, w, w, rm, rv, training=True, channel_axis=ca)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)
    n = nc_shape[0]
    cases = [((n, 2), lambda: nk.group_norm_forward(x, 2, w, w, channel_axis=ca),
              lambda m, s: nk.group_norm_backward(x, x, m, s, w, num_groups=2, channel_axis=ca))]
    if np.prod(nc_shape[2:]) > 1:  # instance statistics need 2 spatial values, as in PyTorch
        cases.append(((n, 4), lambda: nk.instance_norm_forward(x, w, w, channel_axis=ca),
                      lambda m, s: nk.instance_norm_backward(x, x, m, s, w, channel_axis=ca)))
    for stats_shape, fwd, bwd in cases:
        y, m, s = fwd()
        assert y.shape == x.shape and m.shape == s.shape == stats_shape
        dx, dw, db = bwd(m, s)
        assert dx.shape == x.shape
        np.testing.assert_array_equal(dw, np.zeros(4, np.float32))
        np.testing.assert_array_equal(db, np.zeros(4, np.float32))


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_inputs_unmodified(isa, rng, dtype, ca):
    shape = layout((3, 4, 5, 6), ca)
    x, dy = randn(rng, shape, dtype), randn(rng, shape, dtype)
    w, b = params(rng, 4, dtype)
    rm, rv = running_stats(rng, 4, dtype)
    before = [a.copy() for a in (x, dy, w, b, rm, rv)]
    saved = []
    for training in (True, False):
        m_s = nk.batch_norm_forward(x, w, b, None if training else rm, None if training else rv,
                                    training=training, channel_axis=ca)[1:]
        saved += [(m_s, [a.copy() for a in m_s])]
        nk.batch_norm_backward(dy, x, *m_s, w, training=training, channel_axis=ca)
    m_s = nk.group_norm_forward(x, 2, w, b, channel_axis=ca)[1:]
    saved += [(m_s, [a.copy() for a in m_s])]
    nk.group_norm_backward(dy, x, *m_s, w, num_groups=2, channel_axis=ca)
    for use_input_stats in (True, False):
        m_s = nk.instance_norm_forward(x, w, b, None if use_input_stats else rm, None if use_input_stats else rv,
                                       use_input_stats=use_input_stats, channel_axis=ca)[1:]
        saved += [(m_s, [a.copy() for a in m_s])]
        nk.instance_norm_backward(dy, x, *m_s, w, use_input_stats=use_input_stats, channel_axis=ca)
    for a, c in zip((x, dy, w, b, rm, rv), before):
        np.testing.assert_array_equal(a, c)
    for stats, copies in saved:
        for a, c in zip(stats, copies):
            np.testing.assert_array_equal(a, c)
    nk.batch_norm(x, w, b, rm, rv, training=True, channel_axis=ca)
    nk.instance_norm(x, w, b, rm, rv, channel_axis=ca)
    for a, c in zip((x, w, b), (before[0], before[2], before[3])):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------- determinism


# (shape in NCHW order, groups): short channels-last rows, long rows (1000 channels) that are
# not whole vectors, an odd 4-d shape with few samples, NCHW spans of 169 values whose
# per-channel statistics group 96 samples per unit (two unequal sample blocks), and NCHW spans of
# 16900 values cut into two units each.
THREAD_SHAPES = [((8, 16, 40, 40), 4), ((200, 1000, 2), 4), ((3, 130, 37, 11), 2), ((100, 6, 13, 13), 2),
                 ((2, 3, 130, 130), 3)]


@pytest.mark.parametrize("case", THREAD_SHAPES, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bitwise_identical_across_thread_counts(isa, rng, threads, dtype, ca, case):
    nchw, groups = case
    shape = layout(nchw, ca)
    C = nchw[1]
    x, dy = randn(rng, shape, dtype, 2.0, 1.0), randn(rng, shape, dtype)
    w, b = params(rng, C, dtype)
    rm, rv = running_stats(rng, C, dtype)
    results = []
    for n in (1, 2, 3):
        nk.set_num_threads(n)
        assert nk.get_num_threads() == n
        results.append(run_all(x, dy, w, b, rm, rv, ca, groups=groups))
    for other in results[1:]:
        for i, (a, e) in enumerate(zip(other, results[0])):
            np.testing.assert_array_equal(a.view(np.uint8), e.view(np.uint8), err_msg=f"output {i}")


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bitwise_identical_for_any_cache_size(isa, rng, threads, cache_sizes, dtype, ca):
    # With a 64 KiB last-level cache and a 32 KiB L2 planned for, outputs bypass the cache and
    # NCHW BatchNorm runs channel by channel when each thread has at least 4 channels: with 6
    # channels, on one thread but not on two or three. The values must not change.
    # With a 4 MiB last-level cache and a 48 KiB L2, (4, 256, 5, 7) runs NCHW BatchNorm in blocks
    # of channels (test_nchw_batch_norm_channel_blocks): float32 on two threads, its backward
    # also on three; float16/bfloat16 backward and float64 forward too.
    for shape, llc, l2, groups in [((6, 6, 20, 20), 64 << 10, 32 << 10, 3), ((4, 256, 5, 7), 4 << 20, 48 << 10, 32)]:
        x, dy, w, b, rm, rv = run_all_inputs(rng, shape, dtype, ca)
        cache_sizes(0, 0)
        expected = run_all(x, dy, w, b, rm, rv, ca, groups)
        cache_sizes(llc, l2)
        for n in (1, 2, 3):
            nk.set_num_threads(n)
            for i, (a, e) in enumerate(zip(run_all(x, dy, w, b, rm, rv, ca, groups), expected)):
                np.testing.assert_array_equal(a.view(np.uint8), e.view(np.uint8),
                                              err_msg=f"{shape}, {n} threads, output {i}")


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors(on):
    """The same rules for NumPy arrays and GPU arrays (`on`)."""
    g = on
    x = g(np.ones((2, 4, 3), np.float32))
    w = g(np.ones(4, np.float32))
    rm, rv = g(np.zeros(4, np.float32)), g(np.ones(4, np.float32))
    m, s = g(np.zeros(4, np.float32)), g(np.ones(4, np.float32))
    gm, gs = g(np.zeros((2, 2), np.float32)), g(np.ones((2, 2), np.float32))
    cases = [
        (TypeError, "x must be a numpy.ndarray", lambda: nk.batch_norm([[1.0, 2.0]], training=True)),
        (TypeError, "x has dtype int64", lambda: nk.batch_norm(g(np.ones((2, 4), np.int64)), training=True)),
        (TypeError, "x has dtype int32", lambda: nk.group_norm(g(np.ones((2, 4), np.int32)), 2)),
        (TypeError, "x has dtype complex64", lambda: nk.instance_norm(g(np.ones((2, 4, 3), np.complex64)))),
        (ValueError, r"\bx\b", lambda: nk.batch_norm(g(np.ones(4, np.float32)), training=True)),
        (ValueError, r"\bx\b", lambda: nk.group_norm(g(np.ones(4, np.float32)), 1)),
        (ValueError, r"weight has shape \(5,\); expected \(4,\)", lambda: nk.batch_norm(x, g(np.ones(5, np.float32)),
                                                                                          training=True)),
        (ValueError, r"bias has shape \(4, 1\)", lambda: nk.group_norm(x, 2, w, g(np.ones((4, 1), np.float32)))),
        (ValueError, r"weight has shape \(3,\)", lambda: nk.instance_norm(x, g(np.ones(3, np.float32)))),
        (TypeError, "weight has dtype int32", lambda: nk.batch_norm(x, g(np.ones(4, np.int32)), training=True)),
        (TypeError, "weight has dtype float64", lambda: nk.group_norm(x, 2, g(np.ones(4)))),
        (ValueError, "channel_axis", lambda: nk.batch_norm(x, training=True, channel_axis=0)),
        (ValueError, "channel_axis", lambda: nk.group_norm(x[..., None], 2, channel_axis=2)),
        (ValueError, "channel_axis", lambda: nk.instance_norm(x, channel_axis=-2)),
        (ValueError, "channel_axis", lambda: nk.batch_norm_backward(x, x, m, s, channel_axis=0)),
        (ValueError, "eps", lambda: nk.batch_norm(x, training=True, eps=0.0)),
        (ValueError, "eps", lambda: nk.group_norm(x, 2, eps=-1.0)),
        (ValueError, "eps", lambda: nk.instance_norm(x, eps=float("nan"))),
        (ValueError, "momentum", lambda: nk.batch_norm(x, None, None, rm, rv, training=True, momentum=-0.1)),
        (ValueError, "momentum", lambda: nk.batch_norm(x, None, None, rm, rv, training=True, momentum=1.5)),
        (ValueError, "momentum", lambda: nk.instance_norm(x, None, None, rm, rv, momentum=2.0)),
        (ValueError, "running_(mean|var)", lambda: nk.batch_norm(x, None, None, rm, None, training=True)),
        (ValueError, "running_(mean|var)", lambda: nk.batch_norm(x, None, None, None, rv)),
        (ValueError, "running_(mean|var)", lambda: nk.instance_norm(x, None, None, rm, None)),
        (ValueError, "running", lambda: nk.batch_norm(x)),  # eval needs the running statistics
        (ValueError, "running", lambda: nk.instance_norm(x, use_input_stats=False)),
        (ValueError, r"running_mean has shape \(3,\)", lambda: nk.batch_norm(x, None, None, rm[:3], rv)),
        (ValueError, r"running_var has shape \(5,\)",
         lambda: nk.batch_norm(x, None, None, rm, g(np.ones(5, np.float32)), training=True)),
        (TypeError, "running_mean has dtype int64", lambda: nk.batch_norm(x, None, None, g(np.zeros(4, np.int64)), rv)),
        (TypeError, "running_var must be a numpy.ndarray", lambda: nk.batch_norm(np.asarray(x), None, None, np.asarray(rm), [1.0] * 4)),
        (ValueError, "num_groups", lambda: nk.group_norm(x, 3)),
        (ValueError, "num_groups", lambda: nk.group_norm(x, 0)),
        (ValueError, "num_groups", lambda: nk.group_norm(x, -2)),
        (ValueError, "num_groups", lambda: nk.group_norm_backward(x, x, gm, gs, num_groups=3)),
        (ValueError, r"dy has shape \(2, 4, 2\)", lambda: nk.batch_norm_backward(x[..., :2], x, m, s)),
        (TypeError, "dy has dtype float64", lambda: nk.group_norm_backward(x.astype(np.float64), x, gm, gs,
                                                                           num_groups=2)),
        (ValueError, r"save_mean has shape \(3,\)", lambda: nk.batch_norm_backward(x, x, m[:3], s)),
        (ValueError, r"save_rstd has shape \(4, 1\)", lambda: nk.batch_norm_backward(x, x, m, s[:, None])),
        (ValueError, r"mean has shape \(2, 4\)", lambda: nk.group_norm_backward(x, x, g(np.zeros((2, 4), np.float32)),
                                                                                 gs, num_groups=2)),
        (ValueError, r"rstd has shape \(2, 2\)", lambda: nk.instance_norm_backward(x, x, g(np.zeros((2, 4), np.float32)),
                                                                                   gs)),
        (ValueError, r"out has shape", lambda: nk.batch_norm(x, training=True, out=g(np.empty((2, 3, 4), np.float32)))),
        (TypeError, "out has dtype float64", lambda: nk.group_norm(x, 2, out=g(np.empty((2, 4, 3))))),
        (ValueError, "out must be C-contiguous",
         lambda: nk.instance_norm(x, out=g(np.empty((3, 4, 2), np.float32)).transpose(2, 1, 0))),
        (ValueError, "momentum", lambda: nk.keras_momentum(1.01)),
        (ValueError, "spatial", lambda: nk.instance_norm(x[..., 0])),  # instance statistics of one value
        (ValueError, "spatial", lambda: nk.instance_norm(x[..., :1], None, None, rm, rv)),
    ]
    for exc, msg, call in cases:
        with pytest.raises(exc, match=msg):
            call()
    x, rm, rv = np.asarray(x), np.asarray(rm), np.asarray(rv)  # the host arrays behind them
    np.testing.assert_array_equal(rm, 0)  # failed calls left the running statistics alone
    np.testing.assert_array_equal(rv, 1)
    ro_mean = rm.copy()
    ro_mean.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean"):  # training would write it
        nk.batch_norm(x, None, None, ro_mean, rv, training=True)
    np.testing.assert_array_equal(rv, 1)
    nk.batch_norm(x, None, None, ro_mean, rv)  # eval only reads it
    ro_out = np.empty_like(x)
    ro_out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        nk.group_norm(x, 2, out=ro_out)
    with pytest.raises(ValueError):  # one value per channel in training
        nk.batch_norm(np.ones((1, 4), np.float32), training=True)
    assert nk.batch_norm(x, training=True).shape == x.shape  # still usable after the errors


def test_channel_axis_is_1_or_minus_1():
    # Only the two documented values; x.ndim - 1 is not an alias of -1 (it is 1 for 2-D x, where both agree).
    x = np.ones((2, 4, 6), np.float32)
    rm, rv = np.zeros(6, np.float32), np.ones(6, np.float32)
    for call in [lambda: nk.batch_norm(x, None, None, rm, rv, channel_axis=2),
                 lambda: nk.group_norm(x, 2, channel_axis=2),
                 lambda: nk.instance_norm(x, channel_axis=2),
                 lambda: nk.batch_norm_backward(x, x, rm, rv, channel_axis=2)]:
        with pytest.raises(ValueError, match="channel_axis"):
            call()


# ---------------------------------------------------------------- optional PyTorch cross-check


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_matches_torch(rng, ca):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, dy = randn(rng, layout((4, 6, 5, 7), ca), F32, 2.0, 0.5), randn(rng, layout((4, 6, 5, 7), ca), F32)
    w, b = params(rng, 6, F32)
    rm, rv = running_stats(rng, 6, F32)

    def to_t(a):
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)) if ca == -1 else a.copy())

    def from_t(t):
        a = t.detach().numpy()
        return np.moveaxis(a, 1, -1) if ca == -1 else a

    def torch_run(fn, **kw):
        tx, tw, tb = to_t(x).requires_grad_(), torch.from_numpy(w.copy()).requires_grad_(), torch.from_numpy(b.copy())
        tb.requires_grad_()
        trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
        ty = fn(tx, tw, tb, trm, trv, **kw)
        ty.backward(to_t(dy))
        return [from_t(ty), from_t(tx.grad), tw.grad.numpy(), tb.grad.numpy(), trm.numpy(), trv.numpy()]

    def nk_run(fwd, bwd, use_running, **kw):
        rm_, rv_ = rm.copy(), rv.copy()
        y, m, s = fwd(x, w, b, *((rm_, rv_) if use_running else ()), channel_axis=ca, **kw)
        return [y, *bwd(dy, x, m, s, w), rm_, rv_]

    pairs = [
        ("batch_norm train",
         torch_run(lambda tx, tw, tb, trm, trv: F.batch_norm(tx, trm, trv, tw, tb, True, 0.1, 1e-5)),
         nk_run(nk.batch_norm_forward, lambda *a: nk.batch_norm_backward(*a, channel_axis=ca), True, training=True)),
        ("batch_norm eval",
         torch_run(lambda tx, tw, tb, trm, trv: F.batch_norm(tx, trm, trv, tw, tb, False, 0.1, 1e-5)),
         nk_run(nk.batch_norm_forward, lambda *a: nk.batch_norm_backward(*a, training=False, channel_axis=ca), True)),
        ("group_norm",
         torch_run(lambda tx, tw, tb, trm, trv: F.group_norm(tx, 3, tw, tb, 1e-5)),
         nk_run(lambda a, w_, b_, **kw: nk.group_norm_forward(a, 3, w_, b_, **kw),
                lambda *a: nk.group_norm_backward(*a, num_groups=3, channel_axis=ca), False)),
        ("instance_norm",
         torch_run(lambda tx, tw, tb, trm, trv: F.instance_norm(tx, trm, trv, tw, tb, True, 0.1, 1e-5)),
         nk_run(nk.instance_norm_forward, lambda *a: nk.instance_norm_backward(*a, channel_axis=ca), True)),
        ("instance_norm running stats",
         torch_run(lambda tx, tw, tb, trm, trv: F.instance_norm(tx, trm, trv, tw, tb, False, 0.1, 1e-5)),
         nk_run(nk.instance_norm_forward,
                lambda *a: nk.instance_norm_backward(*a, use_input_stats=False, channel_axis=ca), True,
                use_input_stats=False)),
    ]
    for name, want, got in pairs:
        for i, (g, t) in enumerate(zip(got, want)):
            np.testing.assert_allclose(g, t, rtol=1e-4, atol=1e-4, err_msg=f"{name} output {i}")
