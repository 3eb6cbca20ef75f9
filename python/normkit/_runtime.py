"""Runtime controls: ISA selection, thread count, configuration report."""

from __future__ import annotations

import sys
from typing import TextIO

from . import _core, _gpu


def available_isas() -> tuple[str, ...]:
    """ISAs compiled into this build and supported by this CPU, worst to best, e.g.
    ``("scalar", "avx2", "avx512")``."""
    return _core.available_isas()


def get_isa() -> str:
    """Name of the ISA the kernels currently run on."""
    return _core.get_isa()


def set_isa(name: str) -> None:
    """Run the kernels on ISA ``name`` (one of :func:`available_isas`).

    The best available ISA is chosen at import; the environment variable ``NORMKIT_ISA`` picks
    another one at import. Raises ``ValueError`` for a name that is not available here.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    _core.set_isa(name)


def set_num_threads(n: int) -> None:
    """Use ``n`` >= 1 OpenMP threads in the kernels. Results do not depend on ``n``."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads the kernels use (also limited by OpenMP settings such as threadpoolctl)."""
    return _core.get_num_threads()


def has_cuda() -> bool:
    """Whether the CUDA kernels are built (``normkit._cuda``) and a CUDA GPU is usable."""
    return _gpu.has_cuda()


def show_config(file: TextIO | None = None) -> None:
    """Print the version, ISAs, thread count and CUDA availability."""
    out = file if file is not None else sys.stdout
    print(f"normkit {_core.__version__}", file=out)
    print(f"  isa:            {get_isa()} (available: {', '.join(available_isas())})", file=out)
    print(f"  threads:        {get_num_threads()}", file=out)
    if has_cuda():
        names = ", ".join(_gpu._cuda.device_name(d) for d in range(_gpu._cuda.device_count()))
        cuda = f"available: {names}"
    else:
        cuda = "not built" if _gpu._cuda is None else "built, no usable GPU"
    print(f"  cuda:           {cuda}", file=out)
