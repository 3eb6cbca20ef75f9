"""Channel-wise norms (BatchNorm, GroupNorm, InstanceNorm): values, running statistics, equivalences."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference as ref
from chan_helpers import (
    F32,
    LAYOUT_IDS,
    LAYOUTS,
    SHAPES,
    chan_randn,
    check_batch_norm,
    check_group_norm,
    check_instance_norm,
    coarser,
    group_counts,
    layout,
    params,
    running_stats,
    stat_dtype,
)
from conftest import BF16, DTYPE_IDS, DTYPES, assert_close, randn

# ---------------------------------------------------------------- values on shape grids


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_batch_norm_values(isa, rng, dtype, ca):
    for i, shape in enumerate(SHAPES):
        check_batch_norm(rng, shape, dtype, ca, affine=i % 4 != 1)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_group_norm_values(isa, rng, dtype, ca):
    for i, shape in enumerate(SHAPES):
        for groups in group_counts(shape[1]):
            check_group_norm(rng, shape, groups, dtype, ca, affine=i % 4 != 1)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_instance_norm_values(isa, rng, dtype, ca):
    # Only shapes with more than one spatial element: the unbiased running variance needs two.
    for i, shape in enumerate(s for s in SHAPES if np.prod(s[2:]) > 1):
        check_instance_norm(rng, shape, dtype, ca, affine=i % 4 != 1)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_large_case(isa, rng, ca):
    # many chunks per statistic (merged partial statistics), a wide C for the channels-last
    # kernels, and short NCHW spans grouped across samples (blocks of 83 and 17 samples)
    for nc_shape in [(8, 16, 40, 40), (3, 300, 9, 11), (100, 4, 14, 14)]:
        check_batch_norm(rng, nc_shape, F32, ca)
        check_group_norm(rng, nc_shape, 4, F32, ca)
        check_instance_norm(rng, nc_shape, F32, ca)


def test_channels_last_group_norm_in_several_cache_batches(isa, rng):
    # Channels-last GroupNorm/InstanceNorm run per batch of samples that fits an 8 MiB budget
    # (x; x and dy in the backward): float64 samples of 33*33*512 values (4.5 MB) give one sample
    # per batch in both directions, three batches, and outputs streamed past the cache.
    shape = (3, 512, 33, 33)
    check_group_norm(rng, shape, 32, np.float64, -1)
    check_instance_norm(rng, shape, np.float64, -1)


@pytest.mark.parametrize("dtype", [F32, BF16], ids=["f32", "bf16"])
def test_nchw_spans_longer_than_a_unit(isa, rng, dtype):
    # NCHW spans of 130 x 130 = 16900 values: every (n, c) span is cut into two units (16384 and
    # 516 values) for the statistics and the backward sums, merged in order.
    shape = (2, 3, 130, 130)
    check_batch_norm(rng, shape, dtype, 1)
    check_group_norm(rng, shape, 3, dtype, 1)
    check_instance_norm(rng, shape, dtype, 1)


def test_channels_last_streamed_past_the_cache(isa, rng):
    # 4.7M float32 values with 64 channels: every elementwise pass writes past the last-level
    # cache (non-temporal stores), and rows of 64 channels take the flat pass that keeps the
    # coefficients of its 4 vector phases in registers.
    shape = (72, 64, 32, 32)
    check_batch_norm(rng, shape, F32, -1)
    check_group_norm(rng, shape, 32, F32, -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nchw_batch_norm_channel_by_channel(isa, rng, cache_sizes, dtype):
    # Kernels planning for a 64 KiB last-level cache and a 32 KiB L2 run NCHW BatchNorm whose
    # tensor is past the cache channel by channel (statistics or sums, coefficients, elementwise
    # pass per channel), when one channel's inputs fit in twice the L2: long spans; short spans
    # grouped across samples for the statistics (float64 backward: a channel's x and dy are past
    # 64 KiB, so the phased path runs there); spans of two units each (with a 256 KiB L2).
    cache_sizes(64 << 10, 32 << 10)
    check_batch_norm(rng, (6, 16, 20, 20), dtype, 1)
    check_batch_norm(rng, (120, 8, 5, 7), dtype, 1, affine=False)
    cache_sizes(256 << 10, 256 << 10)
    check_batch_norm(rng, (2, 8, 130, 130), dtype, 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nchw_batch_norm_channel_blocks(isa, rng, cache_sizes, threads, dtype):
    # Planning for a 4 MiB last-level cache and a 48 KiB L2, NCHW BatchNorm whose inputs are in
    # the cache but not in the two threads' L2s runs in blocks of channels that fill half an L2
    # (at least 16; a thread's last block ends at its last channel). At (4, 256, 5, 7): float32
    # backward blocks of 21 channels and forward of 43; float16/bfloat16 backward 43, forward
    # phased (x fits in the L2s); float64 forward 21, backward phased (blocks of 10). At
    # (8, 256, 5, 7): float16/bfloat16 forward 43 and backward 21, float32 forward 21; float32
    # backward and float64 phased.
    cache_sizes(4 << 20, 48 << 10)
    nk.set_num_threads(2)
    check_batch_norm(rng, (4, 256, 5, 7), dtype, 1)
    check_batch_norm(rng, (4, 256, 5, 7), dtype, 1, affine=False)
    check_batch_norm(rng, (8, 256, 5, 7), dtype, 1)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_weight_or_bias_alone(isa, rng, ca):
    x = chan_randn(rng, (3, 4, 5, 6), F32, ca)
    w, b = params(rng, 4, F32)
    rm, rv = running_stats(rng, 4, F32)
    for weight, bias in [(w, None), (None, b)]:
        cases = [
            (nk.batch_norm(x, weight, bias, training=True, channel_axis=ca),
             ref.batch_norm_train(x, weight, bias, channel_axis=ca)),
            (nk.batch_norm(x, weight, bias, rm, rv, channel_axis=ca),
             ref.batch_norm_eval(x, weight, bias, rm, rv, channel_axis=ca)),
            (nk.group_norm(x, 2, weight, bias, channel_axis=ca), ref.group_norm(x, 2, weight, bias, channel_axis=ca)),
            (nk.instance_norm(x, weight, bias, channel_axis=ca), ref.instance_norm(x, weight, bias, channel_axis=ca)),
        ]
        for i, (y, (ry, _, _)) in enumerate(cases):
            assert_close(y, ry, F32, "fwd", "y", f"case {i}, weight given: {weight is not None}")


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float64], ids=["f16", "bf16", "f64"])
def test_float32_weight_with_other_dtypes(isa, rng, dtype):
    for ca in LAYOUTS:
        check_batch_norm(rng, (3, 17, 9), np.dtype(dtype), ca, weight_dtype=F32)
        check_group_norm(rng, (3, 6, 9), 3, np.dtype(dtype), ca, weight_dtype=F32)
        check_instance_norm(rng, (3, 6, 9), np.dtype(dtype), ca, weight_dtype=F32)


# ---------------------------------------------------------------- reference vs finite differences


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_reference_backward_matches_finite_differences(rng, ca):
    x = rng.standard_normal(layout((3, 4, 5), ca))
    w, b, dy = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(x.shape)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    cases = {
        "batch train": (lambda: ref.batch_norm_train(x, w, b, channel_axis=ca),
                        lambda m, s: ref.batch_norm_backward(dy, x, m, s, w, training=True, channel_axis=ca)),
        "batch eval": (lambda: ref.batch_norm_eval(x, w, b, rm, rv, channel_axis=ca),
                       lambda m, s: ref.batch_norm_backward(dy, x, m, s, w, training=False, channel_axis=ca)),
        "group": (lambda: ref.group_norm(x, 2, w, b, channel_axis=ca),
                  lambda m, s: ref.group_norm_backward(dy, x, m, s, w, num_groups=2, channel_axis=ca)),
        "instance": (lambda: ref.instance_norm(x, w, b, channel_axis=ca),
                     lambda m, s: ref.instance_norm_backward(dy, x, m, s, w, channel_axis=ca)),
        "instance running": (
            lambda: ref.instance_norm(x, w, b, rm, rv, use_input_stats=False, channel_axis=ca),
            lambda m, s: ref.instance_norm_backward(dy, x, m, s, w, use_input_stats=False, channel_axis=ca),
        ),
    }
    for name, (fwd, bwd) in cases.items():
        def loss(fwd=fwd):
            return float((fwd()[0] * dy).sum())

        _, m, s = fwd()
        for got, arg in zip(bwd(m, s), (x, w, b)):
            np.testing.assert_allclose(got, ref.numerical_grad(loss, arg), rtol=1e-6, atol=1e-7, err_msg=name)


# ---------------------------------------------------------------- running statistics and modes


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_running_stats_three_steps(isa, rng, dtype, ca):
    shape = layout((5, 3, 4, 6), ca)
    sd = stat_dtype(dtype)
    w, b = params(rng, 3, dtype)
    for fn, update in [(nk.batch_norm, ref.batch_norm_running_update),
                       (nk.instance_norm, ref.instance_norm_running_update)]:
        kw = {"training": True} if fn is nk.batch_norm else {}
        rm, rv = np.zeros(3, sd), np.ones(3, sd)
        erm, erv = rm.astype(np.float64), rv.astype(np.float64)
        for _ in range(3):
            x = randn(rng, shape, dtype, 2.0, 1.0)
            fn(x, w, b, rm, rv, momentum=0.3, channel_axis=ca, **kw)
            erm, erv = update(erm, erv, x, 0.3, channel_axis=ca)
        assert rm.dtype == rv.dtype == sd
        assert_close(rm, erm, dtype, "fwd", "stat", f"{fn.__name__} running_mean after 3 steps")
        assert_close(rv, erv, dtype, "fwd", "stat", f"{fn.__name__} running_var after 3 steps")
        # momentum=0 leaves them, momentum=1 replaces them with this batch's statistics
        keep_m, keep_v = rm.copy(), rv.copy()
        fn(x, w, b, rm, rv, momentum=0.0, channel_axis=ca, **kw)
        np.testing.assert_array_equal(rm, keep_m)
        np.testing.assert_array_equal(rv, keep_v)
        fn(x, w, b, rm, rv, momentum=1.0, channel_axis=ca, **kw)
        erm, erv = update(keep_m, keep_v, x, 1.0, channel_axis=ca)
        assert_close(rm, erm, dtype, "fwd", "stat", f"{fn.__name__} running_mean, momentum=1")
        assert_close(rv, erv, dtype, "fwd", "stat", f"{fn.__name__} running_var, momentum=1")
        # a Keras/ONNX momentum of 0.99 is PyTorch's 0.01
        erm, erv = update(rm, rv, x, 0.01, channel_axis=ca)
        fn(x, w, b, rm, rv, momentum=nk.keras_momentum(0.99), channel_axis=ca, **kw)
        assert_close(rm, erm, dtype, "fwd", "stat", f"{fn.__name__} running_mean, keras momentum")
        assert_close(rv, erv, dtype, "fwd", "stat", f"{fn.__name__} running_var, keras momentum")


@pytest.mark.parametrize("stat_dt", DTYPES, ids=DTYPE_IDS)
def test_running_stats_of_any_float_dtype(isa, rng, stat_dt):
    x = chan_randn(rng, (4, 3, 5), F32, 1)
    rm, rv = (a.astype(stat_dt) for a in running_stats(rng, 3, F32))
    for fn, update, kw in [(nk.batch_norm, ref.batch_norm_running_update, {"training": True}),
                           (nk.instance_norm, ref.instance_norm_running_update, {})]:
        erm, erv = update(rm, rv, x, 0.1)
        fn(x, None, None, rm, rv, **kw)
        assert rm.dtype == rv.dtype == stat_dt
        # float32 batch statistics, rounded to the running statistics' own dtype
        assert_close(rm, erm, coarser(F32, stat_dt), "fwd", "y", f"{fn.__name__} running_mean")
        assert_close(rv, erv, coarser(F32, stat_dt), "fwd", "y", f"{fn.__name__} running_var")


def test_keras_momentum():
    assert nk.keras_momentum(0.99) == pytest.approx(0.01)
    assert nk.keras_momentum(0.0) == 1.0 and nk.keras_momentum(1.0) == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="momentum"):
            nk.keras_momentum(bad)


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_eval_uses_running_stats(isa, rng, ca):
    x = randn(rng, layout((4, 5, 3, 7), ca), F32, 2.0, 1.0)
    w, b = params(rng, 5, F32)
    rm, rv = running_stats(rng, 5, F32)
    nk.batch_norm(x, w, b, rm, rv, training=True, channel_axis=ca)
    keep_m, keep_v = rm.copy(), rv.copy()
    y = nk.batch_norm(x, w, b, rm, rv, momentum=0.5, channel_axis=ca)
    assert_close(y, ref.batch_norm_eval(x, w, b, rm, rv, channel_axis=ca)[0], F32, "fwd", "y", "eval y")
    assert np.abs(y - nk.batch_norm(x, w, b, training=True, channel_axis=ca)).max() > 1e-2
    y, mean, rstd = nk.instance_norm_forward(x, w, b, rm, rv, use_input_stats=False, momentum=0.5, channel_axis=ca)
    ry, _, rrstd = ref.instance_norm(x, w, b, rm, rv, use_input_stats=False, channel_axis=ca)
    assert_close(y, ry, F32, "fwd", "y", "instance_norm running-stats y")
    np.testing.assert_array_equal(mean, np.broadcast_to(rm, (4, 5)))
    assert_close(rstd, rrstd, F32, "fwd", "stat", "instance_norm running-stats rstd")
    np.testing.assert_array_equal(rm, keep_m)
    np.testing.assert_array_equal(rv, keep_v)
    x2 = x.reshape(-1, 5) if ca == -1 else x[:, :, 0, 0].copy()  # (N, C): no spatial axes, running stats only
    y = nk.instance_norm(x2, w, b, rm, rv, use_input_stats=False, channel_axis=ca)
    ry = ref.instance_norm(x2, w, b, rm, rv, use_input_stats=False, channel_axis=ca)[0]
    assert_close(y, ry, F32, "fwd", "y", "instance_norm running-stats on (N, C)")


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
def test_batch_norm_small_batches(isa, rng, ca):
    check_batch_norm(rng, (1, 3, 5), F32, ca)  # one sample, five values per channel
    check_batch_norm(rng, (2, 3), F32, ca)  # two values per channel: the fewest allowed
    for nc_shape in [(1, 3), (1, 3, 1), (1, 3, 1, 1)]:
        x = randn(rng, layout(nc_shape, ca), F32)
        rm, rv = running_stats(rng, 3, F32)
        keep_m, keep_v = rm.copy(), rv.copy()
        with pytest.raises(ValueError):
            nk.batch_norm(x, None, None, rm, rv, training=True, channel_axis=ca)
        with pytest.raises(ValueError):
            nk.batch_norm_forward(x, training=True, channel_axis=ca)
        np.testing.assert_array_equal(rm, keep_m)
        np.testing.assert_array_equal(rv, keep_v)
        y = nk.batch_norm(x, None, None, rm, rv, channel_axis=ca)  # eval works on one value
        assert_close(y, ref.batch_norm_eval(x, None, None, rm, rv, channel_axis=ca)[0], F32, "fwd", "y", "eval N=1")


# ---------------------------------------------------------------- equivalences


@pytest.mark.parametrize("ca", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_group_norm_one_group_is_layer_norm_and_c_groups_is_instance_norm(isa, rng, dtype, ca):
    nc_shape = (3, 6, 5, 7)
    x, dy = randn(rng, layout(nc_shape, ca), dtype), randn(rng, layout(nc_shape, ca), dtype)
    w, b = params(rng, 6, dtype)
    count = x.size // 6
    chan_shape = (6, 1, 1) if ca == 1 else (6,)
    wf, bf = (np.broadcast_to(p.reshape(chan_shape), x.shape[1:]).copy() for p in (w, b))
    y, mean, rstd = nk.group_norm_forward(x, 1, w, b, channel_axis=ca)
    ly, lmean, lrstd = nk.layer_norm_forward(x, wf, bf, axis=1)
    assert_close(y, ly, dtype, "fwd", "y", "G=1 vs layer_norm y")
    assert_close(mean[:, 0], lmean, dtype, "fwd", "stat", "G=1 vs layer_norm mean")
    assert_close(rstd[:, 0], lrstd, dtype, "fwd", "stat", "G=1 vs layer_norm rstd")
    dx, dw, db = nk.group_norm_backward(dy, x, mean, rstd, w, num_groups=1, channel_axis=ca)
    ldx, ldw, ldb = nk.layer_norm_backward(dy, x, lmean, lrstd, wf, axis=1)
    assert_close(dx, ldx, dtype, "bwd", "dx", "G=1 vs layer_norm dx")
    per_channel = (lambda g: g.astype(np.float64).reshape(6, -1).sum(axis=1)) if ca == 1 else (
        lambda g: g.astype(np.float64).reshape(-1, 6).sum(axis=0))
    k = np.sqrt(count)
    assert_close(dw.astype(np.float64) / k, per_channel(ldw) / k, dtype, "bwd", "dparam", "G=1 vs layer_norm dweight")
    assert_close(db.astype(np.float64) / k, per_channel(ldb) / k, dtype, "bwd", "dparam", "G=1 vs layer_norm dbias")

    y, mean, rstd = nk.group_norm_forward(x, 6, w, b, channel_axis=ca)
    iy, imean, irstd = nk.instance_norm_forward(x, w, b, channel_axis=ca)
    assert_close(y, iy, dtype, "fwd", "y", "G=C vs instance_norm y")
    assert_close(mean, imean, dtype, "fwd", "stat", "G=C vs instance_norm mean")
    assert_close(rstd, irstd, dtype, "fwd", "stat", "G=C vs instance_norm rstd")
    got = nk.group_norm_backward(dy, x, mean, rstd, w, num_groups=6, channel_axis=ca)
    want = nk.instance_norm_backward(dy, x, imean, irstd, w, channel_axis=ca)
    assert_close(got[0], want[0], dtype, "bwd", "dx", "G=C vs instance_norm dx")
    for g, e, name in zip(got[1:], want[1:], ("dweight", "dbias")):
        assert_close(g.astype(np.float64) / k, e.astype(np.float64) / k, dtype, "bwd", "dparam", f"G=C {name}")
