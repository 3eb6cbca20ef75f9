"""normkit's GPU layer (normkit/_gpu.py) without a GPU: recognising GPU arrays, errors, and the
path from the public functions to the kernels' entry points, run through tests/fake_gpu.py (host
memory posing as device memory, the CPU kernels behind _cuda's interface). The results must be
bitwise those of the NumPy path on the same values."""

from __future__ import annotations

import ml_dtypes
import normkit as nk
import numpy as np
import pytest
from conftest import DTYPE_IDS, DTYPES, assert_close
from fake_gpu import Fake, FakeGpuArray
from normkit import _core, _gpu

needs_module = pytest.mark.skipif(_gpu._cuda is None, reason="normkit built without CUDA (no nvcc)")


@pytest.fixture
def fake(monkeypatch):
    f = Fake(monkeypatch)
    yield f
    f.off()


def _g(a):
    return None if a is None else FakeGpuArray(a)


def _host(r):
    if isinstance(r, tuple):
        return tuple(_host(t) for t in r)
    assert isinstance(r, FakeGpuArray), f"result is {type(r).__name__}, not the input's library"
    return r.a


def _same(got, want):
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.reshape(-1).view(np.uint8), np.ascontiguousarray(w).reshape(-1).view(np.uint8))


def _layouts(rng, shape, dt):
    """The same values as C-contiguous, a row-strided slice, a transposed copy and a flipped view."""
    base = rng.standard_normal(shape).astype(dt)
    wide = np.zeros(shape[:-1] + (shape[-1] + 3,), dt)
    wide[..., 1 : shape[-1] + 1] = base
    flip = np.ascontiguousarray(base[::-1])[::-1]
    t = np.asfortranarray(base)
    return {"c": base, "rowstrided": wide[..., 1 : shape[-1] + 1], "fortran": t, "flipped": flip}


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", [((7, 33), -1), ((4, 5, 16), 1), ((3, 64), 0), ((1, 1000), -1)])
@pytest.mark.parametrize("layout", ["c", "rowstrided", "fortran", "flipped"])
def test_row_norms_through_gpu_layer_match_numpy(fake, dt, shape, axis, layout):
    rng = np.random.default_rng()
    x = _layouts(rng, shape, dt)[layout]
    res = rng.standard_normal(shape).astype(dt)
    feat = shape[axis:]
    w = rng.standard_normal(feat).astype(np.float32)
    b = rng.standard_normal(feat).astype(dt)
    _same(_host(nk.layer_norm(_g(x), _g(w), _g(b), axis=axis)), nk.layer_norm(x, w, b, axis=axis))
    _same(_host(nk.layer_norm_forward(_g(x), axis=axis, eps=1e-3)), nk.layer_norm_forward(x, axis=axis, eps=1e-3))
    _same(_host(nk.rms_norm_forward(_g(x), _g(w), axis=axis)), nk.rms_norm_forward(x, w, axis=axis))
    _same(_host(nk.add_layer_norm_forward(_g(x), _g(res), _g(w), _g(b), axis=axis)),
          nk.add_layer_norm_forward(x, res, w, b, axis=axis))
    _same(_host(nk.add_rms_norm(_g(x), _g(res), axis=axis)), nk.add_rms_norm(x, res, axis=axis))
    _y, mean, rstd = nk.layer_norm_forward(x, w, b, axis=axis)
    dy = _layouts(rng, shape, dt)[layout]
    _same(_host(nk.layer_norm_backward(_g(dy), _g(x), _g(mean), _g(rstd), _g(w), axis=axis)),
          nk.layer_norm_backward(dy, x, mean, rstd, w, axis=axis))
    _, rs = nk.rms_norm_forward(x, axis=axis)
    _same(_host(nk.rms_norm_backward(_g(dy), _g(x), _g(rs), axis=axis)), nk.rms_norm_backward(dy, x, rs, axis=axis))
    assert fake.calls and all(c[1:] == (0, 12345) for c in fake.calls)  # device 0, the adapter's stream


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", ["c", "rowstrided", "fortran", "flipped"])
def test_dropout_through_gpu_layer_matches_numpy(fake, dt, layout):
    rng = np.random.default_rng()
    x = _layouts(rng, (9, 70), dt)[layout]
    seed = int(rng.integers(0, 2**63))
    _same(_host(nk.dropout(_g(x), 0.3, seed=seed)), nk.dropout(x, 0.3, seed=seed))
    y, mask = nk.dropout_forward(x, 0.6, seed=seed)
    _same(_host(nk.dropout_forward(_g(x), 0.6, seed=seed)), (y, mask))
    dy = _layouts(rng, (9, 70), dt)[layout]
    want = nk.dropout_backward(dy, mask, p=0.6)
    _same(_host(nk.dropout_backward(_g(dy), _g(mask), p=0.6)), want)
    _same(_host(nk.dropout_backward(_g(dy), p=0.6, seed=seed)), want)
    out = np.empty(x.shape, dt)
    assert nk.dropout(_g(x), 0.3, seed=seed, out=_g(out)).a is out
    _same(out, nk.dropout(x, 0.3, seed=seed))
    assert nk.dropout(_g(x), 0.3, training=False, out=_g(out)).a is out
    _same(out, x)


def _twins(rng, layout, dt):
    """Two arrays with the same values in the same layout (updated in place by the tests)."""
    a, b = _layouts(rng, (12, 33), dt)[layout], _layouts(rng, (12, 33), dt)[layout]
    b[...] = a
    return a, b


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", ["c", "rowstrided", "fortran", "flipped"])
def test_regularizers_through_gpu_layer_match_numpy(fake, dt, layout):
    rng = np.random.default_rng()
    lay = _layouts(rng, (12, 33), dt)
    w = lay[layout]
    assert nk.l1_penalty(_g(w), 0.3) == nk.l1_penalty(w, 0.3)
    assert nk.l2_penalty(_g(w), 0.7) == nk.l2_penalty(w, 0.7)
    for fn, args in ((nk.add_l1_grad, (0.25,)), (nk.add_l2_grad, (0.5,))):
        g_gpu, g_cpu = _twins(rng, layout, dt)
        assert fn(_g(g_gpu), _g(w), *args).a is g_gpu
        fn(g_cpu, w, *args)
        _same(g_gpu, g_cpu)
    for fn, args in ((nk.l1_prox, (0.4,)), (nk.weight_decay, (0.1, 0.3)), (nk.max_norm, (1.5,))):
        a, b = _twins(rng, layout, dt)
        assert fn(_g(a), *args).a is a
        fn(b, *args)
        _same(a, b)
    w3 = rng.standard_normal((3, 4, 5)).astype(dt)
    w3c = w3.copy()
    nk.max_norm(_g(w3), 0.8, axis=1)
    nk.max_norm(w3c, 0.8, axis=1)
    _same(w3, w3c)
    g = rng.standard_normal((12, 33)).astype(dt)
    gc = g.copy()
    nk.add_l2_grad(_g(g), _g(g), 0.2)  # w is grad itself
    nk.add_l2_grad(gc, gc, 0.2)
    _same(g, gc)


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_gpu_layer_out_and_in_place(fake, dt):
    rng = np.random.default_rng()
    x = rng.standard_normal((6, 40)).astype(dt)
    want = nk.layer_norm(x)
    out = np.empty_like(x)
    r = nk.layer_norm(_g(x), out=_g(out))
    assert r.a is out
    _same(out, want)
    xc = x.copy()
    nk.rms_norm(_g(xc), out=_g(xc))  # in place
    _same(xc, nk.rms_norm(x))
    # out overlapping x shifted by one element: x is read from a copy first
    buf = np.concatenate([x.ravel(), np.zeros(1, dt)])
    src, dst = buf[:-1].reshape(6, 40), buf[1:].reshape(6, 40)
    nk.layer_norm(_g(src), out=_g(dst))
    _same(dst, want)
    _, mean, rstd = nk.layer_norm_forward(x)
    dy = rng.standard_normal(x.shape).astype(dt)
    want_b = nk.layer_norm_backward(dy, x, mean, rstd)
    dyc = dy.copy()
    got = nk.layer_norm_backward(_g(dyc), _g(x), _g(mean), _g(rstd), out=_g(dyc))
    _same(_host(got), want_b)


def test_gpu_layer_weight_dtype_and_stat_conversions(fake):
    rng = np.random.default_rng()
    x = rng.standard_normal((5, 24)).astype(np.float16)
    w16 = rng.standard_normal(24).astype(np.float16)
    _same(_host(nk.rms_norm(_g(x), _g(w16))), nk.rms_norm(x, w16))
    _, mean, rstd = nk.layer_norm_forward(x, w16)
    dy = rng.standard_normal(x.shape).astype(np.float16)
    m64, r64 = mean.astype(np.float64), rstd.astype(np.float64)
    got = _host(nk.layer_norm_backward(_g(dy), _g(x), _g(m64), _g(r64), _g(w16)))
    want = nk.layer_norm_backward(dy, x, m64, r64, w16)
    _same(got, want)
    assert got[1].dtype == np.float16  # dweight in weight's dtype


def test_gpu_layer_empty_shapes(fake):
    x = np.empty((3, 0), np.float32)
    _same(_host(nk.layer_norm_forward(_g(x))), nk.layer_norm_forward(x))
    dy = np.empty((0, 5), np.float32)
    mean = rstd = np.empty((0,), np.float32)
    _same(_host(nk.layer_norm_backward(_g(dy), _g(dy), _g(mean), _g(rstd))), nk.layer_norm_backward(dy, dy, mean, rstd))
    assert not fake.calls


def test_mixing_host_and_gpu_arrays_is_an_error(fake):
    x = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="weight is a fake_gpu array on cuda:0 but x is a NumPy array on the host; pass all arrays on the same device"):
        nk.layer_norm(x, FakeGpuArray(np.ones(8, np.float32)))
    with pytest.raises(ValueError, match="x is a .* array on cuda:0 but residual is a NumPy array on the host"):
        nk.add_rms_norm(FakeGpuArray(x), x)
    with pytest.raises(ValueError, match="dy is .*cuda:0 but x is a NumPy array on the host"):
        nk.rms_norm_backward(FakeGpuArray(x), x, np.ones(4, np.float32))
    assert not fake.calls


@needs_module
def test_gpu_array_without_a_usable_device():
    if nk.has_cuda():
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match="x is a GPU array but no CUDA device is usable"):
        nk.layer_norm(FakeGpuArray(np.ones((2, 3), np.float32)))
    with pytest.raises(RuntimeError, match="cudaMalloc: CUDA error"):
        _gpu._cuda.DeviceBuffer(0, [4], 2, 32, "<f4")


@needs_module
def test_has_cuda_matches_device_count():
    assert nk.has_cuda() == (_gpu._cuda.device_count() > 0)
    assert isinstance(_gpu._cuda.device_count(), int)


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_array_description(dt):
    """One description from a NumPy array and from a GPU array (here read through DLPack)."""
    a = np.arange(24, dtype=np.float32).astype(dt).reshape(4, 6)[1:, ::2]
    want = {"ptr": a.ctypes.data, "shape": (3, 3), "strides": a.strides, "dtype": str(np.dtype(dt))}
    host, dev = _core._describe(a), _core._describe(FakeGpuArray(a))
    assert {k: host[k] for k in want} == want and host["device"] == -1
    assert {k: dev[k] for k in want} == want and dev["device"] == 0


def test_host_arrays_are_not_gpu_arrays():
    assert not _gpu.any_on_gpu(None, np.ones(3), np.float32(1), 3.0, [1.0])
    torch = pytest.importorskip("torch")
    assert not _gpu.any_on_gpu(torch.ones(3), torch.ones(3, dtype=torch.bfloat16))
    assert _gpu.any_on_gpu(np.ones(3), FakeGpuArray(np.ones(3)))


def test_bf16_fake_export_is_bfloat16():
    a = np.ones((2, 2), ml_dtypes.bfloat16)
    assert _core._describe(FakeGpuArray(a))["dtype"] == "bfloat16"


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", [((3, 7, 4, 5), 1), ((3, 4, 5, 7), -1), ((6, 9), 1)])
@pytest.mark.parametrize("size", [1, 4, 5])
def test_lrn_through_gpu_layer_matches_numpy(fake, dt, shape, axis, size):
    rng = np.random.default_rng()
    x = np.asfortranarray(rng.standard_normal(shape).astype(dt))
    want = nk.local_response_norm_forward(x, size, alpha=1e-2, beta=0.75, k=2.0, channel_axis=axis)
    _same(_host(nk.local_response_norm_forward(_g(x), size, alpha=1e-2, beta=0.75, k=2.0, channel_axis=axis)), want)
    _same(_host(nk.local_response_norm(_g(x), size, channel_axis=axis)), nk.local_response_norm(x, size, channel_axis=axis))
    y, scale = want
    dy = rng.standard_normal(shape).astype(dt)
    got = _host(nk.local_response_norm_backward(_g(dy), _g(x), _g(y), _g(scale), size, alpha=1e-2, beta=0.75,
                                                channel_axis=axis))
    _same(got, nk.local_response_norm_backward(dy, x, y, scale, size, alpha=1e-2, beta=0.75, channel_axis=axis))


def test_ops_without_cuda_kernels_name_the_gpu_array():
    """Feature scaling (outside the issue's op list) says so instead of "not a numpy.ndarray"."""
    x = FakeGpuArray(np.ones((5, 3), np.float32))
    with pytest.raises(TypeError, match="feature scaling has no CUDA kernel: x is a fake_gpu array on cuda:0"):
        nk.standardize(x)


def _close(got, want, dt, what):
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}[{i}]: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        assert_close(g, w.astype(np.float64), dt, "bwd", "dparam", f"{what}[{i}]")


CHAN_CASES = [((4, 6, 5, 3), 1), ((4, 5, 3, 6), -1), ((9, 6), 1), ((3, 7, 6), -1)]


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", CHAN_CASES)
def test_batch_norm_through_gpu_layer_matches_numpy(fake, dt, shape, axis):
    rng = np.random.default_rng()
    x = rng.standard_normal(shape).astype(dt)
    if len(shape) > 2:
        x = np.asfortranarray(x)  # copied once on the way in
    C = shape[axis]
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(dt)
    rm, rv = rng.standard_normal(C).astype(np.float32), rng.random(C).astype(np.float32) + 0.5
    rm_g, rv_g = rm.copy(), rv.copy()
    got = _host(nk.batch_norm_forward(_g(x), _g(w), _g(b), _g(rm_g), _g(rv_g), training=True, momentum=0.3,
                                      channel_axis=axis))
    want = nk.batch_norm_forward(x, w, b, rm, rv, training=True, momentum=0.3, channel_axis=axis)
    _same(got, want)
    _same((rm_g, rv_g), (rm, rv))  # running statistics updated in place, the same bits
    _same(_host(nk.batch_norm(_g(x), None, None, _g(rm), _g(rv), channel_axis=axis)),
          nk.batch_norm(x, None, None, rm, rv, channel_axis=axis))
    _, sm, sr = want
    dy = rng.standard_normal(shape).astype(dt)
    for training in (True, False):
        for wt in (w, None):
            got = _host(nk.batch_norm_backward(_g(dy), _g(x), _g(sm), _g(sr), _g(wt), training=training,
                                               channel_axis=axis))
            want = nk.batch_norm_backward(dy, x, sm, sr, wt, training=training, channel_axis=axis)
            _same(got[0], want[0])
            _close(got[1:], want[1:], dt, "batch_norm dparams")


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,axis", CHAN_CASES[:2] + [((3, 7, 6), -1)])
@pytest.mark.parametrize("G", [1, 2, 6])
def test_group_and_instance_norm_through_gpu_layer_match_numpy(fake, dt, shape, axis, G):
    rng = np.random.default_rng()
    x = rng.standard_normal(shape).astype(dt)
    C = shape[axis]
    w, b = rng.standard_normal(C).astype(dt), rng.standard_normal(C).astype(np.float32)
    got = _host(nk.group_norm_forward(_g(x), G, _g(w), _g(b), channel_axis=axis))
    want = nk.group_norm_forward(x, G, w, b, channel_axis=axis)
    _same(got, want)
    dy = rng.standard_normal(shape).astype(dt)
    _, mean, rstd = want
    got = _host(nk.group_norm_backward(_g(dy), _g(x), _g(mean), _g(rstd), _g(w), num_groups=G, channel_axis=axis))
    want = nk.group_norm_backward(dy, x, mean, rstd, w, num_groups=G, channel_axis=axis)
    _same(got[0], want[0])
    _close(got[1:], want[1:], dt, "group_norm dparams")
    if G != C:
        return
    rm, rv = rng.standard_normal(C).astype(np.float32), rng.random(C).astype(np.float32) + 0.5
    rm_g, rv_g = rm.copy(), rv.copy()
    got = _host(nk.instance_norm_forward(_g(x), _g(w), None, _g(rm_g), _g(rv_g), momentum=0.2, channel_axis=axis))
    want = nk.instance_norm_forward(x, w, None, rm, rv, momentum=0.2, channel_axis=axis)
    _same(got, want)
    # the stand-in's per-instance M2 is NumPy's sum, not the CPU kernel's: close, not the same bits
    np.testing.assert_allclose(np.stack([rm_g, rv_g]), np.stack([rm, rv]), rtol=1e-6, atol=1e-7)
    got = _host(nk.instance_norm_forward(_g(x), _g(w), _g(b), _g(rm), _g(rv), use_input_stats=False,
                                         channel_axis=axis))
    want = nk.instance_norm_forward(x, w, b, rm, rv, use_input_stats=False, channel_axis=axis)
    _same(got, want)
    for uis in (True, False):
        _, im, ir = want
        got = _host(nk.instance_norm_backward(_g(dy), _g(x), _g(im), _g(ir), _g(w), channel_axis=axis,
                                              use_input_stats=uis))
        ref = nk.instance_norm_backward(dy, x, im, ir, w, channel_axis=axis, use_input_stats=uis)
        _same(got[0], ref[0])
        _close(got[1:], ref[1:], dt, "instance_norm dparams")


def _torch_posing_as_cuda():
    """torch.Tensor subclass whose tensors say they live on cuda:0 (host memory behind them): the
    bindings read them through PyTorch's attributes, as they read real CUDA tensors."""
    torch = pytest.importorskip("torch")

    class PosingTensor(torch.Tensor):
        def get_device(self):
            return 0

    return torch, PosingTensor


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_torch_tensor_description_and_path(fake, monkeypatch, dt):
    torch, Posing = _torch_posing_as_cuda()
    monkeypatch.setitem(_gpu._LIBS, Posing.__module__.split(".")[0], type(fake).lib)
    rng = np.random.default_rng()
    a = rng.standard_normal((6, 40)).astype(dt)
    host = torch.from_numpy(a.view(np.int16) if a.dtype == ml_dtypes.bfloat16 else a)
    if a.dtype == ml_dtypes.bfloat16:
        host = host.view(torch.bfloat16)
    t = host[1:, ::2].as_subclass(Posing)  # a strided view
    want = _core._describe(a[1:, ::2])
    got = _core._describe(t)
    assert got["device"] == 0 and want["device"] == -1
    assert {k: got[k] for k in ("ptr", "shape", "strides", "dtype")} == {
        k: want[k] for k in ("ptr", "shape", "strides", "dtype")}
    w = rng.standard_normal(20).astype(np.float32)
    got_y = _host(nk.layer_norm(t, torch.from_numpy(w).as_subclass(Posing)))
    _same(got_y, nk.layer_norm(a[1:, ::2], w))
    assert fake.calls[-1][1:] == (0, 12345)
