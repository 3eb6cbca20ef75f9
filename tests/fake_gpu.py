"""A stand-in GPU for testing normkit's GPU path on machines without one.

``FakeGpuArray`` wraps host memory but says it lives on CUDA device 0 (``__dlpack_device__``);
its adapter (``FakeLib``) hands the bindings the CPU kernels' table as the "device" kernels. The
bindings then take their device path all the way: recognition, the argument rules, the array
descriptions read through DLPack, copies of awkward layouts, ``out=``, results allocated by the
adapter, the kernels called with the adapter's device and stream. Only the kernels differ.
"""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
from normkit import _core, _gpu

_DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


class FakeGpuArray:
    """Host memory that claims to be on cuda:0."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __dlpack_device__(self):
        return (2, 0)

    def __array__(self, dtype=None, copy=None):  # the tests' own checks read the host memory behind it
        return self.a if dtype is None else self.a.astype(dtype)

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

    def transpose(self, *axes):
        return FakeGpuArray(self.a.transpose(*axes))

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


class FakeLib(_gpu._Lib):
    """The _gpu adapter for FakeGpuArray: host memory, and the CPU kernels' table
    (``_core._host_backend()``) as the "device" kernels."""

    needs_cuda = False

    def __init__(self, like, dev):
        super().__init__(like, dev)
        self.backend = _core._host_backend()

    def stream(self):
        return 12345  # a recognisable "stream", passed through to every kernel call

    def empty(self, shape, dtype):
        a = np.empty(shape, dtype)
        return FakeGpuArray(a), a.ctypes.data

    def copy(self, a):
        if not isinstance(a, FakeGpuArray):  # a torch tensor posing as a CUDA one (test_gpu_layer.py)
            c = a.contiguous().clone()
            return c, c.data_ptr()
        c = np.array(a.a, order="C", copy=True)
        return FakeGpuArray(c), c.ctypes.data

    def broadcast_rows(self, a, n):
        return FakeGpuArray(np.ascontiguousarray(np.broadcast_to(a.a, (n, *a.shape))))

    def write_back(self, dst, src):
        dst.a[...] = src.a


class Fake:
    """The stand-in GPU switched on: FakeGpuArray recognised as a GPU library's array, its kernel
    calls recorded (``calls``: (kernel, device, stream) tuples)."""

    lib = FakeLib

    def __init__(self, mp) -> None:
        mp.setitem(_gpu._LIBS, FakeGpuArray.__module__.split(".")[0], FakeLib)
        _core._record_device_calls(True)

    @property
    def calls(self):
        return _core._device_calls()

    @staticmethod
    def off():
        _core._record_device_calls(False)
        _core._forget_adapters()  # the bindings remembered FakeLib for FakeGpuArray
