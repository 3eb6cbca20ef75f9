"""The two studies: normalization at a high learning rate, and regularization of an
over-parameterized network on a small training set. Every number comes from a training run
with fixed seeds."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import normkit as nk

from .data import Dataset, InputScaler, Splits
from .model import SGD, Dense, Sequential, mlp, softmax_cross_entropy

Array = np.ndarray
Batcher = Callable[[Array, int], Array]  # (sample indices, seed) -> a scaled batch of features
OnEpoch = Callable[[float], None]  # fraction of the run done


@dataclass
class NormConfig:
    """The normalization study: a deep plain MLP against the same with each normalization layer,
    at a moderate and a high learning rate (SGD with momentum)."""

    norms: tuple[str, ...] = ("none", "batchnorm", "layernorm", "rmsnorm", "groupnorm")
    lrs: tuple[float, ...] = (0.02, 0.1)
    depth: int = 10
    width: int = 64
    epochs: int = 25
    batch_size: int = 64
    momentum: float = 0.9
    target_acc: float = 0.98
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass
class RegConfig:
    """The regularization study: an over-parameterized MLP on a small training subset.

    Each strength was picked on the validation split (mean validation accuracy of seeds 0-2)
    from a small grid: ``l2`` in {1e-3, 3e-3, 1e-2, 3e-2, 5e-2}, ``l1`` in {3e-3, 1e-2, 3e-2},
    ``dropout`` in {0.3, 0.5, 0.7}. ``combined`` stacks lighter doses (``combined_l2``,
    ``combined_dropout``) with augmentation and early stopping.
    """

    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.02
    momentum: float = 0.9
    l2: float = 3e-3
    l1: float = 3e-3
    dropout: float = 0.3
    crop_padding: int = 1
    noise_std: float = 0.5
    patience: int = 20
    combined_l2: float = 3e-3
    combined_dropout: float = 0.1
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    runs: tuple[str, ...] = ("none", "l2", "l1_prox", "dropout", "augment", "early_stop", "combined")


@dataclass
class History:
    """Per-epoch measurements of one run (eval mode, full sets)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    diverged_at: int | None = None


def evaluate(model: Sequential, X: Array, y: Array) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model in eval mode."""
    model.eval()
    with np.errstate(over="ignore", invalid="ignore"):
        logits = model(X)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, float(np.mean(np.argmax(logits, axis=1) == y)) if np.isfinite(logits).all() else 0.0


def fit(model: Sequential, opt: SGD, batch: Batcher, train_idx: Array, y: Array, X_eval: dict[str, Array],
        *, epochs: int, batch_size: int, seed: int, on_epoch: OnEpoch,
        stopper: nk.EarlyStopping | None = None) -> History:
    """Minibatch SGD for ``epochs`` epochs (or until divergence / early stopping).

    ``X_eval`` holds the scaled ``"train"`` and ``"test"`` (and optionally ``"val"``) features
    evaluated after every epoch; the labels are ``y[...]`` of the matching index sets in
    ``X_eval["<name>_idx"]``.
    """
    rng = np.random.default_rng(seed)
    hist = History()
    n_batches = max(1, math.ceil(len(train_idx) / batch_size))
    step = 0
    for epoch in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(train_idx), n_batches):
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run overflows; caught below
                logits = model(batch(idx, seed * 1_000_003 + step))
                loss, dlogits = softmax_cross_entropy(logits, y[idx])
                step += 1
                if not math.isfinite(loss):
                    hist.diverged_at = epoch + 1
                    break
                model.backward(dlogits)
                opt.step()
        if hist.diverged_at is not None:
            break
        loss, acc = evaluate(model, X_eval["train"], y[X_eval["train_idx"]])
        hist.train_loss.append(loss)
        hist.train_acc.append(acc)
        hist.test_acc.append(evaluate(model, X_eval["test"], y[X_eval["test_idx"]])[1])
        if stopper is not None:
            val_loss, val_acc = evaluate(model, X_eval["val"], y[X_eval["val_idx"]])
            hist.val_loss.append(val_loss)
            hist.val_acc.append(val_acc)
        if epoch + 1 < epochs:
            on_epoch((epoch + 1) / epochs)
        if not math.isfinite(hist.train_loss[-1]):
            hist.diverged_at = epoch + 1
            break
        if stopper is not None and stopper.step(hist.val_loss[-1], model.state_dict()):
            break
    return hist


def _scaled(data: Dataset, splits: Splits, fit_idx: Array) -> tuple[InputScaler, dict[str, Array]]:
    scaler = InputScaler(data.image_shape).fit(data.X[fit_idx])
    sets = {"train": fit_idx, "test": splits.test, "val": splits.val}
    out: dict[str, Array] = {}
    for name, idx in sets.items():
        out[name] = scaler.transform(data.X[idx])
        out[f"{name}_idx"] = idx
    return scaler, out


def run_normalization(data: Dataset, splits: Splits, cfg: NormConfig, progress: Callable[[str, float], None]
                      ) -> list[dict[str, Any]]:
    """Deep plain MLP vs the same with each normalization layer, at each learning rate and seed."""
    scaler, X_eval = _scaled(data, splits, splits.pool)
    X_pool = scaler.transform(data.X)
    del X_eval["val"], X_eval["val_idx"]
    sizes = [data.X.shape[1], *([cfg.width] * cfg.depth), data.n_classes]
    runs = []
    for lr in cfg.lrs:
        for norm in cfg.norms:
            for seed in cfg.seeds:
                model = mlp(sizes, np.random.default_rng(1000 + seed), norm=norm)
                opt = SGD(model, lr, cfg.momentum)
                label = f"normalization: {norm} lr={lr} seed={seed}"
                hist = fit(model, opt, lambda idx, _s: X_pool[idx], splits.pool, data.y, X_eval,
                           epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed,
                           on_epoch=lambda f, lb=label: progress(lb, f))
                progress(label, 1.0)
                reached = [i + 1 for i, a in enumerate(hist.train_acc) if a >= cfg.target_acc]
                runs.append({
                    "norm": norm, "lr": lr, "seed": seed,
                    "epochs_to_target": reached[0] if reached else None,
                    "diverged": hist.diverged_at is not None, "diverged_at_epoch": hist.diverged_at,
                    "final_train_loss": hist.train_loss[-1] if hist.train_loss and hist.diverged_at is None else None,
                    "final_train_acc": hist.train_acc[-1] if hist.train_acc and hist.diverged_at is None else None,
                    "final_test_acc": hist.test_acc[-1] if hist.test_acc and hist.diverged_at is None else None,
                    "curves": {"train_loss": hist.train_loss, "train_acc": hist.train_acc},
                })
    return runs


def _augmenter() -> tuple[Any, str | None]:
    """``normkit.augment`` when this build has it, else (None, the reason)."""
    try:
        return importlib.import_module("normkit.augment"), None
    except ImportError as e:
        return None, f"normkit.augment is not available in this build ({e})"


def run_regularization(data: Dataset, splits: Splits, cfg: RegConfig, progress: Callable[[str, float], None]
                       ) -> list[dict[str, Any]]:
    """Over-parameterized MLP on the small training subset, with each regularizer."""
    scaler, X_eval = _scaled(data, splits, splits.small)
    X_all = scaler.transform(data.X)
    aug, aug_missing = _augmenter()
    if data.image_shape is None:
        aug, aug_missing = None, "the data are not images (give X as (N, H, W) or (N, C, H, W))"
    sizes = [data.X.shape[1], *cfg.hidden, data.n_classes]
    runs = []
    for name in cfg.runs:
        uses_aug = name in ("augment", "combined")
        if name == "augment" and aug is None:
            runs.append({"name": name, "what": describe(name, cfg, False), "skipped": aug_missing})
            progress(f"regularization: {name} (skipped)", 1.0)
            continue
        for seed in cfg.seeds:
            drop = {"dropout": cfg.dropout, "combined": cfg.combined_dropout}.get(name, 0.0)
            l2 = {"l2": cfg.l2, "combined": cfg.combined_l2}.get(name, 0.0)
            model = mlp(sizes, np.random.default_rng(2000 + seed), dropout=drop, dropout_seed=100 * seed)
            opt = SGD(model, cfg.lr, cfg.momentum, l2=l2, l1=cfg.l1 if name == "l1_prox" else 0.0)
            stopper = nk.EarlyStopping(patience=cfg.patience) if name in ("early_stop", "combined") else None
            batch = _augmented_batcher(data, scaler, cfg, aug) if uses_aug and aug is not None else (
                lambda idx, _s: X_all[idx])
            label = f"regularization: {name} seed={seed}"
            hist = fit(model, opt, batch, splits.small, data.y, X_eval, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, seed=seed, stopper=stopper,
                       on_epoch=lambda f, lb=label: progress(lb, f))
            progress(label, 1.0)
            epochs_run = len(hist.train_acc)
            if stopper is not None and stopper.best_state is not None:
                model.load_state_dict(stopper.best_state)
            train_loss, train_acc = evaluate(model, X_eval["train"], data.y[splits.small])
            _, test_acc = evaluate(model, X_eval["test"], data.y[splits.test])
            _, val_acc = evaluate(model, X_eval["val"], data.y[splits.val])
            dense_w = [layer.params["weight"] for layer in model.layers if isinstance(layer, Dense)]
            runs.append({
                "name": name, "seed": seed, "skipped": None,
                "what": describe(name, cfg, aug is not None),
                "train_acc": train_acc, "val_acc": val_acc, "test_acc": test_acc, "gap": train_acc - test_acc,
                "train_loss": train_loss, "epochs_run": epochs_run,
                "best_epoch": None if stopper is None else (stopper.best_step or 0) + 1,
                "zero_weight_fraction": float(sum(int((w == 0).sum()) for w in dense_w) / sum(w.size for w in dense_w)),
                "diverged": hist.diverged_at is not None,
                "curves": {"train_acc": hist.train_acc, "test_acc": hist.test_acc, "train_loss": hist.train_loss},
            })
    return runs


def describe(name: str, cfg: RegConfig, augmented: bool) -> str:
    """One line naming a regularization run's ingredients and the normkit ops behind them."""
    aug = f"random_crop(padding={cfg.crop_padding}) + gaussian_noise({cfg.noise_std})"
    parts = {
        "none": "no regularization",
        "l2": f"L2 penalty lam={cfg.l2:g} (nk.add_l2_grad)",
        "l1_prox": f"proximal L1 lam={cfg.l1:g} (nk.l1_prox)",
        "dropout": f"dropout p={cfg.dropout:g} after each hidden layer (nk.nn.Dropout)",
        "augment": f"{aug} (normkit.augment)",
        "early_stop": f"early stopping on validation loss, patience {cfg.patience} (nk.EarlyStopping)",
    }
    if name != "combined":
        return parts[name]
    combo = [f"L2 {cfg.combined_l2:g}", f"dropout {cfg.combined_dropout:g}"]
    if augmented:
        combo.append("augmentation")
    return " + ".join([*combo, "early stopping"])


def _augmented_batcher(data: Dataset, scaler: InputScaler, cfg: RegConfig, aug: Any) -> Batcher:
    """Random crops (zero padding, on the raw pixels) then Gaussian noise on the scaled features."""
    c, h, w = data.image_shape  # type: ignore[misc]
    size = h if h == w else (h, w)

    def batch(idx: Array, seed: int) -> Array:
        images = data.X[idx].reshape(len(idx), c, h, w)
        images = aug.random_crop(images, size, padding=cfg.crop_padding, seed=seed)
        x = scaler.transform(np.ascontiguousarray(images).reshape(len(idx), -1))
        return aug.gaussian_noise(x, cfg.noise_std, seed=seed + 1)

    return batch
