"""A stand-in GPU for testing normkit's GPU layer (normkit/_gpu.py) on machines without one.

``FakeGpuArray`` wraps host memory but says it lives on CUDA device 0 (``__dlpack_device__``),
and ``FakeCuda`` replaces ``normkit._cuda``: its entry points receive the same raw pointers, row
strides and sizes the CUDA kernels would, rebuild NumPy views over that memory and run the CPU
kernels on them. What this checks is everything between the public functions and the kernels:
recognition, validation, pointers and strides, copies of awkward layouts, ``out=``, result
allocation and the returned structure.
"""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
from normkit import _core

_DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


class FakeGpuArray:
    """Host memory that claims to be on cuda:0."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if self.a.dtype == _DTYPES[3]:  # NumPy cannot export bfloat16: export as uint16, patched below
            return _Bf16Export(self.a).capsule()
        return self.a.__dlpack__()

    @property
    def shape(self):
        return self.a.shape

    @property
    def dtype(self):
        return self.a.dtype

    def astype(self, dtype):
        return FakeGpuArray(self.a.astype(dtype))

    def copy(self):
        return FakeGpuArray(self.a.copy())

    def fill(self, value):
        self.a.fill(value)

    def __getitem__(self, key):
        return FakeGpuArray(self.a[key])

    @property
    def T(self):
        return FakeGpuArray(self.a.T)

    def __setitem__(self, key, value):
        self.a[key] = value.a if isinstance(value, FakeGpuArray) else value


class _Bf16Export:
    """A bfloat16 array exported through DLPack as (kDLBfloat, 16)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def capsule(self):
        cap = self.a.view(np.uint16).__dlpack__()
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        p = get(cap, b"dltensor")
        # DLTensor: data (8), device (8), ndim (4), then dtype {code, bits, lanes} at offset 20.
        ctypes.c_uint8.from_address(p + 20).value = 4
        return cap


def device_view(ptr: int, shape, strides, dtype) -> np.ndarray:
    """A NumPy view of device memory (here: host memory) given a pointer and element strides."""
    dtype = np.dtype(dtype)
    if 0 in shape:
        return np.empty(shape, dtype)
    lo = hi = 0
    for n, s in zip(shape, strides):
        ext = (n - 1) * s * dtype.itemsize
        lo, hi = (lo + ext, hi) if ext < 0 else (lo, hi + ext)
    buf = (ctypes.c_char * (hi - lo + dtype.itemsize)).from_address(ptr + lo)
    return np.ndarray(shape, dtype, buffer=buf, offset=-lo, strides=[s * dtype.itemsize for s in strides])


def _rows(ptr, M, N, ld, dt):
    return device_view(ptr, (M, N), (ld, 1), dt) if ptr else None


class FakeCuda:
    """normkit._cuda's interface, running the CPU kernels. Records every call in ``calls``."""

    def __init__(self, real) -> None:
        self.real = real
        self.dlpack_info = real.dlpack_info
        self.DeviceBuffer = real.DeviceBuffer
        self.calls: list[tuple] = []

    def device_count(self):
        return 1

    def device_name(self, dev):
        return "fake (sm_00)"

    def read_doubles(self, dev, ptr, n, stream):
        return list(device_view(ptr, (n,), (1,), np.float64))

    def row_norm_fwd(self, rms, dtype, M, N, x, ldx, res, ldr, w, b, y, h, mean, rstd, eps, dev, stream,
                     param_in_dtype):
        self.calls.append(("row_norm_fwd", rms, dtype, M, N, ldx, ldr, dev, stream, param_in_dtype))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        pdt = dt if param_in_dtype else acc  # the kernels read the parameters in x's dtype or in acc
        xv, rv = _rows(x, M, N, ldx, dt), _rows(res, M, N, ldr, dt)
        wv = device_view(w, (N,), (1,), pdt).astype(acc) if w else None
        bv = device_view(b, (N,), (1,), pdt).astype(acc) if b else None
        # Row by row, each row written before the next is read, like a kernel's independent rows:
        # inputs that overlap the outputs other than in place show up as wrong results.
        for r in range(M):
            rr = None if rv is None else rv[r : r + 1]
            outs = list(_core.row_norm_forward(rms, xv[r : r + 1], rr, wv, None if rms else bv, -1, eps, None, True))
            device_view(y + r * N * dt.itemsize, (1, N), (N, 1), dt)[...] = outs.pop(0)
            if res:
                device_view(h + r * N * dt.itemsize, (1, N), (N, 1), dt)[...] = outs.pop(0)
            m = None if rms else outs.pop(0)
            if mean and not rms:
                device_view(mean, (M,), (1,), acc)[r] = m[0]
            if rstd:
                device_view(rstd, (M,), (1,), acc)[r] = outs.pop(0)[0]

    def row_norm_bwd(self, rms, dtype, M, N, dy, lddy, x, ldx, mean, rstd, w, dx, dw, db, dev, stream,
                     param_in_dtype):
        self.calls.append(("row_norm_bwd", rms, dtype, M, N, lddy, ldx, dev, stream, param_in_dtype))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        pdt = dt if param_in_dtype else acc  # weight, dweight and dbias in x's dtype or in acc
        dyv, xv = _rows(dy, M, N, lddy, dt), _rows(x, M, N, ldx, dt)
        mv = device_view(mean, (M,), (1,), acc) if mean else None
        sv = device_view(rstd, (M,), (1,), acc)
        wv = device_view(w, (N,), (1,), pdt).astype(acc) if w else None
        # The parameter gradients from the whole call, then dx row by row (as in the forward).
        outs = _core.row_norm_backward(rms, dyv, xv, mv, sv, wv, -1, None)
        for r in range(M):
            m = None if mv is None else mv[r : r + 1]
            dxr = _core.row_norm_backward(rms, dyv[r : r + 1], xv[r : r + 1], m, sv[r : r + 1], wv, -1, None)[0]
            device_view(dx + r * N * dt.itemsize, (1, N), (N, 1), dt)[...] = dxr
        device_view(dw, (N,), (1,), pdt)[...] = outs[1].astype(pdt)
        if not rms:
            device_view(db, (N,), (1,), pdt)[...] = outs[2].astype(pdt)
    def dropout(self, dtype, n, x, y, mask_in, mask_out, seed, threshold, scale, dev, stream):
        self.calls.append(("dropout", dtype, n, seed, threshold, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        if mask_in:
            keep = device_view(mask_in, (n,), (1,), bool).copy()
        else:  # p = threshold / 2**32 gives this threshold exactly: the CPU kernel's mask
            keep = _core.dropout(np.zeros(n, np.float32), threshold / 2.0**32, seed, None, True)[1]
        xv = device_view(x, (n,), (1,), dt)
        kept = (xv.astype(acc) * acc(scale)).astype(dt)
        device_view(y, (n,), (1,), dt)[...] = np.where(keep, kept, np.zeros((), dt))
        if mask_out:
            device_view(mask_out, (n,), (1,), bool)[...] = keep

    def reg_row_sum(self, dtype, l2, M, N, ld, x, out, dev, stream):
        self.calls.append(("reg_row_sum", dtype, l2, M, N, ld, dev, stream))
        xv, o = _rows(x, M, N, ld, _DTYPES[dtype]), device_view(out, (M,), (1,), np.float64)
        for r in range(M):
            o[r] = (_core.l2_penalty if l2 else _core.l1_penalty)(xv[r], 1.0)

    def reg_apply(self, dtype, op, n, x, y, c, dev, stream):
        self.calls.append(("reg_apply", dtype, op, n, c, dev, stream))
        dt = _DTYPES[dtype]
        xv, yv = device_view(x, (n,), (1,), dt), device_view(y, (n,), (1,), dt)
        if op == 0:
            _core.add_l1_grad(yv, xv, c)
        elif op == 1:
            _core.add_l2_grad(yv, xv, c / 2)
        elif op == 2:
            yv[...] = xv
            _core.l1_prox(yv, c)
        else:
            acc = np.float64 if dt == _DTYPES[1] else np.float32
            yv[...] = (xv.astype(acc) * acc(c)).astype(dt)

    def max_norm(self, dtype, A, K, B, w, max_value, dev, stream):
        self.calls.append(("max_norm", dtype, A, K, B, max_value, dev, stream))
        _core.max_norm(device_view(w, (A, K, B), (K * B, B, 1), _DTYPES[dtype]), max_value, 1)

    # ---- channel norms: (N, C, S) views in their layout, the CPU ops on them ----

    @staticmethod
    def _chan(ptr, layout, N, C, S, dt):
        """The tensor as the CPU ops see it, and its channel_axis."""
        if layout == 0:
            return device_view(ptr, (N, C, S), (C * S, S, 1), dt), 1
        return device_view(ptr, (N, S, C), (S * C, C, 1), dt), -1

    def batch_norm_fwd(self, dtype, layout, N, C, S, x, y, w, b, rm, rv, training, eps, sm, sr, bm, bv, dev, stream):
        self.calls.append(("batch_norm_fwd", dtype, layout, N, C, S, training, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        xv, ax = self._chan(x, layout, N, C, S, dt)
        def vec(p):
            return device_view(p, (C,), (1,), acc) if p else None

        if training:  # momentum 1 from zeros: the running arrays receive the batch statistics
            run_m, run_v = np.zeros(C), np.zeros(C)
        else:
            run_m, run_v = vec(rm), vec(rv)
        yy, m, r = _core.batch_norm_forward(xv, vec(w), vec(b), run_m, run_v, training, 1.0, eps, ax, None, True)
        self._chan(y, layout, N, C, S, dt)[0][...] = yy
        vec(sm)[...], vec(sr)[...] = m, r
        if bm:
            device_view(bm, (C,), (1,), np.float64)[...] = run_m
            device_view(bv, (C,), (1,), np.float64)[...] = run_v

    def batch_norm_bwd(self, dtype, layout, N, C, S, x, dy, dx, mean, rstd, w, training, dw, db, dev, stream):
        self.calls.append(("batch_norm_bwd", dtype, layout, N, C, S, training, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        xv, ax = self._chan(x, layout, N, C, S, dt)
        dyv = self._chan(dy, layout, N, C, S, dt)[0]
        def vec(p):
            return device_view(p, (C,), (1,), acc)

        wv = vec(w) if w else np.ones(C, acc)  # ones: the gradients come back in the accumulation dtype
        g = _core.batch_norm_backward(dyv, xv, vec(mean), vec(rstd), wv, training, ax, None)
        self._chan(dx, layout, N, C, S, dt)[0][...] = g[0]
        device_view(dw, (C,), (1,), np.float64)[...] = g[1]
        device_view(db, (C,), (1,), np.float64)[...] = g[2]

    def group_norm_fwd(self, dtype, layout, N, C, S, G, x, y, w, b, eps, mean, m2, rstd, dev, stream):
        self.calls.append(("group_norm_fwd", dtype, layout, N, C, S, G, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        xv, ax = self._chan(x, layout, N, C, S, dt)
        def vec(p):
            return device_view(p, (C,), (1,), acc) if p else None

        yy, m, r = _core.group_norm_forward(xv, G, vec(w), vec(b), eps, ax, None, True)
        self._chan(y, layout, N, C, S, dt)[0][...] = yy
        nc = xv.astype(np.float64) if ax == 1 else np.moveaxis(xv.astype(np.float64), -1, 1)
        grouped = nc.reshape(N, G, -1)
        mu = grouped.mean(axis=2)
        device_view(mean, (N, G), (G, 1), np.float64)[...] = m
        device_view(m2, (N, G), (G, 1), np.float64)[...] = ((grouped - mu[..., None]) ** 2).sum(axis=2)
        device_view(rstd, (N, G), (G, 1), np.float64)[...] = r

    def group_norm_bwd(self, dtype, layout, N, C, S, G, x, dy, dx, mean, rstd, w, affine_only, sdy, sdyx, dw, db,
                       dev, stream):
        self.calls.append(("group_norm_bwd", dtype, layout, N, C, S, G, affine_only, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        xv, ax = self._chan(x, layout, N, C, S, dt)
        dyv = self._chan(dy, layout, N, C, S, dt)[0]
        mv = device_view(mean, (N, G), (G, 1), acc)
        rv = device_view(rstd, (N, G), (G, 1), acc)
        wv = device_view(w, (C,), (1,), acc) if w else np.ones(C, acc)
        if affine_only:
            assert G == C
            g = _core.instance_norm_backward(dyv, xv, mv, rv, wv, ax, False, None)
        else:
            g = _core.group_norm_backward(dyv, xv, mv, rv, wv, G, ax, None)
        self._chan(dx, layout, N, C, S, dt)[0][...] = g[0]
        device_view(dw, (C,), (1,), np.float64)[...] = g[1]
        device_view(db, (C,), (1,), np.float64)[...] = g[2]

    def running_update(self, run_dtype, C, run, batch, momentum, dev, stream):
        self.calls.append(("running_update", run_dtype, C, momentum, dev, stream))
        r = device_view(run, (C,), (1,), _DTYPES[run_dtype])
        b = device_view(batch, (C,), (1,), np.float64)
        r[...] = (1.0 - momentum) * r.astype(np.float64) + momentum * b

    def instance_batch_stats(self, N, C, S, mean, m2, bm, bv, dev, stream):
        self.calls.append(("instance_batch_stats", N, C, S, dev, stream))
        mv = device_view(mean, (N, C), (C, 1), np.float64)
        qv = device_view(m2, (N, C), (C, 1), np.float64)
        a, b = np.zeros(C), np.zeros(C)
        for n in range(N):
            a += mv[n] / N
            b += qv[n] / (S - 1) / N
        device_view(bm, (C,), (1,), np.float64)[...] = a
        device_view(bv, (C,), (1,), np.float64)[...] = b

    def lrn_fwd(self, dtype, layout, N, C, S, x, y, scale, size, alpha, beta, k, dev, stream):
        self.calls.append(("lrn_fwd", dtype, layout, N, C, S, size, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        xv, ax = self._chan(x, layout, N, C, S, dt)
        yy, sc = _core.local_response_norm(xv, size, alpha, beta, k, ax, None, True)
        self._chan(y, layout, N, C, S, dt)[0][...] = yy
        if scale:
            self._chan(scale, layout, N, C, S, acc)[0][...] = sc

    def lrn_bwd(self, dtype, layout, N, C, S, dy, x, y, scale, dx, size, alpha, beta, k, dev, stream):
        self.calls.append(("lrn_bwd", dtype, layout, N, C, S, size, dev, stream))
        dt = _DTYPES[dtype]
        acc = np.float64 if dt == _DTYPES[1] else np.float32
        def view(p, t):
            return self._chan(p, layout, N, C, S, t)[0]

        ax = 1 if layout == 0 else -1
        (g,) = _core.local_response_norm_backward(view(dy, dt), view(x, dt), view(y, dt), view(scale, acc), size,
                                                  alpha, beta, k, ax, None)
        view(dx, dt)[...] = g


def make_lib():
    """The _gpu library adapter for FakeGpuArray (registered under this module's name)."""
    from normkit import _gpu

    class FakeLib(_gpu._Lib):
        def empty(self, shape, dtype):
            return FakeGpuArray(np.empty(shape, dtype))

    return FakeLib
