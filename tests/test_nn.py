"""normkit.nn layers: backward vs finite differences, train/eval, running statistics, state dicts."""

from __future__ import annotations

import ml_dtypes
import normkit as nk
import numpy as np
import pytest

F64 = np.float64

# (id, factory, input shape): small float64 cases, with and without affine, both channel axes.
CASES = [
    ("ln", lambda: nk.nn.LayerNorm(5, dtype=F64), (3, 5)),
    ("ln_2d", lambda: nk.nn.LayerNorm((3, 4), dtype=F64), (2, 3, 4)),
    ("ln_noaffine", lambda: nk.nn.LayerNorm(5, affine=False, dtype=F64), (4, 5)),
    ("ln_nobias", lambda: nk.nn.LayerNorm(5, bias=False, dtype=F64), (4, 5)),
    ("rms", lambda: nk.nn.RMSNorm(6, dtype=F64), (3, 6)),
    ("rms_noaffine", lambda: nk.nn.RMSNorm((2, 3), affine=False, dtype=F64), (2, 2, 3)),
    ("bn_2d", lambda: nk.nn.BatchNorm(3, dtype=F64), (5, 3)),
    ("bn_ncl", lambda: nk.nn.BatchNorm(3, dtype=F64), (2, 3, 4)),
    ("bn_nlc", lambda: nk.nn.BatchNorm(3, channel_axis=-1, dtype=F64), (2, 4, 3)),
    ("bn_noaffine", lambda: nk.nn.BatchNorm(3, affine=False, dtype=F64), (2, 3, 2, 2)),
    ("bn_notrack", lambda: nk.nn.BatchNorm(3, track_running_stats=False, dtype=F64), (4, 3)),
    ("gn", lambda: nk.nn.GroupNorm(2, 4, dtype=F64), (3, 4, 5)),
    ("gn_last", lambda: nk.nn.GroupNorm(2, 4, channel_axis=-1, dtype=F64), (3, 5, 4)),
    ("gn_noaffine", lambda: nk.nn.GroupNorm(1, 4, affine=False, dtype=F64), (2, 4, 3)),
    ("in", lambda: nk.nn.InstanceNorm(3, dtype=F64), (2, 3, 5)),
    ("in_affine", lambda: nk.nn.InstanceNorm(3, affine=True, dtype=F64), (2, 3, 2, 3)),
    ("in_last_track", lambda: nk.nn.InstanceNorm(3, affine=True, track_running_stats=True, channel_axis=-1,
                                                 dtype=F64), (2, 5, 3)),
    ("lrn", lambda: nk.nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0), (2, 5, 4)),
    ("lrn_last", lambda: nk.nn.LocalResponseNorm(2, alpha=0.5, channel_axis=-1), (2, 4, 5)),
]
CASE_IDS = [c[0] for c in CASES]


def numerical_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to the array a (perturbed in place)."""
    g = np.zeros_like(a, dtype=F64)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def randomize_params(layer, rng):
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape) * 0.5 + (1.0 if p is layer.params.get("weight") else 0.0)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name,make,shape", CASES, ids=CASE_IDS)
def test_backward_matches_finite_differences(rng, name, make, shape, mode):
    layer = make()
    randomize_params(layer, rng)
    for key, buf in layer.buffers.items():
        buf[...] = rng.uniform(0.5, 1.5, buf.shape) if key == "running_var" else rng.standard_normal(buf.shape)
    layer.train(mode == "train")
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)

    def loss():
        return float(np.sum(layer(x) * g))

    layer(x)
    dx = layer.backward(g)
    grads = layer.grads
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-5, atol=1e-7, err_msg=f"{name} dx")
    assert sorted(grads) == sorted(layer.params)
    for key, p in layer.params.items():
        assert grads[key].shape == p.shape
        np.testing.assert_allclose(grads[key], numerical_grad(loss, p), rtol=1e-5, atol=1e-7,
                                   err_msg=f"{name} d{key}")


@pytest.mark.parametrize("name,make,shape", CASES, ids=CASE_IDS)
def test_grads_are_fresh_arrays_and_state_is_kept(rng, name, make, shape):
    layer = make()
    x = rng.standard_normal(shape)
    layer(x)
    layer.backward(np.ones(shape))
    first = dict(layer.grads)
    layer.backward(np.ones(shape))
    for key, grad in first.items():
        assert layer.grads[key] is not grad
        np.testing.assert_array_equal(layer.grads[key], grad)


def test_default_dtype_float32_and_half_inputs(rng):
    bn = nk.nn.BatchNorm(4)
    assert bn.params["weight"].dtype == np.float32 and bn.buffers["running_var"].dtype == np.float32
    x = rng.standard_normal((8, 4, 3)).astype(np.float16)
    y = bn(x)
    assert y.dtype == np.float16
    dx = bn.backward(np.ones_like(x))
    assert dx.dtype == np.float16 and bn.grads["weight"].dtype == np.float32
    ln = nk.nn.LayerNorm(6, dtype=ml_dtypes.bfloat16)
    assert ln(rng.standard_normal((2, 6)).astype(ml_dtypes.bfloat16)).dtype == ml_dtypes.bfloat16


def test_dropout_backward_uses_the_forward_mask(rng):
    p = 0.4
    drop = nk.nn.Dropout(p, seed=11)
    x = rng.uniform(1.0, 2.0, (50, 40)).astype(np.float32)
    y = drop(x)
    kept = y != 0
    assert 0.5 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(drop.backward(dy), np.where(kept, dy / (1 - p), 0.0), rtol=1e-6)


def test_dropout_backward_matches_finite_differences(rng):
    x = rng.standard_normal((3, 7))
    g = rng.standard_normal((3, 7))

    def loss():
        return float(np.sum(nk.nn.Dropout(0.3, seed=5)(x) * g))

    drop = nk.nn.Dropout(0.3, seed=5)
    drop(x)
    np.testing.assert_allclose(drop.backward(g), numerical_grad(loss, x), rtol=1e-6, atol=1e-8)


def test_dropout_new_mask_per_call_reproducible_from_seed():
    x = np.ones(1000, np.float32)
    a, b = nk.nn.Dropout(0.5, seed=3), nk.nn.Dropout(0.5, seed=3)
    ya1, ya2 = a(x), a(x)
    assert not np.array_equal(ya1, ya2)
    np.testing.assert_array_equal(ya1, b(x))
    np.testing.assert_array_equal(ya2, b(x))
    nk.random.seed(9)
    c1 = nk.nn.Dropout(0.5)(x)
    nk.random.seed(9)
    np.testing.assert_array_equal(c1, nk.nn.Dropout(0.5)(x))


def test_dropout_eval_is_identity():
    drop = nk.nn.Dropout(0.5, seed=0).eval()
    assert drop.training is False
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(drop(x), x)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(drop.backward(dy), dy)
    assert drop.params == {} and drop.grads == {} and drop.state_dict() == {}


def test_train_eval_return_self_and_set_flag():
    bn = nk.nn.BatchNorm(2)
    assert bn.training is True
    assert bn.eval() is bn and bn.training is False
    assert bn.train() is bn and bn.training is True
    assert bn.train(False) is bn and bn.training is False


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_batchnorm_running_stats_match_numpy(rng, channel_axis):
    momentum, eps, c = 0.2, 1e-5, 3
    bn = nk.nn.BatchNorm(c, momentum=momentum, eps=eps, channel_axis=channel_axis, dtype=F64)
    rm, rv = np.zeros(c), np.ones(c)
    for _ in range(4):
        x = rng.standard_normal((6, c, 5)) * 3 + 2
        xl = x if channel_axis == 1 else np.moveaxis(x, 1, -1).copy()
        bn(xl)
        rm = (1 - momentum) * rm + momentum * x.mean(axis=(0, 2))
        rv = (1 - momentum) * rv + momentum * x.var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(bn.buffers["running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], rv, rtol=1e-12)

    before = bn.state_dict()
    bn.eval()
    x = rng.standard_normal((2, c, 5))
    xl = x if channel_axis == 1 else np.moveaxis(x, 1, -1).copy()
    expected = (x - rm[:, None]) / np.sqrt(rv[:, None] + eps)
    if channel_axis == -1:
        expected = np.moveaxis(expected, 1, -1)
    np.testing.assert_allclose(bn(xl), expected, rtol=1e-12, atol=1e-12)
    for key in ("running_mean", "running_var"):  # eval leaves them alone
        np.testing.assert_array_equal(bn.buffers[key], before[key])


def test_batchnorm_train_uses_batch_stats_and_without_tracking_eval_too(rng):
    x = rng.standard_normal((8, 3)) * 4 + 1
    batch = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    bn = nk.nn.BatchNorm(3, dtype=F64)
    np.testing.assert_allclose(bn(x), batch, rtol=1e-10, atol=1e-12)
    assert not np.allclose(bn.eval()(x), batch)
    free = nk.nn.BatchNorm(3, track_running_stats=False, dtype=F64).eval()
    assert free.buffers == {}
    np.testing.assert_allclose(free(x), batch, rtol=1e-10, atol=1e-12)


def test_instancenorm_running_stats_and_eval(rng):
    momentum, c = 0.1, 2
    inorm = nk.nn.InstanceNorm(c, track_running_stats=True, momentum=momentum, dtype=F64)
    rm, rv = np.zeros(c), np.ones(c)
    for _ in range(3):
        x = rng.standard_normal((4, c, 6)) * 2 - 1
        y = inorm(x)
        np.testing.assert_allclose(y, (x - x.mean(2, keepdims=True)) / np.sqrt(x.var(2, keepdims=True) + 1e-5),
                                   rtol=1e-10, atol=1e-12)
        rm = (1 - momentum) * rm + momentum * x.mean(2).mean(0)
        rv = (1 - momentum) * rv + momentum * x.var(2, ddof=1).mean(0)
    np.testing.assert_allclose(inorm.buffers["running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(inorm.buffers["running_var"], rv, rtol=1e-12)
    x = rng.standard_normal((1, c, 6))
    np.testing.assert_allclose(inorm.eval()(x), (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5), rtol=1e-12)
    untracked = nk.nn.InstanceNorm(c, dtype=F64).eval()
    np.testing.assert_allclose(untracked(x), (x - x.mean(2, keepdims=True)) / np.sqrt(x.var(2, keepdims=True) + 1e-5),
                               rtol=1e-10, atol=1e-12)


def test_layer_norms_same_in_train_and_eval(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    for layer in (nk.nn.LayerNorm(5), nk.nn.RMSNorm((4, 5)), nk.nn.GroupNorm(2, 4), nk.nn.LocalResponseNorm(3)):
        np.testing.assert_array_equal(layer.train()(x), layer.eval()(x))


STATEFUL = [
    ("ln", lambda: nk.nn.LayerNorm((2, 3)), (4, 2, 3)),
    ("rms", lambda: nk.nn.RMSNorm(3, dtype=F64), (4, 3)),
    ("bn", lambda: nk.nn.BatchNorm(3, channel_axis=-1), (4, 5, 3)),
    ("bn_bf16", lambda: nk.nn.BatchNorm(3, dtype=ml_dtypes.bfloat16), (4, 3)),
    ("gn", lambda: nk.nn.GroupNorm(2, 4), (3, 4, 2)),
    ("in", lambda: nk.nn.InstanceNorm(3, affine=True, track_running_stats=True), (2, 3, 4)),
]


@pytest.mark.parametrize("name,make,shape", STATEFUL, ids=[s[0] for s in STATEFUL])
def test_state_dict_round_trip_through_npz(rng, tmp_path, name, make, shape):
    layer = make()
    randomize_params(layer, rng)
    dtype = layer.params["weight"].dtype
    for _ in range(3):
        layer((rng.standard_normal(shape) * 2 + 1).astype(dtype))
    sd = layer.state_dict()
    expected_keys = set(layer.params) | set(layer.buffers)
    assert set(sd) == expected_keys and expected_keys >= {"weight"}
    path = tmp_path / f"{name}.npz"
    np.savez(path, **sd)

    fresh = make()
    weight = fresh.params["weight"]
    with np.load(path) as data:
        assert fresh.load_state_dict(data) is fresh
    assert fresh.params["weight"] is weight  # loaded in place: optimizer references stay valid
    for key, value in layer.state_dict().items():
        got = fresh.state_dict()[key]
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got.astype(F64), value.astype(F64), err_msg=key)
    x = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(fresh.eval()(x).astype(F64), layer.eval()(x).astype(F64))


def test_state_dict_returns_copies():
    bn = nk.nn.BatchNorm(2)
    sd = bn.state_dict()
    assert set(sd) == {"weight", "bias", "running_mean", "running_var"}
    sd["weight"][:] = 5
    sd["running_var"][:] = 7
    assert np.all(bn.params["weight"] == 1) and np.all(bn.buffers["running_var"] == 1)


def test_load_state_dict_errors():
    bn = nk.nn.BatchNorm(2)
    good = bn.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['running_var'\]"):
        bn.load_state_dict({k: v for k, v in good.items() if k != "running_var"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        bn.load_state_dict({**good, "extra": np.zeros(2)})
    with pytest.raises(ValueError, match=r"state\['bias'\]: expected shape \(2,\), got \(3,\)"):
        bn.load_state_dict({**good, "bias": np.zeros(3)})
    with pytest.raises(TypeError, match="real-valued"):
        bn.load_state_dict({**good, "weight": np.zeros(2, complex)})
    with pytest.raises(TypeError, match="mapping"):
        bn.load_state_dict([1, 2])
    before = bn.state_dict()
    with pytest.raises(ValueError):
        bn.load_state_dict({**{k: v + 1 for k, v in good.items()}, "bias": np.zeros(3)})
    for k, v in before.items():  # a failed load leaves the layer untouched
        np.testing.assert_array_equal(bn.state_dict()[k], v)


@pytest.mark.parametrize("name,make,shape", CASES + [("drop", lambda: nk.nn.Dropout(0.5), (2, 3))],
                         ids=CASE_IDS + ["drop"])
def test_backward_before_forward_is_runtime_error(name, make, shape):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        make().backward(np.ones(shape))


def test_constructor_and_input_errors():
    with pytest.raises(ValueError, match="num_groups"):
        nk.nn.GroupNorm(3, 4)
    with pytest.raises(TypeError, match="dtype"):
        nk.nn.LayerNorm(4, dtype=np.int32)
    with pytest.raises(ValueError, match="channel_axis"):
        nk.nn.BatchNorm(4, channel_axis=2)
    with pytest.raises(ValueError, match="momentum"):
        nk.nn.BatchNorm(4, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        nk.nn.RMSNorm(4, eps=0.0)
    with pytest.raises(ValueError, match="p must be in"):
        nk.nn.Dropout(1.0)
    with pytest.raises(TypeError, match="seed"):
        nk.nn.Dropout(0.5, seed=-1)
    with pytest.raises(ValueError, match="num_features"):
        nk.nn.BatchNorm(0)
    with pytest.raises(ValueError, match=r"4 channels on axis 1, got shape \(2, 3\)"):
        nk.nn.BatchNorm(4)(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"trailing dimensions must be \(4,\)"):
        nk.nn.LayerNorm(4)(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        nk.nn.LayerNorm(3)([1.0, 2.0, 3.0])
    drop = nk.nn.Dropout(0.5, seed=1)
    drop(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        drop.backward(np.ones((3, 2), np.float32))


def test_repr_names_the_configuration():
    assert repr(nk.nn.BatchNorm(8, channel_axis=-1)).startswith("BatchNorm(8, eps=1e-05, momentum=0.1")
    assert "GroupNorm(2, 4" in repr(nk.nn.GroupNorm(2, 4))
    assert repr(nk.nn.Dropout(0.25)) == "Dropout(p=0.25, seed=None)"
