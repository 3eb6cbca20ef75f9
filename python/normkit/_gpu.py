"""GPU arrays: recognising them, checking them, allocating results in the caller's library, and
calling the CUDA kernels of ``normkit._cuda``.

An argument is a GPU array when it exposes ``__dlpack__`` on a CUDA device (or
``__cuda_array_interface__``): CuPy, PyTorch and JAX arrays. The public functions send a call
here when any of their array arguments is one; every array argument must then be on the same
GPU (mixing host and device arrays is a ``ValueError``: normkit never copies between them). Results
are arrays of the input's library on the same device, computed on that library's current stream
(JAX: after the inputs are ready, on the default stream, synchronized before JAX sees the
result). This module is the GPU half of the bindings layer: it validates what the CPU bindings
validate, with the same messages.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import ml_dtypes
import numpy as np

try:
    from . import _cuda
except ImportError:  # built without CUDA
    _cuda = None


_DL_CUDA, _DL_CUDA_MANAGED = 2, 13
_BF16 = np.dtype(ml_dtypes.bfloat16)
# numpy dtype <-> (DLPack type code, bits), and normkit's DType numbering (types.h).
_DLPACK = {
    (2, 32): np.dtype(np.float32),
    (2, 64): np.dtype(np.float64),
    (2, 16): np.dtype(np.float16),
    (4, 16): _BF16,
}
_DL_OF = {v: k for k, v in _DLPACK.items()}
_BOOL = np.dtype(bool)
_DL_OF[_BOOL] = (6, 8)
_NK_DTYPE = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, _BF16: 3}


class _TorchDtypes(dict):
    """torch dtype -> numpy dtype for the float dtypes (filled when PyTorch is first seen)."""

    def __missing__(self, key):
        torch = sys.modules["torch"]
        floats = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
                  torch.float16: np.dtype(np.float16), torch.bfloat16: _BF16}
        self[key] = floats.get(key)
        return self[key]


_TORCH_DTYPES = _TorchDtypes()


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


def _torch_tensor() -> type | None:
    """torch.Tensor when PyTorch is imported (never imports it)."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None)


def _device_of(obj: Any) -> int | None:
    """CUDA device id of a GPU array, None for anything else (NumPy arrays, host tensors, None)."""
    if obj is None or isinstance(obj, (np.ndarray, np.generic)):
        return None
    tt = _torch_tensor()
    if tt is not None and isinstance(obj, tt):  # PyTorch: its attributes, not a DLPack round trip
        return obj.get_device() if obj.is_cuda else None
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is not None:
        try:
            kind, dev = dlpack_device()
        except Exception:  # noqa: BLE001 - a producer that cannot say where it lives is not a GPU array
            return None
        return int(dev) if kind in (_DL_CUDA, _DL_CUDA_MANAGED) else None
    try:
        obj.__cuda_array_interface__  # noqa: B018 - raises on host tensors
    except (AttributeError, TypeError, RuntimeError):
        return None
    dev = getattr(obj, "device", None)
    return int(getattr(dev, "id", getattr(dev, "index", 0)) or 0)


_NDARRAY = np.ndarray


def any_on_gpu(*objs: Any) -> bool:
    """Whether any argument is a GPU array (on every public call: NumPy arrays and None go first)."""
    for o in objs:
        if o is None or type(o) is _NDARRAY:
            continue
        if _device_of(o) is not None:
            return True
    return False


def _where(obj: Any) -> str:
    dev = _device_of(obj)
    if dev is not None:
        lib = type(obj).__module__.split(".")[0]
        return f"a {'jax' if lib == 'jaxlib' else lib} array on cuda:{dev}"
    if isinstance(obj, np.ndarray):
        return "a NumPy array on the host"
    return f"a {type(obj).__name__} on the host"


# ---- libraries -------------------------------------------------------------------------------


class _Lib:
    """What normkit needs from an array library: its stream, new arrays, dtype casts, copies."""

    def __init__(self, like: Any, dev: int) -> None:
        self.dev = dev

    def stream(self) -> int:
        return 0

    def before(self, arrays: list[Any]) -> None:
        """Called before the kernels read `arrays`."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        raise NotImplementedError

    def finish(self, a: Any) -> Any:
        """The array handed back to the caller."""
        return a

    def astype(self, a: Any, dtype: np.dtype) -> Any:
        return a.astype(dtype)

    def copy(self, a: Any) -> Any:
        return a.copy()

    def fill(self, a: Any, value: float) -> Any:
        a.fill(value)
        return a

    def broadcast_rows(self, a: Any, n: int) -> Any:
        """A new C-contiguous (n, *a.shape) array of n copies of a."""
        out = self.empty((n, *a.shape), np.dtype(a.dtype))
        out[...] = a
        return out

    writable = True


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

    def stream(self) -> int:
        raw = getattr(self.t._C, "_cuda_getCurrentRawStream", None)
        if raw is not None:
            return int(raw(self.dev))
        return int(self.t.cuda.current_stream(self.device).cuda_stream)

    def empty(self, shape, dtype):
        return self.t.empty(shape, dtype=self.dtypes[dtype], device=self.device)

    def astype(self, a, dtype):
        return a.to(self.dtypes[dtype])

    def copy(self, a):
        return a.clone(memory_format=self.t.contiguous_format)

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
            return self.cp.empty(shape, dtype=dtype)

    def copy(self, a):
        with self.cp.cuda.Device(self.dev):
            return self.cp.array(a, order="C", copy=True)


class _Jax(_Lib):
    """JAX arrays are immutable: results are normkit-owned buffers that JAX imports through DLPack."""

    writable = False

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
        return _Exported(_cuda.DeviceBuffer(self.dev, list(shape), code, bits, dtype.str), 0, dtype)

    def finish(self, a):
        return self.jax.dlpack.from_dlpack(a) if isinstance(a, _Exported) else a

    def astype(self, a, dtype):
        return self.jnp.asarray(a, dtype=dtype)

    def copy(self, a):
        return self.jnp.array(a, copy=True)

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


def _lib_of(obj: Any, dev: int) -> _Lib:
    top = type(obj).__module__.split(".")[0]
    if top not in _LIBS:
        raise TypeError(
            f"GPU arrays of type {type(obj).__module__}.{type(obj).__name__} are not supported; "
            "pass a CuPy, PyTorch or JAX array"
        )
    cls = _LIBS[top]
    if cls is _Jax:  # keeps the array's device: one per call
        return _Jax(obj, dev)
    lib = _LIB_CACHE.get((cls, dev))
    if lib is None:
        lib = _LIB_CACHE[(cls, dev)] = cls(obj, dev)
    return lib


# ---- array views -----------------------------------------------------------------------------


class _View:
    """Pointer, shape, element strides and dtype of a GPU array (keeps its DLPack export alive)."""

    __slots__ = ("desc", "dtype", "keep", "obj", "ptr", "shape", "strides")

    def __init__(self, obj: Any, name: str) -> None:
        self.obj = obj
        tt = _torch_tensor()
        if tt is not None and isinstance(obj, tt):  # PyTorch: read its attributes (no DLPack export)
            self.keep = None
            self.ptr, self.shape, self.strides = obj.data_ptr(), tuple(obj.shape), tuple(obj.stride())
            self.dtype = _TORCH_DTYPES[obj.dtype]
            self.desc = str(obj.dtype).removeprefix("torch.")
            return
        if isinstance(obj, _Exported):
            obj = obj.buf
        if _cuda is not None and hasattr(obj, "__dlpack__") and not isinstance(obj, _cuda.DeviceBuffer):
            info = _cuda.dlpack_info(obj)
            code, bits, lanes = info["dtype"]
            dtype = _DLPACK.get((code, bits)) if lanes == 1 else None
            kind = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 5: "complex", 6: "bool"}.get(code, f"code{code}-")
            self.desc = f"{kind}{bits}" + (f"x{lanes}" if lanes != 1 else "")
            self.ptr, self.shape, self.keep = int(info["ptr"]), tuple(info["shape"]), info["capsule"]
            strides = info["strides"]
        else:
            cai = obj.__cuda_array_interface__
            dtype = np.dtype(cai["typestr"])
            self.desc = str(dtype)
            dtype = dtype if dtype in _NK_DTYPE else None
            self.ptr, self.shape, self.keep = int(cai["data"][0]), tuple(cai["shape"]), None
            strides = cai.get("strides")
            if strides is not None and dtype is not None:
                strides = tuple(s // dtype.itemsize for s in strides)
            if dtype is None:
                self.dtype = None
                return
        self.dtype = dtype
        if strides is None:
            strides, acc = [], 1
            for n in reversed(self.shape):
                strides.append(acc)
                acc *= n
            strides = tuple(reversed(strides))
        self.strides = tuple(int(s) for s in strides)

    def ld_of(self, axis: int) -> int | None:
        """Row stride when the array is rows of contiguous shape[axis:] with one row stride."""
        expect = 1
        for d in range(len(self.shape) - 1, axis - 1, -1):
            if self.shape[d] != 1 and self.strides[d] != expect:
                return None
            expect *= self.shape[d]
        ld, nxt, have = expect, 0, False
        for d in range(axis - 1, -1, -1):
            if self.shape[d] == 1:
                continue
            if not have:
                ld, have = self.strides[d], True
            elif self.strides[d] != nxt:
                return None
            nxt = self.strides[d] * self.shape[d]
        return ld

    def dense(self) -> bool:
        """C-contiguous and aligned to the element size: usable by the kernels as it is."""
        return self.ld_of(0) is not None and self.ptr % self.dtype.itemsize == 0

    def span(self) -> tuple[int, int]:
        """Byte range [lo, hi) of the elements."""
        lo = hi = self.ptr
        if 0 in self.shape:
            return lo, lo
        for n, s in zip(self.shape, self.strides):
            ext = (n - 1) * s * self.dtype.itemsize
            lo, hi = (lo + ext, hi) if ext < 0 else (lo, hi + ext)
        return lo, hi + self.dtype.itemsize


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _dtype_name(v: _View) -> str:
    return str(v.dtype) if v.dtype is not None else v.desc


class Call:
    """One op call on the GPU: the arguments' views, their common device, library and stream."""

    def __init__(self, op: str, **arrays: Any) -> None:
        given = {k: a for k, a in arrays.items() if a is not None}
        gpu = {k: _device_of(a) for k, a in given.items()}
        first = next(k for k, d in gpu.items() if d is not None)
        for k, d in gpu.items():
            if d is None:
                raise ValueError(
                    f"{op}: {first} is {_where(given[first])} but {k} is {_where(given[k])}; pass all arrays "
                    "on the same device (normkit does not copy between host and GPU)"
                )
            if d != gpu[first]:
                raise ValueError(f"{op}: {first} is on cuda:{gpu[first]} but {k} is on cuda:{d}")
        if _cuda is None:
            raise RuntimeError(f"{op}: {first} is a GPU array but this normkit was built without CUDA")
        if _devices() == 0:
            raise RuntimeError(f"{op}: {first} is a GPU array but no CUDA device is usable")
        self.op = op
        self.keep: list[Any] = []
        self.dev = gpu[first]
        self.lib = _lib_of(given[first], self.dev)
        for k, a in given.items():
            top = type(a).__module__.split(".")[0]
            if _LIBS.get(top) is not type(self.lib) and not isinstance(a, _Exported):
                raise TypeError(f"{op}: {k} is {_where(a)} but {first} is {_where(given[first])}; pass one library's arrays")
        self.lib.before(list(given.values()))
        self.stream = self.lib.stream()
        self.views = {k: _View(a, k) for k, a in given.items()}

    def float_view(self, name: str) -> _View:
        v = self.views[name]
        if v.dtype is None:
            raise TypeError(f"{name} has dtype {_dtype_name(v)}; expected float32, float64, float16 or bfloat16")
        return v

    def same(self, name: str, like: str) -> _View | None:
        """Optional argument with the dtype and shape of `like`."""
        if name not in self.views:
            return None
        v, ref = self.views[name], self.views[like]
        if v.dtype != ref.dtype:
            raise TypeError(f"{name} has dtype {_dtype_name(v)}; expected {ref.dtype} (the dtype of {like})")
        if v.shape != ref.shape:
            raise ValueError(
                f"{name} has shape {_shape_str(v.shape)}; expected {_shape_str(ref.shape)} (the shape of {like})"
            )
        return v

    def rows(self, name: str, axis: int) -> tuple[int, int]:
        """(pointer, row stride) of the array as rows of shape[axis:], copied once if needed."""
        v = self.views[name]
        ld = v.ld_of(axis)
        if ld is None or v.ptr % v.dtype.itemsize:
            c = self.lib.copy(v.obj)
            self.views[name] = v = _View(c, name)
            ld = v.ld_of(axis)
        return v.ptr, ld

    def param(self, name: str, dt: np.dtype, shape: tuple[int, ...],
              convert: bool = True) -> tuple[int, np.dtype | None]:
        """Optional weight/bias: (pointer to a contiguous accumulation-dtype copy or 0, its dtype).
        convert=False: checked only (pointer 0)."""
        if name not in self.views:
            return 0, None
        v = self.views[name]
        if v.dtype not in (dt, np.dtype(np.float32)):
            raise TypeError(f"{name} has dtype {_dtype_name(v)}; expected {dt} (the input's dtype) or float32")
        if v.shape != shape:
            raise ValueError(f"{name} has shape {_shape_str(v.shape)}; expected {_shape_str(shape)}")
        return (self.acc_copy(name, acc_dtype(dt)) if convert else 0), v.dtype

    def row_params(self, names: tuple[str, ...], dt: np.dtype, shape: tuple[int, ...],
                   in_dtype: bool | None = None) -> tuple[list[int], bool]:
        """The row norms' weight / bias, which their kernels read in x's dtype or in the
        accumulation dtype: (pointers, 0 for absent ones; whether they are in x's dtype). Converted
        only when neither (or when the two differ). `in_dtype`: decided by the caller."""
        acc = acc_dtype(dt)
        for n in names:
            self.param(n, dt, shape, convert=False)
        if in_dtype is None:
            in_dtype = dt != acc and all(self.views[n].dtype == dt for n in names if n in self.views)
        store = dt if in_dtype else acc
        return [self.acc_copy(n, store) if n in self.views else 0 for n in names], in_dtype

    def stat(self, name: str, dt: np.dtype, shape: tuple[int, ...]) -> int:
        v = self.views[name]
        if v.dtype not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)):
            raise TypeError(f"{name} has dtype {_dtype_name(v)}; expected {acc_dtype(dt)}")
        if v.shape != shape:
            raise ValueError(
                f"{name} has shape {_shape_str(v.shape)}; expected {_shape_str(shape)} (the input's shape before axis)"
            )
        return self.acc_copy(name, acc_dtype(dt))

    def acc_copy(self, name: str, acc: np.dtype) -> int:
        """Pointer to the argument in dtype `acc`, C-contiguous and aligned (a converted copy if needed)."""
        v = self.views[name]
        if v.dtype != acc or not v.dense():
            c = self.lib.astype(v.obj, acc)
            if _View(c, name).ld_of(0) is None:
                c = self.lib.copy(c)
            self.views[name] = v = _View(c, name)
        return v.ptr

    def output(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, int]:
        """The out= argument checked, or a new array: (array, pointer)."""
        if name in self.views:
            v = self.views[name]
            if not self.lib.writable:
                raise TypeError(f"{name}= cannot be used with JAX arrays (they are immutable)")
            if v.dtype != dtype:
                raise TypeError(f"{name} has dtype {_dtype_name(v)}; expected {dtype}")
            if v.shape != shape:
                raise ValueError(f"{name} has shape {_shape_str(v.shape)}; expected {_shape_str(shape)}")
            if v.ld_of(0) is None:
                raise ValueError(f"{name} must be C-contiguous")
            if v.ptr % dtype.itemsize:
                raise ValueError(f"{name} is not aligned to its itemsize")
            return v.obj, v.ptr
        a = self.lib.empty(shape, dtype)
        self.keep.append(a)  # alive until the call returns, whether or not the caller keeps it
        return a, _View(a, name).ptr

    def cast(self, a: Any, dtype: np.dtype) -> Any:
        """a (a new array of this call) in another float dtype. normkit-owned buffers (JAX) are
        converted on the device before JAX sees them: JAX without x64 cannot import float64."""
        if not isinstance(a, _Exported):
            return self.lib.astype(a, dtype)
        if a.dtype == dtype:
            return a
        code, bits = _DL_OF[dtype]
        b = _Exported(_cuda.DeviceBuffer(self.dev, list(a.shape), code, bits, dtype.str), self.stream, dtype)
        self.keep.append(b)
        _cuda.convert(_NK_DTYPE[a.dtype], _NK_DTYPE[dtype], math.prod(a.shape), a.buf.ptr, b.buf.ptr, self.dev,
                      self.stream)
        return b

    def out_reads(self, out_name: str, axis: int, *inputs: str) -> None:
        """With out= given, name it `out_name` and re-read the inputs that overlap it other than
        exactly in place from copies."""
        if "out" not in self.views:
            return
        self.views[out_name] = self.views["out"]
        for name in inputs:
            self.protect(name, out_name, axis)

    def protect(self, name: str, out: str, axis: int) -> None:
        """Re-read `name` from a copy when it overlaps `out` other than exactly in place."""
        if name not in self.views or out not in self.views:
            return
        a, o = self.views[name], self.views[out]
        (alo, ahi), (olo, ohi) = a.span(), o.span()
        if alo < ohi and olo < ahi and not (a.ptr == o.ptr and a.ld_of(axis) == math.prod(a.shape[axis:])):
            self.views[name] = _View(self.lib.copy(a.obj), name)


def acc_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt == np.dtype(np.float64) else np.dtype(np.float32)


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        expected = f"-{ndim} <= {name} < {ndim}" if ndim else "an array with ndim >= 1"
        raise ValueError(f"{name}={axis} is out of range for an array of {ndim} dimension(s); expected {expected}")
    return axis + ndim if axis < 0 else axis


def check_eps(eps: float, name: str = "eps") -> None:
    if not (eps > 0.0 and math.isfinite(eps)):
        raise ValueError(f"{name} must be a finite number > 0, got {eps}")


# ---- row norms -------------------------------------------------------------------------------


def row_norm_forward(rms, x, res, w, b, axis, eps, out, want_stats):
    name = "rms_norm" if rms else "layer_norm"
    c = Call(name, x=x, residual=res, weight=w, bias=None if rms else b, out=out)
    xv = c.float_view("x")
    dt = xv.dtype
    ax = normalize_axis(int(axis), len(xv.shape))
    check_eps(float(eps))
    shape = xv.shape
    feat, lead = shape[ax:], shape[:ax]
    M, N = math.prod(lead), math.prod(feat)
    add = res is not None
    if add:
        c.same("residual", "x")
    (wp, bp), in_dt = c.row_params(("weight", "bias"), dt, feat)
    y, yp = c.output("out", shape, dt)
    c.out_reads("y", ax, "x", "residual")
    xp, ldx = c.rows("x", ax)
    rp, ldr = c.rows("residual", ax) if add else (0, 0)
    h, hp = c.output("h", shape, dt) if add else (None, 0)
    stats = want_stats or add
    acc = acc_dtype(dt)
    mean = rstd = None
    mp = sp = 0
    if stats:
        if not rms:
            mean, mp = c.output("mean", lead, acc)
        rstd, sp = c.output("rstd", lead, acc)
    if M > 0 and N > 0:
        _cuda.row_norm_fwd(rms, _NK_DTYPE[dt], M, N, xp, ldx, rp, ldr, wp, bp, yp, hp, mp, sp, float(eps), c.dev, c.stream,
                           in_dt)
    elif M > 0 and stats:  # rows of zero length: statistics are undefined
        mean = None if rms else c.lib.fill(mean, math.nan)
        rstd = c.lib.fill(rstd, math.nan)
    fin = c.lib.finish
    if not stats:
        return fin(y)
    if add and not want_stats:
        return fin(y), fin(h)
    outs = [fin(y)] + ([fin(h)] if add else []) + ([] if rms else [fin(mean)]) + [fin(rstd)]
    return tuple(outs)


def row_norm_backward(rms, dy, x, mean, rstd, w, axis, out):
    name = "rms_norm_backward" if rms else "layer_norm_backward"
    c = Call(name, dy=dy, x=x, mean=None if rms else mean, rstd=rstd, weight=w, out=out)
    xv = c.float_view("x")
    dt = xv.dtype
    c.same("dy", "x")
    shape = xv.shape
    ax = normalize_axis(int(axis), len(shape))
    feat, lead = shape[ax:], shape[:ax]
    M, N = math.prod(lead), math.prod(feat)
    mp = 0 if rms else c.stat("mean", dt, lead)
    sp = c.stat("rstd", dt, lead)
    wdt = c.views["weight"].dtype if "weight" in c.views else dt  # checked by row_params first
    acc = acc_dtype(dt)
    (wp,), in_dt = c.row_params(("weight",), dt, feat, in_dtype=dt != acc and wdt == dt)
    gdt = dt if in_dt else acc  # the parameter gradients' dtype out of the kernels
    dx, dxp = c.output("out", shape, dt)
    c.out_reads("dx", ax, "x", "dy")
    xp, ldx = c.rows("x", ax)
    dyp, lddy = c.rows("dy", ax)
    dw, dwp = c.output("dweight", feat, gdt)
    db, dbp = (None, 0) if rms else c.output("dbias", feat, gdt)
    if M > 0 and N > 0:
        _cuda.row_norm_bwd(rms, _NK_DTYPE[dt], M, N, dyp, lddy, xp, ldx, mp, sp, wp, dxp, dwp, dbp, c.dev, c.stream,
                           in_dt)
    else:
        dw = c.lib.fill(dw, 0.0)
        db = None if rms else c.lib.fill(db, 0.0)
    fin = c.lib.finish

    def to_param(g):
        return fin(g if wdt == gdt else c.cast(g, wdt))

    if rms:
        return fin(dx), to_param(dw)
    return fin(dx), to_param(dw), to_param(db)


# ---- dropout ---------------------------------------------------------------------------------


def dropout(x, xname, p, seed, mask, out, want_mask):
    """dropout / dropout_backward on GPU arrays; seed already resolved (None only with a mask)."""
    op = "dropout" if xname == "x" else "dropout_backward"
    c = Call(op, **{xname: x}, mask=mask, out=out)
    xv = c.float_view(xname)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    shape, dt = xv.shape, xv.dtype
    mp = 0
    if mask is not None:
        mv = c.views["mask"]
        if mv.desc not in ("bool8", "bool"):
            raise TypeError(f"mask has dtype {_dtype_name(mv)}; expected bool")
        if mv.shape != shape:
            raise ValueError(f"mask has shape {_shape_str(mv.shape)}; expected {_shape_str(shape)} (the shape of {xname})")
        if mv.ld_of(0) is None:
            c.views["mask"] = mv = _View(c.lib.copy(mv.obj), "mask")
    elif seed is None:
        raise ValueError("dropout_backward needs the forward's mask or its seed")
    elif not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise TypeError(f"seed must be an int in [0, 2**64), got {type(seed).__name__}")
    elif not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed}")
    y, yp = c.output("out", shape, dt)
    c.out_reads("y", 0, xname, "mask")
    xp, _ = c.rows(xname, 0)
    if mask is not None:
        mp = c.views["mask"].ptr  # after protect: possibly a copy
    m, mop = c.output("mask_out", shape, _BOOL) if want_mask else (None, 0)
    n = math.prod(shape)
    if n > 0:
        threshold = math.floor(p * 4294967296.0)
        _cuda.dropout(_NK_DTYPE[dt], n, xp, yp, mp, mop, 0 if seed is None else seed, threshold, 1.0 / (1.0 - p),
                      c.dev, c.stream)
    fin = c.lib.finish
    return (fin(y), fin(m)) if want_mask else fin(y)


# ---- regularizers ----------------------------------------------------------------------------

_ADD_SIGN, _ADD_SCALED, _SOFT_THRESHOLD, _SCALE = 0, 1, 2, 3


def check_nonneg(v: Any, name: str) -> float:
    """A hyperparameter: a real number (TypeError otherwise), finite and >= 0 (ValueError otherwise)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    return v


def penalty(w, lam, l2):
    c = Call("l2_penalty" if l2 else "l1_penalty", w=w)
    v = c.float_view("w")
    lam = check_nonneg(lam, "lam")
    n = math.prod(v.shape)
    if n == 0:
        return lam * 0.0
    wp, _ = c.rows("w", 0)
    _, op = c.output("sum", (1,), np.dtype(np.float64))
    _cuda.reg_row_sum(_NK_DTYPE[v.dtype], l2, 1, n, n, wp, op, c.dev, c.stream)
    return lam * _cuda.read_doubles(c.dev, op, 1, c.stream)[0]


def _in_place(c: Call, name: str) -> tuple[_View, Any]:
    """The array updated in place: (its dense view, the object to write back to or None)."""
    if not c.lib.writable:
        raise TypeError(f"{c.op}: {name} is a JAX array; JAX arrays are immutable and cannot be updated in place")
    v = c.float_view(name)
    if v.dense():
        return v, None
    d = c.lib.copy(v.obj)
    return _View(d, name), d


def update(op, target_name, target, src, hyper):
    """add_l1_grad / add_l2_grad (src = w) and l1_prox / weight_decay (src = None: target itself)."""
    c = Call(op, **{target_name: target, "w" if src is not None else "_": src})
    h = {k: check_nonneg(v, k) for k, v in hyper.items()}
    kind, c_value = {
        "add_l1_grad": lambda: (_ADD_SIGN, h.get("lam")),
        "add_l2_grad": lambda: (_ADD_SCALED, 2.0 * h.get("lam", 0.0)),
        "l1_prox": lambda: (_SOFT_THRESHOLD, h.get("threshold")),
        "weight_decay": lambda: (_SCALE, 1.0 - h.get("lr", 0.0) * h.get("wd", 0.0)),
    }[op]()
    t, dense = _in_place(c, target_name)
    sp = t.ptr
    if src is not None:
        c.same("w", target_name)
        c.views["t"] = t
        if src is not target:
            c.protect("w", "t", 0)
        sp, _ = c.rows("w", 0) if src is not target else (t.ptr, 0)
    n = math.prod(t.shape)
    if n > 0:
        _cuda.reg_apply(_NK_DTYPE[t.dtype], kind, n, sp, t.ptr, c_value, c.dev, c.stream)
        if dense is not None:
            target[...] = dense
    return target


def max_norm(w, max_value, axis):
    c = Call("max_norm", w=w)
    max_value = check_nonneg(max_value, "max_value")
    v = c.float_view("w")
    ax = normalize_axis(int(axis), len(v.shape))
    t, dense = _in_place(c, "w")
    if math.prod(v.shape) == 0:
        return w
    A, K, B = math.prod(v.shape[:ax]), v.shape[ax], math.prod(v.shape[ax + 1 :])
    _cuda.max_norm(_NK_DTYPE[t.dtype], A, K, B, t.ptr, max_value, c.dev, c.stream)
    if dense is not None:
        w[...] = dense
    return w


# ---- channel norms ---------------------------------------------------------------------------

_NCS, _NSC = 0, 1
_F64 = np.dtype(np.float64)


class _Chan:
    """x viewed as a contiguous (N, C, S) tensor in its layout (copied once when not contiguous)."""

    def __init__(self, c: Call, channel_axis: int) -> None:
        v = c.float_view("x")
        nd = len(v.shape)
        if nd < 2:
            raise ValueError(f"x must have at least 2 dimensions (N, C, ...), got shape {_shape_str(v.shape)}")
        if channel_axis not in (1, -1):
            raise ValueError(f"channel_axis must be 1 (N, C, ...) or -1 (channels-last), got {channel_axis}")
        ax = 1 if channel_axis == 1 else nd - 1
        self.shape, self.dt = v.shape, v.dtype
        self.N, self.C = v.shape[0], v.shape[ax]
        self.S = math.prod(d for i, d in enumerate(v.shape) if i not in (0, ax))
        self.layout = _NCS if ax == 1 and self.S > 1 else _NSC  # S == 1: the same memory either way
        self.c = c
        self.xp = self.dense("x")

    def dense(self, name: str) -> int:
        v = self.c.views[name]
        if not v.dense():
            self.c.views[name] = v = _View(self.c.lib.copy(v.obj), name)
        return v.ptr

    def like_x(self, name: str) -> int:
        self.c.same(name, "x")
        return self.dense(name)

    def output(self, out: Any, *inputs: str) -> tuple[Any, int]:
        """y / dx: out= (inputs overlapping it other than in place are copied first) or new."""
        y, yp = self.c.output("out", self.shape, self.dt)
        self.c.out_reads("y", 0, *inputs)
        self.xp = self.c.views["x"].ptr
        return y, yp

    def running(self, training_update: bool) -> bool:
        """Checks running_mean / running_var (both or neither, shape (C,)); whether they are given."""
        names = [k for k in ("running_mean", "running_var") if k in self.c.views]
        if len(names) == 1:
            raise ValueError(f"running_mean and running_var must be given together; got only {names[0]}")
        for name in names:
            v = self.c.float_view(name)
            if v.shape != (self.C,):
                raise ValueError(f"{name} has shape {_shape_str(v.shape)}; expected {_shape_str((self.C,))}")
            if training_update and not self.c.lib.writable:
                raise TypeError(f"{name} is a JAX array; JAX arrays are immutable and cannot be updated in place")
        return bool(names)

    def update_running(self, arrays: dict[str, Any], batch: dict[str, int], momentum: float) -> None:
        """running = (1 - momentum) * running + momentum * batch, in place on the caller's arrays."""
        for name, obj in arrays.items():
            v = self.c.views[name]
            dense = None
            if not v.dense():
                dense = self.c.lib.copy(obj)
                v = _View(dense, name)
            _cuda.running_update(_NK_DTYPE[v.dtype], self.C, v.ptr, batch[name], momentum, self.c.dev, self.c.stream)
            if dense is not None:
                obj[...] = dense


def _check_momentum(m: float) -> float:
    m = float(m)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {m}")
    return m


def _to_param(c: Call, g: Any, pdt: np.dtype) -> Any:
    return c.lib.finish(g if pdt == _F64 else c.cast(g, pdt))


def _batch_norm_call(c: Call, v: _Chan, training: bool, eps: float, out: Any, update: bool):
    """The BatchNorm kernel (also InstanceNorm with running statistics): y, save_mean, save_rstd and
    the device pointers of the batch statistics (0 unless `update`). Eval reads the running ones."""
    C, acc = v.C, acc_dtype(v.dt)
    wp, _ = c.param("weight", v.dt, (C,))
    bp, _ = c.param("bias", v.dt, (C,))
    rmp = rvp = 0
    if not training:
        rmp, rvp = c.acc_copy("running_mean", acc), c.acc_copy("running_var", acc)
    _bm, bmp = c.output("batch_mean", (C,), _F64) if update else (None, 0)
    _bv, bvp = c.output("batch_var", (C,), _F64) if update else (None, 0)
    sm, smp = c.output("save_mean", (C,), acc)
    sr, srp = c.output("save_rstd", (C,), acc)
    y, yp = v.output(out, "x")
    if C > 0:
        _cuda.batch_norm_fwd(_NK_DTYPE[v.dt], v.layout, v.N, C, v.S, v.xp, yp, wp, bp, rmp, rvp, training, eps, smp,
                             srp, bmp, bvp, c.dev, c.stream)
    return y, sm, sr, bmp, bvp


def batch_norm_forward(x, w, b, rm, rv, training, momentum, eps, channel_axis, out, want_stats):
    c = Call("batch_norm", x=x, weight=w, bias=b, running_mean=rm, running_var=rv, out=out)
    v = _Chan(c, int(channel_axis))
    check_eps(float(eps))
    momentum = _check_momentum(momentum)
    given = v.running(bool(training))
    if training and v.N * v.S < 2:
        raise ValueError(f"batch_norm in training needs more than 1 value per channel, got x of shape {_shape_str(v.shape)}")
    if not training and not given:
        raise ValueError("batch_norm in eval mode (training=False) needs running_mean and running_var")
    update = bool(training) and given
    y, sm, sr, bmp, bvp = _batch_norm_call(c, v, bool(training), float(eps), out, update)
    if update:
        v.update_running({"running_mean": rm, "running_var": rv}, {"running_mean": bmp, "running_var": bvp}, momentum)
    fin = c.lib.finish
    return (fin(y), fin(sm), fin(sr)) if want_stats else fin(y)


def batch_norm_backward(dy, x, mean, rstd, w, training, channel_axis, out):
    c = Call("batch_norm_backward", dy=dy, x=x, save_mean=mean, save_rstd=rstd, weight=w, out=out)
    v = _Chan(c, int(channel_axis))
    dyp = v.like_x("dy")
    C, dt = v.C, v.dt
    mp = c.stat("save_mean", dt, (C,))
    sp = c.stat("save_rstd", dt, (C,))
    wp, pdt = c.param("weight", dt, (C,))
    dx, dxp = v.output(out, "x", "dy")
    dyp = c.views["dy"].ptr
    dw, dwp = c.output("dweight", (C,), _F64)
    db, dbp = c.output("dbias", (C,), _F64)
    _cuda.batch_norm_bwd(_NK_DTYPE[dt], v.layout, v.N, C, v.S, v.xp, dyp, dxp, mp, sp, wp, bool(training), dwp, dbp,
                         c.dev, c.stream)
    return c.lib.finish(dx), _to_param(c, dw, pdt or dt), _to_param(c, db, pdt or dt)


def _check_groups(G: int, C: int) -> int:
    if G < 1 or C % G:
        raise ValueError(f"num_groups={G} must be >= 1 and divide the number of channels C={C}")
    return G


def _group_fwd(c: Call, v: _Chan, G: int, eps: float, out: Any):
    """GroupNorm forward on the device: (y, mean, m2, rstd), the statistics double (N, G) arrays."""
    wp, _ = c.param("weight", v.dt, (v.C,))
    bp, _ = c.param("bias", v.dt, (v.C,))
    y, yp = v.output(out, "x")
    mean, mp = c.output("mean", (v.N, G), _F64)
    _m2, qp = c.output("m2", (v.N, G), _F64)
    rstd, rp = c.output("rstd", (v.N, G), _F64)
    if math.prod(v.shape) > 0:
        _cuda.group_norm_fwd(_NK_DTYPE[v.dt], v.layout, v.N, v.C, v.S, G, v.xp, yp, wp, bp, eps, mp, qp, rp,
                             c.dev, c.stream)
    elif v.N * G > 0:
        mean, rstd = c.lib.fill(mean, math.nan), c.lib.fill(rstd, math.nan)
    return y, mean, mp, qp, rstd


def group_norm_forward(x, G, w, b, eps, channel_axis, out, want_stats):
    c = Call("group_norm", x=x, weight=w, bias=b, out=out)
    v = _Chan(c, int(channel_axis))
    G = _check_groups(int(G), v.C)
    check_eps(float(eps))
    y, mean, _, _, rstd = _group_fwd(c, v, G, float(eps), out)
    fin = c.lib.finish
    if not want_stats:
        return fin(y)
    acc = acc_dtype(v.dt)
    return fin(y), fin(c.cast(mean, acc)), fin(c.cast(rstd, acc))


def _group_bwd(c: Call, v: _Chan, G: int, out: Any, affine_only: bool):
    dyp = v.like_x("dy")
    mp = c.stat("mean", v.dt, (v.N, G))
    sp = c.stat("rstd", v.dt, (v.N, G))
    wp, pdt = c.param("weight", v.dt, (v.C,))
    dx, dxp = v.output(out, "x", "dy")
    dyp = c.views["dy"].ptr
    _, sdyp = c.output("sdy", (v.N, v.C), _F64)
    _, sdyxp = c.output("sdyx", (v.N, v.C), _F64)
    dw, dwp = c.output("dweight", (v.C,), _F64)
    db, dbp = c.output("dbias", (v.C,), _F64)
    if math.prod(v.shape) > 0:
        _cuda.group_norm_bwd(_NK_DTYPE[v.dt], v.layout, v.N, v.C, v.S, G, v.xp, dyp, dxp, mp, sp, wp, affine_only,
                             sdyp, sdyxp, dwp, dbp, c.dev, c.stream)
    else:
        dw, db = c.lib.fill(dw, 0.0), c.lib.fill(db, 0.0)
    return c.lib.finish(dx), _to_param(c, dw, pdt or v.dt), _to_param(c, db, pdt or v.dt)


def group_norm_backward(dy, x, mean, rstd, w, G, channel_axis, out):
    c = Call("group_norm_backward", dy=dy, x=x, mean=mean, rstd=rstd, weight=w, out=out)
    v = _Chan(c, int(channel_axis))
    return _group_bwd(c, v, _check_groups(int(G), v.C), out, False)


def instance_norm_forward(x, w, b, rm, rv, use_input_stats, momentum, eps, channel_axis, out, want_stats):
    c = Call("instance_norm", x=x, weight=w, bias=b, running_mean=rm, running_var=rv, out=out)
    v = _Chan(c, int(channel_axis))
    check_eps(float(eps))
    momentum = _check_momentum(momentum)
    N, C, acc = v.N, v.C, acc_dtype(v.dt)
    given = v.running(bool(use_input_stats))
    fin = c.lib.finish
    if use_input_stats:
        if v.S < 2:
            raise ValueError("instance_norm with use_input_stats=True needs more than 1 spatial value per channel, "
                             f"got x of shape {_shape_str(v.shape)}")
        y, mean, mp, qp, rstd = _group_fwd(c, v, C, float(eps), out)
        if given and N > 0:
            _, bmp = c.output("batch_mean", (C,), _F64)
            _, bvp = c.output("batch_var", (C,), _F64)
            _cuda.instance_batch_stats(N, C, v.S, mp, qp, bmp, bvp, c.dev, c.stream)
            v.update_running({"running_mean": rm, "running_var": rv}, {"running_mean": bmp, "running_var": bvp},
                             momentum)
        if not want_stats:
            return fin(y)
        return fin(y), fin(c.cast(mean, acc)), fin(c.cast(rstd, acc))
    if not given:
        raise ValueError("instance_norm with use_input_stats=False needs running_mean and running_var")
    # Constant statistics per channel: BatchNorm's eval path.
    y, sm, sr, _, _ = _batch_norm_call(c, v, False, float(eps), out, False)
    if not want_stats:
        return fin(y)
    return fin(y), c.lib.broadcast_rows(fin(sm), N), c.lib.broadcast_rows(fin(sr), N)


def instance_norm_backward(dy, x, mean, rstd, w, channel_axis, use_input_stats, out):
    c = Call("instance_norm_backward", dy=dy, x=x, mean=mean, rstd=rstd, weight=w, out=out)
    v = _Chan(c, int(channel_axis))
    return _group_bwd(c, v, v.C, out, not use_input_stats)


# ---- local response norm ---------------------------------------------------------------------


def _check_lrn(size: int, alpha: float, beta: float, k: float) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    if not (k > 0.0 and math.isfinite(k)):
        raise ValueError(f"k must be a finite number > 0, got {k}")


def lrn_forward(x, size, alpha, beta, k, channel_axis, out, want_scale):
    c = Call("local_response_norm", x=x, out=out)
    v = _Chan(c, int(channel_axis))
    size, alpha, beta, k = int(size), float(alpha), float(beta), float(k)
    _check_lrn(size, alpha, beta, k)
    y, yp = v.output(out, "x")
    if out is not None:  # each output reads its channel neighbours: x must not change under it, even in place
        xv = c.views["x"]
        (xlo, xhi), (ylo, yhi) = xv.span(), c.views["y"].span()
        if xlo < yhi and ylo < xhi:
            c.views["x"] = _View(c.lib.copy(xv.obj), "x")
            v.xp = c.views["x"].ptr
    scale, sp = c.output("scale", v.shape, acc_dtype(v.dt)) if want_scale else (None, 0)
    if math.prod(v.shape) > 0:
        _cuda.lrn_fwd(_NK_DTYPE[v.dt], v.layout, v.N, v.C, v.S, v.xp, yp, sp, size, alpha, beta, k, c.dev, c.stream)
    fin = c.lib.finish
    return (fin(y), fin(scale)) if want_scale else fin(y)


def lrn_backward(dy, x, y, scale, size, alpha, beta, k, channel_axis):
    c = Call("local_response_norm_backward", dy=dy, x=x, y=y, scale=scale)
    v = _Chan(c, int(channel_axis))
    size, alpha, beta, k = int(size), float(alpha), float(beta), float(k)
    _check_lrn(size, alpha, beta, k)
    dyp, yp = v.like_x("dy"), v.like_x("y")
    sp = c.stat("scale", v.dt, v.shape)
    dx, dxp = c.output("dx", v.shape, v.dt)
    if math.prod(v.shape) > 0:
        _cuda.lrn_bwd(_NK_DTYPE[v.dt], v.layout, v.N, v.C, v.S, dyp, v.xp, yp, sp, dxp, size, alpha, beta, k,
                      c.dev, c.stream)
    return (c.lib.finish(dx),)
