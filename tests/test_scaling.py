"""Feature scaling: standardize / minmax_scale against the float64 oracle, numerical properties,
layouts, determinism, the scikit-learn-style scalers and bad inputs."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference_reg as ref
from conftest import DTYPE_IDS, DTYPES, assert_close, randn

CASES = [((1000, 7), 0), ((33, 65), 0), ((65, 33), 1), ((5, 123, 17), 0), ((5, 123, 17), 1), ((4, 9, 8), -1),
         ((1, 5), 0), ((300, 1), 0), ((50000, 3), 0)]
CASE_IDS = [f"{'x'.join(map(str, s))}-ax{a}" for s, a in CASES]


def stat_dtype(dtype):
    return np.float64 if dtype == np.float64 else np.float32


@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_standardize(isa, rng, dtype, shape, axis):
    x = randn(rng, shape, dtype, scale=2.0, offset=-1.0)
    x0 = x.copy()
    for eps in (0.0, 0.5):
        y, mean, std = nk.standardize(x, axis=axis, eps=eps)
        ry, rmean, rstd = ref.standardize(x, axis, eps)
        assert y.dtype == dtype and y.flags.c_contiguous and mean.dtype == std.dtype == stat_dtype(dtype)
        assert_close(y, ry, dtype, "fwd", "y", "y")
        assert_close(mean, rmean, dtype, "fwd", "stat", "mean")
        assert_close(std, rstd, dtype, "fwd", "stat", "std")
    np.testing.assert_array_equal(x, x0)  # input not modified


@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_minmax_scale(isa, rng, dtype, shape, axis):
    x = randn(rng, shape, dtype, scale=3.0)
    x0 = x.copy()
    for fr in ((0.0, 1.0), (-2.0, 5.0)):
        y, mn, mx = nk.minmax_scale(x, axis=axis, feature_range=fr)
        ry, rmn, rmx = ref.minmax_scale(x, axis, fr)
        assert y.dtype == dtype and mn.dtype == mx.dtype == stat_dtype(dtype)
        assert_close(y, ry, dtype, "fwd", "y", "y")
        np.testing.assert_array_equal(mn, rmn.astype(mn.dtype))
        np.testing.assert_array_equal(mx, rmx.astype(mx.dtype))
    np.testing.assert_array_equal(x, x0)


# ---------------------------------------------------------------- properties


def test_large_mean_features_keep_precision(isa, rng):
    # offset 1e4 with unit spread: a naive float32 E[x^2] - E[x]^2 would lose every digit
    x = (1e4 + rng.standard_normal((20000, 6)) * np.array([1.0, 0.5, 2.0, 1.0, 0.1, 3.0])).astype(np.float32)
    y, mean, std = nk.standardize(x)
    _, rmean, rstd = ref.standardize(x)
    np.testing.assert_allclose(std, rstd, rtol=1e-6)
    np.testing.assert_allclose(mean, rmean, rtol=1e-7)
    sc = nk.StandardScaler().fit(x)
    np.testing.assert_allclose(sc.var_, rstd**2, rtol=2e-6)
    input_precision = np.spacing(np.float32(1e4)) / 2
    assert np.abs(y.astype(np.float64) - ref.standardize(x)[0]).max() < 4 * input_precision / rstd.min()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_constant_features(isa, rng, dtype):
    x = randn(rng, (50, 4), dtype)
    x[:, 1] = 3.25
    x[:, 3] = -1e4 if dtype != np.float16 else -1e3
    y, mean, std = nk.standardize(x)
    assert (y[:, [1, 3]] == 0).all() and std[1] == 0 and std[3] == 0
    assert mean[1] == 3.25 and mean[3] == x[0, 3]
    y, mn, mx = nk.minmax_scale(x, feature_range=(-1.0, 2.0))
    assert (y[:, [1, 3]] == -1).all() and mn[1] == mx[1] == 3.25
    sc = nk.StandardScaler().fit(x)
    assert sc.scale_[1] == 1 and sc.var_[1] == 0
    np.testing.assert_array_equal(sc.transform(x)[:, 1], 0)
    mm = nk.MinMaxScaler().fit(x)
    assert mm.scale_[1] == 1 and mm.data_range_[1] == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_confined_to_its_feature(isa, rng, dtype):
    x = randn(rng, (200, 5), dtype)
    x[17, 2] = np.nan
    y, mean, std = nk.standardize(x)
    assert np.isnan(y[:, 2].astype(np.float64)).all() and np.isnan(mean[2]) and np.isnan(std[2])
    keep = [0, 1, 3, 4]
    ry, rmean, _ = ref.standardize(x[:, keep])
    assert_close(y[:, keep], ry, dtype, "fwd", "y", "other features")
    assert_close(mean[keep], rmean, dtype, "fwd", "stat", "other means")
    y, mn, mx = nk.minmax_scale(x)
    assert np.isnan(mn[2]) and np.isnan(mx[2]) and np.isfinite(y[:, keep].astype(np.float64)).all()


def _views(base):
    wide = np.zeros((base.shape[0], base.shape[1] + 3), base.dtype)
    wide[:, 1:-2] = base
    raw = np.zeros(base.nbytes + 1, np.uint8)
    mis = raw[1:].view(base.dtype).reshape(base.shape)
    mis[...] = base
    return {"strided": wide[:, 1:-2], "negative": np.ascontiguousarray(base[::-1, ::-1])[::-1, ::-1],
            "fortran": np.asfortranarray(base), "misaligned": mis, "every-other-row": np.repeat(base, 2, axis=0)[::2]}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_views_match_contiguous(isa, rng, dtype):
    base = randn(rng, (301, 19), dtype)
    expected = [nk.standardize(base), nk.minmax_scale(base, feature_range=(-1.0, 1.0))]
    sc, mm = nk.StandardScaler().fit(base), nk.MinMaxScaler().fit(base)
    exp_t = [sc.transform(base), mm.transform(base)]
    for name, v in _views(base).items():
        got = [nk.standardize(v), nk.minmax_scale(v, feature_range=(-1.0, 1.0))]
        for g, e in zip(got, expected):
            for a, b in zip(g, e):
                np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(sc.transform(v), exp_t[0], err_msg=name)
        np.testing.assert_array_equal(mm.transform(v), exp_t[1], err_msg=name)


def test_thread_invariance(isa, rng, threads):
    x = randn(rng, (100003, 13), np.float32, scale=2.0, offset=50.0)
    results = []
    for n in (1, 2, 3):
        nk.set_num_threads(n)
        results.append(nk.standardize(x) + nk.minmax_scale(x))
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zero_size(isa, dtype):
    y, mean, std = nk.standardize(np.zeros((5, 0), dtype))
    assert y.shape == (5, 0) and mean.shape == std.shape == (0,)
    y, mean, std = nk.standardize(np.zeros((0, 3), dtype))
    assert y.shape == (0, 3) and np.isnan(mean).all() and np.isnan(std).all()
    y, mn, mx = nk.minmax_scale(np.zeros((2, 0, 4), dtype), axis=1)
    assert y.shape == (2, 0, 4) and mn.shape == mx.shape == (2, 4)


# ---------------------------------------------------------------- scalers


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_standard_scaler(isa, rng, dtype):
    X = randn(rng, (400, 6), dtype, scale=3.0, offset=2.0)
    sc = nk.StandardScaler()
    Y = sc.fit_transform(X)
    ry, rmean, rstd = ref.standardize(X)
    assert Y.dtype == dtype and sc.n_samples_seen_ == 400 and sc.n_features_in_ == 6
    assert sc.mean_.dtype == stat_dtype(dtype)
    assert_close(Y, ry, dtype, "fwd", "y", "transform")
    assert_close(sc.mean_, rmean, dtype, "fwd", "stat", "mean_")
    assert_close(sc.scale_, rstd, dtype, "fwd", "stat", "scale_")
    assert_close(sc.inverse_transform(Y), ref.standardize(X)[0] * rstd + rmean, dtype, "fwd", "y", "inverse")
    parts = nk.StandardScaler().partial_fit(X[:150]).partial_fit(X[150:])
    np.testing.assert_allclose(parts.mean_, sc.mean_, rtol=1e-6)
    np.testing.assert_allclose(parts.var_, sc.var_, rtol=1e-5)
    assert parts.n_samples_seen_ == 400
    no_mean = nk.StandardScaler(with_mean=False).fit(X)
    assert_close(no_mean.transform(X), X.astype(np.float64) / rstd, dtype, "fwd", "y", "with_mean=False")
    neither = nk.StandardScaler(with_mean=False, with_std=False).fit(X)
    assert neither.mean_ is None and neither.scale_ is None
    np.testing.assert_array_equal(neither.transform(X), X)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_minmax_scaler(isa, rng, dtype):
    X = randn(rng, (300, 5), dtype, scale=3.0)
    mm = nk.MinMaxScaler(feature_range=(-1.0, 1.0))
    Y = mm.fit_transform(X)
    ry, rmn, rmx = ref.minmax_scale(X, 0, (-1.0, 1.0))
    assert Y.dtype == dtype and mm.data_min_.dtype == stat_dtype(dtype)
    assert_close(Y, ry, dtype, "fwd", "y", "transform")
    np.testing.assert_array_equal(mm.data_min_, rmn.astype(stat_dtype(dtype)))
    np.testing.assert_allclose(mm.min_, -1.0 - rmn * 2.0 / (rmx - rmn), rtol=1e-5, atol=1e-6)
    assert_close(mm.inverse_transform(Y), X, dtype, "fwd", "y", "inverse")
    clipped = nk.MinMaxScaler(feature_range=(-1.0, 1.0), clip=True).fit(X).transform(X * np.asarray(2, dtype))
    assert clipped.astype(np.float64).min() >= -1 and clipped.astype(np.float64).max() <= 1
    parts = nk.MinMaxScaler().partial_fit(X[:100]).partial_fit(X[100:])
    np.testing.assert_array_equal(parts.data_max_, rmx.astype(stat_dtype(dtype)))


def test_scaler_errors():
    X = np.ones((4, 3), np.float32)
    for cls in (nk.StandardScaler, nk.MinMaxScaler):
        with pytest.raises(ValueError, match=rf"This {cls.__name__} instance is not fitted yet; call fit\(X\) first"):
            cls().transform(X)
        with pytest.raises(ValueError, match=rf"X has 2 features, but {cls.__name__} is expecting 3 features"):
            cls().fit(X).transform(X[:, :2])
        with pytest.raises(ValueError, match=r"X must be 2-D \(n_samples, n_features\), got shape \(4,\)"):
            cls().fit(X[:, 0])
        with pytest.raises(TypeError, match=r"X must be a numpy.ndarray, got list"):
            cls().fit([[1.0, 2.0]])
        with pytest.raises(TypeError, match=r"x has dtype int64; expected float32, float64, float16 or bfloat16"):
            cls().fit(np.ones((4, 3), np.int64))
    with pytest.raises(ValueError, match=r"feature_range must be finite with min < max, got \(1.0, 0.0\)"):
        nk.MinMaxScaler(feature_range=(1.0, 0.0)).fit(X)
    with pytest.raises(ValueError, match=r"feature_range must be finite with min < max"):
        nk.minmax_scale(X, feature_range=(0.0, 0.0))
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -1.0"):
        nk.standardize(X, eps=-1.0)
    with pytest.raises(ValueError, match=r"axis=2 is out of range for an array of 2 dimension\(s\)"):
        nk.standardize(X, axis=2)
    with pytest.raises(TypeError, match=r"x has dtype complex128"):
        nk.standardize(np.ones((3, 2), np.complex128))


def test_matches_sklearn(rng):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    X = randn(rng, (500, 8), np.float64, scale=4.0, offset=3.0)
    X[:, 5] = 2.0
    ours, theirs = nk.StandardScaler().fit(X), preprocessing.StandardScaler().fit(X)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-12)
    ours, theirs = nk.MinMaxScaler((-1, 3)).fit(X), preprocessing.MinMaxScaler((-1, 3)).fit(X)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.min_, theirs.min_, rtol=1e-12)
