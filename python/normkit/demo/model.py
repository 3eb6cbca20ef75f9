"""The model pieces the demo needs besides normkit's layers: a dense layer, ReLU, a sequential
container, softmax cross-entropy and SGD with momentum (with normkit's regularizers).

Private to the demo: small, float32, written for clarity rather than generality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import normkit as nk
from normkit.nn import Module

Array = np.ndarray


class Dense(Module):
    """``y = x @ weight + bias`` with He-normal initialization (``weight`` is ``(n_in, n_out)``)."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.params["weight"] = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        self.params["bias"] = np.zeros(n_out, np.float32)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x: Array) -> Array:
        self._cache = (x,)
        return x @ self.params["weight"] + self.params["bias"]

    def backward(self, dy: Array) -> Array:
        (x,) = self._saved()
        self.grads = {"weight": x.T @ dy, "bias": dy.sum(axis=0)}
        return dy @ self.params["weight"].T


class ReLU(Module):
    """``y = max(x, 0)``."""

    def forward(self, x: Array) -> Array:
        keep = x > 0
        self._cache = (keep,)
        return np.where(keep, x, np.float32(0))

    def backward(self, dy: Array) -> Array:
        (keep,) = self._saved()
        return np.where(keep, dy, np.float32(0))


class Sequential(Module):
    """Layers applied in order; ``backward`` runs them in reverse. Its state dict names each entry
    ``"<index>.<name>"`` as PyTorch does."""

    def __init__(self, layers: Sequence[Module]) -> None:
        super().__init__()
        self.layers = list(layers)

    def forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, dy: Array) -> Array:
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def train(self, mode: bool = True) -> Sequential:
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def state_dict(self) -> dict[str, Array]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> Sequential:
        for i, layer in enumerate(self.layers):
            prefix = f"{i}."
            layer.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return self


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[float, Array]:
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``, and its gradient with
    respect to ``logits`` (``(softmax - onehot) / N``, in logits' dtype). Non-finite logits give a
    non-finite loss (the caller's divergence test)."""
    z = logits.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = float(-logp[np.arange(n), labels].mean())
    grad = np.exp(logp)
    grad[np.arange(n), labels] -= 1.0
    return loss, (grad / n).astype(logits.dtype)


class SGD:
    """SGD with (heavy-ball) momentum: ``v = mu * v + g``, ``w -= lr * v``.

    Regularization applies to the dense layers' weights only (not biases, not normalization
    parameters), through normkit's native ops:

    - ``l2``: ``nk.add_l2_grad(g, w, l2)`` adds ``2 * l2 * w`` to the gradient;
    - ``l1``: after the step, ``nk.l1_prox(w, lr * l1)`` soft-thresholds (proximal L1: exact zeros);
    - ``weight_decay``: decoupled, ``nk.weight_decay(w, lr, weight_decay)``.
    """

    def __init__(self, model: Sequential, lr: float, momentum: float = 0.9, *, l2: float = 0.0, l1: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.model, self.lr, self.momentum = model, lr, momentum
        self.l2, self.l1, self.weight_decay = l2, l1, weight_decay
        self.velocity: dict[tuple[int, str], Array] = {}

    def step(self) -> None:
        for i, layer in enumerate(self.model.layers):
            decayed = isinstance(layer, Dense)
            for name, w in layer.params.items():
                g = layer.grads[name]
                regularized = decayed and name == "weight"
                if regularized and self.l2:
                    nk.add_l2_grad(g, w, self.l2)
                v = self.velocity.get((i, name))
                v = g.copy() if v is None else np.add(self.momentum * v, g, out=v)
                self.velocity[(i, name)] = v
                if regularized and self.weight_decay:
                    nk.weight_decay(w, self.lr, self.weight_decay)
                w -= self.lr * v
                if regularized and self.l1:
                    nk.l1_prox(w, self.lr * self.l1)


def mlp(sizes: Sequence[int], rng: np.random.Generator, norm: str = "none", dropout: float = 0.0,
        dropout_seed: int = 0, groups: int = 8) -> Sequential:
    """``Dense -> [norm] -> ReLU -> [Dropout]`` for every hidden size, then a final ``Dense``.

    ``norm`` is one of ``"none"``, ``"batchnorm"``, ``"layernorm"``, ``"rmsnorm"``, ``"groupnorm"``
    (normkit's layers on ``(N, features)``; GroupNorm with ``groups`` groups of features).
    """
    layers: list[Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        layers.append(Dense(n_in, n_out, rng))
        if norm == "batchnorm":
            layers.append(nk.nn.BatchNorm(n_out))
        elif norm == "layernorm":
            layers.append(nk.nn.LayerNorm(n_out))
        elif norm == "rmsnorm":
            layers.append(nk.nn.RMSNorm(n_out))
        elif norm == "groupnorm":
            layers.append(nk.nn.GroupNorm(groups, n_out))
        elif norm != "none":
            raise ValueError(f"unknown norm {norm!r}")
        layers.append(ReLU())
        if dropout:
            layers.append(nk.nn.Dropout(dropout, seed=dropout_seed + k))
    layers.append(Dense(sizes[-2], sizes[-1], rng))
    return Sequential(layers)
