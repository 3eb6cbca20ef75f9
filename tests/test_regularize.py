"""Regularizers: values against the float64 oracle, numerical properties, layouts, determinism,
bad inputs, EarlyStopping."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference_reg as ref
from conftest import DTYPE_IDS, DTYPES, N_EDGES, assert_close, randn

# Penalties are float64 sums of float32 (or float64) block partials: relative error per dtype.
PENALTY_RTOL = {"float64": 1e-12, "float32": 1e-6, "float16": 1e-6, "bfloat16": 1e-6}
SHAPES = [(1,), (7,), (33,), (1000,), (3, 65), (5, 123, 123), (2, 3, 5, 7, 11), (0,), (3, 0)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]

# ---------------------------------------------------------------- values


@pytest.mark.parametrize("n", N_EDGES + [16384, 16385, 70001])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_penalties(isa, rng, dtype, n):
    w = randn(rng, (n,), dtype, scale=3.0)
    lam = float(rng.uniform(0.1, 2.0))
    rtol = PENALTY_RTOL[np.dtype(dtype).name]
    for got, exp in ((nk.l1_penalty(w, lam), ref.l1_penalty(w, lam)), (nk.l2_penalty(w, lam), ref.l2_penalty(w, lam))):
        assert isinstance(got, float)
        np.testing.assert_allclose(got, exp, rtol=rtol)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_grads_prox_decay(isa, rng, dtype, shape):
    w = randn(rng, shape, dtype)
    if w.size:
        w.reshape(-1)[:: 5] = 0  # sign(0) = 0
    grad = randn(rng, shape, dtype)
    lam, lr, wd = 0.3, 0.1, 0.5
    w0 = w.copy()
    for fn, expected in ((nk.add_l1_grad, ref.add_l1_grad(grad, w, lam)), (nk.add_l2_grad, ref.add_l2_grad(grad, w, lam))):
        g = grad.copy()
        assert fn(g, w, lam) is g
        assert_close(g, expected, dtype, "fwd", "y", fn.__name__)
    np.testing.assert_array_equal(w, w0)  # w is not modified
    p = w.copy()
    assert nk.l1_prox(p, 0.7) is p
    assert_close(p, ref.l1_prox(w, 0.7), dtype, "fwd", "y", "l1_prox")
    assert ((p == 0) == (np.abs(w.astype(np.float64)) <= np.float32(0.7))).all()
    d = w.copy()
    assert nk.weight_decay(d, lr, wd) is d
    assert_close(d, ref.weight_decay(w, lr, wd), dtype, "fwd", "y", "weight_decay")


MAX_NORM_CASES = [((7, 33), 0), ((7, 33), 1), ((7, 33), -1), ((64, 3, 3, 3), 0), ((5, 123, 4), 1), ((5, 4, 123), 1),
                  ((1000,), 0), ((3, 7, 2), -1), ((17, 40), 0)]


@pytest.mark.parametrize("shape,axis", MAX_NORM_CASES, ids=[f"{'x'.join(map(str, s))}-ax{a}" for s, a in MAX_NORM_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_max_norm(isa, rng, dtype, shape, axis):
    w = randn(rng, shape, dtype)
    norms = ref.slice_norms(w, axis)
    max_value = float(np.median(norms))
    out = w.copy()
    assert nk.max_norm(out, max_value, axis=axis) is out
    assert_close(out, ref.max_norm(w, max_value, axis), dtype, "fwd", "y", "max_norm")
    new = ref.slice_norms(out, axis)
    big = norms > max_value
    np.testing.assert_allclose(new[big], max_value, rtol={"float64": 1e-12, "float32": 1e-6}.get(dtype.name, 1e-2))


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_prox_gives_exact_zeros_subgradient_does_not(isa, rng, dtype):
    # Lasso-style problem: 0.5 * |w - target|^2 + lam * |w|_1 with a mostly small target.
    target = randn(rng, (4096,), np.float64, scale=0.05)
    target[:100] += 3.0
    lam, lr = 0.2, 0.3
    w_prox, w_sub = randn(rng, (4096,), dtype), None
    w_sub = w_prox.copy()
    for _ in range(30):
        g = (w_prox.astype(np.float64) - target).astype(dtype)
        w_prox = (w_prox.astype(np.float64) - lr * g.astype(np.float64)).astype(dtype)
        nk.l1_prox(w_prox, lr * lam)
        g = (w_sub.astype(np.float64) - target).astype(dtype)
        nk.add_l1_grad(g, w_sub, lam)
        w_sub = (w_sub.astype(np.float64) - lr * g.astype(np.float64)).astype(dtype)
    zeros_prox = int((w_prox == 0).sum())
    zeros_sub = int((w_sub == 0).sum())
    assert zeros_prox > 3500, zeros_prox
    assert zeros_sub < 40, zeros_sub
    assert (w_prox[:100] != 0).all()


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_max_norm_leaves_small_slices_untouched(isa, rng, dtype, axis):
    w = randn(rng, (40, 30, 20), dtype)
    norms = ref.slice_norms(w, axis)
    max_value = float(np.quantile(norms, 0.7))
    small = norms <= max_value
    out = w.copy()
    nk.max_norm(out, max_value, axis=axis)
    a, b = np.moveaxis(out, axis, 0), np.moveaxis(w, axis, 0)
    np.testing.assert_array_equal(a[small].view(np.uint8), b[small].view(np.uint8))
    clearly_big = norms > 1.02 * max_value  # barely-over slices may round back to the same bfloat16 values
    assert (a[clearly_big] != b[clearly_big]).any(axis=tuple(range(1, a.ndim))).all()
    untouched = w.copy()
    nk.max_norm(untouched, float(norms.max()) * (1 + 1e-6), axis=axis)  # every slice just under max_value
    np.testing.assert_array_equal(untouched.view(np.uint8), w.view(np.uint8))


def test_thread_invariance(isa, rng, threads):
    w = randn(rng, (300001,), np.float32, scale=2.0, offset=0.5)
    m = randn(rng, (3000, 200), np.float32)
    results = []
    for n in (1, 2, 3):
        nk.set_num_threads(n)
        mn = m.copy()
        nk.max_norm(mn, 10.0, axis=1)
        g = w.copy()
        nk.add_l1_grad(g, w, 0.1)
        results.append((nk.l1_penalty(w, 1.0), nk.l2_penalty(w, 1.0), mn, g))
    for r in results[1:]:
        assert r[0] == results[0][0] and r[1] == results[0][1]
        np.testing.assert_array_equal(r[2], results[0][2])
        np.testing.assert_array_equal(r[3], results[0][3])


def test_nan_confined(isa, rng):
    w = randn(rng, (6, 50), np.float32)
    w[2, 7] = np.nan
    assert np.isnan(nk.l1_penalty(w, 1.0)) and np.isnan(nk.l2_penalty(w, 1.0))
    g = np.zeros_like(w)
    nk.add_l1_grad(g, w, 1.0)
    assert np.isnan(g[2, 7]) and np.isfinite(np.delete(g.reshape(-1), 2 * 50 + 7)).all()
    p = w.copy()
    nk.l1_prox(p, 0.5)
    assert np.isnan(p[2, 7]) and np.isfinite(np.delete(p.reshape(-1), 2 * 50 + 7)).all()
    out = w.copy()
    nk.max_norm(out, 1.0, axis=0)  # row 2 has a NaN norm: left as is
    np.testing.assert_array_equal(out[2], w[2])
    np.testing.assert_allclose(ref.slice_norms(np.delete(out, 2, axis=0), 0), 1.0, rtol=1e-6)


def _views(base):
    """Strided, negative-stride, Fortran-order and misaligned arrays holding base's values."""
    wide = np.zeros(base.shape[:-1] + (base.shape[-1] + 3,), base.dtype)
    wide[..., 1:-2] = base
    rev = np.ascontiguousarray(base[::-1, ::-1])[::-1, ::-1]
    raw = np.zeros(base.nbytes + 1, np.uint8)
    mis = raw[1:].view(base.dtype).reshape(base.shape)
    mis[...] = base
    return {"strided": wide[..., 1:-2], "negative": rev, "fortran": np.asfortranarray(base), "misaligned": mis}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_views_match_contiguous(isa, rng, dtype):
    base = randn(rng, (37, 41), dtype)
    grad = randn(rng, (37, 41), dtype)
    expected = {"l1": nk.l1_penalty(base, 0.5), "l2": nk.l2_penalty(base, 0.5)}
    ops = {
        "add_l1_grad": lambda w: nk.add_l1_grad(grad.copy(), w, 0.3),
        "add_l2_grad": lambda w: nk.add_l2_grad(grad.copy(), w, 0.3),
        "l1_prox": lambda w: nk.l1_prox(w, 0.5),
        "weight_decay": lambda w: nk.weight_decay(w, 0.1, 0.2),
        "max_norm0": lambda w: nk.max_norm(w, 4.0, axis=0),
        "max_norm1": lambda w: nk.max_norm(w, 4.0, axis=1),
    }
    exp_out = {k: np.array(f(base.copy())) for k, f in ops.items()}
    for name, view in _views(base).items():
        assert nk.l1_penalty(view, 0.5) == expected["l1"], name
        assert nk.l2_penalty(view, 0.5) == expected["l2"], name
        for op, f in ops.items():
            v = view.copy() if op.startswith("add") else _views(base)[name]
            res = f(v)
            np.testing.assert_array_equal(res, exp_out[op], err_msg=f"{op} {name}")
        g = _views(grad)[name]  # grad itself non-contiguous: updated in place through a copy
        nk.add_l2_grad(g, base, 0.3)
        np.testing.assert_array_equal(g, exp_out["add_l2_grad"], err_msg=name)


def test_aliasing_grad_is_w(isa, rng):
    w = randn(rng, (1000,), np.float32)
    expected = ref.add_l2_grad(w, w, 0.25)
    nk.add_l2_grad(w, w, 0.25)
    assert_close(w, expected, np.float32, "fwd", "y", "grad is w")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zero_size(isa, dtype):
    for shape in [(0,), (3, 0), (0, 4, 5)]:
        w = np.zeros(shape, dtype)
        assert nk.l1_penalty(w, 1.0) == 0.0 and nk.l2_penalty(w, 1.0) == 0.0
        for r in (nk.add_l1_grad(w.copy(), w, 1.0), nk.l1_prox(w, 1.0), nk.weight_decay(w, 0.1, 0.1),
                  nk.max_norm(w, 1.0, axis=-1)):
            assert r.shape == shape and r.dtype == dtype


def test_bad_inputs(on):
    """The same rules for NumPy arrays and GPU arrays (`on`)."""
    w0 = np.ones((3, 4), np.float32)
    w = on(w0)
    with pytest.raises(TypeError, match=r"w has dtype int64; expected float32, float64, float16 or bfloat16"):
        nk.l1_penalty(on(np.ones(3, np.int64)), 1.0)
    with pytest.raises(TypeError, match=r"w must be a numpy.ndarray, got list"):
        nk.l2_penalty([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0, got -1"):
        nk.l2_penalty(w, -1.0)
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0, got nan"):
        nk.add_l1_grad(w.copy(), w, float("nan"))
    with pytest.raises(TypeError, match=r"lam must be a real number, got str"):
        nk.l1_penalty(w, "1")
    with pytest.raises(ValueError, match=r"w has shape \(4, 3\); expected \(3, 4\) \(the shape of grad\)"):
        nk.add_l2_grad(w.copy(), w.T.copy(), 1.0)
    with pytest.raises(TypeError, match=r"w has dtype float64; expected float32 \(the dtype of grad\)"):
        nk.add_l2_grad(w.copy(), on(w0.astype(np.float64)), 1.0)
    ro = w0.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grad is read-only; it is updated in place"):
        nk.add_l1_grad(ro, w0, 1.0)
    for fn in (lambda a: nk.l1_prox(a, 0.1), lambda a: nk.weight_decay(a, 0.1, 0.1), lambda a: nk.max_norm(a, 1.0)):
        with pytest.raises(ValueError, match=r"w is read-only; it is updated in place"):
            fn(ro)
    with pytest.raises(ValueError, match=r"threshold must be a finite number >= 0, got -0.5"):
        nk.l1_prox(w.copy(), -0.5)
    with pytest.raises(ValueError, match=r"wd must be a finite number >= 0, got -1"):
        nk.weight_decay(w.copy(), 0.1, -1.0)
    with pytest.raises(ValueError, match=r"max_value must be a finite number >= 0, got -2"):
        nk.max_norm(w.copy(), -2.0)
    with pytest.raises(ValueError, match=r"axis=2 is out of range for an array of 2 dimension\(s\)"):
        nk.max_norm(w.copy(), 1.0, axis=2)
    with pytest.raises(ValueError, match=r"axis=0 is out of range for an array of 0 dimension\(s\)"):
        nk.max_norm(on(np.array(1.0, np.float32)), 1.0)
    with pytest.raises(TypeError, match=r"axis must be an int, got float"):
        nk.max_norm(w.copy(), 1.0, axis=0.5)


# ---------------------------------------------------------------- EarlyStopping


def test_early_stopping_min_mode_restores_best_state():
    es = nk.EarlyStopping(patience=2)
    state = {"w": np.zeros(3)}
    stops = []
    for step, metric in enumerate([5.0, 4.0, 4.5, 3.0, 3.5, 3.2, 3.1]):
        state["w"][:] = step
        stops.append(es.step(metric, state))
    assert stops == [False, False, False, False, False, True, True]
    assert es.best == 3.0 and es.best_step == 3 and es.stopped
    np.testing.assert_array_equal(es.best_state["w"], [3.0, 3.0, 3.0])  # a deep copy, not the live state
    assert es.best_state["w"] is not state["w"]


def test_early_stopping_max_mode_min_delta_nan_patience0():
    es = nk.EarlyStopping(patience=3, min_delta=0.1, mode="max", restore_best=False)
    assert [es.step(m, "s") for m in [0.5, 0.55, 0.65, float("nan"), 0.7, 0.74]] == [False] * 5 + [True]
    assert es.best == 0.65 and es.best_step == 2 and es.best_state is None
    es0 = nk.EarlyStopping(patience=0)
    assert [es0.step(m) for m in [1.0, 0.5, 0.5]] == [False, False, True]
    es_nan = nk.EarlyStopping(patience=1)
    assert es_nan.step(float("nan")) is True and es_nan.best is None
    es.reset()
    assert es.best is None and es.steps == 0 and not es.stopped


def test_early_stopping_bad_arguments():
    with pytest.raises(ValueError, match=r"mode must be 'min' or 'max', got 'avg'"):
        nk.EarlyStopping(mode="avg")
    with pytest.raises(ValueError, match=r"patience must be an int >= 0, got -1"):
        nk.EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match=r"patience must be an int >= 0, got float"):
        nk.EarlyStopping(patience=1.5)
    with pytest.raises(ValueError, match=r"min_delta must be a finite number >= 0, got -0.1"):
        nk.EarlyStopping(min_delta=-0.1)
    with pytest.raises(TypeError, match=r"metric must be a real number, got str"):
        nk.EarlyStopping().step("low")


# ---------------------------------------------------------------- optional cross-check


def test_max_norm_matches_torch_renorm(rng):
    torch = pytest.importorskip("torch")
    w = randn(rng, (16, 8, 3, 3), np.float64)
    for axis in (0, 1, 3):
        out = w.copy()
        nk.max_norm(out, 2.0, axis=axis)
        expected = torch.renorm(torch.from_numpy(w), 2, axis, 2.0).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-6)
