"""Benchmark cases of the regularizers and feature scaling for ``python -m normkit bench``.

Traffic (the op's minimum bytes, as multiples of x's size): l2_penalty reads w (1x);
add_l2_grad reads w and grad and writes grad (3x); l1_prox reads and writes w (2x); max_norm
times ``np.copyto`` of w into a work buffer followed by the in-place constraint on it, for every
implementation, so that each call rescales the same slices (copy 2x + norms 1x + rescale 2x = 5x); standardize reads x
for the statistics, then reads x and writes y (3x).
"""

from __future__ import annotations

import math
from typing import Any

import ml_dtypes
import numpy as np

import normkit as nk

from .bench import Case, Runners, _loop, _to_torch, torch

F32, BF16 = np.dtype(np.float32), np.dtype(ml_dtypes.bfloat16)
LAM = 1e-4

# (op, shape, dtype, in --quick)
SHAPES: list[tuple[str, tuple[int, ...], np.dtype, bool]] = [
    ("l2_penalty", (1 << 22,), F32, True),
    ("l2_penalty", (1 << 22,), BF16, True),
    ("l2_penalty", (1 << 25,), F32, False),
    ("add_l2_grad", (1 << 22,), F32, True),
    ("add_l2_grad", (1 << 25,), F32, False),
    ("l1_prox", (1 << 22,), F32, True),
    ("l1_prox", (1 << 22,), BF16, False),
    ("max_norm", (4096, 1024), F32, True),
    ("max_norm", (512, 256, 3, 3), F32, False),
    ("standardize", (65536, 64), F32, True),
    ("standardize", (1 << 20, 32), F32, False),
]
TRAFFIC = {"l2_penalty": 1, "add_l2_grad": 3, "l1_prox": 2, "max_norm": 5, "standardize": 3}


def _case(op: str, shape: tuple[int, ...], dtype: np.dtype) -> Case:
    def setup() -> Runners:
        rng = np.random.default_rng(0)
        w = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        w32 = w.astype(np.float32)
        t = _to_torch(w) if torch is not None else None
        if op == "l2_penalty":
            runners = Runners(_loop(lambda: nk.l2_penalty(w, LAM)),
                              _loop(lambda: LAM * float(np.dot(w32, w32))) if dtype == F32
                              else _loop(lambda: LAM * float(np.square(w.astype(np.float32)).sum())), None)
            torch_fn = (lambda: LAM * float(torch.sum(t * t))) if t is not None else None
        elif op == "add_l2_grad":
            g = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
            gt = _to_torch(g) if torch is not None else None
            runners = Runners(_loop(lambda: nk.add_l2_grad(g, w, LAM)),
                              _loop(lambda: np.add(g, (2 * LAM) * w, out=g)), None)
            torch_fn = (lambda: gt.add_(t, alpha=2 * LAM)) if t is not None else None
        elif op == "l1_prox":
            p = w.copy()
            pt = _to_torch(p) if torch is not None else None
            thr = 1e-6

            def np_prox() -> None:
                np.multiply(np.sign(p), np.maximum(np.abs(p) - thr, 0), out=p, casting="unsafe")

            runners = Runners(_loop(lambda: nk.l1_prox(p, thr)), _loop(np_prox), None)
            torch_fn = (lambda: torch.nn.functional.softshrink(pt, thr)) if pt is not None else None
        elif op == "max_norm":
            work = np.empty_like(w)
            axes = tuple(range(1, w.ndim))
            mv = float(np.median(np.sqrt(np.square(w32).sum(axis=axes))))

            def nk_run() -> None:
                np.copyto(work, w)
                nk.max_norm(work, mv, axis=0)

            def np_run() -> None:
                np.copyto(work, w)
                norms = np.sqrt(np.square(work).sum(axis=axes, keepdims=True))
                np.multiply(work, np.where(norms > mv, mv / norms, 1.0).astype(work.dtype), out=work)

            runners = Runners(_loop(nk_run), _loop(np_run), None)
            if t is not None:
                wt_work = _to_torch(work)  # shares work's memory: the same np.copyto for every library

                def torch_fn() -> Any:
                    np.copyto(work, w)
                    return wt_work.renorm_(2, 0, mv)
            else:
                torch_fn = None
        else:  # standardize
            def np_std() -> Any:
                m, s = w.mean(axis=0), w.std(axis=0)
                return (w - m) / np.where(s == 0, 1, s), m, s

            runners = Runners(_loop(lambda: nk.standardize(w)), _loop(np_std), None)
            if t is not None:
                def torch_fn() -> Any:
                    s, m = torch.std_mean(t, dim=0, correction=0)
                    return (t - m) / s, m, s
            else:
                torch_fn = None
        if torch_fn is not None:
            def run_torch() -> Any:
                with torch.no_grad():
                    return torch_fn()

            runners = runners._replace(torch=_loop(run_torch))
        return runners

    nbytes = math.prod(shape) * dtype.itemsize
    traffic = TRAFFIC[op]
    return Case(op, shape, dtype, traffic * nbytes, traffic / 2, setup)


def reg_cases(quick: bool) -> list[Case]:
    """Regularizer and feature-scaling cases (``quick`` keeps the small shapes)."""
    return [_case(op, s, dt) for op, s, dt, q in SHAPES if q or not quick]
