"""GPU arrays: the library-specific part of the GPU path, and nothing else.

The argument rules of every op are written once, in the C++ bindings (``cpp/bindings/array.h``):
they read one description of each array (pointer, shape, strides, dtype, device) built alike
from a NumPy array or a GPU array (CuPy, PyTorch, JAX), then run the kernels of the arrays'
device. What the bindings need from the caller's array library lives here, in one small
adapter per library:

- recognising the library of a GPU array and that every array of a call is of that library;
- its current stream (PyTorch, CuPy) and readying its arrays (JAX);
- allocating results in it (``empty``, ``copy``) and handing them back (``finish``).

An argument is a GPU array when it exposes ``__dlpack__`` on a CUDA device (or
``__cuda_array_interface__``). Every array argument of a call must then be on the same GPU:
mixing host and device arrays is a ``ValueError`` (normkit never copies between them). Results
are arrays of the input's library on the same device, computed on that library's current stream
(JAX: after the inputs are ready, on the default stream, synchronized before JAX sees the
result).
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from . import _core

try:
    from . import _cuda
except ImportError:  # built without CUDA
    _cuda = None


_BF16 = np.dtype(ml_dtypes.bfloat16)
_BOOL = np.dtype(bool)
# numpy dtype -> (DLPack type code, bits), for normkit-owned buffers.
_DL_OF = {
    np.dtype(np.float32): (2, 32),
    np.dtype(np.float64): (2, 64),
    np.dtype(np.float16): (2, 16),
    _BF16: (4, 16),
    _BOOL: (6, 8),
}

_device_count: tuple[Any, int] = (None, 0)


def _devices() -> int:
    """Usable CUDA devices, asked once per kernel module (a CUDA runtime call per op call would
    add to its cost)."""
    global _device_count
    mod, n = _device_count
    if mod is not _cuda or _cuda is None:
        n = 0 if _cuda is None else _cuda.device_count()
        _device_count = (_cuda, n)
    return n


def has_cuda() -> bool:
    return _devices() > 0


def any_on_gpu(*objs: Any) -> bool:
    """Whether any argument is a GPU array (NumPy arrays and None go first)."""
    return any(o is not None and type(o) is not np.ndarray and _core._device_of(o) >= 0 for o in objs)


def _where(obj: Any) -> str:
    return _core._where(obj)


# ---- adapters --------------------------------------------------------------------------------


class _Lib:
    """What the bindings need from an array library. `empty` and `copy` return (array, pointer):
    C-contiguous arrays; `backend` is the kernel table of the device (normkit._cuda.backend)."""

    writable = True
    needs_cuda = True
    finishes = False  # whether `finish` does anything (read once per call by the bindings)
    # False: the adapter needs nothing per call but the stream, and the bindings may remember it
    # for its array type and device (then `raw_stream(dev)`, when given, is the stream query).
    per_call = False
    raw_stream = None

    def __init__(self, like: Any, dev: int) -> None:
        self.dev = dev
        self.backend = _cuda.backend if _cuda is not None else None

    def stream(self) -> int:
        return 0

    def before(self, arrays: list[Any]) -> None:
        """Called before the kernels read `arrays`."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, int]:
        raise NotImplementedError

    def copy(self, a: Any) -> tuple[Any, int]:
        raise NotImplementedError

    def finish(self, a: Any) -> Any:
        """The array handed back to the caller."""
        return a

    def fill(self, a: Any, value: float) -> Any:
        a.fill(value)
        return a

    def write_back(self, dst: Any, src: Any) -> None:
        dst[...] = src

    def broadcast_rows(self, a: Any, n: int) -> Any:
        """A new C-contiguous (n, *a.shape) array of n copies of a (a finished array)."""
        out, _ = self.empty((n, *a.shape), np.dtype(a.dtype))
        out[...] = a
        return out


class _Torch(_Lib):
    def __init__(self, like: Any, dev: int) -> None:
        import torch

        super().__init__(like, dev)
        self.t = torch
        self.device = torch.device("cuda", dev)
        self.dtypes = {
            np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64,
            np.dtype(np.float16): torch.float16,
            _BF16: torch.bfloat16,
            _BOOL: torch.bool,
        }
        self.raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)

    def stream(self) -> int:
        if self.raw_stream is not None:
            return int(self.raw_stream(self.dev))
        return int(self.t.cuda.current_stream(self.device).cuda_stream)

    def empty(self, shape, dtype):
        a = self.t.empty(shape, dtype=self.dtypes[dtype], device=self.device)
        return a, a.data_ptr()

    def copy(self, a):
        c = a.clone(memory_format=self.t.contiguous_format)
        return c, c.data_ptr()

    def fill(self, a, value):
        return a.fill_(value)

    def broadcast_rows(self, a, n):
        return a.unsqueeze(0).expand(n, *a.shape).contiguous()


class _CuPy(_Lib):
    def __init__(self, like: Any, dev: int) -> None:
        import cupy

        super().__init__(like, dev)
        self.cp = cupy

    def stream(self) -> int:
        with self.cp.cuda.Device(self.dev):
            return int(self.cp.cuda.get_current_stream().ptr)

    def empty(self, shape, dtype):
        with self.cp.cuda.Device(self.dev):
            a = self.cp.empty(shape, dtype=dtype)
        return a, a.data.ptr

    def copy(self, a):
        with self.cp.cuda.Device(self.dev):
            c = self.cp.array(a, order="C", copy=True)
        return c, c.data.ptr


class _Jax(_Lib):
    """JAX arrays are immutable: results are normkit-owned buffers that JAX imports through DLPack."""

    writable = False
    finishes = True
    per_call = True  # readies the arrays and keeps their device: asked on every call

    def __init__(self, like: Any, dev: int) -> None:
        import jax
        import jax.numpy as jnp

        super().__init__(like, dev)
        self.jax, self.jnp = jax, jnp
        self.device = like.devices().pop() if hasattr(like, "devices") else None

    def before(self, arrays):
        for a in arrays:
            if hasattr(a, "block_until_ready"):
                a.block_until_ready()

    def empty(self, shape, dtype):
        code, bits = _DL_OF[dtype]
        e = _Exported(_cuda.DeviceBuffer(self.dev, list(shape), code, bits, dtype.str), 0, dtype)
        return e, e.buf.ptr

    def copy(self, a):
        c = self.jnp.array(a, copy=True)  # JAX arrays are C-contiguous: a copy only realigns
        c.block_until_ready()
        return c, c.unsafe_buffer_pointer()

    def finish(self, a):
        return self.jax.dlpack.from_dlpack(a) if isinstance(a, _Exported) else a

    def fill(self, a, value):
        return self.jnp.full(a.shape, value, dtype=a.dtype, device=self.device)

    def broadcast_rows(self, a, n):
        return self.jnp.broadcast_to(a, (n, *a.shape)) + 0


class _Exported:
    """A normkit DeviceBuffer seen through DLPack; the producing stream is synchronized on export."""

    def __init__(self, buf: Any, stream: int, dtype: np.dtype) -> None:
        self.buf, self.stream, self.dtype = buf, stream, dtype
        self.shape = tuple(buf.shape)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        return self.buf._dlpack(self.stream)

    def __dlpack_device__(self):
        return self.buf.__dlpack_device__()

    @property
    def __cuda_array_interface__(self):
        return self.buf.__cuda_array_interface__


_LIBS = {"torch": _Torch, "cupy": _CuPy, "jax": _Jax, "jaxlib": _Jax}
_LIB_CACHE: dict[tuple[type, int], _Lib] = {}


_CLASS_OF_TYPE: dict[type, type | None] = {}


def _lib_class(obj: Any) -> type | None:
    """The adapter class of a GPU array's library (looked up once per array type)."""
    t = type(obj)
    cls = _CLASS_OF_TYPE.get(t, False)
    if cls is False:
        cls = _Jax if t is _Exported else _LIBS.get(t.__module__.split(".")[0])
        if cls in (_Torch, _CuPy, _Jax):  # only normkit's own adapters: tests register stand-ins
            _CLASS_OF_TYPE[t] = cls
    return cls


def adapter(op: str, names: list[str], objs: list[Any], dev: int) -> tuple[_Lib, int]:
    """The adapter of a call's GPU arrays (all on cuda:`dev`, checked by the bindings) and the
    stream to run on. Called by the bindings once per call."""
    first = objs[0]
    cls = _lib_class(first)
    if cls is None or cls.needs_cuda:
        if _cuda is None:
            raise RuntimeError(f"{op}: {names[0]} is a GPU array but this normkit was built without CUDA")
        if _devices() == 0:
            raise RuntimeError(f"{op}: {names[0]} is a GPU array but no CUDA device is usable")
    if cls is None:
        raise TypeError(
            f"GPU arrays of type {type(first).__module__}.{type(first).__name__} are not supported; "
            "pass a CuPy, PyTorch or JAX array"
        )
    for name, o in zip(names[1:], objs[1:]):
        if _lib_class(o) is not cls:
            raise TypeError(f"{op}: {name} is {_where(o)} but {names[0]} is {_where(first)}; pass one library's arrays")
    if cls is _Jax:  # keeps the array's device: one per call
        lib = _Jax(first, dev)
    else:
        lib = _LIB_CACHE.get((cls, dev))
        if lib is None:
            lib = _LIB_CACHE[(cls, dev)] = cls(first, dev)
    lib.before(objs)
    return lib, lib.stream()
