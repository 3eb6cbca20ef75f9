"""Shared fixtures: the ISA fixture, shape grids, the tolerance table and a verbose assert."""

from __future__ import annotations

import ml_dtypes
import normkit as nk
import numpy as np
import pytest

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BF16]
DTYPE_IDS = ["f32", "f64", "f16", "bf16"]

# N across the vector-width edges of every ISA (8/16 floats, 4/8 doubles, 4x unrolls).
N_EDGES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1000]
M_ODD = [1, 3, 7]
WEIRD_SHAPES = [(5, 123, 123), (3, 1, 7, 9), (2, 3, 5, 7, 11)]
LARGE_SHAPE = (257, 4099)

# Tolerance table: (dtype, direction, output) -> (rtol, atol). Errors are measured against the
# float64 reference on the same (already rounded) inputs; atol is relative to the output's scale
# (max |reference|, at least 1). Reasons:
#  - f32/bf16/f16 compute in float32: ~1e-6 relative error per op, sums of up to 4k terms.
#  - f16 / bf16 outputs are rounded to 11 / 8 significant bits: half an ulp is 2^-11 / 2^-8.
#  - parameter gradients (dweight/dbias) sum over all rows in float32 partials.
#  - f64 computes in float64.
TOL = {
    ("float32", "fwd", "y"): (2e-5, 2e-5),
    ("float32", "fwd", "stat"): (2e-5, 2e-5),
    ("float32", "bwd", "dx"): (5e-5, 5e-5),
    ("float32", "bwd", "dparam"): (1e-4, 1e-4),
    ("float64", "fwd", "y"): (1e-12, 1e-12),
    ("float64", "fwd", "stat"): (1e-12, 1e-12),
    ("float64", "bwd", "dx"): (1e-11, 1e-11),
    ("float64", "bwd", "dparam"): (1e-11, 1e-11),
    ("float16", "fwd", "y"): (1.5e-3, 1.5e-3),
    ("float16", "fwd", "stat"): (2e-5, 2e-5),
    ("float16", "bwd", "dx"): (2e-3, 2e-3),
    ("float16", "bwd", "dparam"): (2e-3, 2e-3),
    ("bfloat16", "fwd", "y"): (8e-3, 8e-3),
    ("bfloat16", "fwd", "stat"): (2e-5, 2e-5),
    ("bfloat16", "bwd", "dx"): (1.6e-2, 1.6e-2),
    ("bfloat16", "bwd", "dparam"): (1.6e-2, 1.6e-2),
}


def tol(dtype, direction, output):
    return TOL[(np.dtype(dtype).name, direction, output)]


def assert_close(actual, expected, dtype, direction, output, what=""):
    """Compare with the float64 reference; on failure report count, worst index, both values."""
    rtol, atol = tol(dtype, direction, output)
    a = np.asarray(actual).astype(np.float64)
    e = np.asarray(expected).astype(np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != reference {e.shape}"
    if e.size == 0:
        return
    scale = max(1.0, float(np.nanmax(np.abs(e))) if np.isfinite(e).any() else 1.0)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    bad = (np.abs(a - e) > atol * scale + rtol * np.abs(e)) | (nan_a != nan_e)
    bad &= ~(nan_a & nan_e)
    if bad.any():
        err = np.where(bad, np.abs(a - e), -1.0)
        idx = np.unravel_index(int(np.nanargmax(err)), e.shape)
        raise AssertionError(
            f"{what} [{np.dtype(dtype).name} {direction} {output}]: {int(bad.sum())} of {e.size} mismatched "
            f"(rtol={rtol}, atol={atol}*{scale:.3g}); worst at {idx}: got {a[idx]!r}, expected {e[idx]!r}; "
            f"NaN mismatches: {int((nan_a != nan_e).sum())}"
        )


@pytest.fixture(params=nk.available_isas())
def isa(request):
    """Runs the test once per ISA available on this machine."""
    old = nk.get_isa()
    nk.set_isa(request.param)
    yield request.param
    nk.set_isa(old)


@pytest.fixture
def rng(request):
    """Fresh random inputs per test (seed printed on failure via the test id)."""
    seed = np.random.SeedSequence().entropy % (2**32)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


@pytest.fixture
def threads():
    """Restores the thread count after a test that changes it."""
    old = nk.get_num_threads()
    yield
    nk.set_num_threads(old)


@pytest.fixture
def cache_sizes():
    """set(llc_bytes, l2_bytes): the cache sizes the kernels plan with, so that small inputs take
    the paths of tensors past the caches; the detected sizes are restored after the test."""
    yield nk._core._set_cache_sizes
    nk._core._set_cache_sizes(0, 0)


def randn(rng, shape, dtype, scale=1.0, offset=0.0):
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32 if dtype != np.float64 else np.float64).astype(dtype)


@pytest.fixture(params=["host", "gpu"])
def on(request, monkeypatch):
    """Where the bad-input tables put their arrays: NumPy arrays, or the stand-in GPU's arrays
    (tests/fake_gpu.py). The argument rules are written once in the bindings and must hold alike
    on both; `on(a)` places a NumPy array (anything else is passed through)."""
    if request.param == "host":
        yield lambda a: a
        return
    from fake_gpu import Fake, FakeGpuArray

    fake = Fake(monkeypatch)
    yield lambda a: FakeGpuArray(a) if isinstance(a, np.ndarray) else a
    fake.off()
