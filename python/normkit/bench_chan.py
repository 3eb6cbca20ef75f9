"""Benchmark cases of the channel-wise norms (BatchNorm, GroupNorm, InstanceNorm) for
``python -m normkit bench``, in both layouts (NCHW and channels-last)."""

from __future__ import annotations

import math
from time import perf_counter
from typing import Any, Callable

import numpy as np

import normkit as nk

from .bench import Case, F, Runners, _loop, torch

GROUPS = 32
SHAPES: list[tuple[tuple[int, ...], bool]] = [  # NCHW logical shape, in --quick
    ((32, 64, 56, 56), False),
    ((8, 256, 14, 14), True),
    ((256, 1024), True),  # BatchNorm1d
]
OPS = [
    "batch_norm_train",
    "batch_norm_eval",
    "batch_norm_backward",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
]


def _np_stats(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    return mean, 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + 1e-5)


def _np_forward(op: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, ca: int) -> np.ndarray:
    """Vectorized float32 NumPy reference (a speed baseline only)."""
    c = ca % x.ndim
    shape = [1] * x.ndim
    shape[c] = -1
    wb, bb = w.reshape(shape), b.reshape(shape)
    spatial = tuple(d for d in range(1, x.ndim) if d != c)
    if op == "batch_norm_eval":
        return x * wb + bb
    if op == "batch_norm_train":
        mean, rstd = _np_stats(x, (0, *spatial))
    elif op == "instance_norm":
        mean, rstd = _np_stats(x, spatial)
    else:  # group_norm: split the channel axis into (groups, channels per group)
        xs = np.moveaxis(x, c, 1)
        g = xs.reshape(xs.shape[0], GROUPS, -1)
        mean, rstd = _np_stats(g, (2,))
        y = ((g - mean) * rstd).reshape(xs.shape)
        return np.moveaxis(y, 1, c) * wb + bb
    return (x - mean) * rstd * wb + bb


def _case(op: str, nchw: tuple[int, ...], ca: int) -> Case:
    backward = op.endswith("backward")
    fwd_op = op.replace("_backward", "_train" if op.startswith("batch") else "")
    shape = nchw if ca == 1 else (nchw[0], *nchw[2:], nchw[1])
    C = nchw[1]

    def setup() -> Runners:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.uniform(0.5, 1.5, C).astype(np.float32)
        b = rng.uniform(-0.5, 0.5, C).astype(np.float32)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        out = np.empty_like(x)
        calls: dict[str, Callable[[], Any]] = {
            "batch_norm_train": lambda: nk.batch_norm(x, w, b, training=True, channel_axis=ca, out=out),
            "batch_norm_eval": lambda: nk.batch_norm(x, w, b, rm, rv, channel_axis=ca, out=out),
            "group_norm": lambda: nk.group_norm(x, GROUPS, w, b, channel_axis=ca, out=out),
            "instance_norm": lambda: nk.instance_norm(x, w, b, channel_axis=ca, out=out),
        }
        numpy_run = _loop(lambda: _np_forward(fwd_op, x, w, b, ca))
        if backward:
            dy = rng.standard_normal(shape, dtype=np.float32)
            if op.startswith("batch"):
                _, m, r = nk.batch_norm_forward(x, w, b, training=True, channel_axis=ca)
                nk_fn = lambda: nk.batch_norm_backward(dy, x, m, r, w, channel_axis=ca, out=out)
            elif op.startswith("group"):
                _, m, r = nk.group_norm_forward(x, GROUPS, w, b, channel_axis=ca)
                nk_fn = lambda: nk.group_norm_backward(dy, x, m, r, w, num_groups=GROUPS, channel_axis=ca, out=out)
            else:
                _, m, r = nk.instance_norm_forward(x, w, b, channel_axis=ca)
                nk_fn = lambda: nk.instance_norm_backward(dy, x, m, r, w, channel_axis=ca, out=out)
        else:
            nk_fn = calls[op]
        runners = Runners(_loop(nk_fn), numpy_run, None)
        if torch is None:
            return runners

        def to_t(a: np.ndarray) -> Any:  # channels-last memory as a logical NCHW tensor
            t = torch.from_numpy(a)
            return t if ca == 1 or a.ndim == 2 else t.permute(0, a.ndim - 1, *range(1, a.ndim - 1))

        xt, wt, bt = to_t(x), torch.from_numpy(w), torch.from_numpy(b)
        trm, trv = torch.from_numpy(rm), torch.from_numpy(rv)

        def t_fwd(xx: Any, ww: Any, bb: Any) -> Any:
            if fwd_op == "batch_norm_train":
                return F.batch_norm(xx, None, None, ww, bb, training=True)
            if fwd_op == "batch_norm_eval":
                return F.batch_norm(xx, trm, trv, ww, bb, training=False)
            if fwd_op == "group_norm":
                return F.group_norm(xx, GROUPS, ww, bb)
            return F.instance_norm(xx, weight=ww, bias=bb)

        if not backward:

            def t_run() -> Any:
                with torch.no_grad():
                    return t_fwd(xt, wt, bt)

            return runners._replace(torch=_loop(t_run))
        dyt = to_t(dy)

        def t_bwd(n: int) -> float:  # fresh leaves per graph; only the autograd backward is timed
            ys = [t_fwd(xt.detach().requires_grad_(), wt.detach().requires_grad_(), bt.detach().requires_grad_())
                  for _ in range(n)]  # fmt: skip
            t0 = perf_counter()
            for y in ys:
                y.backward(dyt)
            return perf_counter() - t0

        return runners._replace(torch=t_bwd)

    nbytes = math.prod(shape) * 4
    name = f"{op} {'NCHW' if ca == 1 or len(shape) == 2 else 'NHWC'}"
    return Case(name, shape, np.dtype(np.float32), (3 if backward else 2) * nbytes, 1.5 if backward else 1.0, setup)


def chan_cases(quick: bool) -> list[Case]:
    """Channel-norm cases: every op at every shape and layout (BatchNorm only for 2-D)."""
    out = []
    for nchw, in_quick in SHAPES:
        if quick and not in_quick:
            continue
        for ca in (1, -1) if len(nchw) > 2 else (1,):
            out += [_case(op, nchw, ca) for op in OPS if len(nchw) > 2 or op.startswith("batch")]
    return out
