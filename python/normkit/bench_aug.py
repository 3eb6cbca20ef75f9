"""Benchmark cases of the augmentations (``normkit.augment``) for ``python -m normkit bench``.

Traffic (the op's minimum bytes): random_crop reads the kept window and writes it (2x the
output); random_flip, gaussian_noise and pca_lighting read x and write y (2x). The NumPy
baselines are vectorized: crop by a sliding-window gather, flip by ``np.where`` on a reversed
view, noise with ``Generator.standard_normal`` (ziggurat) in float32, lighting by broadcasting.
PyTorch (when installed): flip with ``torch.where``, noise with ``randn_like``, lighting by broadcasting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import normkit as nk

from .bench import Case, Runners, _loop, torch

F32 = np.dtype(np.float32)
aug = nk.augment

# (op, NCHW shape, channel_axis, in --quick)
SHAPES: list[tuple[str, tuple[int, ...], int, bool]] = [
    ("random_crop", (64, 3, 64, 64), 1, True),
    ("random_crop", (256, 3, 224, 224), 1, False),
    ("random_crop", (256, 3, 224, 224), -1, False),
    ("random_flip", (64, 3, 64, 64), 1, True),
    ("random_flip", (256, 3, 224, 224), 1, False),
    ("random_flip", (256, 3, 224, 224), -1, False),
    ("gaussian_noise", (64, 3, 64, 64), 1, True),
    ("gaussian_noise", (256, 3, 224, 224), 1, False),
    ("pca_lighting", (64, 3, 64, 64), 1, True),
    ("pca_lighting", (256, 3, 224, 224), 1, False),
    ("pca_lighting", (256, 3, 224, 224), -1, False),
]
PAD = 4


def _crop_size(nchw: tuple[int, ...]) -> tuple[int, int]:
    return nchw[2] * 7 // 8, nchw[3] * 7 // 8


def _case(op: str, nchw: tuple[int, ...], ca: int) -> Case:
    shape = nchw if ca == 1 else (nchw[0], nchw[2], nchw[3], nchw[1])
    n = nchw[0]
    h, w = _crop_size(nchw)

    def setup() -> Runners:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        xc = x if ca == 1 else x.transpose(0, 3, 1, 2)  # NCHW view for the NumPy baselines
        xt = torch.from_numpy(x) if torch is not None else None
        torch_fn: Any = None
        if op == "random_crop":
            def np_run() -> np.ndarray:
                pad = np.pad(xc, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
                oy = rng.integers(0, nchw[2] + 2 * PAD - h + 1, n)
                ox = rng.integers(0, nchw[3] + 2 * PAD - w + 1, n)
                win = sliding_window_view(pad, (h, w), axis=(2, 3))  # (N, C, oy, ox, h, w)
                return np.ascontiguousarray(win[np.arange(n), :, oy, ox])

            nk_run = _loop(lambda: aug.random_crop(x, (h, w), padding=PAD, seed=1, channel_axis=ca))
        elif op == "random_flip":
            def np_run() -> np.ndarray:
                flags = rng.random(n) < 0.5
                return np.where(flags[:, None, None, None], xc[..., ::-1], xc)

            nk_run = _loop(lambda: aug.random_flip(x, seed=1, channel_axis=ca))
            if xt is not None:
                wdim = 3 if ca == 1 else 2

                def torch_fn() -> Any:
                    flags = torch.rand(n) < 0.5
                    return torch.where(flags[:, None, None, None], xt.flip(wdim), xt)
        elif op == "gaussian_noise":
            def np_run() -> np.ndarray:
                return x + np.float32(0.1) * rng.standard_normal(shape, dtype=np.float32)

            nk_run = _loop(lambda: aug.gaussian_noise(x, 0.1, seed=1))
            if xt is not None:
                def torch_fn() -> Any:
                    return xt + 0.1 * torch.randn_like(xt)
        else:
            ev, evec = aug.IMAGENET_EIGVALS, aug.IMAGENET_EIGVECS

            def np_run() -> np.ndarray:
                shift = ((rng.normal(0.0, 0.1, (n, 3)) * ev) @ evec.T).astype(np.float32)
                return x + (shift[:, :, None, None] if ca == 1 else shift[:, None, None, :])

            nk_run = _loop(lambda: aug.pca_lighting(x, ev, evec, std=0.1, seed=1, channel_axis=ca))
            if xt is not None:
                evt, evect = torch.from_numpy(ev).float(), torch.from_numpy(evec).float()

                def torch_fn() -> Any:
                    shift = (torch.randn(n, 3) * 0.1 * evt) @ evect.T
                    return xt + (shift[:, :, None, None] if ca == 1 else shift[:, None, None, :])
        runners = Runners(nk_run, _loop(np_run), None)
        if torch_fn is not None:
            def run_torch() -> Any:
                with torch.no_grad():
                    return torch_fn()

            runners = runners._replace(torch=_loop(run_torch))
        return runners

    x_bytes = math.prod(shape) * 4
    out_bytes = x_bytes * h * w // (nchw[2] * nchw[3]) if op == "random_crop" else x_bytes
    name = f"{op} {'NCHW' if ca == 1 else 'NHWC'}"
    return Case(name, shape, F32, 2 * out_bytes, out_bytes / x_bytes, setup)


def aug_cases(quick: bool) -> list[Case]:
    """Augmentation cases (``quick`` keeps the small shapes)."""
    return [_case(op, s, ca) for op, s, ca, q in SHAPES if q or not quick]
