"""Clear TypeErrors for scalar arguments.

The native functions convert scalars themselves; when that fails, pybind11 raises a TypeError
that lists every argument (whole arrays included). ``clear_arg_errors`` re-raises it as one
line naming the offending argument. The check runs only after a failure: no cost on success.
It also names GPU arrays given to an op that has no CUDA kernel yet (the CPU bindings see only
"not a numpy.ndarray").
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

_INT = ("an int", (int, np.integer))
_REAL = ("a real number", (int, float, np.integer, np.floating))
_BOOL = ("a bool", (bool, np.bool_))
_NOT_NDARRAY = re.compile(r"(\w+) must be a numpy\.ndarray, got ")
_EXPECTED = {
    "axis": _INT,
    "channel_axis": _INT,
    "num_groups": _INT,
    "eps": _REAL,
    "momentum": _REAL,
    "lam": _REAL,
    "threshold": _REAL,
    "lr": _REAL,
    "wd": _REAL,
    "max_value": _REAL,
    "training": _BOOL,
    "use_input_stats": _BOOL,
    "p": _REAL,
    "size": _INT,
    "alpha": _REAL,
    "beta": _REAL,
    "k": _REAL,
    "std": _REAL,
}


def clear_arg_errors(fn: F) -> F:
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TypeError as e:
            m = _NOT_NDARRAY.match(str(e))
            if m:  # a GPU array given to an op that takes NumPy arrays only
                from . import _gpu

                value = sig.bind(*args, **kwargs).arguments.get(m.group(1))
                if _gpu.any_on_gpu(value):
                    raise TypeError(
                        f"{fn.__name__} has no CUDA kernel yet: {m.group(1)} is {_gpu._where(value)}; pass NumPy arrays"
                    ) from None
                raise
            if "incompatible function arguments" not in str(e):
                raise
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, value in bound.arguments.items():
                what, kinds = _EXPECTED.get(name, (None, None))
                if kinds and (not isinstance(value, kinds) or (kinds is _INT[1] and isinstance(value, bool))):
                    raise TypeError(f"{name} must be {what}, got {type(value).__name__}") from None
            raise TypeError(f"{fn.__name__}: invalid argument types") from None

    return wrapper  # type: ignore[return-value]
