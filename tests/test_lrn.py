"""Local response normalization: values vs the float64 reference for every ISA, dtype and layout,
backward, properties (large values next to small, NaN confinement, threads, bad inputs)."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference as ref
from conftest import DTYPE_IDS, DTYPES, assert_close, randn

CASES = [  # (NCHW shape, size): spatial tails around the blocks, windows > C, direct (<= 16) and running sums
    ((2, 13, 5, 7), 5),
    ((1, 7, 4100), 5),
    ((2, 20, 37), 16),
    ((3, 8, 17, 17), 3),
    ((1, 20, 300), 17),
    ((2, 6, 3), 1),
    ((2, 4, 9), 9),
    ((4, 33), 2),
]


def _layout(x, ca):
    return x if ca == 1 else np.ascontiguousarray(np.moveaxis(x, 1, -1))


def test_reference_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3))
    dy = rng.standard_normal(x.shape)
    kw = {"alpha": 0.3, "beta": 0.75, "k": 1.5, "channel_axis": 1}
    dx = ref.local_response_norm_backward(dy, x, 3, **kw)
    num = np.zeros_like(x)
    h = 1e-6
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = ((ref.local_response_norm(xp, 3, **kw)[0] - ref.local_response_norm(xm, 3, **kw)[0]) * dy).sum() / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ca", [1, -1])
@pytest.mark.parametrize("shape,size", CASES)
def test_forward_backward(isa, rng, dtype, ca, shape, size):
    kw = {"alpha": 0.5, "beta": 0.75, "k": 1.0}
    x = _layout(randn(rng, shape, dtype, scale=2.0), ca)
    dy = _layout(randn(rng, shape, dtype), ca)
    x_before = x.copy()
    y, scale = nk.local_response_norm_forward(x, size, channel_axis=ca, **kw)
    ry, rscale = ref.local_response_norm(x, size, channel_axis=ca, **kw)
    assert_close(y, ry, dtype, "fwd", "y", "y")
    assert_close(scale, rscale, dtype, "fwd", "stat", "scale")
    np.testing.assert_array_equal(nk.local_response_norm(x, size, channel_axis=ca, **kw), y)
    (dx,) = nk.local_response_norm_backward(dy, x, y, scale, size, channel_axis=ca, alpha=0.5, beta=0.75)
    assert_close(dx, ref.local_response_norm_backward(dy, x, size, channel_axis=ca, **kw), dtype, "bwd", "dx", "dx")
    np.testing.assert_array_equal(x.view(np.uint8), x_before.view(np.uint8))


@pytest.mark.parametrize("ca", [1, -1])
@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.0, 0.3, 2.0])
def test_betas(isa, rng, beta, ca):
    x = _layout(rng.standard_normal((2, 9, 11)).astype(np.float32), ca)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    kw = {"alpha": 1.0, "beta": beta, "k": 2.0, "channel_axis": ca}
    y, scale = nk.local_response_norm_forward(x, 4, **kw)
    assert_close(y, ref.local_response_norm(x, 4, **kw)[0], np.float32, "fwd", "y", "y")
    (dx,) = nk.local_response_norm_backward(dy, x, y, scale, 4, alpha=1.0, beta=beta, channel_axis=ca)
    assert_close(dx, ref.local_response_norm_backward(dy, x, 4, **kw), np.float32, "bwd", "dx", "dx")


def test_alexnet_defaults_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float32) * 20
    y = nk.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0)
    yt = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, alpha=1e-4, beta=0.75, k=2.0).numpy()
    np.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ca", [1, -1])
def test_large_values_leave_window_without_drift(isa, ca):
    """A channel of 1e4 next to channels of 0.01: once it leaves the window the running sum must
    come back to the small values' sum. A float32 running sum keeps ~1e8 * 6e-8 = 6 of error there
    (scale off by ~1e4x); the double sum keeps at most ~1e8 * 1.1e-16 per step (1e-4 relative on
    a scale of 1e-4)."""
    x = np.full((1, 64, 40), 0.01, np.float32)
    x[0, 3] = 1e4
    x = _layout(x, ca)
    y, scale = nk.local_response_norm_forward(x, 3, alpha=1.0, beta=0.75, k=1e-6, channel_axis=ca)
    ry, rscale = ref.local_response_norm(x, 3, alpha=1.0, beta=0.75, k=1e-6, channel_axis=ca)
    np.testing.assert_allclose(scale, rscale, rtol=1e-4)
    np.testing.assert_allclose(y, ry, rtol=1e-4)


def test_nan_stays_in_its_window(isa):
    x = np.ones((2, 12, 5), np.float32)
    x[1, 6, 2] = np.nan
    y = nk.local_response_norm(x, 3)
    bad = np.isnan(y)
    expect = np.zeros_like(bad)
    expect[1, 5:8, 2] = True  # channels whose window (size 3: c-1..c+1) holds channel 6
    np.testing.assert_array_equal(bad, expect)


def test_thread_invariance(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 32, 30, 30)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    outs = []
    for t in (1, 2, 3):
        nk.set_num_threads(t)
        y, s = nk.local_response_norm_forward(x, 5)
        outs.append((y, s, nk.local_response_norm_backward(dy, x, y, s, 5)[0]))
    for o in outs[1:]:
        for a, b in zip(o, outs[0]):
            np.testing.assert_array_equal(a, b)


def test_strided_out_in_place_zero_size(rng):
    base = rng.standard_normal((4, 10, 8, 8)).astype(np.float32)
    view = base[:, ::-1, ::2]
    np.testing.assert_array_equal(nk.local_response_norm(view, 3), nk.local_response_norm(np.ascontiguousarray(view), 3))
    x = rng.standard_normal((2, 5, 7)).astype(np.float32)
    expect = nk.local_response_norm(x, 2)
    assert nk.local_response_norm(x, 2, out=x) is x
    np.testing.assert_array_equal(x, expect)
    assert nk.local_response_norm(np.empty((0, 3, 4), np.float64), 3).shape == (0, 3, 4)


@pytest.mark.parametrize(
    "call,exc,msg",
    [
        (lambda g: nk.local_response_norm(g(np.ones((2, 3, 4), np.float32)), 0), ValueError, "size must be >= 1"),
        (lambda g: nk.local_response_norm(g(np.ones((2, 3, 4), np.float32)), 3, k=0.0), ValueError, "k must be"),
        (lambda g: nk.local_response_norm(g(np.ones((2, 3, 4), np.float32)), 3, channel_axis=2), ValueError, "channel_axis"),
        (lambda g: nk.local_response_norm(g(np.ones(3, np.float32)), 3), ValueError, "at least 2 dimensions"),
        (lambda g: nk.local_response_norm(g(np.ones((2, 3), np.int64)), 3), TypeError, "dtype"),
        (lambda g: nk.local_response_norm(g(np.ones((2, 3), np.float32)), 2.5), TypeError, "size"),
        (
            lambda g: nk.local_response_norm_backward(
                g(np.ones((2, 3), np.float32)), g(np.ones((2, 3), np.float32)), g(np.ones((2, 3), np.float32)),
                g(np.ones((2, 4), np.float32)), 3,
            ),
            ValueError,
            "scale has shape",
        ),
    ],
)
def test_bad_inputs(call, exc, msg, on):
    """The same rules for NumPy arrays and GPU arrays (`on`)."""
    with pytest.raises(exc, match=msg):
        call(on)


def test_subnormal_scale(isa, rng):
    # k and x tiny: scale is a float32 subnormal, which hardware 1/sqrt estimates flush to zero.
    x = (rng.standard_normal((2, 9, 40)) * 1e-21).astype(np.float32)
    kw = {"alpha": 1.0, "beta": 0.75, "k": 1e-39}
    y, scale = nk.local_response_norm_forward(x, 3, **kw)
    assert scale.min() < np.finfo(np.float32).tiny
    ry = ref.local_response_norm(x, 3, **kw)[0]
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=0)
