"""GPU benchmark: normkit's CUDA kernels against PyTorch's eager CUDA kernels, side by side in one
run (needs PyTorch with CUDA; run on the GPU machine).

Each case is timed with CUDA events around one call, after a write of 2x the L2 size (so inputs
come from device memory), repeated; medians are reported. Bandwidth counts the minimum traffic:
each input read once, each output written once. A device-to-device copy is measured in the same
run as the ceiling.

    python bench/cuda/bench_cuda.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import normkit as nk
import torch
import torch.nn.functional as F

os.environ.setdefault("NORMKIT_CUDA_UNVALIDATED", "1")


def timed(fn, reps: int, flush: torch.Tensor) -> list[float]:
    """Microseconds of each of `reps` calls, L2 flushed before each."""
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        flush.add_(1)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) * 1e3)
    return out


def row_cases(quick: bool):
    ns = [1024, 4096] if quick else [1024, 4096, 8192]
    for dt in (torch.bfloat16, torch.float32):
        for n in ns:
            yield dt, 16384, n


def copy_bandwidth(reps: int, flush: torch.Tensor) -> float:
    """TB/s of a 1 GiB device-to-device copy, counting bytes read and written."""
    src = torch.empty(2**28, device=flush.device)
    dst = torch.empty_like(src)
    us = statistics.median(timed(lambda: dst.copy_(src), reps, flush))
    return 2 * src.numel() * 4 / us / 1e6


def row_norm_calls(dt, m: int, n: int, dev) -> dict:
    """op -> (normkit call, PyTorch eager call, minimum bytes moved)."""
    s = torch.finfo(dt).bits // 8
    x = torch.randn((m, n), device=dev, dtype=dt)
    dy = torch.randn_like(x)
    w = torch.randn(n, device=dev, dtype=dt)
    b = torch.randn(n, device=dev, dtype=dt)
    xg = x.clone().requires_grad_(True)
    wg, bg = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    _, mean, rstd = nk.layer_norm_forward(x, w, b)
    _, rrstd = nk.rms_norm_forward(x, w)
    yt = F.layer_norm(xg, (n,), wg, bg)
    yr = F.rms_norm(xg, (n,), wg)
    return {
        "layer_norm fwd": (lambda: nk.layer_norm(x, w, b), lambda: F.layer_norm(x, (n,), w, b), 2 * m * n * s),
        "rms_norm fwd": (lambda: nk.rms_norm(x, w), lambda: F.rms_norm(x, (n,), w), 2 * m * n * s),
        "layer_norm bwd": (
            lambda: nk.layer_norm_backward(dy, x, mean, rstd, w),
            lambda: torch.autograd.grad(yt, (xg, wg, bg), dy, retain_graph=True),
            3 * m * n * s,
        ),
        "rms_norm bwd": (
            lambda: nk.rms_norm_backward(dy, x, rrstd, w),
            lambda: torch.autograd.grad(yr, (xg, wg), dy, retain_graph=True),
            3 * m * n * s,
        ),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    reps = 10 if args.quick else args.reps
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    flush = torch.empty(2 * props.L2_cache_size // 4 + 1, device=dev)
    rows = []

    copy_tbs = copy_bandwidth(reps, flush)
    for dt, m, n in row_cases(args.quick):
        for op, (f_nk, f_pt, nbytes) in row_norm_calls(dt, m, n, dev).items():
            t_nk = statistics.median(timed(f_nk, reps, flush))
            t_pt = statistics.median(timed(f_pt, reps, flush))
            r = {
                "op": op, "dtype": str(dt).replace("torch.", ""), "shape": [m, n], "normkit_us": t_nk, "torch_us": t_pt,
                "normkit_tbs": nbytes / t_nk / 1e6, "torch_tbs": nbytes / t_pt / 1e6, "speedup": t_pt / t_nk,
            }
            rows.append(r)
            print(f"{op:15s} {r['dtype']:9s} {m}x{n:<6d} normkit {t_nk:8.1f} us {r['normkit_tbs']:5.2f} TB/s   "
                  f"torch {t_pt:8.1f} us {r['torch_tbs']:5.2f} TB/s   {r['speedup']:5.2f}x", flush=True)
    print(f"device: {props.name}; copy {copy_tbs:.2f} TB/s (read + write); medians of {reps}; L2 flushed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": props.name, "copy_tbs": copy_tbs, "reps": reps, "torch": torch.__version__,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
