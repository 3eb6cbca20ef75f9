"""Benchmark cases of dropout and local response normalization for ``python -m normkit bench``.

Issue targets (read them off the table's columns): dropout forward at 16384x4096 float32 with
``out=`` at least 80% of the same-run copy bandwidth (%copy); LRN forward and backward at
(32, 64, 56, 56) at least 10x faster than PyTorch (torch x).
"""

from __future__ import annotations

import math
from time import perf_counter
from typing import Any

import numpy as np

import normkit as nk

from .bench import Case, F, Runners, _loop, torch

F32 = np.dtype(np.float32)


def _dropout_case(shape: tuple[int, ...], backward: bool) -> Case:
    p = 0.5

    def setup() -> Runners:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        out = np.empty_like(x)
        if backward:  # mask regenerated from the seed: no mask memory
            nk_run = _loop(lambda: nk.dropout_backward(x, p=p, seed=1))
        else:
            nk_run = _loop(lambda: nk.dropout(x, p, seed=1, out=out))
        np_run = _loop(lambda: np.multiply(x, (rng.random(shape, dtype=np.float32) >= p) / np.float32(1 - p), out=out))
        if torch is None:
            return Runners(nk_run, np_run, None)
        xt = torch.from_numpy(x)
        return Runners(nk_run, np_run, _loop(lambda: F.dropout(xt, p, training=True)))

    name = "dropout_backward (seed)" if backward else "dropout"
    return Case(name, shape, F32, 2 * math.prod(shape) * 4, 1.0, setup)


def _lrn_case(nchw: tuple[int, ...], ca: int, backward: bool) -> Case:
    shape = nchw if ca == 1 else (nchw[0], *nchw[2:], nchw[1])
    size = 5

    def setup() -> Runners:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        out = np.empty_like(x)
        y, scale = nk.local_response_norm_forward(x, size)
        dy = rng.standard_normal(shape, dtype=np.float32)

        def np_fwd() -> np.ndarray:  # vectorized NumPy: window sum of squares by shifted adds
            c = ca % x.ndim
            sq = np.moveaxis(x * x, c, 0)
            pad = np.zeros((sq.shape[0] + size - 1, *sq.shape[1:]), np.float32)
            pad[size // 2 : size // 2 + sq.shape[0]] = sq
            win = sum(pad[d : d + sq.shape[0]] for d in range(size))
            return x * np.moveaxis(1.0 + 1e-4 / size * win, 0, c) ** -0.75

        if backward:
            nk_run = _loop(lambda: nk.local_response_norm_backward(dy, x, y, scale, size, channel_axis=ca))
        else:
            nk_run = _loop(lambda: nk.local_response_norm(x, size, channel_axis=ca, out=out))
        runners = Runners(nk_run, _loop(np_fwd), None)
        if torch is None:
            return runners
        xt = torch.from_numpy(x)
        if ca == -1:
            xt = xt.permute(0, x.ndim - 1, *range(1, x.ndim - 1))
        if not backward:
            return runners._replace(torch=_loop(lambda: F.local_response_norm(xt, size)))
        dyt = torch.from_numpy(dy)
        if ca == -1:
            dyt = dyt.permute(0, x.ndim - 1, *range(1, x.ndim - 1))

        def t_bwd(n: int) -> float:
            ys = [F.local_response_norm(xt.detach().requires_grad_(), size) for _ in range(n)]
            t0 = perf_counter()
            for yy in ys:
                yy.backward(dyt)
            return perf_counter() - t0

        return runners._replace(torch=t_bwd)

    name = f"local_response_norm{'_backward' if backward else ''} {'NCHW' if ca == 1 else 'NHWC'}"
    nbytes = math.prod(shape) * 4
    return Case(name, shape, F32, (4 if backward else 2) * nbytes, 2.0 if backward else 1.0, setup)


def drop_cases(quick: bool) -> list[Case]:
    """Dropout and LRN cases (``quick`` keeps the smaller shapes)."""
    out: list[Any] = [_dropout_case((4096, 1024), False), _dropout_case((4096, 1024), True)]
    if not quick:
        out += [_dropout_case((16384, 4096), False), _dropout_case((16384, 4096), True)]
    lrn_shape = (8, 64, 28, 28) if quick else (32, 64, 56, 56)
    out += [_lrn_case(lrn_shape, ca, bwd) for ca in (1, -1) for bwd in (False, True)]
    return out
