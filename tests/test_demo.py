"""``python -m normkit demo``: the quick run's JSON, --data without scikit-learn, the model pieces."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
from normkit.__main__ import main
from normkit.demo import configs
from normkit.demo.model import Dense, ReLU, Sequential, softmax_cross_entropy


def _in_unit(x):
    return x is None or 0.0 <= x <= 1.0


def _check_doc(doc, quick_norm, quick_reg, aug_expected):
    assert doc["quick"] is True and doc["seconds"] > 0
    runs = doc["normalization"]["runs"]
    expected = {(norm, lr, seed) for lr in quick_norm.lrs for norm in quick_norm.norms for seed in quick_norm.seeds}
    assert {(r["norm"], r["lr"], r["seed"]) for r in runs} == expected
    for r in runs:
        assert isinstance(r["diverged"], bool)
        assert all(_in_unit(r[k]) for k in ("final_train_acc", "final_test_acc"))
        assert r["epochs_to_target"] is None or 1 <= r["epochs_to_target"] <= quick_norm.epochs
        assert len(r["curves"]["train_acc"]) <= quick_norm.epochs
    assert len(doc["normalization"]["summary"]) == len(quick_norm.lrs) * len(quick_norm.norms)

    rows = {r["name"]: r for r in doc["regularization"]["summary"]}
    assert list(rows) == list(quick_reg.runs)
    for name, row in rows.items():
        if name == "augment" and not aug_expected:
            assert row["skipped"]
            continue
        assert row["skipped"] is None, (name, row["skipped"])
        assert _in_unit(row["train_acc"]) and _in_unit(row["test_acc"]) and _in_unit(row["val_acc"])
        assert row["gap"] == pytest.approx(row["train_acc"] - row["test_acc"])
        assert 1 <= row["epochs_run"] <= quick_reg.epochs
    assert rows["l1_prox"]["zero_weight_fraction"] >= rows["none"]["zero_weight_fraction"]
    assert rows["early_stop"]["best_epoch"] is not None


def _augment_available():
    return importlib.util.find_spec("normkit.augment") is not None


def test_quick_digits_run_writes_json_table_and_plots(tmp_path, capsys):
    pytest.importorskip("sklearn")
    path = tmp_path / "out" / "demo.json"
    assert main(["demo", "--quick", "--json", str(path), "--plots", str(tmp_path / "plots")]) == 0
    out, err = capsys.readouterr()
    assert "1. Normalization" in out and "2. Regularization" in out and "batchnorm" in out
    assert "done" in err
    doc = json.loads(path.read_text())
    _check_doc(doc, *configs(quick=True), aug_expected=_augment_available())
    assert doc["data"]["n_samples"] == 1797 and doc["data"]["image_shape"] == [1, 8, 8]
    if importlib.util.find_spec("matplotlib") is not None:
        assert len(doc["plots"]) == 2
        for p in doc["plots"]:
            with open(p, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _blobs(n=90, d=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.standard_normal((classes, d)) * 3
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), np.array(["a", "b", "c"])[y]


def test_data_npz_runs_without_scikit_learn(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # any import of scikit-learn now fails
    X, y = _blobs()
    data = tmp_path / "blobs.npz"
    np.savez(data, X=X, y=y)
    path = tmp_path / "demo.json"
    assert main(["demo", "--quick", "--data", str(data), "--json", str(path), "--no-plots"]) == 0
    doc = json.loads(path.read_text())
    assert doc["data"]["n_classes"] == 3 and doc["data"]["image_shape"] is None and doc["plots"] == []
    _check_doc(doc, *configs(quick=True), aug_expected=False)
    assert "not images" in {r["name"]: r for r in doc["regularization"]["summary"]}["augment"]["skipped"]
    assert "blobs.npz" in capsys.readouterr().out


def test_same_numbers_every_run_and_no_matplotlib_no_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    X, y = _blobs(seed=3)
    data = tmp_path / "blobs.npz"
    np.savez(data, X=X, y=y)
    docs = []
    for i in range(2):
        path = tmp_path / f"run{i}.json"
        assert main(["demo", "--quick", "--data", str(data), "--json", str(path), "--plots", str(tmp_path)]) == 0
        doc = json.loads(path.read_text())
        del doc["seconds"]
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["plots"] == []
    assert "no plots: matplotlib is not installed" in capsys.readouterr().out


def _fake_augment():
    """A NumPy stand-in for normkit.augment with its API.md signatures."""

    def random_crop(images, size, *, padding=0, seed=None, channel_axis=1):
        assert channel_axis == 1 and images.ndim == 4
        rng = np.random.default_rng(seed)
        h, w = (size, size) if isinstance(size, int) else size
        p = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        oy = rng.integers(0, p.shape[2] - h + 1, len(images))
        ox = rng.integers(0, p.shape[3] - w + 1, len(images))
        return np.stack([p[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(oy, ox))])

    def gaussian_noise(images, std, *, seed=None):
        return images + np.float32(std) * np.random.default_rng(seed).standard_normal(images.shape, np.float32)

    mod = types.ModuleType("normkit.augment")
    mod.random_crop, mod.gaussian_noise = random_crop, gaussian_noise
    return mod


def test_data_npz_images_use_augmentation(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "normkit.augment", _fake_augment())
    rng = np.random.default_rng(1)
    y = np.arange(80) % 2
    X = rng.uniform(0, 1, (80, 6, 6)).astype(np.float32)
    X[y == 1, :, 2:4] += 2.0  # a vertical bar marks class 1
    data = tmp_path / "bars.npz"
    np.savez(data, X=X, y=y)
    path = tmp_path / "demo.json"
    assert main(["demo", "--quick", "--data", str(data), "--json", str(path), "--no-plots"]) == 0
    doc = json.loads(path.read_text())
    assert doc["data"]["image_shape"] == [1, 6, 6]
    _check_doc(doc, *configs(quick=True), aug_expected=True)
    assert "augmentation" in {r["name"]: r for r in doc["regularization"]["summary"]}["combined"]["what"]


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(SystemExit, match=r'pip install "normkit\[demo\]"'):
        main(["demo", "--quick", "--no-plots"])


@pytest.mark.parametrize("arrays,match", [
    ({"X": np.zeros((30, 4))}, "must hold arrays 'X' and 'y'"),
    ({"X": np.zeros((30, 4)), "y": np.zeros(29)}, "got X"),
    ({"X": np.zeros((30, 4)), "y": np.zeros(30)}, "2 or more classes"),
    ({"X": np.full((30, 4), np.nan), "y": np.arange(30) % 2}, "NaN"),
])
def test_bad_data_files(tmp_path, arrays, match):
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    with pytest.raises(SystemExit, match=match):
        main(["demo", "--quick", "--data", str(data), "--no-plots"])


def test_dense_relu_softmax_backward_match_finite_differences():
    rng = np.random.default_rng(0)
    model = Sequential([Dense(5, 4, rng), ReLU(), Dense(4, 3, rng)])
    for layer in model.layers:
        for k, v in layer.params.items():
            layer.params[k] = v.astype(np.float64) + (0.1 if k == "bias" else 0.0)
    x = rng.standard_normal((6, 5))
    labels = np.array([0, 1, 2, 0, 1, 2])

    def loss():
        return softmax_cross_entropy(model(x), labels)[0]

    _, dlogits = softmax_cross_entropy(model(x), labels)
    dx = model.backward(dlogits)
    for target, grad in [(x, dx), (model.layers[0].params["weight"], model.layers[0].grads["weight"]),
                         (model.layers[2].params["bias"], model.layers[2].grads["bias"])]:
        num = np.zeros_like(target)
        for i in np.ndindex(target.shape):
            old = target[i]
            target[i] = old + 1e-6
            up = loss()
            target[i] = old - 1e-6
            num[i] = (up - loss()) / 2e-6
            target[i] = old
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)
