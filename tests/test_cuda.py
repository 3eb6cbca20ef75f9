"""CUDA kernels on a real GPU (marker ``cuda``; skipped without one): values against the float64
references and the CPU kernels, bitwise reproducibility, 64-bit indexing, streams, result types,
for every GPU array library installed (PyTorch, CuPy, JAX).

The same tests also run on any machine through the stand-in GPU of tests/fake_gpu.py (library
"fake": host memory posing as device memory, the CPU kernels' table as its kernels). That checks the tests themselves (their calls,
references and expectations) before GPU time is spent on them; it says nothing of the kernels."""

from __future__ import annotations

import os

import normkit as nk
import numpy as np
import pytest
import reference as ref
from conftest import BF16, DTYPE_IDS, DTYPES, assert_close, randn
from fake_gpu import Fake as FakeGpu
from fake_gpu import FakeGpuArray

cuda_only = [pytest.mark.cuda, pytest.mark.skipif(not nk.has_cuda(), reason="no usable CUDA GPU")]

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX must leave memory for the others


class Torch:
    name = "torch"

    def __init__(self):
        import torch

        self.t = torch

    def dev(self, a):
        a = np.ascontiguousarray(a)
        if a.dtype == BF16:
            return self.t.from_numpy(a.view(np.int16)).view(self.t.bfloat16).cuda()
        return self.t.from_numpy(a).cuda()

    def host(self, a):
        assert isinstance(a, self.t.Tensor) and a.is_cuda, f"{type(a)} is not a CUDA tensor"
        a = a.detach().cpu()
        if a.dtype == self.t.bfloat16:
            return a.view(self.t.int16).numpy().view(BF16)
        return a.numpy()

    def sync(self):
        self.t.cuda.synchronize()


class CuPy:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cp = cupy

    def dev(self, a):
        if a.dtype == BF16:
            pytest.skip("CuPy has no bfloat16")
        return self.cp.asarray(a)

    def host(self, a):
        assert isinstance(a, self.cp.ndarray), f"{type(a)} is not a CuPy array"
        return self.cp.asnumpy(a)

    def sync(self):
        self.cp.cuda.Device().synchronize()


class Jax:
    name = "jax"

    def __init__(self):
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64 (the float64 cases)
        self.jax = jax
        self.gpu = next(d for d in jax.devices() if d.platform == "gpu")

    def dev(self, a):
        return self.jax.device_put(np.ascontiguousarray(a), self.gpu)

    def host(self, a):
        assert isinstance(a, self.jax.Array), f"{type(a)} is not a JAX array"
        return np.asarray(a)

    def sync(self):
        pass


class Fake:
    """The stand-in GPU (see the module docstring)."""

    name = "fake"

    def dev(self, a):
        return FakeGpuArray(np.array(a, order="C", copy=True))

    def host(self, a):
        assert isinstance(a, FakeGpuArray), f"{type(a)} is not the input's library"
        return a.a


def _available():
    libs = []
    for cls, probe in ((Torch, "torch"), (CuPy, "cupy"), (Jax, "jax")):
        try:
            lib = cls()
        except Exception:  # noqa: BLE001, S112 - not installed, or no GPU backend
            continue
        if probe == "torch" and not lib.t.cuda.is_available():
            continue
        libs.append(lib)
    return libs


@pytest.fixture(scope="module", params=[pytest.param(n, marks=cuda_only) for n in ("torch", "cupy", "jax")] + ["fake"])
def lib(request):
    if request.param == "fake":
        with pytest.MonkeyPatch.context() as mp:
            f = FakeGpu(mp)
            yield Fake()
            f.off()
        return
    found = {x.name: x for x in _available()}
    if request.param not in found:
        pytest.skip(f"{request.param} with CUDA is not installed")
    yield found[request.param]


# N across the kernels' paths: sub-warp groups, unaligned rows (no 16-byte accesses), register-
# cached rows at every vector-slot count, and looped rows past the register budget.
N_GPU = [1, 3, 8, 33, 64, 127, 1000, 1024, 4096, 8192, 8200, 16384, 40000]


def _h(lib, r):
    return tuple(_h(lib, t) for t in r) if isinstance(r, tuple) else lib.host(r)


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("N", N_GPU)
def test_layer_norm_gpu(lib, dt, N):
    rng = np.random.default_rng()
    M = 5 if N > 1000 else 37
    x, res = randn(rng, (M, N), dt, 2.0, 0.5), randn(rng, (M, N), dt)
    w, b = randn(rng, N, dt, 0.5, 1.0), randn(rng, N, np.float32, 0.5)
    y, mean, rstd = _h(lib, nk.layer_norm_forward(lib.dev(x), lib.dev(w), lib.dev(b)))
    ry, rmean, rrstd = ref.layer_norm(x, w, b)
    assert y.dtype == dt and mean.dtype == (np.float64 if dt == np.float64 else np.float32)
    assert_close(y, ry, dt, "fwd", "y", "gpu layer_norm y")
    assert_close(mean, rmean, dt, "fwd", "stat", "gpu layer_norm mean")
    assert_close(rstd, rrstd, dt, "fwd", "stat", "gpu layer_norm rstd")
    yh, h = _h(lib, nk.add_layer_norm(lib.dev(x), lib.dev(res), lib.dev(w), lib.dev(b)))
    np.testing.assert_array_equal(h, nk.add_layer_norm(x, res, w, b)[1])  # h = round(x + res): exact
    assert_close(yh, ref.layer_norm(h, w, b)[0], dt, "fwd", "y", "gpu add_layer_norm y")
    dy = randn(rng, (M, N), dt)
    dx, dw, db = _h(lib, nk.layer_norm_backward(lib.dev(dy), lib.dev(x), lib.dev(mean), lib.dev(rstd), lib.dev(w)))
    rdx, rdw, rdb = ref.layer_norm_backward(dy, x, mean, rstd, w)
    assert dx.dtype == dt and dw.dtype == dt and db.dtype == dt
    assert_close(dx, rdx, dt, "bwd", "dx", "gpu layer_norm dx")
    assert_close(dw, rdw, dt, "bwd", "dparam", "gpu layer_norm dweight")
    assert_close(db, rdb, dt, "bwd", "dparam", "gpu layer_norm dbias")


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("N", N_GPU)
def test_rms_norm_gpu(lib, dt, N):
    rng = np.random.default_rng()
    M = 5 if N > 1000 else 37
    x, res = randn(rng, (M, N), dt, 2.0, 0.5), randn(rng, (M, N), dt)
    w = randn(rng, N, np.float32, 0.5, 1.0)
    y, rstd = _h(lib, nk.rms_norm_forward(lib.dev(x), lib.dev(w)))
    ry, rrstd = ref.rms_norm(x, w)
    assert_close(y, ry, dt, "fwd", "y", "gpu rms_norm y")
    assert_close(rstd, rrstd, dt, "fwd", "stat", "gpu rms_norm rstd")
    yh, h, _ = _h(lib, nk.add_rms_norm_forward(lib.dev(x), lib.dev(res), lib.dev(w)))
    np.testing.assert_array_equal(h, nk.add_rms_norm(x, res, w)[1])
    assert_close(yh, ref.rms_norm(h, w)[0], dt, "fwd", "y", "gpu add_rms_norm y")
    dy = randn(rng, (M, N), dt)
    dx, dw = _h(lib, nk.rms_norm_backward(lib.dev(dy), lib.dev(x), lib.dev(rstd), lib.dev(w)))
    rdx, rdw = ref.rms_norm_backward(dy, x, rstd, w)
    assert dw.dtype == np.float32  # the weight's dtype: float32 tolerances at least
    assert_close(dx, rdx, dt, "bwd", "dx", "gpu rms_norm dx")
    assert_close(dw, rdw, np.float32 if dt == np.float64 else dt, "bwd", "dparam", "gpu rms_norm dweight")


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_gpu_bitwise_reproducible_and_close_to_cpu(lib, dt):
    rng = np.random.default_rng()
    x, dy = randn(rng, (3000, 512), dt), randn(rng, (3000, 512), dt)
    w = randn(rng, 512, dt, 0.5, 1.0)
    xd, dyd, wd = lib.dev(x), lib.dev(dy), lib.dev(w)
    first = _h(lib, nk.layer_norm_forward(xd, wd))
    _, mean, rstd = first
    g1 = _h(lib, nk.layer_norm_backward(dyd, xd, lib.dev(mean), lib.dev(rstd), wd))
    for _ in range(3):
        again = _h(lib, nk.layer_norm_forward(xd, wd))
        g2 = _h(lib, nk.layer_norm_backward(dyd, xd, lib.dev(mean), lib.dev(rstd), wd))
        for a, b in zip(first + g1, again + g2):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    cpu = nk.layer_norm_forward(x, w)
    assert_close(first[0], cpu[0].astype(np.float64), dt, "fwd", "y", "gpu vs cpu")


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("N", [64, 1024, 40000])
def test_gpu_same_bits_for_any_alignment(lib, dt, N):
    """The work split depends only on the shape: a view 1 element into a buffer (no 16-byte
    accesses) gives the bits of the aligned copy."""
    if lib.name == "jax":
        pytest.skip("JAX arrays are always aligned")
    rng = np.random.default_rng()
    M = 300
    xb, dyb = randn(rng, (M, N + 1), dt), randn(rng, (M, N + 1), dt)
    xd, dyd = lib.dev(xb)[:, 1:], lib.dev(dyb)[:, 1:]
    xc, dyc = lib.dev(np.ascontiguousarray(xb[:, 1:])), lib.dev(np.ascontiguousarray(dyb[:, 1:]))
    w = lib.dev(randn(rng, N, dt, 0.5, 1.0))
    a = _h(lib, nk.layer_norm_forward(xd, w))
    b = _h(lib, nk.layer_norm_forward(xc, w))
    _, mean, rstd = nk.layer_norm_forward(xc, w)
    a += _h(lib, nk.layer_norm_backward(dyd, xd, mean, rstd, w))
    b += _h(lib, nk.layer_norm_backward(dyc, xc, mean, rstd, w))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.view(np.uint8), v.view(np.uint8))


def test_gpu_strided_inputs_out_and_in_place(lib):
    if lib.name == "jax":
        pytest.skip("JAX arrays are immutable and always contiguous")
    rng = np.random.default_rng()
    x = randn(rng, (64, 96), np.float32)
    xd = lib.dev(x)
    want = nk.layer_norm(x)
    assert_close(lib.host(nk.layer_norm(xd[:, 16:80])), nk.layer_norm(x[:, 16:80]), np.float32, "fwd", "y", "slice")
    assert_close(lib.host(nk.layer_norm(xd.T)), nk.layer_norm(np.ascontiguousarray(x.T)), np.float32, "fwd", "y", "T")
    out = lib.dev(np.zeros_like(x))
    r = nk.layer_norm(xd, out=out)
    assert r is out
    assert_close(lib.host(out), want, np.float32, "fwd", "y", "out=")
    nk.layer_norm(xd, out=xd)
    assert_close(lib.host(xd), want, np.float32, "fwd", "y", "in place")


@pytest.mark.cuda
@pytest.mark.skipif(not nk.has_cuda(), reason="no usable CUDA GPU")
def test_gpu_runs_on_the_callers_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng()
    x = randn(rng, (4096, 1024), np.float32)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xd = torch.from_numpy(x).cuda()
        y = nk.rms_norm(xd)
        z = y * 2  # ordered after normkit's kernel on the same stream
    s.synchronize()
    assert_close(z.cpu().numpy() / 2, ref.rms_norm(x)[0], np.float32, "fwd", "y", "stream")


@pytest.mark.cuda
@pytest.mark.skipif(not nk.has_cuda(), reason="no usable CUDA GPU")
def test_gpu_mixing_devices_is_an_error():
    torch = pytest.importorskip("torch")
    xd = torch.ones((4, 8), device="cuda")
    with pytest.raises(ValueError, match="x is a torch array on cuda:0 but weight is a NumPy array on the host"):
        nk.layer_norm(xd, np.ones(8, np.float32))
    with pytest.raises(TypeError, match="x has dtype int32"):
        nk.layer_norm(torch.ones((4, 8), dtype=torch.int32, device="cuda"))


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not nk.has_cuda(), reason="no usable CUDA GPU")
def test_gpu_64bit_indexing():
    """More than 2**31 elements, and more than 65,535 rows."""
    torch = pytest.importorskip("torch")
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs 24 GiB of GPU memory")
    M, N = 2**31 // 4096 + 3, 4096  # 2**31 + 12288 elements of bfloat16
    x = torch.randn((M, N), device="cuda", dtype=torch.bfloat16)
    y, rstd = nk.rms_norm_forward(x)
    rows = [0, 2**31 // N - 1, M - 1]
    for r in rows:
        xr = x[r].float().cpu().numpy()
        assert_close(y[r].view(torch.int16).cpu().numpy().view(BF16), ref.rms_norm(xr.astype(BF16)[None])[0][0], BF16,
                     "fwd", "y", f"row {r}")
    del x, y, rstd
    torch.cuda.empty_cache()
    M2 = 70001
    x2 = torch.randn((M2, 64), device="cuda", dtype=torch.float32)
    dy2 = torch.randn_like(x2)
    y2, mean2, rstd2 = nk.layer_norm_forward(x2)
    dx2, dw2, db2 = nk.layer_norm_backward(dy2, x2, mean2, rstd2)
    xh, dyh = x2.cpu().numpy(), dy2.cpu().numpy()
    assert_close(y2.cpu().numpy(), ref.layer_norm(xh)[0], np.float32, "fwd", "y", "70001 rows")
    rdx, rdw, rdb = ref.layer_norm_backward(dyh, xh, mean2.cpu().numpy(), rstd2.cpu().numpy())
    assert_close(dx2.cpu().numpy(), rdx, np.float32, "bwd", "dx", "70001 rows")
    assert_close(dw2.cpu().numpy(), rdw, np.float32, "bwd", "dparam", "70001 rows dweight")
    assert_close(db2.cpu().numpy(), rdb, np.float32, "bwd", "dparam", "70001 rows dbias")



@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [1, 15, 64, 1000, 2**20 + 3])
def test_dropout_gpu_bitwise_equals_cpu(lib, dt, n):
    rng = np.random.default_rng()
    seed = int(rng.integers(0, 2**64, dtype=np.uint64))
    x = randn(rng, (n,), dt, 3.0)
    x[: min(n, 3)] = np.array([np.inf, -np.inf, np.nan][: min(n, 3)], dtype=np.float32).astype(dt)
    y, mask = _h(lib, nk.dropout_forward(lib.dev(x), 0.3, seed=seed))
    cy, cmask = nk.dropout_forward(x, 0.3, seed=seed)
    np.testing.assert_array_equal(mask, cmask)
    np.testing.assert_array_equal(y.view(np.uint8), cy.view(np.uint8))
    dy = randn(rng, (n,), dt)
    (dx1,) = _h(lib, nk.dropout_backward(lib.dev(dy), p=0.3, seed=seed))
    (dx2,) = _h(lib, nk.dropout_backward(lib.dev(dy), lib.dev(mask), p=0.3))
    (cdx,) = nk.dropout_backward(dy, cmask, p=0.3)
    np.testing.assert_array_equal(dx1.view(np.uint8), cdx.view(np.uint8))
    np.testing.assert_array_equal(dx2.view(np.uint8), cdx.view(np.uint8))


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(7,), (300, 1000), (3, 70001)])
def test_regularizers_gpu(lib, dt, shape):
    import reference_reg as rref

    if lib.name == "jax":
        pytest.skip("JAX arrays are immutable: only the penalties apply")
    rng = np.random.default_rng()
    w = randn(rng, shape, dt)
    w[..., 0] = 0
    tol = 1e-12 if dt == np.float64 else 1e-5
    np.testing.assert_allclose(nk.l1_penalty(lib.dev(w), 0.3), rref.l1_penalty(w, 0.3), rtol=tol)
    np.testing.assert_allclose(nk.l2_penalty(lib.dev(w), 0.3), rref.l2_penalty(w, 0.3), rtol=tol)
    g = randn(rng, shape, dt)
    for fn, rfn, args in ((nk.add_l1_grad, rref.add_l1_grad, (0.25,)), (nk.add_l2_grad, rref.add_l2_grad, (0.5,))):
        gd = lib.dev(g)
        assert fn(gd, lib.dev(w), *args) is gd
        assert_close(lib.host(gd), rfn(g, w, *args), dt, "fwd", "y", fn.__name__)
    updates = ((nk.l1_prox, rref.l1_prox, (0.4,), {}), (nk.weight_decay, rref.weight_decay, (0.1, 0.3), {}),
               (nk.max_norm, rref.max_norm, (1.5,), {"axis": 0}))
    for fn, rfn, args, kw in updates:
        wd = lib.dev(w)
        assert fn(wd, *args, **kw) is wd
        assert_close(lib.host(wd), rfn(w, *args, *kw.values()), dt, "fwd", "y", fn.__name__)


# Channel norms at the CPU tests' kinds of shapes (layouts, S = 1, odd sizes) and one larger.
CHAN_GPU = [((8, 16, 7, 5), 1), ((8, 7, 5, 16), -1), ((64, 24), 1), ((3, 6, 9000), 1), ((3, 9000, 6), -1),
            ((32, 64, 28, 28), 1), ((32, 28, 28, 64), -1)]


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", CHAN_GPU)
def test_batch_norm_gpu(lib, dt, shape, axis):
    rng = np.random.default_rng()
    x = randn(rng, shape, dt, 2.0, 0.5)
    C = shape[axis]
    w, b = randn(rng, C, dt, 0.5, 1.0), randn(rng, C, np.float32)
    rm, rv = randn(rng, C, np.float32), np.abs(randn(rng, C, np.float32)) + 0.5
    y, sm, sr = _h(lib, nk.batch_norm_forward(lib.dev(x), lib.dev(w), lib.dev(b), training=True, channel_axis=axis))
    ry, rmean, rrstd = ref.batch_norm_train(x, w, b, channel_axis=axis)
    assert_close(y, ry, dt, "fwd", "y", "gpu batch_norm y")
    assert_close(sm, rmean, dt, "fwd", "stat", "gpu batch_norm mean")
    assert_close(sr, rrstd, dt, "fwd", "stat", "gpu batch_norm rstd")
    if lib.name != "jax":
        rmd, rvd = lib.dev(rm), lib.dev(rv)
        nk.batch_norm(lib.dev(x), running_mean=rmd, running_var=rvd, training=True, momentum=0.3, channel_axis=axis)
        erm, erv = ref.batch_norm_running_update(rm, rv, x, 0.3, channel_axis=axis)
        assert_close(lib.host(rmd), erm, np.float32, "fwd", "stat", "gpu running_mean")
        assert_close(lib.host(rvd), erv, np.float32, "fwd", "stat", "gpu running_var")
    ye = lib.host(nk.batch_norm(lib.dev(x), lib.dev(w), lib.dev(b), lib.dev(rm), lib.dev(rv), channel_axis=axis))
    assert_close(ye, ref.batch_norm_eval(x, w, b, rm, rv, channel_axis=axis)[0], dt, "fwd", "y", "gpu eval")
    dy = randn(rng, shape, dt)
    for training in (True, False):
        dx, dw, db = _h(lib, nk.batch_norm_backward(lib.dev(dy), lib.dev(x), lib.dev(sm), lib.dev(sr), lib.dev(w),
                                                    training=training, channel_axis=axis))
        rdx, rdw, rdb = ref.batch_norm_backward(dy, x, sm, sr, w, training=training, channel_axis=axis)
        assert_close(dx, rdx, dt, "bwd", "dx", f"gpu batch_norm dx training={training}")
        assert_close(dw, rdw, dt, "bwd", "dparam", "gpu batch_norm dweight")
        assert_close(db, rdb, dt, "bwd", "dparam", "gpu batch_norm dbias")


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", [s for s in CHAN_GPU if len(s[0]) > 2])
def test_group_and_instance_norm_gpu(lib, dt, shape, axis):
    rng = np.random.default_rng()
    x = randn(rng, shape, dt, 2.0, 0.5)
    C = shape[axis]
    w, b = randn(rng, C, dt, 0.5, 1.0), randn(rng, C, np.float32)
    dy = randn(rng, shape, dt)
    for G in sorted({1, 2, C}):
        y, mean, rstd = _h(lib, nk.group_norm_forward(lib.dev(x), G, lib.dev(w), lib.dev(b), channel_axis=axis))
        ry, rmean, rrstd = ref.group_norm(x, G, w, b, channel_axis=axis)
        assert_close(y, ry, dt, "fwd", "y", f"gpu group_norm y G={G}")
        assert_close(mean, rmean, dt, "fwd", "stat", "gpu group_norm mean")
        assert_close(rstd, rrstd, dt, "fwd", "stat", "gpu group_norm rstd")
        dx, dw, db = _h(lib, nk.group_norm_backward(lib.dev(dy), lib.dev(x), lib.dev(mean), lib.dev(rstd),
                                                    lib.dev(w), num_groups=G, channel_axis=axis))
        rdx, rdw, rdb = ref.group_norm_backward(dy, x, mean, rstd, w, num_groups=G, channel_axis=axis)
        assert_close(dx, rdx, dt, "bwd", "dx", f"gpu group_norm dx G={G}")
        assert_close(dw, rdw, dt, "bwd", "dparam", "gpu group_norm dweight")
        assert_close(db, rdb, dt, "bwd", "dparam", "gpu group_norm dbias")
    rm, rv = randn(rng, C, np.float32), np.abs(randn(rng, C, np.float32)) + 0.5
    y, im, ir = _h(lib, nk.instance_norm_forward(lib.dev(x), lib.dev(w), lib.dev(b), channel_axis=axis))
    assert_close(y, ref.instance_norm(x, w, b, channel_axis=axis)[0], dt, "fwd", "y", "gpu instance_norm")
    ye = lib.host(nk.instance_norm(lib.dev(x), lib.dev(w), lib.dev(b), lib.dev(rm), lib.dev(rv),
                                   use_input_stats=False, channel_axis=axis))
    re = ref.instance_norm(x, w, b, rm, rv, use_input_stats=False, channel_axis=axis)[0]
    assert_close(ye, re, dt, "fwd", "y", "gpu instance_norm eval")
    if lib.name != "jax":
        rmd, rvd = lib.dev(rm), lib.dev(rv)
        nk.instance_norm(lib.dev(x), running_mean=rmd, running_var=rvd, momentum=0.2, channel_axis=axis)
        erm, erv = ref.instance_norm_running_update(rm, rv, x, 0.2, channel_axis=axis)
        assert_close(lib.host(rmd), erm, np.float32, "fwd", "stat", "gpu instance running_mean")
        assert_close(lib.host(rvd), erv, np.float32, "fwd", "stat", "gpu instance running_var")
    dx, dw, db = _h(lib, nk.instance_norm_backward(lib.dev(dy), lib.dev(x), lib.dev(im), lib.dev(ir), lib.dev(w),
                                                   channel_axis=axis))
    rdx, rdw, rdb = ref.instance_norm_backward(dy, x, im, ir, w, channel_axis=axis)
    assert_close(dx, rdx, dt, "bwd", "dx", "gpu instance_norm dx")
    assert_close(dw, rdw, dt, "bwd", "dparam", "gpu instance_norm dweight")


@pytest.mark.parametrize("fn", ["batch", "group"])
def test_channel_norms_gpu_bitwise_reproducible(lib, fn):
    rng = np.random.default_rng()
    x, dy = randn(rng, (16, 32, 30, 30), np.float32), randn(rng, (16, 32, 30, 30), np.float32)
    xd, dyd = lib.dev(x), lib.dev(dy)
    runs = []
    for _ in range(3):
        if fn == "batch":
            y, m, r = nk.batch_norm_forward(xd, training=True)
            g = nk.batch_norm_backward(dyd, xd, m, r)
        else:
            y, m, r = nk.group_norm_forward(xd, 4)
            g = nk.group_norm_backward(dyd, xd, m, r, num_groups=4)
        runs.append(_h(lib, (y, m, r) + tuple(g)))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", [((8, 16, 7, 5), 1), ((8, 7, 5, 16), -1), ((32, 96, 27, 27), 1)])
@pytest.mark.parametrize("size", [1, 4, 5])
def test_lrn_gpu(lib, dt, shape, axis, size):
    rng = np.random.default_rng()
    x = randn(rng, shape, dt, 2.0)
    y, scale = _h(lib, nk.local_response_norm_forward(lib.dev(x), size, alpha=1e-3, beta=0.75, k=2.0,
                                                      channel_axis=axis))
    ry, rscale = ref.local_response_norm(x, size, alpha=1e-3, beta=0.75, k=2.0, channel_axis=axis)
    assert_close(y, ry, dt, "fwd", "y", "gpu lrn y")
    assert_close(scale, rscale, dt, "fwd", "stat", "gpu lrn scale")
    dy = randn(rng, shape, dt)
    (dx,) = _h(lib, nk.local_response_norm_backward(lib.dev(dy), lib.dev(x), lib.dev(y), lib.dev(scale), size,
                                                    alpha=1e-3, beta=0.75, channel_axis=axis))
    rdx = ref.local_response_norm_backward(dy, x, size, alpha=1e-3, beta=0.75, k=2.0, channel_axis=axis)
    assert_close(dx, rdx, dt, "bwd", "dx", "gpu lrn dx")
    if lib.name != "jax":  # in place: every output reads its channel neighbours of x
        xd = lib.dev(x)
        nk.local_response_norm(xd, size, alpha=1e-3, beta=0.75, k=2.0, channel_axis=axis, out=xd)
        np.testing.assert_array_equal(lib.host(xd).view(np.uint8), y.view(np.uint8))
