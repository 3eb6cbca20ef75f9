"""``python -m normkit demo``: train small NumPy networks with normkit's layers and regularizers
and measure what they do.

1. Normalization: a deep plain MLP against the same with BatchNorm, LayerNorm, RMSNorm and
   GroupNorm, at a moderate and a high learning rate: epochs to a target training accuracy, the
   final loss, and which runs diverge.
2. Regularization: an over-parameterized MLP on a small training subset with no regularization,
   L2, proximal L1, dropout, augmentation, early stopping and a combination: train vs test
   accuracy and the gap.

The data are scikit-learn's bundled handwritten digits (``pip install "normkit[demo]"``) or the
user's ``--data file.npz``. Seeds are fixed: the same machine gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable

import normkit as nk

from .._progress import Progress
from . import report
from .data import Dataset, load_digits, load_npz, split
from .study import NormConfig, RegConfig, run_normalization, run_regularization

__all__ = ["NormConfig", "RegConfig", "run"]


def configs(quick: bool) -> tuple[NormConfig, RegConfig]:
    """The default study settings, or tiny ones (a few epochs, one seed) for ``--quick``."""
    if quick:
        return (NormConfig(epochs=2, seeds=(0,)), RegConfig(hidden=(64, 64), epochs=3, patience=1, seeds=(0,)))
    return NormConfig(), RegConfig()


def _thread_limits(threads: int) -> Callable[[], None]:
    """Limits normkit and, through threadpoolctl when installed, the BLAS behind ``@`` to
    ``threads``; returns the function that restores them. The demo's matrices are tiny: extra
    threads only add synchronization, which costs milliseconds per call on a busy machine."""
    old = nk.get_num_threads()
    nk.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        blas = None
    else:
        blas = threadpool_limits(limits=threads, user_api="blas")

    def restore() -> None:
        nk.set_num_threads(old)
        if blas is not None:
            blas.restore_original_limits()

    return restore


def run(*, quick: bool = False, json_path: str | None = None, plots: str | None = "normkit-demo",
        data: str | None = None, threads: int = 1) -> int:
    """Runs both studies, prints the tables, writes the JSON and the plots; returns 0.

    Parameters
    ----------
    quick : bool, a few epochs of every run (seconds; numbers not meaningful)
    json_path : str, optional, where to write every measured number and curve
    plots : str or None, directory for the PNG learning curves (None: no plots)
    data : str, optional, an ``.npz`` with arrays ``X`` and ``y`` to study instead of the digits
    threads : int, normkit and BLAS threads (the demo's arrays are small: one thread is fastest)
    """
    start = time.perf_counter()
    dataset: Dataset = load_npz(data) if data else load_digits()
    norm_cfg, reg_cfg = configs(quick)
    splits = split(len(dataset.y), seed=0)
    limits = _thread_limits(threads)
    nk.random.seed(0)
    n_runs = (len(norm_cfg.lrs) * len(norm_cfg.norms) * len(norm_cfg.seeds)
              + len(reg_cfg.runs) * len(reg_cfg.seeds))
    bar = Progress(n_runs)
    state = {"done": 0, "label": ""}

    def progress(label: str, fraction: float) -> None:
        if fraction >= 1.0:
            state["done"] += 1
            bar.update(state["done"], label)
        else:
            bar.update(state["done"] + fraction, label)

    print(f"normkit {nk.__version__} demo on {dataset.name}; {len(splits.pool)} training / {len(splits.test)} test "
          f"samples{' (--quick: numbers not meaningful)' if quick else ''}", file=sys.stderr)
    try:
        norm_runs = run_normalization(dataset, splits, norm_cfg, progress)
        reg_runs = run_regularization(dataset, splits, reg_cfg, progress)
    finally:
        limits()
    bar.close()
    norm_rows = report.summarize_normalization(norm_runs)
    reg_rows = report.summarize_regularization(reg_runs)
    norm_dict, reg_dict = dataclasses.asdict(norm_cfg), dataclasses.asdict(reg_cfg)
    plot_paths, plot_note = report.plot(norm_runs, reg_runs, plots) if plots else ([], "--no-plots")
    seconds = time.perf_counter() - start

    print()
    print(report.normalization_table(norm_rows, norm_dict))
    print()
    print(report.regularization_table(reg_rows, reg_dict, len(splits.small)))
    print()
    print(f"data: {dataset.name}; normalization study trains on {len(splits.pool)} samples, regularization on "
          f"{len(splits.small)} (early stopping watches {len(splits.val)} validation samples); test: "
          f"{len(splits.test)} held-out samples. {seconds:.0f} s with {threads} thread(s).")
    if plot_paths:
        print("plots: " + ", ".join(plot_paths))
    elif plot_note != "--no-plots":
        print(f"no plots: {plot_note}")
    if json_path:
        doc: dict[str, Any] = {
            "normkit_version": nk.__version__, "quick": quick, "seconds": seconds, "threads": threads,
            "data": {"name": dataset.name, "n_samples": len(dataset.y), "n_features": int(dataset.X.shape[1]),
                     "n_classes": dataset.n_classes, "image_shape": None if dataset.image_shape is None else [int(s) for s in dataset.image_shape],
                     "n_train_normalization": len(splits.pool), "n_train_regularization": len(splits.small),
                     "n_val": len(splits.val), "n_test": len(splits.test)},
            "normalization": {"config": norm_dict, "summary": norm_rows, "runs": norm_runs},
            "regularization": {"config": reg_dict, "summary": reg_rows, "runs": reg_runs},
            "plots": plot_paths,
        }
        report.write_json(json_path, doc)
        print(f"json: {json_path}")
    return 0
