"""``python -m normkit bench``: time normkit against NumPy and PyTorch in one process.

Every case is a memory-bound op on one shape and dtype. For each case the bench reports the
median per-call time, the GB/s of the op's minimum traffic (each input read once, each output
written once), that as a fraction of a copy bandwidth (``np.copyto``) measured in the same run on
the same number of bytes, and the speed-ups over a vectorized NumPy float32 reference and over
PyTorch (when installed). Cases live in a registry: a new op appends :class:`Case` entries.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Callable, NamedTuple

import ml_dtypes
import numpy as np

import normkit as nk

from ._progress import Progress

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
    F = None

Runner = Callable[[int], float]  # runs the op n times and returns the elapsed seconds


class Runners(NamedTuple):
    """The timed implementations of one case, built on freshly allocated data."""

    normkit: Runner
    numpy: Runner
    torch: Runner | None


@dataclass
class Case:
    """One benchmark: an op on one shape and dtype.

    ``setup`` allocates the inputs and returns the runners; ``traffic`` is the op's minimum
    number of bytes moved; ``passes`` is how many copies of x that traffic is worth (the
    copy-bound target is ``1.25 * passes * copy_time``).
    """

    op: str
    shape: tuple[int, ...]
    dtype: np.dtype
    traffic: int
    passes: float
    setup: Callable[[], Runners]
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def x_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _loop(fn: Callable[[], object]) -> Runner:
    def run(n: int) -> float:
        t0 = perf_counter()
        for _ in range(n):
            fn()
        return perf_counter() - t0

    return run


def _to_torch(a: np.ndarray) -> Any:
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


# ---------------------------------------------------------------- row norms (LayerNorm, RMSNorm)


def _np_row_norm_fwd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float) -> np.ndarray:
    x32 = x.astype(np.float32, copy=False)
    if b is None:
        rstd = 1.0 / np.sqrt(np.mean(x32 * x32, axis=-1, keepdims=True) + eps)
        y = x32 * rstd * w
    else:
        xc = x32 - x32.mean(axis=-1, keepdims=True)
        rstd = 1.0 / np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + eps)
        y = xc * rstd * w + b
    return y.astype(x.dtype, copy=False)


def _np_row_norm_bwd(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray | None, rstd: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, ...]:
    x32, dy32, r = x.astype(np.float32, copy=False), dy.astype(np.float32, copy=False), rstd[:, None]
    xhat = (x32 - mean[:, None]) * r if mean is not None else x32 * r
    g = dy32 * w
    c = np.mean(g * xhat, axis=-1, keepdims=True)
    inner = g - xhat * c if mean is None else g - g.mean(axis=-1, keepdims=True) - xhat * c
    dx = (r * inner).astype(x.dtype, copy=False)
    dw = (dy32 * xhat).sum(axis=0)
    return (dx, dw) if mean is None else (dx, dw, dy32.sum(axis=0))


def _row_norm_case(op: str, shape: tuple[int, int], dtype: np.dtype) -> Case:
    rms, backward = op.startswith("rms"), op.endswith("backward")
    M, N = shape
    eps = 1e-6 if rms else 1e-5

    def setup() -> Runners:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        w = rng.uniform(0.5, 1.5, N).astype(np.float32)
        b = None if rms else rng.uniform(-0.5, 0.5, N).astype(np.float32)
        if not backward:
            y = np.empty_like(x)
            if rms:
                nk_fn = lambda: nk.rms_norm(x, w, eps=eps, out=y)
            else:
                nk_fn = lambda: nk.layer_norm(x, w, b, eps=eps, out=y)
            runners = Runners(_loop(nk_fn), _loop(lambda: _np_row_norm_fwd(x, w, b, eps)), None)
            if torch is not None:  # weights in x's dtype: torch's fused path for bf16 rms_norm
                xt, wt = _to_torch(x), _to_torch(w.astype(dtype))
                bt = None if b is None else _to_torch(b.astype(dtype))

                def t_fwd() -> Any:
                    with torch.no_grad():
                        return F.rms_norm(xt, (N,), wt, eps) if rms else F.layer_norm(xt, (N,), wt, bt, eps)

                runners = runners._replace(torch=_loop(t_fwd))
            return runners
        dy = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        dx = np.empty_like(x)
        if rms:
            _, rstd = nk.rms_norm_forward(x, w, eps=eps)
            mean = None
            nk_fn = lambda: nk.rms_norm_backward(dy, x, rstd, w, out=dx)
        else:
            _, mean, rstd = nk.layer_norm_forward(x, w, b, eps=eps)
            nk_fn = lambda: nk.layer_norm_backward(dy, x, mean, rstd, w, out=dx)
        runners = Runners(_loop(nk_fn), _loop(lambda: _np_row_norm_bwd(dy, x, mean, rstd, w)), None)
        if torch is not None:
            xt, dyt, wt = _to_torch(x), _to_torch(dy), _to_torch(w.astype(dtype))
            bt = None if b is None else _to_torch(b.astype(dtype))

            def graph() -> Any:  # fresh leaves, so every backward writes new gradients
                xl, wl = xt.detach().requires_grad_(), wt.detach().requires_grad_()
                if rms:
                    return F.rms_norm(xl, (N,), wl, eps)
                return F.layer_norm(xl, (N,), wl, bt.detach().requires_grad_(), eps)

            def t_bwd(n: int) -> float:  # only the autograd backward is timed
                ys = [graph() for _ in range(n)]
                t0 = perf_counter()
                for y in ys:
                    y.backward(dyt)
                return perf_counter() - t0

            runners = runners._replace(torch=t_bwd)
        return runners

    elems = M * N * dtype.itemsize
    return Case(op, shape, dtype, (3 if backward else 2) * elems, 1.5 if backward else 1.0, setup)


F32, BF16 = np.dtype(np.float32), np.dtype(ml_dtypes.bfloat16)
ROW_SHAPES: list[tuple[tuple[int, int], np.dtype, bool]] = [  # (shape, dtype, in --quick)
    ((8, 64), F32, True),
    ((4096, 1024), F32, True),
    ((4096, 1024), BF16, True),
    ((16384, 4096), F32, False),
    ((2048, 16384), F32, False),
]


def cases(quick: bool) -> list[Case]:
    """The registry: every benchmark case, in run order (``quick`` keeps the small shapes)."""
    from .bench_aug import aug_cases
    from .bench_chan import chan_cases
    from .bench_drop import drop_cases
    from .bench_reg import reg_cases

    ops = ["layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward"]
    rows = [_row_norm_case(op, s, dt) for s, dt, q in ROW_SHAPES if q or not quick for op in ops]
    return rows + chan_cases(quick) + drop_cases(quick) + reg_cases(quick) + aug_cases(quick)


# ---------------------------------------------------------------- timing


@dataclass
class Plan:
    """How long to time each implementation of a case."""

    budget_s: float  # timed seconds per implementation (after calibration)
    sample_s: float  # a sample is a batch of calls lasting about this long
    min_samples: int
    max_samples: int


def _calibrate(run: Runner, sample_s: float) -> tuple[int, float]:
    run(1)  # warm-up: first touch of outputs, lazy initialization
    per_call = max(run(1), 1e-9)
    batch = max(1, int(sample_s / per_call))
    if batch > 1:
        per_call = max(run(batch) / batch, 1e-9)
        batch = max(1, int(sample_s / per_call))
    return batch, per_call


def measure(
    runners: dict[str, Runner],
    plan: Plan,
    min_samples: dict[str, int] | None = None,
    on_round: Callable[[float], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time several implementations of one case, their samples interleaved round by round.

    Each runner is warmed up and given a batch size (calls per sample, so that a sample lasts
    about ``plan.sample_s``); then every round takes one sample of each runner, so that a burst
    of background load hits all of them alike.

    Parameters
    ----------
    runners : dict of name -> Runner
    plan : Plan
    min_samples : dict of name -> int, optional; overrides ``plan.min_samples`` per runner
    on_round : callable taking the fraction done, optional (progress reporting)

    Returns
    -------
    dict of name -> ``{"median": s, "batch": calls per sample, "samples": [s per call, ...]}``
    """
    cal = {k: _calibrate(r, plan.sample_s) for k, r in runners.items()}
    count = {}
    for k, (batch, per_call) in cal.items():
        lo = (min_samples or {}).get(k, plan.min_samples)
        count[k] = min(plan.max_samples, max(lo, int(plan.budget_s / (per_call * batch))))
    samples: dict[str, list[float]] = {k: [] for k in runners}
    rounds = max(count.values())
    for i in range(rounds):
        for k, run in runners.items():
            if i < count[k]:
                samples[k].append(run(cal[k][0]) / cal[k][0])
        if on_round is not None:
            on_round((i + 1) / rounds)
    return {k: {"median": statistics.median(v), "batch": cal[k][0], "samples": v} for k, v in samples.items()}


def _copy_runner(nbytes: int) -> Runner:
    src = np.full(max(1, nbytes // 4), 1.0, dtype=np.float32)
    dst = np.zeros_like(src)
    return _loop(lambda: np.copyto(dst, src))


def _cpu_clock() -> tuple[float, float, float] | None:
    """(busy seconds of all CPUs, CPU seconds of this process, wall seconds), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    t = os.times()
    busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait; steal counts
    return busy, t.user + t.system, perf_counter()


def _background_cores(t0: tuple[float, float, float] | None) -> float | None:
    t1 = _cpu_clock()
    if t0 is None or t1 is None or t1[2] <= t0[2]:
        return None
    return max(0.0, ((t1[0] - t0[0]) - (t1[1] - t0[1])) / (t1[2] - t0[2]))


# ---------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, library versions and the normkit runtime configuration."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "nproc": affinity,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "normkit": nk.__version__,
        "isa": nk.get_isa(),
        "threads": nk.get_num_threads(),
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def _fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def _finish(case: Case) -> None:
    r = case.results
    t, t_torch = r["normkit"]["median"], r["torch"]["median"] if r.get("torch") else None
    r["copy"]["gbps"] = 2 * case.x_bytes / r["copy"]["median"] / 1e9
    r["gbps"] = case.traffic / t / 1e9
    r["frac_copy"] = r["gbps"] / r["copy"]["gbps"]
    r["numpy_speedup"] = r["numpy"]["median"] / t
    r["torch_speedup"] = t_torch / t if t_torch else None
    r["target_s"] = 1.25 * r["copy"]["median"] * case.passes
    if t_torch is None:  # only the copy-bound half of the rule can be judged
        ok = t <= r["target_s"]
        why = "copy-bound" if ok else "needs torch to judge"
    elif t > t_torch:
        ok, why = False, "slower than torch"
    else:
        ok = t <= t_torch / 2 or t <= r["target_s"]
        why = ("2x torch" if t <= t_torch / 2 else "copy-bound") if ok else "slow"
    verdict = "PASS" if ok else ("n/a" if t_torch is None else "FAIL")
    r["verdict"], r["verdict_reason"] = verdict, why


_HEAD = ("op", "shape", "dtype", "normkit", "GB/s", "%copy", "target", "numpy x", "torch x", "bg", "verdict")


def _table_row(c: Case) -> list[str]:
    r, bg = c.results, c.results["background_cores"]
    return [
        c.op, "x".join(map(str, c.shape)), str(c.dtype), _fmt_time(r["normkit"]["median"]),
        f"{r['gbps']:.1f}", f"{100 * r['frac_copy']:.0f}%", _fmt_time(r["target_s"]),
        f"{r['numpy_speedup']:.1f}", f"{r['torch_speedup']:.2f}" if r["torch_speedup"] else "-",
        "-" if bg is None else f"{bg:.1f}", f"{r['verdict']} ({r['verdict_reason']})",
    ]  # fmt: skip


def print_table(info: dict[str, Any], cs: list[Case]) -> None:
    """Print the machine header and the aligned results table on stdout."""
    print(f"machine: {info['cpu']}, nproc {info['nproc']}, python {info['python']}, numpy {info['numpy']}")
    print(f"normkit {info['normkit']}: isa {info['isa']}, threads {info['threads']}")
    torch_info = f"{info['torch']}, threads {info['torch_threads']}" if info["torch"] else "not installed"
    print(f"torch: {torch_info}")
    sizes = sorted({c.x_bytes for c in cs})
    bw = [statistics.median(c.results["copy"]["gbps"] for c in cs if c.x_bytes == n) for n in sizes]
    print(
        "copy GB/s (np.copyto, single-threaded): "
        + ", ".join(f"{_fmt_bytes(n)} {g:.1f}" for n, g in zip(sizes, bw))
    )
    print("rule: normkit <= torch/2 or <= target = 1.25 * copy time * passes (fwd 1, bwd 1.5); never slower")
    print("than torch. bg: CPU cores busy with other processes meanwhile (> 0.2: noisy timings)")
    print()
    head, rows = list(_HEAD), [_table_row(c) for c in cs]
    left = {0, 1, 2, 10}
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        cells = [s.ljust(w) if i in left else s.rjust(w) for i, (s, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    passed = sum(c.results["verdict"] == "PASS" for c in cs)
    unjudged = sum(c.results["verdict"] == "n/a" for c in cs)
    note = f" ({unjudged} not judged: install torch to compare)" if unjudged else ""
    print(f"\n{passed}/{len(cs)} cases pass{note}. Medians; x = speed-up of normkit over that library.")


def run(quick: bool = False, json_path: str | None = None, ops: str | None = None) -> int:
    """Run the benchmark, print the table and optionally write the raw numbers as JSON.

    Parameters
    ----------
    quick : bool
        Only the small shapes, with fewer repeats (a few seconds).
    json_path : str, optional
        Also write machine info, every case's samples and derived numbers to this file.
    ops : str, optional
        Comma-separated op names or glob patterns (e.g. ``"layer_norm*"``); default all ops.

    Returns
    -------
    int
        Process exit status: 0, or 2 when ``ops`` selects nothing.
    """
    cs = cases(quick)
    if ops:
        pats = [p.strip() for p in ops.split(",") if p.strip()]
        cs = [c for c in cs if any(fnmatch.fnmatchcase(c.op, p) for p in pats)]
        if not cs:
            names = sorted({c.op for c in cases(quick)})
            print(f"--ops {ops!r} selects no op; known ops: {', '.join(names)}", file=sys.stderr)
            return 2
    if torch is not None:
        nk.set_num_threads(torch.get_num_threads())
    plan = Plan(0.25, 0.004, 5, 60) if quick else Plan(0.8, 0.02, 7, 100)
    info = machine_info()
    bar = Progress(len(cs))
    for i, c in enumerate(cs):
        label = f"{c.op} {'x'.join(map(str, c.shape))} {c.dtype}"
        bar.update(i, label)
        clock = _cpu_clock()
        runners = c.setup()
        timed = {"copy": _copy_runner(c.x_bytes), "normkit": runners.normkit, "numpy": runners.numpy}
        if runners.torch is not None:
            timed["torch"] = runners.torch
        # the NumPy reference is a far-off baseline: fewer samples when it is slow
        c.results.update(measure(timed, plan, {"numpy": 5}, lambda f, i=i, lb=label: bar.update(i + f, lb)))
        c.results["background_cores"] = _background_cores(clock)
        del runners, timed
        _finish(c)
    bar.close()
    print_table(info, cs)
    if json_path:
        doc = {
            "machine": info,
            "quick": quick,
            "plan": vars(plan),
            "cases": [
                {
                    "op": c.op,
                    "shape": list(c.shape),
                    "dtype": str(c.dtype),
                    "traffic_bytes": c.traffic,
                    "passes": c.passes,
                    "copy_bytes": c.x_bytes,
                    **c.results,
                }
                for c in cs
            ],
        }
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1)
    return 0
