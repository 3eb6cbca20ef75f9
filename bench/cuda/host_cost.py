"""Host cost per call on the GPU: wall time of back-to-back calls at tiny shapes, normkit against
PyTorch eager's same op, side by side (the kernels are microseconds; what is left is the host's
work per call). Medians of repeated loops.

    python bench/cuda/host_cost.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import normkit as nk
import torch
import torch.nn.functional as F


def per_call_us(fn, calls: int = 2000, repeats: int = 7) -> float:
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(samples)


def cases(dev):
    x = torch.randn(8, 64, device=dev)
    w, b = torch.rand(64, device=dev) + 0.5, torch.randn(64, device=dev)
    x4 = torch.randn(64, 256, 14, 14, device=dev)
    w4, b4 = torch.rand(256, device=dev) + 0.5, torch.randn(256, device=dev)
    rm, rv = torch.zeros(256, device=dev), torch.ones(256, device=dev)
    xb = torch.randn(8, 64, device=dev, dtype=torch.bfloat16)
    wb = torch.rand(64, device=dev, dtype=torch.bfloat16)
    _, mean, rstd = nk.layer_norm_forward(x, w, b)
    dy = torch.randn_like(x)
    return {
        "layer_norm fwd f32 8x64": (lambda: nk.layer_norm(x, w, b), lambda: F.layer_norm(x, (64,), w, b)),
        "rms_norm fwd bf16 8x64": (lambda: nk.rms_norm(xb, wb), lambda: F.rms_norm(xb, (64,), wb)),
        "layer_norm bwd f32 8x64": (lambda: nk.layer_norm_backward(dy, x, mean, rstd, w),
                                    lambda: torch.ops.aten.native_layer_norm_backward(
                                        dy, x, (64,), mean.unsqueeze(1), rstd.unsqueeze(1), w, b,
                                        (True, True, True))),
        "batch_norm eval f32 64x256x14x14": (lambda: nk.batch_norm(x4, w4, b4, rm, rv),
                                             lambda: F.batch_norm(x4, rm, rv, w4, b4, training=False)),
        "batch_norm train f32 64x256x14x14": (lambda: nk.batch_norm(x4, w4, b4, training=True),
                                              lambda: F.batch_norm(x4, None, None, w4, b4, training=True)),
        "dropout fwd f32 8x64": (lambda: nk.dropout(x, 0.5, seed=1), lambda: F.dropout(x, 0.5, training=True)),
    }


def parts(dev):
    """Pieces of a call, timed alone (where the host time of the BatchNorm eval case goes)."""
    from normkit import _core, _gpu

    x4 = torch.randn(64, 256, 14, 14, device=dev)
    c = torch.ones(256, device=dev)
    y = torch.empty_like(x4)
    objs = [x4, c, c, c, c]
    names = ["x", "weight", "bias", "running_mean", "running_var"]
    return {
        "torch.empty 64x256x14x14": lambda: torch.empty((64, 256, 14, 14), device=dev),
        "torch no-op (x.view(-1))": lambda: x4.view(-1),
        "_core._device_of(x)": lambda: _core._device_of(x4),
        "_gpu.adapter(5 tensors)": lambda: _gpu.adapter("batch_norm", names, objs, 0),
        "nk.batch_norm eval, out= given": lambda: nk.batch_norm(x4, c, c, c, c, out=y),
        "nk.batch_norm eval": lambda: nk.batch_norm(x4, c, c, c, c),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    rows = []
    for name, (f_nk, f_pt) in cases(dev).items():
        t_nk, t_pt = per_call_us(f_nk), per_call_us(f_pt)
        rows.append({"case": name, "normkit_us": t_nk, "torch_us": t_pt, "ratio": t_nk / t_pt})
        print(f"host  {name:36s} normkit {t_nk:7.1f} us/call   torch {t_pt:7.1f} us/call   "
              f"normkit/torch {t_nk / t_pt:5.2f}", flush=True)
    pieces = {}
    for name, fn in parts(dev).items():
        pieces[name] = per_call_us(fn)
        print(f"part  {name:36s} {pieces[name]:7.2f} us/call", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows,
                       "parts_us": pieces}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
