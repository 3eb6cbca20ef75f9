"""The demo's output: summary rows over seeds, the text tables, the JSON file and the plots."""

from __future__ import annotations

import json
import math
import os
import statistics
from typing import Any

Run = dict[str, Any]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize_normalization(runs: list[Run]) -> list[Run]:
    """One row per (learning rate, norm): over the seeds, how many diverged, the epochs each
    took to the target and the median final loss/accuracies of those that did not diverge."""
    rows = []
    for key in dict.fromkeys((r["lr"], r["norm"]) for r in runs):
        group = [r for r in runs if (r["lr"], r["norm"]) == key]
        ok = [r for r in group if not r["diverged"]]
        rows.append({
            "lr": key[0], "norm": key[1], "seeds": len(group),
            "diverged": sum(r["diverged"] for r in group),
            "diverged_at_epoch": [r["diverged_at_epoch"] for r in group],
            "epochs_to_target": [r["epochs_to_target"] for r in group],
            "final_train_loss": _median([r["final_train_loss"] for r in ok]),
            "final_train_acc": _median([r["final_train_acc"] for r in ok]),
            "final_test_acc": _median([r["final_test_acc"] for r in ok]),
        })
    return rows


def summarize_regularization(runs: list[Run]) -> list[Run]:
    """One row per regularization run: means over the seeds (or the reason it was skipped)."""
    rows = []
    for name in dict.fromkeys(r["name"] for r in runs):
        group = [r for r in runs if r["name"] == name]
        if group[0].get("skipped"):
            rows.append({"name": name, "what": group[0]["what"], "skipped": group[0]["skipped"]})
            continue
        row: Run = {"name": name, "what": group[0]["what"], "skipped": None, "seeds": len(group)}
        for k in ("train_acc", "val_acc", "test_acc", "gap", "train_loss", "epochs_run", "zero_weight_fraction"):
            row[k] = _mean([r[k] for r in group])
        row["test_acc_range"] = [min(r["test_acc"] for r in group), max(r["test_acc"] for r in group)]
        row["best_epoch"] = [r["best_epoch"] for r in group] if group[0]["best_epoch"] is not None else None
        rows.append(row)
    return rows


def _table(header: list[str], body: list[list[str]], left: tuple[int, ...]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i in left else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def normalization_table(rows: list[Run], cfg: dict[str, Any]) -> str:
    body = []
    for r in rows:
        reached = ["-" if e is None else str(e) for e in r["epochs_to_target"]]
        div = [f"@{e}" for e in r["diverged_at_epoch"] if e is not None]
        body.append([
            f"{r['lr']:g}", r["norm"], f"{r['diverged']}/{r['seeds']}" + (f" ({', '.join(div)})" if div else ""),
            ", ".join(reached),
            "-" if r["final_train_loss"] is None else f"{r['final_train_loss']:.4f}",
            _pct(r["final_train_acc"]), _pct(r["final_test_acc"]),
        ])
    title = (f"1. Normalization: {cfg['depth']}-hidden-layer MLP ({cfg['width']} wide, ReLU), SGD momentum "
             f"{cfg['momentum']}, batch {cfg['batch_size']}, {cfg['epochs']} epochs, seeds {list(cfg['seeds'])}")
    header = ["lr", "norm", "diverged (epoch)", f"epochs to {100 * cfg['target_acc']:.0f}% train acc",
              "final train loss", "train acc", "test acc"]
    note = ("   (epochs per seed, '-' = never reached; loss and accuracies: median over the seeds that "
            "did not diverge)")
    return f"{title}\n{note}\n\n{_table(header, body, (0, 1))}"


def regularization_table(rows: list[Run], cfg: dict[str, Any], n_train: int) -> str:
    body = []
    for r in rows:
        if r["skipped"]:
            body.append([r["name"], "-", "-", "-", f"skipped: {r['skipped']}"])
            continue
        notes = []
        if r["best_epoch"] is not None:
            notes.append(f"stopped at epoch {r['epochs_run']:.0f} (mean), best epochs {', '.join(map(str, r['best_epoch']))}")
        if r["zero_weight_fraction"]:
            notes.append(f"{100 * r['zero_weight_fraction']:.0f}% weights exactly 0")
        lo, hi = r["test_acc_range"]
        body.append([r["name"], _pct(r["train_acc"]), f"{_pct(r['test_acc'])} [{100 * lo:.1f}-{100 * hi:.1f}]",
                     _pct(r["gap"]), "; ".join(notes)])
    hidden = "-".join(str(h) for h in cfg["hidden"])
    title = (f"2. Regularization: MLP in-{hidden}-out on {n_train} training samples, SGD lr {cfg['lr']} momentum "
             f"{cfg['momentum']}, up to {cfg['epochs']} epochs; mean over seeds {list(cfg['seeds'])} [test range]")
    header = ["run", "train acc", "test acc", "gap", "notes"]
    legend = "\n".join(f"  {r['name']:<11} {r['what']}" for r in rows)
    return f"{title}\n\n{_table(header, body, (0, 4))}\n\n{legend}"


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: a diverged run's non-finite losses are written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str, doc: dict[str, Any]) -> None:
    """Writes ``doc`` as strict JSON (non-finite numbers become null), creating the directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(_finite(doc), f, indent=1, allow_nan=False)


def plot(norm_runs: list[Run], reg_runs: list[Run], directory: str) -> tuple[list[str], str | None]:
    """Learning curves of the first seed as PNG files in ``directory``; returns (paths, None), or
    ([], the reason) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], 'matplotlib is not installed (pip install "normkit[demo]")'
    os.makedirs(directory, exist_ok=True)
    paths = []

    lrs = list(dict.fromkeys(r["lr"] for r in norm_runs))
    if lrs:
        first = min(r["seed"] for r in norm_runs)
        fig, axes = plt.subplots(1, len(lrs), figsize=(5.5 * len(lrs), 4), squeeze=False, sharey=True)
        for ax, lr in zip(axes[0], lrs):
            for r in (r for r in norm_runs if r["lr"] == lr and r["seed"] == first):
                loss = r["curves"]["train_loss"]
                (line,) = ax.plot(range(1, len(loss) + 1), loss, label=r["norm"])
                if r["diverged"]:
                    ax.plot([r["diverged_at_epoch"]], [loss[-1] if loss else 2.3], "x", ms=10, color=line.get_color())
            ax.set(yscale="log", xlabel="epoch", title=f"lr = {lr:g}")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("training loss (x = diverged)")
        axes[0][-1].legend()
        fig.suptitle("Deep MLP: normalization at a moderate and a high learning rate")
        fig.tight_layout()
        paths.append(os.path.join(directory, "normalization.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    done = [r for r in reg_runs if not r.get("skipped")]
    if done:
        first = min(r["seed"] for r in done)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for r in (r for r in done if r["seed"] == first):
            c = r["curves"]
            (line,) = ax.plot(range(1, len(c["test_acc"]) + 1), c["test_acc"], label=f"{r['name']} (test)")
            ax.plot(range(1, len(c["train_acc"]) + 1), c["train_acc"], ":", color=line.get_color())
        low = min(r["curves"]["test_acc"][-1] for r in done if r["curves"]["test_acc"])
        ax.set(xlabel="epoch", ylabel="accuracy (solid: test, dotted: train)", ylim=(max(0.0, low - 0.15), 1.005),
               title="Over-parameterized MLP on a small training set: regularizers")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        paths.append(os.path.join(directory, "regularization.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths, None
