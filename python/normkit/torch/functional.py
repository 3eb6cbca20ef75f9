"""``torch.nn.functional``-compatible normalizations and dropout on normkit's kernels.

Same signatures and defaults as ``torch.nn.functional``; differentiable (``register_autograd``)
and traceable by ``torch.compile`` (custom ops with fake implementations, see ``_ops``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import _ops

__all__ = [
    "add_layer_norm",
    "add_rms_norm",
    "batch_norm",
    "dropout",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "local_response_norm",
    "rms_norm",
]


def _tensor(name: str, t, optional: bool = False) -> None:
    if t is None and optional:
        return
    if not isinstance(t, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor{' or None' if optional else ''}, got {type(t).__name__}"
        )


def _row_axis(fn: str, input: Tensor, normalized_shape, *params) -> int:
    if not isinstance(input, Tensor):
        _tensor("input", input)
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    n, d = len(ns), input.dim()
    if n == 0 or n > d or input.shape[d - n :] != ns:
        raise ValueError(
            f"{fn}: normalized_shape {list(ns)} does not match the trailing axes of input of shape {list(input.shape)}"
        )
    for name, p in params:
        if p is not None:
            _tensor(name, p)
            if p.shape != ns:
                raise ValueError(
                    f"{fn}: {name} has shape {list(p.shape)}, expected normalized_shape {list(ns)}"
                )
    return d - n


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """``torch.nn.functional.layer_norm`` on normkit's kernels."""
    axis = _row_axis("layer_norm", input, normalized_shape, ("weight", weight), ("bias", bias))
    return _ops.layer_norm(input, weight, bias, axis, float(eps))[0]


def rms_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    """``torch.nn.functional.rms_norm`` on normkit's kernels (``eps=None``: ``torch.finfo(input.dtype).eps``)."""
    axis = _row_axis("rms_norm", input, normalized_shape, ("weight", weight))
    if eps is None:
        eps = torch.finfo(input.dtype).eps
    return _ops.rms_norm(input, weight, axis, float(eps))[0]


def add_layer_norm(
    input: Tensor,
    residual: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor]:
    """Fused residual add and LayerNorm: ``h = input + residual``; returns ``(layer_norm(h), h)``,
    differentiable in both inputs (and through ``h``, the next block's residual)."""
    axis = _row_axis("add_layer_norm", input, normalized_shape, ("weight", weight), ("bias", bias))
    _check_residual("add_layer_norm", input, residual)
    y, h, _, _ = _ops.add_layer_norm(input, residual, weight, bias, axis, float(eps))
    return y, h


def add_rms_norm(
    input: Tensor,
    residual: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    eps: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Fused residual add and RMSNorm: ``h = input + residual``; returns ``(rms_norm(h), h)``."""
    axis = _row_axis("add_rms_norm", input, normalized_shape, ("weight", weight))
    _check_residual("add_rms_norm", input, residual)
    if eps is None:
        eps = torch.finfo(input.dtype).eps
    y, h, _ = _ops.add_rms_norm(input, residual, weight, axis, float(eps))
    return y, h


def _check_residual(fn: str, input: Tensor, residual: Tensor) -> None:
    _tensor("residual", residual)
    if residual.shape != input.shape:
        raise ValueError(f"{fn}: residual has shape {list(residual.shape)}, input {list(input.shape)}")


def _chan_params(fn: str, input: Tensor, min_dim: int, **params) -> None:
    _tensor("input", input)
    if input.dim() < min_dim:
        raise ValueError(
            f"{fn}: expected an input of {min_dim} or more dimensions (N, C, ...), got shape {list(input.shape)}"
        )
    c = input.shape[1]
    for name, p in params.items():
        _tensor(name, p, optional=True)
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(
                f"{fn}: {name} has shape {list(p.shape)}, expected ({c},) for input of shape {list(input.shape)}"
            )


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """``torch.nn.functional.batch_norm`` on normkit's kernels; in training, the running statistics
    (when given) are updated in place with the unbiased batch variance, as PyTorch does."""
    _chan_params(
        "batch_norm", input, 2, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias
    )
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError(
            "batch_norm: running_mean and running_var must be given in evaluation mode (training=False)"
        )
    args = (input, weight, bias, running_mean, running_var, bool(training), float(momentum), float(eps))
    y, _, _, rm, rv = _ops.batch_norm(*args)
    if training and running_mean is not None:
        _copy_running(running_mean, running_var, rm, rv)
    return y


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """``torch.nn.functional.group_norm`` on normkit's kernels."""
    _chan_params("group_norm", input, 2, weight=weight, bias=bias)
    if isinstance(num_groups, bool) or not isinstance(num_groups, int):
        raise TypeError(f"group_norm: num_groups must be an int, got {type(num_groups).__name__}")
    if num_groups <= 0 or input.shape[1] % num_groups:
        raise ValueError(
            f"group_norm: num_groups={num_groups} must be positive and divide the {input.shape[1]} channels"
        )
    return _ops.group_norm(input, num_groups, weight, bias, float(eps))[0]


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """``torch.nn.functional.instance_norm`` on normkit's kernels."""
    _chan_params(
        "instance_norm",
        input,
        3,
        running_mean=running_mean,
        running_var=running_var,
        weight=weight,
        bias=bias,
    )
    if (running_mean is None) != (running_var is None):
        raise ValueError("instance_norm: give both running_mean and running_var, or neither")
    if not use_input_stats and running_mean is None:
        raise ValueError(
            "instance_norm: running_mean and running_var must be given when use_input_stats=False"
        )
    args = (
        input,
        weight,
        bias,
        running_mean,
        running_var,
        bool(use_input_stats),
        float(momentum),
        float(eps),
    )
    y, _, _, rm, rv = _ops.instance_norm(*args)
    if use_input_stats and running_mean is not None:
        _copy_running(running_mean, running_var, rm, rv)
    return y


def _copy_running(running_mean: Tensor, running_var: Tensor, rm: Tensor, rv: Tensor) -> None:
    with torch.no_grad():
        running_mean.copy_(rm)
        running_var.copy_(rv)


def local_response_norm(
    input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """``torch.nn.functional.local_response_norm`` on normkit's kernels (across channels, dim 1)."""
    _chan_params("local_response_norm", input, 3)
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"local_response_norm: size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"local_response_norm: size must be >= 1, got {size}")
    return _ops.local_response_norm(input, size, float(alpha), float(beta), float(k))[0]


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """``torch.nn.functional.dropout`` on normkit's counter-based kernel: the mask is regenerated
    from a seed in the backward (no mask memory). The seed comes from torch's generator, so
    ``torch.manual_seed`` makes the masks reproducible."""
    _tensor("input", input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training:
        return input
    if p == 1.0:
        y = input * torch.zeros((), dtype=input.dtype, device=input.device)
    else:
        y = _ops.dropout(input, float(p), _ops.new_seed())
    if inplace:
        return input.copy_(y)
    return y
