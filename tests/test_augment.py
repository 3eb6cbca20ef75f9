"""Augmentation: the documented streams, exact crops/flips, noise and lighting values, statistics,
layouts, determinism across ISAs and threads, identities and bad inputs."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference as ref
import reference_aug as ra
from conftest import DTYPE_IDS, DTYPES, assert_close, randn

aug = nk.augment
EIGVALS, EIGVECS = aug.IMAGENET_EIGVALS, aug.IMAGENET_EIGVECS


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def images(rng, shape, dtype, channel_axis=1):
    """Random images; shape given as NCHW, returned in the layout of channel_axis."""
    x = randn(rng, shape, dtype)
    return x if channel_axis == 1 else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def assert_close_f32_normals(y, expect, dtype, normal_err, what):
    """The tolerance table, except float64 data: there the float32 normals (a few ulp off the
    float64 formula) bound the error, ``normal_err`` in absolute terms."""
    if dtype == np.float64:
        np.testing.assert_allclose(y, expect, rtol=1e-12, atol=normal_err, err_msg=what)
    else:
        assert_close(y, expect, dtype, "fwd", "y", what)


# ---- the reference streams


def test_vectorized_reference_matches_pure_python_philox():
    seed = 0x0123456789ABCDEF
    idx = np.array([0, 1, 15, 16, 17, 31, 32, 47, 48, 63, 64, 65, 1000, 2**33 + 5], dtype=np.uint64)
    np.testing.assert_array_equal(ra.philox_u32(seed, idx), [ref.philox_u32(seed, int(i)) for i in idx])


@pytest.mark.parametrize("seed", [0, 1, 2**64 - 1, 0xDEADBEEF12345678])
def test_noise_is_the_documented_normal_stream(isa, seed):
    n = 4099
    z = aug.gaussian_noise(np.zeros(n, np.float64), 1.0, seed=seed)  # exactly the float32 normals
    expect = ra.normal(ra.derive_seed(seed, "noise"), np.arange(n))
    np.testing.assert_allclose(z, expect, rtol=0, atol=3e-6 * max(1.0, float(np.abs(expect).max())))
    assert np.all(z == z.astype(np.float32)), "normals are float32 values"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_noise_values(isa, rng, dtype):
    x = randn(rng, (7, 3, 33, 17), dtype, scale=2.0)
    x_before = x.copy()
    y = aug.gaussian_noise(x, 0.3, seed=42)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_close_f32_normals(y, ra.gaussian_noise(x, 0.3, 42), dtype, 0.3 * 3e-6 * 6, "gaussian_noise")
    np.testing.assert_array_equal(bits(x), bits(x_before))


def test_noise_formula_is_exact_in_float32(isa, rng):
    x = rng.standard_normal((5, 1001)).astype(np.float32)
    z = aug.gaussian_noise(np.zeros_like(x), 1.0, seed=9)
    std = 0.37
    np.testing.assert_array_equal(bits(aug.gaussian_noise(x, std, seed=9)), bits(x + np.float32(std) * z))


# ---- random_crop


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize(
    "nchw,size,padding",
    [
        ((4, 3, 8, 8), 8, 0),  # size equal to the image: the identity
        ((5, 3, 9, 7), (5, 3), 0),
        ((6, 2, 7, 11), (7, 9), 2),
        ((3, 3, 5, 5), 9, 2),  # size equal to the padded image
        ((9, 1, 4, 6), (3, 8), (1, 3)),
        ((2, 5, 1, 1), 3, 4),  # padding wider than the crop: rows and rows of zeros
        ((17, 3, 31, 33), (16, 17), 4),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_crop_exact(isa, rng, nchw, size, padding, channel_axis, dtype):
    x = images(rng, nchw, dtype, channel_axis)
    x_before = x.copy()
    seed = int(rng.integers(0, 2**64, dtype=np.uint64))
    y = aug.random_crop(x, size, padding=padding, seed=seed, channel_axis=channel_axis)
    expect = ra.random_crop(x, size, padding, seed, channel_axis)
    assert y.shape == expect.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(bits(y), bits(expect))
    np.testing.assert_array_equal(bits(x), bits(x_before))


def test_crop_size_equal_to_image_is_identity(rng):
    x = rng.standard_normal((3, 3, 10, 12)).astype(np.float32)
    np.testing.assert_array_equal(aug.random_crop(x, (10, 12), seed=1), x)


def test_crop_offsets_cover_all_positions_uniformly(isa):
    n, hh, ww, size, pad = 5000, 5, 6, (3, 4), 1
    x = np.broadcast_to((1.0 + np.arange(hh * ww, dtype=np.float32)).reshape(1, 1, hh, ww), (n, 1, hh, ww))
    y = aug.random_crop(x, size, padding=pad, seed=2024).reshape(n, -1)
    first = np.argmax(y != 0, axis=1)  # every window holds a pixel of the image
    v = y[np.arange(n), first].astype(np.int64) - 1
    oy = v // ww + pad - first // size[1]
    ox = v % ww + pad - first % size[1]
    positions = (hh + 2 * pad - size[0] + 1) * (ww + 2 * pad - size[1] + 1)
    counts = np.bincount(oy * (ww + 2 * pad - size[1] + 1) + ox, minlength=positions)
    assert counts.size == positions and np.all(counts > 0)
    mu, sd = n / positions, np.sqrt(n / positions * (1 - 1 / positions))
    assert np.all(np.abs(counts - mu) < 5 * sd), counts


# ---- random_flip


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("nchw", [(16, 3, 5, 7), (33, 2, 3, 1), (4, 4, 9, 64)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_flip_exact(isa, rng, nchw, channel_axis, dtype):
    x = images(rng, nchw, dtype, channel_axis)
    x_before = x.copy()
    y = aug.random_flip(x, p=0.4, seed=77, channel_axis=channel_axis)
    np.testing.assert_array_equal(bits(y), bits(ra.random_flip(x, 0.4, 77, channel_axis)))
    np.testing.assert_array_equal(bits(x), bits(x_before))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.93])
def test_flip_rate_within_5_sigma(isa, p):
    n = 20000
    x = np.broadcast_to(np.array([1.0, 2.0], np.float32).reshape(1, 1, 1, 2), (n, 1, 1, 2))
    y = aug.random_flip(x, p=p, seed=31337)
    flipped = int((y[:, 0, 0, 0] == 2.0).sum())
    assert abs(flipped - n * p) < 5 * np.sqrt(n * p * (1 - p)), (flipped, n * p)


def test_flip_p0_copies_p1_flips_all(rng):
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(aug.random_flip(x, p=0.0, seed=1), x)
    np.testing.assert_array_equal(aug.random_flip(x, p=1.0, seed=1), x[..., ::-1])
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(aug.random_flip(xh, p=1.0, seed=1, channel_axis=-1), xh[:, :, ::-1, :])


# ---- gaussian_noise statistics


def test_noise_mean_and_std_within_5_sigma():
    n, std = 2_000_003, 2.5
    y = aug.gaussian_noise(np.zeros(n, np.float32), std, seed=123).astype(np.float64)
    assert abs(y.mean()) < 5 * std / np.sqrt(n)
    assert abs(y.std() - std) < 5 * std / np.sqrt(2 * n)
    assert np.abs(y).max() <= std * 5.78


# ---- pca_lighting


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("nchw", [(8, 3, 7, 9), (3, 3, 16, 33), (5, 4, 3, 2), (2, 17, 5, 5)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lighting_values(isa, rng, nchw, channel_axis, dtype):
    c = nchw[1]
    ev = EIGVALS if c == 3 else rng.random(c)
    evec = EIGVECS if c == 3 else np.linalg.qr(rng.standard_normal((c, c)))[0]
    x = images(rng, nchw, dtype, channel_axis)
    x_before = x.copy()
    y = aug.pca_lighting(x, ev, evec, std=0.5, seed=5, channel_axis=channel_axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    expect = ra.pca_lighting(x, ev, evec, 0.5, 5, channel_axis)
    assert_close_f32_normals(y, expect, dtype, 1e-6 * np.abs(ev).sum(), "pca_lighting")
    np.testing.assert_array_equal(bits(x), bits(x_before))


def test_lighting_shift_is_constant_per_channel_and_alpha_is_normal(isa, rng):
    n, std = 4000, 0.1
    x = rng.standard_normal((n, 3, 2, 3))
    d = aug.pca_lighting(x, EIGVALS, EIGVECS, std=std, seed=8) - x
    shift = d[:, :, 0, 0]
    assert np.abs(d - shift[:, :, None, None]).max() < 1e-12
    alpha = np.linalg.solve(EIGVECS, shift.T).T / EIGVALS
    np.testing.assert_allclose(alpha, ra.lighting_alpha(8, n, 3, std), rtol=0, atol=1e-6)
    assert np.all(np.abs(alpha.mean(axis=0)) < 5 * std / np.sqrt(n))
    assert np.all(np.abs(alpha.std(axis=0) - std) < 5 * std / np.sqrt(2 * n))


# ---- layouts, ranks, strides, determinism


def _all_ops(x, channel_axis, seed=11):
    return [
        aug.random_crop(x, (5, 6), padding=2, seed=seed, channel_axis=channel_axis),
        aug.random_flip(x, seed=seed, channel_axis=channel_axis),
        aug.pca_lighting(x, EIGVALS, EIGVECS, std=0.3, seed=seed, channel_axis=channel_axis),
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nhwc_equals_transposed_nchw(isa, rng, dtype):
    x = images(rng, (6, 3, 9, 10), dtype)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for a, b in zip(_all_ops(x, 1), _all_ops(xh, -1)):
        np.testing.assert_array_equal(bits(b), bits(np.ascontiguousarray(a.transpose(0, 2, 3, 1))))


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_single_image_is_a_batch_of_one(rng, channel_axis):
    x = images(rng, (1, 3, 9, 10), np.float32, channel_axis)
    for a, b in zip(_all_ops(x[0], channel_axis), _all_ops(x, channel_axis)):
        np.testing.assert_array_equal(a, b[0])
    np.testing.assert_array_equal(aug.gaussian_noise(x[0], 0.2, seed=3), aug.gaussian_noise(x, 0.2, seed=3)[0])


def test_strided_views_match_contiguous(rng):
    base = rng.standard_normal((8, 3, 20, 22)).astype(np.float32)
    view = base[::2, ::-1, 1::2, ::-2]
    for a, b in zip(_all_ops(view, 1), _all_ops(np.ascontiguousarray(view), 1)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(aug.gaussian_noise(view, 1.0, seed=2), aug.gaussian_noise(view.copy(), 1.0, seed=2))


def test_equal_across_isas_and_threads(threads, rng):
    x = rng.standard_normal((8, 3, 64, 66)).astype(np.float32)
    xb = x.astype(nk.bfloat16)
    results = []
    for isa in nk.available_isas():
        nk.set_isa(isa)
        for t in (1, 2, 3):
            nk.set_num_threads(t)
            out = _all_ops(x, 1) + _all_ops(xb, 1) + [aug.gaussian_noise(x, 0.5, seed=4), aug.gaussian_noise(xb, 0.5, seed=4)]
            results.append([bits(o) for o in out])
    nk.set_isa(nk.available_isas()[-1])
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


def test_same_seed_same_result_different_seed_differs(rng):
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    for a, b, c in zip(_all_ops(x, 1, 1), _all_ops(x, 1, 1), _all_ops(x, 1, 2)):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_seed_none_reproducible_with_random_seed():
    x = np.ones((4, 3, 5, 5), np.float32)
    nk.random.seed(5)
    a, b = aug.gaussian_noise(x, 1.0), aug.gaussian_noise(x, 1.0)
    nk.random.seed(5)
    np.testing.assert_array_equal(aug.gaussian_noise(x, 1.0), a)
    assert not np.array_equal(a, b)


def test_ops_use_derived_streams():
    n, seed = 1024, 3
    x = np.broadcast_to(np.array([0.0, 1.0], np.float32), (n, 1, 1, 2))
    flipped = aug.random_flip(x, seed=seed)[:, 0, 0, 0] == 1.0
    np.testing.assert_array_equal(flipped, ra.flip_flags(seed, n, 0.5))
    assert not np.array_equal(flipped, ra.philox_u32(seed, np.arange(n)) < 2**31)  # not dropout's words
    assert len({seed, *(ra.derive_seed(seed, t) for t in ra.TAGS)}) == 5


# ---- identities, empty inputs


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zero_std_is_an_exact_copy(rng, dtype):
    x = images(rng, (3, 3, 4, 5), dtype)
    x[0, 0, 0, 0] = -0.0
    x[0, 0, 0, 1] = np.nan
    for y in (aug.gaussian_noise(x, 0.0, seed=1), aug.pca_lighting(x, EIGVALS, EIGVECS, std=0.0, seed=1)):
        assert y is not x
        np.testing.assert_array_equal(bits(y), bits(x))


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_empty_batches(channel_axis):
    x = np.empty((0, 3, 4, 5) if channel_axis == 1 else (0, 4, 5, 3), np.float16)
    crop = aug.random_crop(x, (2, 3), seed=1, channel_axis=channel_axis)
    assert crop.shape == ((0, 3, 2, 3) if channel_axis == 1 else (0, 2, 3, 3)) and crop.dtype == x.dtype
    assert aug.random_flip(x, seed=1, channel_axis=channel_axis).shape == x.shape
    assert aug.pca_lighting(x, EIGVALS, EIGVECS, seed=1, channel_axis=channel_axis).shape == x.shape
    assert aug.gaussian_noise(x, 1.0, seed=1).shape == x.shape


# ---- bad inputs

X = np.ones((2, 3, 4, 4), np.float32)


@pytest.mark.parametrize(
    "call,exc,msg",
    [
        (lambda: aug.random_crop(X.astype(np.int32), 2, seed=1), TypeError, "images has dtype int32"),
        (lambda: aug.random_flip(X.astype(np.complex64), seed=1), TypeError, "images has dtype"),
        (lambda: aug.gaussian_noise(X.astype(np.int64), 1.0, seed=1), TypeError, "images has dtype"),
        (lambda: aug.random_crop([1.0], 1, seed=1), TypeError, "numpy.ndarray"),
        (lambda: aug.random_crop(X, 0, seed=1), ValueError, r"size \(h, w\) = \(0, 0\)"),
        (lambda: aug.random_crop(X, 5, seed=1), ValueError, r"fit in the padded image .* = \(4, 4\)"),
        (lambda: aug.random_crop(X, 7, padding=1, seed=1), ValueError, r"= \(6, 6\)"),
        (lambda: aug.random_crop(X, (2, 2, 2), seed=1), TypeError, "size must be an int or a pair"),
        (lambda: aug.random_crop(X, 2.5, seed=1), TypeError, "size must be an int or a pair"),
        (lambda: aug.random_crop(X, 2, padding=-1, seed=1), ValueError, "padding must be >= 0"),
        (lambda: aug.random_crop(X, 2, padding=(1, True), seed=1), TypeError, "padding"),
        (lambda: aug.random_crop(X, 2, seed=1, channel_axis=2), ValueError, "channel_axis must be 1"),
        (lambda: aug.random_crop(X[0, 0], 2, seed=1), ValueError, r"images has shape \(4, 4\); expected 4"),
        (lambda: aug.random_flip(X, p=1.5, seed=1), ValueError, r"p must be in \[0, 1\], got 1.5"),
        (lambda: aug.random_flip(X, p=float("nan"), seed=1), ValueError, "p must be in"),
        (lambda: aug.random_flip(X, p="a", seed=1), TypeError, "p must be a real number"),
        (lambda: aug.random_flip(X, seed=-1), ValueError, "seed"),
        (lambda: aug.random_flip(X, seed=1.0), TypeError, "seed"),
        (lambda: aug.gaussian_noise(X, -1.0, seed=1), ValueError, "std must be >= 0 and finite, got -1"),
        (lambda: aug.gaussian_noise(X, float("inf"), seed=1), ValueError, "std must be"),
        (lambda: aug.pca_lighting(X, EIGVALS, EIGVECS, std=-0.1, seed=1), ValueError, "std must be"),
        (lambda: aug.pca_lighting(X, EIGVALS[:2], EIGVECS, seed=1), ValueError, r"eigvals has shape \(2,\); expected \(3,\)"),
        (lambda: aug.pca_lighting(X, EIGVALS, EIGVECS[:2], seed=1), ValueError, r"eigvecs has shape \(2, 3\); expected \(3, 3\)"),
        (lambda: aug.pca_lighting(X[:, :2], EIGVALS, EIGVECS, seed=1), ValueError, r"eigvals .* \(C = 2 channels"),
        (lambda: aug.pca_lighting(X, EIGVALS.astype(complex), EIGVECS, seed=1), TypeError, "eigvals has dtype complex"),
        (lambda: aug.pca_lighting(X, EIGVALS, EIGVECS, seed=1, channel_axis=-1), ValueError, r"\(C = 4 channels"),
    ],
)
def test_bad_inputs(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
