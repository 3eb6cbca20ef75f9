"""Dropout: the documented Philox stream, keep rate, exact values, masks across ISAs/threads."""

from __future__ import annotations

import normkit as nk
import numpy as np
import pytest
import reference as ref
from conftest import DTYPE_IDS, DTYPES, randn

KAT = [  # Random123's known-answer vectors for Philox4x32-10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_reference_philox_known_answers(ctr, key, expected):
    assert ref.philox4x32_10(ctr, key) == expected


@pytest.mark.parametrize("p", [0.1, 0.5, 0.77])
def test_mask_is_the_documented_stream(isa, rng, p):
    seed = int(rng.integers(0, 2**64, dtype=np.uint64))
    n = 1000
    _, mask = nk.dropout_forward(np.ones(n, np.float32), p, seed=seed)
    np.testing.assert_array_equal(mask, ref.dropout_keep(seed, p, range(n)))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_keep_rate_within_5_sigma(rng, p):
    n = 2_000_003
    _, mask = nk.dropout_forward(np.ones(n, np.float32), p, seed=int(rng.integers(0, 2**63)))
    kept = int(mask.sum())
    mu, sd = n * (1 - p), np.sqrt(n * p * (1 - p))
    assert abs(kept - mu) < 5 * sd, (kept, mu, sd)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_kept_values_exact_and_dropped_zero(isa, rng, dtype):
    p = 0.3
    x = randn(rng, (37, 129), dtype, scale=3.0)
    x_before = x.copy()
    y, mask = nk.dropout_forward(x, p, seed=7)
    acc = np.float64 if dtype == np.float64 else np.float32
    scale = acc(1.0) / (acc(1.0) - acc(p)) if dtype == np.float64 else np.float32(1.0 / (1.0 - p))
    expected = (x.astype(acc) * scale).astype(dtype)
    np.testing.assert_array_equal(y[mask].astype(np.float64), expected[mask].astype(np.float64))
    assert np.all(y[~mask].astype(np.float64) == 0.0)
    assert not np.signbit(y[~mask].astype(np.float64)).any()
    np.testing.assert_array_equal(x.view(np.uint8), x_before.view(np.uint8))


def test_dropped_inf_nan_are_zero(isa):
    x = np.full(4096, np.nan, np.float32)
    x[::2] = np.inf
    y, mask = nk.dropout_forward(x, 0.5, seed=3)
    assert np.all(y[~mask] == 0.0)
    assert np.all(~np.isfinite(y[mask]))


def test_masks_equal_across_isas_and_threads(threads):
    x = np.random.default_rng(0).standard_normal((123, 4567)).astype(np.float32)
    results = []
    for isa in nk.available_isas():
        nk.set_isa(isa)
        for t in (1, 2, 3):
            nk.set_num_threads(t)
            results.append(nk.dropout_forward(x, 0.4, seed=99))
    nk.set_isa(nk.available_isas()[-1])
    for y, m in results[1:]:
        np.testing.assert_array_equal(m, results[0][1])
        np.testing.assert_array_equal(y.view(np.uint32), results[0][0].view(np.uint32))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_backward_mask_and_seed_agree(isa, rng, dtype):
    p, seed = 0.25, 2024
    x = randn(rng, (5, 7, 33), dtype)
    dy = randn(rng, x.shape, dtype)
    _, mask = nk.dropout_forward(x, p, seed=seed)
    (dx_mask,) = nk.dropout_backward(dy, mask, p=p)
    (dx_seed,) = nk.dropout_backward(dy, p=p, seed=seed)
    np.testing.assert_array_equal(dx_mask.astype(np.float64), dx_seed.astype(np.float64))
    y_dy = nk.dropout(dy, p, seed=seed)  # the backward is the forward's map applied to dy
    np.testing.assert_array_equal(dx_seed.astype(np.float64), y_dy.astype(np.float64))
    np.testing.assert_array_equal(dx_mask.astype(np.float64) != 0, mask & (dy.astype(np.float64) != 0))


def test_p_zero_is_identity_and_eval_returns_x(rng):
    x = rng.standard_normal((9, 17)).astype(np.float32)
    np.testing.assert_array_equal(nk.dropout(x, 0.0, seed=1), x)
    assert nk.dropout(x, 0.5, training=False) is x
    out = np.empty_like(x)
    assert nk.dropout(x, 0.5, training=False, out=out) is out
    np.testing.assert_array_equal(out, x)


def test_seed_none_reproducible_with_random_seed():
    x = np.ones(1000, np.float32)
    nk.random.seed(5)
    a = nk.dropout(x, 0.5)
    b = nk.dropout(x, 0.5)
    nk.random.seed(5)
    np.testing.assert_array_equal(nk.dropout(x, 0.5), a)
    np.testing.assert_array_equal(nk.dropout(x, 0.5), b)
    assert not np.array_equal(a, b)


def test_strided_views_use_logical_order(rng):
    base = rng.standard_normal((40, 60)).astype(np.float32)
    view = base[::-2, 1::3]
    y, m = nk.dropout_forward(view, 0.5, seed=11)
    y2, m2 = nk.dropout_forward(np.ascontiguousarray(view), 0.5, seed=11)
    np.testing.assert_array_equal(m, m2)
    np.testing.assert_array_equal(y, y2)


def test_out_in_place_and_zero_size():
    x = np.arange(1, 301, dtype=np.float32)
    expect = nk.dropout(x, 0.5, seed=4)
    assert nk.dropout(x, 0.5, seed=4, out=x) is x
    np.testing.assert_array_equal(x, expect)
    y, m = nk.dropout_forward(np.empty((0, 3), np.float16), 0.5, seed=1)
    assert y.shape == (0, 3) and m.shape == (0, 3) and m.dtype == bool


@pytest.mark.parametrize(
    "call,exc,msg",
    [
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), 1.0, seed=1), ValueError, "p must be in"),
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), -0.1, seed=1), ValueError, "p must be in"),
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), float("nan"), seed=1), ValueError, "p must be in"),
        (lambda g: nk.dropout(g(np.ones(3, np.int32)), 0.5, seed=1), TypeError, "dtype"),
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), 0.5, seed=-1), ValueError, "seed"),
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), 0.5, seed=2**64), ValueError, "seed"),
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), 0.5, seed=1.5), TypeError, "seed"),
        (lambda g: nk.dropout_backward(g(np.ones(3, np.float32)), p=0.5), ValueError, "mask or its seed"),
        (lambda g: nk.dropout_backward(g(np.ones(3, np.float32)), g(np.ones(3, np.uint8))), TypeError, "bool"),
        (lambda g: nk.dropout_backward(g(np.ones(3, np.float32)), g(np.ones(4, bool))), ValueError, "shape"),
        (lambda g: nk.dropout(g(np.ones(3, np.float32)), "a", seed=1), TypeError, "p"),
        (lambda g: nk.random.seed(-3), TypeError, "seed"),
    ],
)
def test_bad_inputs(call, exc, msg, on):
    """The same rules for NumPy arrays and GPU arrays (`on`)."""
    with pytest.raises(exc, match=msg):
        call(on)
