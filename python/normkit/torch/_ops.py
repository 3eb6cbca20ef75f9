"""normkit's ops as ``torch.library`` custom ops (namespace ``normkit``).

Every forward op returns its output and the statistics its backward needs; every backward is a
custom op too (so that ``torch.compile`` traces the backward graph as well), registered with
``register_autograd``. Each op has a fake (meta) implementation giving the shapes, dtypes and
strides of the real one.

CPU tensors reach normkit's NumPy functions as zero-copy NumPy views (bfloat16 through an int16
view and ``ml_dtypes.bfloat16``), and the results come back with ``torch.from_numpy``. CUDA tensors
are passed as they are: normkit runs its CUDA kernels on them and returns CUDA tensors.

Channel ops (batch/group/instance norm, LRN) given a channels-last tensor (``(N, C, *spatial)``
whose ``movedim(1, -1)`` is contiguous) run normkit's channels-last kernels (``channel_axis=-1``)
and return channels-last results; any other layout gives C-contiguous results.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch
from torch import Tensor

import normkit as nk

_BF16 = np.dtype(ml_dtypes.bfloat16)
_lib = "normkit::"


def _a(t: Tensor | None):
    """A tensor as an array normkit takes: a NumPy view (CPU) or the tensor itself (CUDA)."""
    if t is None:
        return None
    if not t.is_cpu:
        return t.detach()
    if t.dtype is torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(_BF16)
    return t.detach().numpy()


def _t(a) -> Tensor:
    """normkit's result as a tensor (zero-copy for NumPy arrays)."""
    if isinstance(a, np.ndarray):
        if a.dtype == _BF16:
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)
    return a


def _sdt(x: Tensor) -> torch.dtype:
    """Dtype of normkit's statistics for input x."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _cl(x: Tensor) -> bool:
    """True for a channels-last (N, C, *spatial) tensor that is not also C-contiguous."""
    return x.dim() > 2 and not x.is_contiguous() and x.movedim(1, -1).is_contiguous()


def _empty(x: Tensor, cl: bool, dtype: torch.dtype | None = None) -> Tensor:
    """Fake result of x's shape: C-contiguous, or channels-last when cl."""
    dtype = x.dtype if dtype is None else dtype
    if cl:
        return x.new_empty(x.movedim(1, -1).shape, dtype=dtype).movedim(-1, 1)
    return x.new_empty(x.shape, dtype=dtype)


def _pdt(w: Tensor | None, x: Tensor) -> torch.dtype:
    """Dtype of parameter gradients: the weight's, x's without one."""
    return x.dtype if w is None else w.dtype


# --------------------------------------------------------------------------------------------
# LayerNorm / RMSNorm (rows over x.shape[axis:])


@torch.library.custom_op(_lib + "layer_norm", mutates_args=())
def layer_norm(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, axis: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    y, mean, rstd = nk.layer_norm_forward(_a(x), _a(weight), _a(bias), axis=axis, eps=eps)
    return _t(y), _t(mean), _t(rstd)


@layer_norm.register_fake
def _(x, weight, bias, axis, eps):
    return (
        x.new_empty(x.shape),
        x.new_empty(x.shape[:axis], dtype=_sdt(x)),
        x.new_empty(x.shape[:axis], dtype=_sdt(x)),
    )


@torch.library.custom_op(_lib + "layer_norm_backward", mutates_args=())
def layer_norm_backward(
    dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None, axis: int
) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = nk.layer_norm_backward(_a(dy), _a(x), _a(mean), _a(rstd), _a(weight), axis=axis)
    return _t(dx), _t(dw), _t(db)


@layer_norm_backward.register_fake
def _(dy, x, mean, rstd, weight, axis):
    p = x.shape[axis:]
    return x.new_empty(x.shape), x.new_empty(p, dtype=_pdt(weight, x)), x.new_empty(p, dtype=_pdt(weight, x))


def _ln_setup(ctx, inputs, output):
    x, weight, bias, axis, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.axis, ctx.has_bias = axis, bias is not None


def _ln_bwd(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = layer_norm_backward(dy, x, mean, rstd, weight, ctx.axis)
    return dx, (dw if weight is not None else None), (db if ctx.has_bias else None), None, None


layer_norm.register_autograd(_ln_bwd, setup_context=_ln_setup)


@torch.library.custom_op(_lib + "rms_norm", mutates_args=())
def rms_norm(x: Tensor, weight: Tensor | None, axis: int, eps: float) -> tuple[Tensor, Tensor]:
    y, rstd = nk.rms_norm_forward(_a(x), _a(weight), axis=axis, eps=eps)
    return _t(y), _t(rstd)


@rms_norm.register_fake
def _(x, weight, axis, eps):
    return x.new_empty(x.shape), x.new_empty(x.shape[:axis], dtype=_sdt(x))


@torch.library.custom_op(_lib + "rms_norm_backward", mutates_args=())
def rms_norm_backward(
    dy: Tensor, x: Tensor, rstd: Tensor, weight: Tensor | None, axis: int
) -> tuple[Tensor, Tensor]:
    dx, dw = nk.rms_norm_backward(_a(dy), _a(x), _a(rstd), _a(weight), axis=axis)
    return _t(dx), _t(dw)


@rms_norm_backward.register_fake
def _(dy, x, rstd, weight, axis):
    return x.new_empty(x.shape), x.new_empty(x.shape[axis:], dtype=_pdt(weight, x))


def _rms_setup(ctx, inputs, output):
    x, weight, axis, _ = inputs
    ctx.save_for_backward(x, weight, output[1])
    ctx.axis = axis


def _rms_bwd(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_backward(dy, x, rstd, weight, ctx.axis)
    return dx, (dw if weight is not None else None), None, None


rms_norm.register_autograd(_rms_bwd, setup_context=_rms_setup)


# Fused residual add: y = norm(h), h = x + residual; both (y, h) are differentiable outputs.


@torch.library.custom_op(_lib + "add_layer_norm", mutates_args=())
def add_layer_norm(
    x: Tensor, residual: Tensor, weight: Tensor | None, bias: Tensor | None, axis: int, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    y, h, mean, rstd = nk.add_layer_norm_forward(
        _a(x), _a(residual), _a(weight), _a(bias), axis=axis, eps=eps
    )
    return _t(y), _t(h), _t(mean), _t(rstd)


@add_layer_norm.register_fake
def _(x, residual, weight, bias, axis, eps):
    s = x.shape[:axis]
    return (
        x.new_empty(x.shape),
        x.new_empty(x.shape),
        x.new_empty(s, dtype=_sdt(x)),
        x.new_empty(s, dtype=_sdt(x)),
    )


def _aln_setup(ctx, inputs, output):
    _, residual, weight, bias, axis, _ = inputs
    ctx.save_for_backward(output[1], weight, output[2], output[3])
    ctx.axis, ctx.has_bias, ctx.rdtype = axis, bias is not None, residual.dtype


def _aln_bwd(ctx, dy, dh, _dmean, _drstd):
    h, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = layer_norm_backward(dy, h, mean, rstd, weight, ctx.axis)
    dx = dx + dh
    return (
        dx,
        dx.to(ctx.rdtype),
        (dw if weight is not None else None),
        (db if ctx.has_bias else None),
        None,
        None,
    )


add_layer_norm.register_autograd(_aln_bwd, setup_context=_aln_setup)


@torch.library.custom_op(_lib + "add_rms_norm", mutates_args=())
def add_rms_norm(
    x: Tensor, residual: Tensor, weight: Tensor | None, axis: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    y, h, rstd = nk.add_rms_norm_forward(_a(x), _a(residual), _a(weight), axis=axis, eps=eps)
    return _t(y), _t(h), _t(rstd)


@add_rms_norm.register_fake
def _(x, residual, weight, axis, eps):
    return x.new_empty(x.shape), x.new_empty(x.shape), x.new_empty(x.shape[:axis], dtype=_sdt(x))


def _arms_setup(ctx, inputs, output):
    _, residual, weight, axis, _ = inputs
    ctx.save_for_backward(output[1], weight, output[2])
    ctx.axis, ctx.rdtype = axis, residual.dtype


def _arms_bwd(ctx, dy, dh, _drstd):
    h, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_backward(dy, h, rstd, weight, ctx.axis)
    dx = dx + dh
    return dx, dx.to(ctx.rdtype), (dw if weight is not None else None), None, None


add_rms_norm.register_autograd(_arms_bwd, setup_context=_arms_setup)


# --------------------------------------------------------------------------------------------
# Channel ops: (N, C, *spatial), C-contiguous or channels-last


def _chan(x: Tensor):
    """(array of x for normkit, channel_axis, channels-last flag)."""
    if _cl(x):
        return _a(x.movedim(1, -1)), -1, True
    return _a(x), 1, False


def _back(a, cl: bool) -> Tensor:
    t = _t(a)
    return t.movedim(-1, 1) if cl else t


def _new_running(x, running_mean, running_var):
    """Copies of the running statistics, for normkit to read and (when it updates them) overwrite,
    returned as outputs: custom ops with autograd must be functional, so the caller copies them
    back into the buffers. ``None`` stays ``None`` (and the op returns empty tensors)."""
    if running_mean is None:
        return None, None
    return running_mean.clone(), running_var.clone()


def _running_out(x, rm, rv):
    if rm is None:
        return x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32)
    return rm, rv


def _fake_running(x, running_mean, running_var):
    if running_mean is None:
        return x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32)
    return torch.empty_like(running_mean), torch.empty_like(running_var)


@torch.library.custom_op(_lib + "batch_norm", mutates_args=())
def batch_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    rm, rv = _new_running(x, running_mean, running_var)
    y, mean, rstd = nk.batch_norm_forward(
        xa, _a(weight), _a(bias), _a(rm), _a(rv),
        training=training, momentum=momentum, eps=eps, channel_axis=ca,
    )  # fmt: skip
    return (_back(y, cl), _t(mean), _t(rstd), *_running_out(x, rm, rv))


@batch_norm.register_fake
def _(x, weight, bias, running_mean, running_var, training, momentum, eps):
    c = x.shape[1]
    rm, rv = _fake_running(x, running_mean, running_var)
    return _empty(x, _cl(x)), x.new_empty((c,), dtype=_sdt(x)), x.new_empty((c,), dtype=_sdt(x)), rm, rv


@torch.library.custom_op(_lib + "batch_norm_backward", mutates_args=())
def batch_norm_backward(
    dy: Tensor, x: Tensor, save_mean: Tensor, save_rstd: Tensor, weight: Tensor | None, training: bool
) -> tuple[Tensor, Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    dya = _a(dy.movedim(1, -1)) if cl else _a(dy)
    dx, dw, db = nk.batch_norm_backward(
        dya, xa, _a(save_mean), _a(save_rstd), _a(weight), training=training, channel_axis=ca
    )
    return _back(dx, cl), _t(dw), _t(db)


@batch_norm_backward.register_fake
def _(dy, x, save_mean, save_rstd, weight, training):
    c = x.shape[1]
    return (
        _empty(x, _cl(x)),
        x.new_empty((c,), dtype=_pdt(weight, x)),
        x.new_empty((c,), dtype=_pdt(weight, x)),
    )


def _bn_setup(ctx, inputs, output):
    x, weight, bias, _, _, training, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.training, ctx.has_bias = training, bias is not None


def _bn_bwd(ctx, dy, _dmean, _drstd, _drm, _drv):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = batch_norm_backward(dy, x, mean, rstd, weight, ctx.training)
    return (
        dx,
        (dw if weight is not None else None),
        (db if ctx.has_bias else None),
        None,
        None,
        None,
        None,
        None,
    )


batch_norm.register_autograd(_bn_bwd, setup_context=_bn_setup)


@torch.library.custom_op(_lib + "group_norm", mutates_args=())
def group_norm(
    x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    y, mean, rstd = nk.group_norm_forward(xa, num_groups, _a(weight), _a(bias), eps=eps, channel_axis=ca)
    return _back(y, cl), _t(mean), _t(rstd)


@group_norm.register_fake
def _(x, num_groups, weight, bias, eps):
    s = (x.shape[0], num_groups)
    return _empty(x, _cl(x)), x.new_empty(s, dtype=_sdt(x)), x.new_empty(s, dtype=_sdt(x))


@torch.library.custom_op(_lib + "group_norm_backward", mutates_args=())
def group_norm_backward(
    dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None, num_groups: int
) -> tuple[Tensor, Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    dya = _a(dy.movedim(1, -1)) if cl else _a(dy)
    dx, dw, db = nk.group_norm_backward(
        dya, xa, _a(mean), _a(rstd), _a(weight), num_groups=num_groups, channel_axis=ca
    )
    return _back(dx, cl), _t(dw), _t(db)


@group_norm_backward.register_fake
def _(dy, x, mean, rstd, weight, num_groups):
    c = x.shape[1]
    return (
        _empty(x, _cl(x)),
        x.new_empty((c,), dtype=_pdt(weight, x)),
        x.new_empty((c,), dtype=_pdt(weight, x)),
    )


def _gn_setup(ctx, inputs, output):
    x, num_groups, weight, bias, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.num_groups, ctx.has_bias = num_groups, bias is not None


def _gn_bwd(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = group_norm_backward(dy, x, mean, rstd, weight, ctx.num_groups)
    return dx, None, (dw if weight is not None else None), (db if ctx.has_bias else None), None


group_norm.register_autograd(_gn_bwd, setup_context=_gn_setup)


@torch.library.custom_op(_lib + "instance_norm", mutates_args=())
def instance_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    rm, rv = _new_running(x, running_mean, running_var)
    y, mean, rstd = nk.instance_norm_forward(
        xa, _a(weight), _a(bias), _a(rm), _a(rv),
        use_input_stats=use_input_stats, momentum=momentum, eps=eps, channel_axis=ca,
    )  # fmt: skip
    return (_back(y, cl), _t(mean), _t(rstd), *_running_out(x, rm, rv))


@instance_norm.register_fake
def _(x, weight, bias, running_mean, running_var, use_input_stats, momentum, eps):
    s = tuple(x.shape[:2])
    rm, rv = _fake_running(x, running_mean, running_var)
    return _empty(x, _cl(x)), x.new_empty(s, dtype=_sdt(x)), x.new_empty(s, dtype=_sdt(x)), rm, rv


@torch.library.custom_op(_lib + "instance_norm_backward", mutates_args=())
def instance_norm_backward(
    dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | None, use_input_stats: bool
) -> tuple[Tensor, Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    dya = _a(dy.movedim(1, -1)) if cl else _a(dy)
    dx, dw, db = nk.instance_norm_backward(
        dya, xa, _a(mean), _a(rstd), _a(weight), channel_axis=ca, use_input_stats=use_input_stats
    )
    return _back(dx, cl), _t(dw), _t(db)


@instance_norm_backward.register_fake
def _(dy, x, mean, rstd, weight, use_input_stats):
    c = x.shape[1]
    return (
        _empty(x, _cl(x)),
        x.new_empty((c,), dtype=_pdt(weight, x)),
        x.new_empty((c,), dtype=_pdt(weight, x)),
    )


def _in_setup(ctx, inputs, output):
    x, weight, bias, _, _, use_input_stats, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.use_input_stats, ctx.has_bias = use_input_stats, bias is not None


def _in_bwd(ctx, dy, _dmean, _drstd, _drm, _drv):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = instance_norm_backward(dy, x, mean, rstd, weight, ctx.use_input_stats)
    return (
        dx,
        (dw if weight is not None else None),
        (db if ctx.has_bias else None),
        None,
        None,
        None,
        None,
        None,
    )


instance_norm.register_autograd(_in_bwd, setup_context=_in_setup)


@torch.library.custom_op(_lib + "local_response_norm", mutates_args=())
def local_response_norm(x: Tensor, size: int, alpha: float, beta: float, k: float) -> tuple[Tensor, Tensor]:
    xa, ca, cl = _chan(x)
    y, scale = nk.local_response_norm_forward(xa, size, alpha=alpha, beta=beta, k=k, channel_axis=ca)
    return _back(y, cl), _back(scale, cl)


@local_response_norm.register_fake
def _(x, size, alpha, beta, k):
    cl = _cl(x)
    return _empty(x, cl), _empty(x, cl, _sdt(x))


@torch.library.custom_op(_lib + "local_response_norm_backward", mutates_args=())
def local_response_norm_backward(
    dy: Tensor, x: Tensor, y: Tensor, scale: Tensor, size: int, alpha: float, beta: float
) -> Tensor:
    cl = _cl(x)
    if cl:
        dya, xa, ya, sa = (_a(t.movedim(1, -1)) for t in (dy, x, y, scale))
    else:
        dya, xa, ya, sa = _a(dy), _a(x), _a(y), _a(scale)
    (dx,) = nk.local_response_norm_backward(
        dya, xa, ya, sa, size, alpha=alpha, beta=beta, channel_axis=-1 if cl else 1
    )
    return _back(dx, cl)


@local_response_norm_backward.register_fake
def _(dy, x, y, scale, size, alpha, beta):
    return _empty(x, _cl(x))


def _lrn_setup(ctx, inputs, output):
    x, size, alpha, beta, _ = inputs
    ctx.save_for_backward(x, output[0], output[1])
    ctx.size, ctx.alpha, ctx.beta = size, alpha, beta


def _lrn_bwd(ctx, dy, _dscale):
    x, y, scale = ctx.saved_tensors
    return (
        local_response_norm_backward(dy, x, y, scale, ctx.size, ctx.alpha, ctx.beta),
        None,
        None,
        None,
        None,
    )


local_response_norm.register_autograd(_lrn_bwd, setup_context=_lrn_setup)


# --------------------------------------------------------------------------------------------
# Dropout: the mask is a function of (seed, shape); the seed is a 0-d int64 tensor, so that it is
# a graph input (a fresh one per call) under torch.compile, and the backward regenerates the mask.


@torch.library.custom_op(_lib + "dropout", mutates_args=())
def dropout(x: Tensor, p: float, seed: Tensor) -> Tensor:
    return _t(nk.dropout(_a(x), p, training=True, seed=int(seed)))


@dropout.register_fake
def _(x, p, seed):
    return x.new_empty(x.shape)


@torch.library.custom_op(_lib + "dropout_backward", mutates_args=())
def dropout_backward(dy: Tensor, p: float, seed: Tensor) -> Tensor:
    return _t(nk.dropout_backward(_a(dy), p=p, seed=int(seed))[0])


@dropout_backward.register_fake
def _(dy, p, seed):
    return dy.new_empty(dy.shape)


def _drop_setup(ctx, inputs, output):
    _, p, seed = inputs
    ctx.save_for_backward(seed)
    ctx.p = p


def _drop_bwd(ctx, dy):
    (seed,) = ctx.saved_tensors
    return dropout_backward(dy, ctx.p, seed), None, None


dropout.register_autograd(_drop_bwd, setup_context=_drop_setup)


def new_seed() -> Tensor:
    """A fresh dropout seed: a 0-d int64 CPU tensor from torch's generator (so ``torch.manual_seed``
    makes normkit's dropout masks reproducible)."""
    return torch.randint(0, 2**62, (), dtype=torch.int64)
