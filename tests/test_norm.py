"""LayerNorm / RMSNorm (and the fused add_* variants): values, properties and errors."""

from __future__ import annotations

import threading

import normkit as nk
import numpy as np
import pytest
import reference as ref
from conftest import BF16, DTYPE_IDS, DTYPES, LARGE_SHAPE, M_ODD, N_EDGES, WEIRD_SHAPES, assert_close, randn

F32 = np.dtype(np.float32)
_PRECISION_ORDER = [np.dtype(np.float64), F32, np.dtype(np.float16), BF16]


def coarser(a, b):
    """The less precise of two dtypes (parameter gradients are rounded to the weight's dtype)."""
    return max(np.dtype(a), np.dtype(b), key=_PRECISION_ORDER.index)


def params(rng, shape, dtype, weight_dtype=None):
    wd = dtype if weight_dtype is None else weight_dtype
    return randn(rng, shape, wd, 0.5, 1.0), randn(rng, shape, wd, 0.5)


def check_layer_norm(rng, shape, dtype, axis=-1, affine=True, weight_dtype=None):
    x = randn(rng, shape, dtype)
    fshape = shape[axis % len(shape):]
    w, b = params(rng, fshape, dtype, weight_dtype) if affine else (None, None)
    y, mean, rstd = nk.layer_norm_forward(x, w, b, axis=axis)
    ry, rmean, rrstd = ref.layer_norm(x, w, b, axis=axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert mean.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert mean.shape == rstd.shape == shape[: axis % len(shape)]
    assert_close(y, ry, dtype, "fwd", "y", "layer_norm y")
    assert_close(mean, rmean, dtype, "fwd", "stat", "layer_norm mean")
    assert_close(rstd, rrstd, dtype, "fwd", "stat", "layer_norm rstd")
    np.testing.assert_array_equal(nk.layer_norm(x, w, b, axis=axis), y)

    dy = randn(rng, shape, dtype)
    dx, dw, db = nk.layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
    rdx, rdw, rdb = ref.layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
    assert dx.dtype == x.dtype and dw.shape == db.shape == fshape
    assert dw.dtype == (w.dtype if affine else x.dtype)
    assert_close(dx, rdx, dtype, "bwd", "dx", "layer_norm dx")
    rows = max(1, int(np.prod(shape[: axis % len(shape)])))
    pdt = coarser(dtype, dw.dtype)
    assert_close(dw / np.sqrt(rows), rdw / np.sqrt(rows), pdt, "bwd", "dparam", "layer_norm dweight")
    assert_close(db / np.sqrt(rows), rdb / np.sqrt(rows), pdt, "bwd", "dparam", "layer_norm dbias")


def check_rms_norm(rng, shape, dtype, axis=-1, affine=True, weight_dtype=None):
    x = randn(rng, shape, dtype)
    fshape = shape[axis % len(shape):]
    w = params(rng, fshape, dtype, weight_dtype)[0] if affine else None
    y, rstd = nk.rms_norm_forward(x, w, axis=axis)
    ry, rrstd = ref.rms_norm(x, w, axis=axis)
    assert y.dtype == x.dtype and rstd.shape == shape[: axis % len(shape)]
    assert_close(y, ry, dtype, "fwd", "y", "rms_norm y")
    assert_close(rstd, rrstd, dtype, "fwd", "stat", "rms_norm rstd")
    np.testing.assert_array_equal(nk.rms_norm(x, w, axis=axis), y)

    dy = randn(rng, shape, dtype)
    dx, dw = nk.rms_norm_backward(dy, x, rstd, w, axis=axis)
    rdx, rdw = ref.rms_norm_backward(dy, x, rstd, w, axis=axis)
    assert_close(dx, rdx, dtype, "bwd", "dx", "rms_norm dx")
    rows = max(1, int(np.prod(shape[: axis % len(shape)])))
    assert_close(dw / np.sqrt(rows), rdw / np.sqrt(rows), coarser(dtype, dw.dtype), "bwd", "dparam", "rms_norm dweight")


# ---------------------------------------------------------------- values on shape grids


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("m", M_ODD)
def test_layer_norm_n_edges(isa, rng, dtype, m):
    for n in N_EDGES:
        check_layer_norm(rng, (m, n), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("m", M_ODD)
def test_rms_norm_n_edges(isa, rng, dtype, m):
    for n in N_EDGES:
        check_rms_norm(rng, (m, n), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", WEIRD_SHAPES, ids=str)
def test_weird_shapes_every_axis(isa, rng, dtype, shape):
    for axis in range(-len(shape), len(shape)):
        check_layer_norm(rng, shape, dtype, axis=axis, affine=axis % 2 == 0)
        check_rms_norm(rng, shape, dtype, axis=axis, affine=axis % 2 == 1)


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float64], ids=["f16", "bf16", "f64"])
def test_float32_weight_with_other_dtypes(isa, rng, dtype):
    check_layer_norm(rng, (9, 70), np.dtype(dtype), weight_dtype=np.float32)
    check_rms_norm(rng, (9, 70), np.dtype(dtype), weight_dtype=np.float32)


def test_large_case(isa, rng):
    check_layer_norm(rng, LARGE_SHAPE, F32)
    check_rms_norm(rng, LARGE_SHAPE, F32)


# ---------------------------------------------------------------- reference vs finite differences


def test_reference_backward_matches_finite_differences(rng):
    x = rng.standard_normal((3, 7))
    w, b, dy = rng.standard_normal(7), rng.standard_normal(7), rng.standard_normal((3, 7))

    def ln_loss():
        return float((ref.layer_norm(x, w, b)[0] * dy).sum())

    def rms_loss():
        return float((ref.rms_norm(x, w)[0] * dy).sum())

    _, mean, rstd = ref.layer_norm(x, w, b)
    dx, dw, db = ref.layer_norm_backward(dy, x, mean, rstd, w)
    np.testing.assert_allclose(dx, ref.numerical_grad(ln_loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, ref.numerical_grad(ln_loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, ref.numerical_grad(ln_loss, b), rtol=1e-6, atol=1e-7)
    _, rstd = ref.rms_norm(x, w)
    dx, dw = ref.rms_norm_backward(dy, x, rstd, w)
    np.testing.assert_allclose(dx, ref.numerical_grad(rms_loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, ref.numerical_grad(rms_loss, w), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- numerical properties


@pytest.mark.parametrize("n", [64, 1000, 4096])
def test_large_mean_rows_keep_precision(isa, rng, n):
    x = (1e4 + rng.standard_normal((8, n))).astype(np.float32)
    y, _mean, rstd = nk.layer_norm_forward(x)
    ry, _rmean, rrstd = ref.layer_norm(x)
    assert np.isfinite(y).all()
    err = np.abs(y - ry).max()
    # The float32 input itself is only known to half an ulp of 1e4 (~4.9e-4) per value.
    input_precision = np.spacing(np.float32(1e4)) / 2
    assert err < 4 * input_precision, err
    np.testing.assert_allclose(rstd, rrstd, rtol=1e-4)
    # A naive float32 E[x^2] - E[x]^2 loses the variance entirely at this offset.
    naive_var = (x * x).mean(axis=1, dtype=np.float32) - x.mean(axis=1, dtype=np.float32) ** 2
    naive_rstd = 1 / np.sqrt(np.maximum(naive_var, 0) + np.float32(1e-5))
    assert np.abs(naive_rstd / rrstd - 1).max() > 100 * np.abs(rstd / rrstd - 1).max()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_constant_rows_equal_bias(isa, rng, dtype):
    x = np.full((5, 37), 3.25, dtype=dtype)
    w, b = params(rng, (37,), dtype)
    y, mean, rstd = nk.layer_norm_forward(x, w, b)
    assert np.isfinite(y.astype(np.float64)).all()
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
    np.testing.assert_array_equal(mean, 3.25)
    dx, dw, _db = nk.layer_norm_backward(randn(rng, x.shape, dtype), x, mean, rstd, w)
    assert np.isfinite(dx.astype(np.float64)).all() and np.isfinite(dw.astype(np.float64)).all()
    z = np.zeros((3, 20), dtype=dtype)
    assert np.isfinite(nk.rms_norm(z).astype(np.float64)).all()
    np.testing.assert_array_equal(nk.rms_norm(z), 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nonfinite_confined_to_row(isa, rng, dtype, bad):
    x = randn(rng, (6, 41), dtype)
    x[2, 17] = bad
    dy = randn(rng, x.shape, dtype)
    clean = np.delete(np.arange(6), 2)
    for fwd, bwd, refn in [
        (nk.layer_norm_forward, nk.layer_norm_backward, ref.layer_norm),
        (nk.rms_norm_forward, nk.rms_norm_backward, ref.rms_norm),
    ]:
        out = fwd(x)
        y, stats = out[0], out[1:]
        assert not np.isfinite(y[2].astype(np.float64)).all()
        assert_close(y[clean], refn(x[clean])[0], dtype, "fwd", "y", "rows without the bad value")
        dx = bwd(dy, x, *stats)[0]
        assert np.isfinite(dx[clean].astype(np.float64)).all()


@pytest.mark.parametrize("fn", [nk.layer_norm, nk.rms_norm], ids=["layer_norm", "rms_norm"])
def test_float16_rows_near_300(isa, rng, fn):
    # sum(x^2) = 4096 * 9e4 overflows float16 (max 65504); accumulation must be float32.
    x = (300 + rng.standard_normal((4, 4096))).astype(np.float16)
    y = fn(x)
    assert np.isfinite(y.astype(np.float64)).all()
    expected = (ref.layer_norm if fn is nk.layer_norm else ref.rms_norm)(x)[0]
    assert_close(y, expected, np.float16, "fwd", "y", fn.__name__)


# ---------------------------------------------------------------- layouts


def views(base):
    """Non-contiguous, negative-stride and misaligned views of the same logical values."""
    m, n = base.shape
    wide = np.zeros((m, n + 5), base.dtype)
    wide[:, 2 : n + 2] = base
    out = {"row-strided": wide[:, 2 : n + 2]}
    rev = np.ascontiguousarray(base[::-1])
    out["negative-row-stride"] = rev[::-1]
    out["negative-inner-stride"] = np.ascontiguousarray(base[:, ::-1])[:, ::-1]
    t = np.ascontiguousarray(base.T)
    out["transposed"] = t.T
    raw = np.zeros(base.nbytes + 1, np.uint8)
    mis = raw[1:].view(base.dtype).reshape(base.shape)
    mis[...] = base
    assert not mis.flags.aligned
    out["misaligned"] = mis
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_views_match_contiguous(isa, rng, dtype):
    x = randn(rng, (7, 33), dtype)
    dy = randn(rng, x.shape, dtype)
    w, b = params(rng, (33,), dtype)
    y, mean, rstd = nk.layer_norm_forward(x, w, b)
    g = nk.layer_norm_backward(dy, x, mean, rstd, w)
    yr, rs = nk.rms_norm_forward(x, w)
    gr = nk.rms_norm_backward(dy, x, rs, w)
    for name, v in views(x).items():
        np.testing.assert_array_equal(nk.layer_norm(v, w, b), y, err_msg=name)
        np.testing.assert_array_equal(nk.rms_norm(v, w), yr, err_msg=name)
        dyv = views(dy)[name]
        for a, e in zip(nk.layer_norm_backward(dyv, v, mean, rstd, w), g):
            np.testing.assert_array_equal(a, e, err_msg=name)
        for a, e in zip(nk.rms_norm_backward(dyv, v, rs, w), gr):
            np.testing.assert_array_equal(a, e, err_msg=name)
    wv = np.zeros(66, w.dtype)[::2]
    wv[...] = w
    np.testing.assert_array_equal(nk.layer_norm(x, wv, b), y)


def test_out_and_in_place(isa, rng):
    x = randn(rng, (5, 50), F32)
    w, b = params(rng, (50,), F32)
    y = nk.layer_norm(x, w, b)
    out = np.empty_like(x)
    assert nk.layer_norm(x, w, b, out=out) is out
    np.testing.assert_array_equal(out, y)
    inplace = x.copy()
    nk.layer_norm(inplace, w, b, out=inplace)
    np.testing.assert_array_equal(inplace, y)
    # overlapping but shifted: must behave as if x were read first
    buf = np.concatenate([x.reshape(-1), np.zeros(50, np.float32)])
    shifted_out = buf[50:].reshape(5, 50)
    nk.layer_norm(buf[:250].reshape(5, 50), w, b, out=shifted_out)
    np.testing.assert_array_equal(shifted_out, y)
    # backward: dx into dy's buffer
    _, mean, rstd = nk.layer_norm_forward(x, w, b)
    dy = randn(rng, x.shape, F32)
    dx, _dw, _db = nk.layer_norm_backward(dy, x, mean, rstd, w)
    dy2 = dy.copy()
    got = nk.layer_norm_backward(dy2, x, mean, rstd, w, out=dy2)
    assert got[0] is dy2
    np.testing.assert_array_equal(dy2, dx)


@pytest.mark.parametrize("shape,axis", [((0, 8), -1), ((4, 0), -1), ((3, 0, 5), 1), ((0,), 0), ((2, 3, 0), 2)])
def test_zero_size(shape, axis):
    x = np.zeros(shape, np.float32)
    w = np.ones(shape[axis:], np.float32)
    y, mean, rstd = nk.layer_norm_forward(x, w, w, axis=axis)
    assert y.shape == shape and mean.shape == shape[:axis]
    dx, dw, db = nk.layer_norm_backward(x, x, mean, rstd, w, axis=axis)
    assert dx.shape == shape and dw.shape == db.shape == shape[axis:]
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    y, rstd = nk.rms_norm_forward(x, w, axis=axis)
    dx, dw = nk.rms_norm_backward(x, x, rstd, w, axis=axis)
    assert y.shape == dx.shape == shape
    np.testing.assert_array_equal(dw, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_inputs_unmodified(isa, rng, dtype):
    x, r, dy = (randn(rng, (6, 45), dtype) for _ in range(3))
    w, b = params(rng, (45,), dtype)
    before = [a.copy() for a in (x, r, dy, w, b)]
    _y, mean, rstd = nk.layer_norm_forward(x, w, b)
    s_mean, s_rstd = mean.copy(), rstd.copy()
    nk.layer_norm_backward(dy, x, mean, rstd, w)
    _, rs = nk.rms_norm_forward(x, w)
    nk.rms_norm_backward(dy, x, rs, w)
    nk.add_layer_norm(x, r, w, b)
    nk.add_rms_norm(x, r, w)
    for a, c in zip((x, r, dy, w, b), before):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(mean, s_mean)
    np.testing.assert_array_equal(rstd, s_rstd)


# ---------------------------------------------------------------- fused residual add


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_add_variants_equal_unfused(isa, rng, dtype):
    x, r = randn(rng, (7, 67), dtype), randn(rng, (7, 67), dtype)
    w, b = params(rng, (67,), dtype)
    h_expected = (x.astype(np.float32) + r.astype(np.float32)).astype(dtype) if dtype != np.float64 else x + r
    y, h = nk.add_layer_norm(x, r, w, b)
    np.testing.assert_array_equal(h, h_expected)
    np.testing.assert_array_equal(y, nk.layer_norm(h, w, b))
    y2, _h2, mean, rstd = nk.add_layer_norm_forward(x, r, w, b)
    np.testing.assert_array_equal(y2, y)
    _, m_ref, r_ref = nk.layer_norm_forward(h, w, b)
    np.testing.assert_array_equal(mean, m_ref)
    np.testing.assert_array_equal(rstd, r_ref)
    y, h = nk.add_rms_norm(x, r, w)
    np.testing.assert_array_equal(h, h_expected)
    np.testing.assert_array_equal(y, nk.rms_norm(h, w))
    _y3, _h3, rs = nk.add_rms_norm_forward(x, r, w)
    np.testing.assert_array_equal(rs, nk.rms_norm_forward(h, w)[1])


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bitwise_identical_across_thread_counts(isa, rng, threads, dtype):
    x = randn(rng, (300, 517), dtype)
    dy = randn(rng, x.shape, dtype)
    w, b = params(rng, (517,), dtype)
    results = []
    for n in (1, 2, 3):
        nk.set_num_threads(n)
        assert nk.get_num_threads() == n
        y, mean, rstd = nk.layer_norm_forward(x, w, b)
        yr, rs = nk.rms_norm_forward(x, w)
        results.append(
            [y, mean, rstd, *nk.layer_norm_backward(dy, x, mean, rstd, w), yr, rs, *nk.rms_norm_backward(dy, x, rs, w)]
        )
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            np.testing.assert_array_equal(a.view(np.uint8), e.view(np.uint8))


def test_concurrent_python_threads_match_serial(rng):
    inputs = [randn(rng, (64, 999), F32) for _ in range(6)]
    dys = [randn(rng, (64, 999), F32) for _ in range(6)]
    w, b = params(rng, (999,), F32)

    def work(x, dy):
        y, mean, rstd = nk.layer_norm_forward(x, w, b)
        dx, dw, db = nk.layer_norm_backward(dy, x, mean, rstd, w)
        return y, dx, dw, db, nk.rms_norm(x, w)

    serial = [work(x, dy) for x, dy in zip(inputs, dys)]
    results = [None] * len(inputs)

    def run(i):
        for _ in range(5):
            results[i] = work(inputs[i], dys[i])

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for got, want in zip(results, serial):
        for a, e in zip(got, want):
            np.testing.assert_array_equal(a, e)


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors(on):
    """The same rules for NumPy arrays and GPU arrays (`on`)."""
    g = on
    x0 = np.ones((4, 8), np.float32)
    x, w = g(x0), g(np.ones(8, np.float32))
    cases = [
        (TypeError, "x must be a numpy.ndarray, got list", lambda: nk.layer_norm([[1.0, 2.0]])),
        (TypeError, "x has dtype int64", lambda: nk.layer_norm(g(np.ones((2, 3), np.int64)))),
        (TypeError, "x has dtype complex64", lambda: nk.rms_norm(g(np.ones((2, 3), np.complex64)))),
        (TypeError, "x has dtype object", lambda: nk.layer_norm(np.ones((2, 3), object))),
        (TypeError, r"weight has dtype int32; expected float32 \(the input's dtype\)$", lambda: nk.layer_norm(x, g(np.ones(8, np.int32)))),
        (TypeError, r"weight has dtype float64; expected float32", lambda: nk.layer_norm(x, g(np.ones(8)))),
        (TypeError, r"weight has dtype int32; expected float16 \(the input's dtype\) or float32",
         lambda: nk.layer_norm(g(np.ones((4, 8), np.float16)), g(np.ones(8, np.int32)))),
        (ValueError, r"weight has shape \(7,\); expected \(8,\)", lambda: nk.layer_norm(x, g(np.ones(7, np.float32)))),
        (ValueError, r"bias has shape \(4, 8\); expected \(8,\)", lambda: nk.layer_norm(x, w, g(np.ones((4, 8), np.float32)))),
        (ValueError, r"weight has shape \(8,\); expected \(4, 8\)", lambda: nk.rms_norm(x, w, axis=0)),
        (ValueError, "axis=2 is out of range", lambda: nk.layer_norm(x, axis=2)),
        (ValueError, "axis=-3 is out of range", lambda: nk.rms_norm(x, axis=-3)),
        (ValueError, "axis=-1 is out of range", lambda: nk.layer_norm(g(np.ones((), np.float32)))),
        (ValueError, "eps must be a finite number > 0, got 0", lambda: nk.layer_norm(x, eps=0.0)),
        (ValueError, "eps must be a finite number > 0, got -1", lambda: nk.rms_norm(x, eps=-1.0)),
        (ValueError, "eps must be a finite number > 0, got nan", lambda: nk.layer_norm(x, eps=float("nan"))),
        (ValueError, r"out has shape \(8, 4\); expected \(4, 8\)", lambda: nk.layer_norm(x, out=g(np.empty((8, 4), np.float32)))),
        (TypeError, "out has dtype float64; expected float32", lambda: nk.rms_norm(x, out=g(np.empty((4, 8))))),
        (ValueError, "out must be C-contiguous", lambda: nk.layer_norm(x, out=g(np.empty((8, 4), np.float32)).T)),
        (TypeError, "out must be a numpy.ndarray", lambda: nk.layer_norm(x0, out=[0.0])),
        (TypeError, "residual has dtype float64", lambda: nk.add_layer_norm(x, g(np.ones((4, 8))))),
        (ValueError, r"residual has shape \(4, 7\)", lambda: nk.add_rms_norm(x, g(np.ones((4, 7), np.float32)))),
        (TypeError, "dy has dtype float64", lambda: nk.layer_norm_backward(g(np.ones((4, 8))), x, x[:, 0], x[:, 0])),
        (ValueError, r"dy has shape \(4, 7\)", lambda: nk.rms_norm_backward(x[:, :7], x, x[:, 0])),
        (ValueError, r"rstd has shape \(3,\); expected \(4,\)", lambda: nk.rms_norm_backward(x, x, x[:3, 0])),
        (ValueError, r"mean has shape \(4, 1\)", lambda: nk.layer_norm_backward(x, x, x[:, :1], x[:, 0])),
        (TypeError, r"rstd has dtype int64; expected float32, float64 or float16 \(converted to float32\)", lambda: nk.rms_norm_backward(x, x, g(np.ones(4, np.int64)))),
        (TypeError, "mean must be a numpy.ndarray, got NoneType", lambda: nk.layer_norm_backward(x, x, None, x[:, 0])),
    ]
    for exc, msg, call in cases:
        with pytest.raises(exc, match=msg):
            call()
    ro = np.empty((4, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        nk.layer_norm(x0, out=ro)
    assert nk.layer_norm(x).shape == (4, 8)  # still usable after the errors


def test_runtime_controls(threads):
    assert nk.available_isas()[0] == "scalar"
    with pytest.raises(ValueError, match="isa 'sse9' is not available"):
        nk.set_isa("sse9")
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        nk.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an int"):
        nk.set_num_threads(1.5)
    nk.set_num_threads(1)
    assert nk.get_num_threads() == 1
    assert isinstance(nk.__version__, str) and nk.__version__.count(".") == 2


# ---------------------------------------------------------------- optional PyTorch cross-check


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = randn(rng, (6, 4, 33), dtype)
    w, b = params(rng, (4, 33), dtype)
    dy = randn(rng, x.shape, dtype)
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
    ty = F.layer_norm(tx, (4, 33), tw, tb, 1e-5)
    ty.backward(torch.from_numpy(dy))
    y, mean, rstd = nk.layer_norm_forward(x, w, b, axis=1)
    dx, dw, db = nk.layer_norm_backward(dy, x, mean, rstd, w, axis=1)
    for got, want in [(y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)]:
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-4)
    tx.grad = tw.grad = None
    ty = F.rms_norm(tx, (4, 33), tw, 1e-6)
    ty.backward(torch.from_numpy(dy))
    y, rstd = nk.rms_norm_forward(x, w, axis=1)
    dx, dw = nk.rms_norm_backward(dy, x, rstd, w, axis=1)
    for got, want in [(y, ty), (dx, tx.grad), (dw, tw.grad)]:
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- import-time configuration


def _run_python(code, **env):
    import os
    import subprocess
    import sys

    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=True)


def test_normkit_isa_environment_variable():
    out = _run_python("import normkit as nk; print(nk.get_isa())", NORMKIT_ISA="scalar")
    assert out.stdout.strip() == "scalar"
    out = _run_python(
        "import warnings; warnings.simplefilter('always')\nimport normkit as nk; print(nk.get_isa())",
        NORMKIT_ISA="sse9",
    )
    assert out.stdout.strip() == nk.available_isas()[-1]
    assert "NORMKIT_ISA=sse9 is not available" in out.stderr


def test_show_config_reports_runtime():
    import io

    buf = io.StringIO()
    nk.show_config(file=buf)
    text = buf.getvalue()
    assert nk.__version__ in text and nk.get_isa() in text and f"threads:        {nk.get_num_threads()}" in text
