"""Type stubs for the native module normkit._core (see normkit.norm for the documented API)."""


import numpy as np

__version__: str

def available_isas() -> tuple[str, ...]: ...
def get_isa() -> str: ...
def set_isa(name: str) -> None: ...
def isa_env_error() -> str: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _set_bfloat16_dtype(dtype: np.dtype) -> None: ...
def row_norm_forward(
    rms: bool,
    x: np.ndarray,
    residual: np.ndarray | None,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    axis: int,
    eps: float,
    out: np.ndarray | None,
    want_stats: bool,
) -> np.ndarray | tuple[np.ndarray, ...]: ...
def row_norm_backward(
    rms: bool,
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray | None,
    rstd: np.ndarray,
    weight: np.ndarray | None,
    axis: int,
    out: np.ndarray | None,
) -> tuple[np.ndarray, ...]: ...
