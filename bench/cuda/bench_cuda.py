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
import statistics
import sys

import normkit as nk
import torch
import torch.nn.functional as F


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


# The CPU benchmarks' shapes with 8 times the batch (NCHW logical shapes).
CHAN_SHAPES = [(256, 64, 56, 56), (64, 256, 14, 14), (2048, 1024)]
GROUPS = 32


def chan_calls(shape, channels_last: bool, dev) -> dict:
    """BatchNorm / GroupNorm / InstanceNorm in one layout: op -> (normkit, PyTorch, bytes)."""
    C = shape[1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, device=dev).contiguous(memory_format=fmt)
    dy = torch.randn(shape, device=dev).contiguous(memory_format=fmt)
    xn = x.permute(0, 2, 3, 1) if channels_last else x  # normkit's view: channels last is the last axis
    dyn = dy.permute(0, 2, 3, 1) if channels_last else dy
    ca = -1 if channels_last else 1
    w, b = torch.randn(C, device=dev), torch.randn(C, device=dev)
    rm, rv = torch.zeros(C, device=dev), torch.ones(C, device=dev)
    nb = x.numel() * 4
    _, sm, sr = nk.batch_norm_forward(xn, w, b, training=True, channel_axis=ca)
    xg = x.clone().requires_grad_(True)
    ybn = F.batch_norm(xg, rm.clone(), rv.clone(), w, b, training=True)
    out = {
        "batch_norm train": (lambda: nk.batch_norm(xn, w, b, rm, rv, training=True, channel_axis=ca),
                             lambda: F.batch_norm(x, rm, rv, w, b, training=True), 2 * nb),
        "batch_norm eval": (lambda: nk.batch_norm(xn, w, b, rm, rv, channel_axis=ca),
                            lambda: F.batch_norm(x, rm, rv, w, b, training=False), 2 * nb),
        "batch_norm bwd": (lambda: nk.batch_norm_backward(dyn, xn, sm, sr, w, channel_axis=ca),
                           lambda: torch.autograd.grad(ybn, (xg,), dy, retain_graph=True), 3 * nb),
    }
    if len(shape) == 4:
        _, gm, gr = nk.group_norm_forward(xn, GROUPS, w, b, channel_axis=ca)
        _, im, ir = nk.instance_norm_forward(xn, w, b, channel_axis=ca)
        ygn = F.group_norm(xg, GROUPS, w, b)
        yin = F.instance_norm(xg, weight=w, bias=b)
        out |= {
            "group_norm fwd": (lambda: nk.group_norm(xn, GROUPS, w, b, channel_axis=ca),
                               lambda: F.group_norm(x, GROUPS, w, b), 2 * nb),
            "group_norm bwd": (lambda: nk.group_norm_backward(dyn, xn, gm, gr, w, num_groups=GROUPS, channel_axis=ca),
                               lambda: torch.autograd.grad(ygn, (xg,), dy, retain_graph=True), 3 * nb),
            "instance_norm fwd": (lambda: nk.instance_norm(xn, w, b, channel_axis=ca),
                                  lambda: F.instance_norm(x, weight=w, bias=b), 2 * nb),
            "instance_norm bwd": (lambda: nk.instance_norm_backward(dyn, xn, im, ir, w, channel_axis=ca),
                                  lambda: torch.autograd.grad(yin, (xg,), dy, retain_graph=True), 3 * nb),
            "lrn fwd": (lambda: nk.local_response_norm(xn, 5, channel_axis=ca),
                        lambda: F.local_response_norm(x, 5), 2 * nb),
        }
    return out


def dropout_calls(shape, dev) -> dict:
    x = torch.randn(shape, device=dev)
    dy = torch.randn_like(x)
    _, mask = torch.ops.aten.native_dropout(x, 0.5, True)
    nb = x.numel() * 4
    return {
        "dropout fwd": (lambda: nk.dropout(x, 0.5, seed=1), lambda: F.dropout(x, 0.5, training=True), 2 * nb),
        "dropout bwd (seed)": (lambda: nk.dropout_backward(dy, p=0.5, seed=1),
                               lambda: torch.ops.aten.native_dropout_backward(dy, mask, 2.0), 2 * nb),
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
    groups = [(f"{m}x{n}", str(dt).replace("torch.", ""), lambda dt=dt, m=m, n=n: row_norm_calls(dt, m, n, dev))
              for dt, m, n in row_cases(args.quick)]
    if not args.quick:
        for shape in CHAN_SHAPES:
            for cl in ([False, True] if len(shape) == 4 else [False]):
                name = "x".join(map(str, shape)) + (" NHWC" if cl else (" NCHW" if len(shape) == 4 else ""))
                groups.append((name, "float32", lambda shape=shape, cl=cl: chan_calls(shape, cl, dev)))
        groups.append(("131072x4096", "float32", lambda: dropout_calls((131072, 4096), dev)))
    for name, dtype, make in groups:
        calls = make()
        for op, (f_nk, f_pt, nbytes) in calls.items():
            t_nk = statistics.median(timed(f_nk, reps, flush))
            t_pt = statistics.median(timed(f_pt, reps, flush))
            r = {
                "op": op, "dtype": dtype, "shape": name, "normkit_us": t_nk, "torch_us": t_pt,
                "normkit_tbs": nbytes / t_nk / 1e6, "torch_tbs": nbytes / t_pt / 1e6, "speedup": t_pt / t_nk,
            }
            rows.append(r)
            print(f"{op:18s} {dtype:9s} {name:22s} normkit {t_nk:9.1f} us {r['normkit_tbs']:5.2f} TB/s   "
                  f"torch {t_pt:9.1f} us {r['torch_tbs']:5.2f} TB/s   {r['speedup']:5.2f}x", flush=True)
        del calls
        torch.cuda.empty_cache()
    print(f"device: {props.name}; copy {copy_tbs:.2f} TB/s (read + write); medians of {reps}; L2 flushed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": props.name, "copy_tbs": copy_tbs, "reps": reps, "torch": torch.__version__,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
