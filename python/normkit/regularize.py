"""Regularizers: L1/L2 penalties and their gradients, proximal L1, decoupled weight decay,
max-norm constraints, and early stopping.

Penalties are summed in double precision over fixed chunks combined in a fixed order (blocks of
256 values are added in float32 vector lanes, or float64 for float64 input, and each block's
total is added in float64), so the result is bitwise identical for any thread count. The
in-place ops compute in float32 (float64 for float64 input) and round once to the array's dtype.
Arrays may have any strides; a non-contiguous one is updated through a contiguous copy.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from . import _core
from ._args import clear_arg_errors

Array = np.ndarray


@clear_arg_errors
def l1_penalty(w: Array, lam: float) -> float:
    """L1 penalty ``lam * sum(|w|)``.

    Parameters
    ----------
    w : ndarray, float32/float64/float16/bfloat16, any shape and strides
    lam : float >= 0

    Returns
    -------
    float
        The penalty, summed in float64 (deterministic for any thread count); 0.0 for empty ``w``.
    """
    return _core.l1_penalty(w, lam)


@clear_arg_errors
def l2_penalty(w: Array, lam: float) -> float:
    """L2 penalty ``lam * sum(w**2)`` (no factor 1/2; its gradient is ``2 * lam * w``).

    Parameters
    ----------
    w : ndarray, float32/float64/float16/bfloat16, any shape and strides
    lam : float >= 0

    Returns
    -------
    float
        The penalty, summed in float64 (deterministic for any thread count); 0.0 for empty ``w``.
    """
    return _core.l2_penalty(w, lam)


@clear_arg_errors
def add_l1_grad(grad: Array, w: Array, lam: float) -> Array:
    """Adds the L1 (sub)gradient in place: ``grad += lam * sign(w)``, with ``sign(0) = 0``.

    Parameters
    ----------
    grad : ndarray, writeable; updated in place
    w : ndarray, grad's shape and dtype (may be ``grad`` itself)
    lam : float >= 0

    Returns
    -------
    grad : the same array object, updated

    Notes
    -----
    A NaN in ``w`` gives NaN in ``grad`` at that position. Use :func:`l1_prox` for updates
    that should reach exact zeros: subgradient steps oscillate around zero instead.
    """
    return _core.add_l1_grad(grad, w, lam)


@clear_arg_errors
def add_l2_grad(grad: Array, w: Array, lam: float) -> Array:
    """Adds the L2 gradient in place: ``grad += 2 * lam * w`` (the gradient of :func:`l2_penalty`).

    Parameters
    ----------
    grad : ndarray, writeable; updated in place
    w : ndarray, grad's shape and dtype (may be ``grad`` itself)
    lam : float >= 0

    Returns
    -------
    grad : the same array object, updated
    """
    return _core.add_l2_grad(grad, w, lam)


@clear_arg_errors
def l1_prox(w: Array, threshold: float) -> Array:
    """Proximal operator of L1 (soft thresholding), in place:
    ``w = sign(w) * max(|w| - threshold, 0)``.

    Computed as ``w - clip(w, -threshold, threshold)``: every ``|w| <= threshold`` becomes an
    exact ``+0.0``. A proximal gradient step for ``loss + lam * |w|_1`` with step size ``lr``
    is ``w -= lr * grad_loss`` followed by ``l1_prox(w, lr * lam)``.

    Parameters
    ----------
    w : ndarray, writeable; updated in place
    threshold : float >= 0 (float32 for float32/float16/bfloat16 data)

    Returns
    -------
    w : the same array object, updated
    """
    return _core.l1_prox(w, threshold)


@clear_arg_errors
def weight_decay(w: Array, lr: float, wd: float) -> Array:
    """Decoupled weight decay (AdamW / SGDW style), in place: ``w *= 1 - lr * wd``.

    Parameters
    ----------
    w : ndarray, writeable; updated in place
    lr : float >= 0, learning rate
    wd : float >= 0, weight-decay coefficient

    Returns
    -------
    w : the same array object, updated
    """
    return _core.weight_decay(w, lr, wd)


@clear_arg_errors
def max_norm(w: Array, max_value: float, *, axis: int = 0) -> Array:
    """Max-norm constraint, in place: each slice ``w[..., i, ...]`` (index ``i`` of ``axis``)
    whose L2 norm over all the other axes exceeds ``max_value`` is rescaled to norm
    ``max_value``: ``w_i *= max_value / ||w_i||``. Slices with norm ``<= max_value`` (or NaN) are
    left bitwise untouched.

    This is ``torch.renorm(w, 2, axis, max_value)`` without its ``1e-7`` in the denominator. For
    a PyTorch ``Linear`` weight ``(out, in)``, ``axis=0`` constrains each unit's incoming weights.
    Keras ``MaxNorm(axis=a)`` names the axes the norm is taken *over*: Keras ``MaxNorm(axis=0)``
    on a Dense kernel ``(in, out)`` is ``max_norm(w, m, axis=1)`` here.

    Parameters
    ----------
    w : ndarray, ndim >= 1, writeable; updated in place
    max_value : float >= 0
    axis : int, the axis whose indices select the slices

    Returns
    -------
    w : the same array object, updated

    Notes
    -----
    The squared norms are summed in float64 (deterministic for any thread count); the scale
    factor is rounded to float32 for float32/float16/bfloat16 data, so a rescaled slice's norm is
    ``max_value`` to within float32 (or the dtype's) rounding.
    """
    return _core.max_norm(w, max_value, axis)


class EarlyStopping:
    """Stops training when a monitored metric has stopped improving (Keras-style).

    ``step(metric, state)`` is called once per epoch. A metric improves when it is lower than
    the best so far by more than ``min_delta`` (``mode="min"``), or higher by more than
    ``min_delta`` (``mode="max"``). ``step`` returns True (stop) once ``patience`` consecutive
    steps have not improved (``patience=0``: at the first step without improvement). A NaN
    metric never improves.

    Parameters
    ----------
    patience : int >= 0
    min_delta : float >= 0, minimum change that counts as an improvement
    mode : "min" or "max"
    restore_best : bool; keep a deep copy of ``state`` from the best step in ``best_state``

    Attributes
    ----------
    best : float or None, the best metric so far (None before any finite metric)
    best_step : int or None, the 0-based index of the step that gave ``best``
    best_state : deep copy of the ``state`` passed at ``best_step`` (None unless restore_best)
    wait : int, consecutive steps without improvement
    steps : int, number of ``step`` calls so far
    stopped : bool, whether a ``step`` has returned True
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, mode: str = "min", restore_best: bool = True):
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)):
            raise TypeError(f"patience must be an int >= 0, got {type(patience).__name__}")
        if patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        min_delta = float(min_delta)
        if not (min_delta >= 0.0 and math.isfinite(min_delta)):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta}")
        self.patience, self.min_delta, self.mode, self.restore_best = int(patience), min_delta, mode, bool(restore_best)
        self.reset()

    def reset(self) -> None:
        """Forgets every step (a new training run)."""
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: Any = None
        self.wait = 0
        self.steps = 0
        self.stopped = False

    def _improves(self, metric: float) -> bool:
        if math.isnan(metric):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return metric < self.best - self.min_delta
        return metric > self.best + self.min_delta

    def step(self, metric: float, state: Any = None) -> bool:
        """Records one epoch's metric (and the state to restore); returns True to stop."""
        try:
            value = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"metric must be a real number, got {type(metric).__name__}") from None
        if self._improves(value):
            self.best, self.best_step, self.wait = value, self.steps, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(state)
        else:
            self.wait += 1
        self.steps += 1
        if self.wait > 0 and self.wait >= self.patience:
            self.stopped = True
        return self.wait > 0 and self.wait >= self.patience

    def __repr__(self) -> str:
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, mode={self.mode!r}, "
                f"restore_best={self.restore_best})")
