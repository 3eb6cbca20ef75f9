"""PyTorch front end of normkit: custom ops, a functional API and drop-in modules.

- ``torch.ops.normkit.*``: ``torch.library`` custom ops (forward and backward of every op), with
  fake implementations (``torch.compile(fullgraph=True)`` traces them) and autograd.
- :mod:`normkit.torch.functional`: ``layer_norm``, ``rms_norm``, ``batch_norm``, ``group_norm``,
  ``instance_norm``, ``local_response_norm``, ``dropout`` with ``torch.nn.functional``'s
  signatures, plus ``add_layer_norm`` / ``add_rms_norm``.
- Modules: subclasses of the ``torch.nn`` ones (same constructor, parameters, buffers and
  ``state_dict`` keys) whose forward runs normkit; :func:`convert` swaps them into a model.

Requires ``torch`` (not a dependency of normkit itself).
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError("normkit.torch needs PyTorch: pip install torch") from e

from torch import Tensor, nn

from . import _ops, functional  # noqa: F401  (_ops registers torch.ops.normkit.*)
from . import functional as F

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Dropout",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "LocalResponseNorm",
    "RMSNorm",
    "convert",
    "functional",
]


class LayerNorm(nn.LayerNorm):
    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.RMSNorm):
    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)


class _BatchNormMixin:
    def forward(self, input: Tensor) -> Tensor:  # torch.nn.modules.batchnorm._BatchNorm.forward
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        bn_training = True if self.training else (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            bn_training,
            factor,
            self.eps,
        )


class BatchNorm1d(_BatchNormMixin, nn.BatchNorm1d):
    pass


class BatchNorm2d(_BatchNormMixin, nn.BatchNorm2d):
    pass


class BatchNorm3d(_BatchNormMixin, nn.BatchNorm3d):
    pass


class GroupNorm(nn.GroupNorm):
    def forward(self, input: Tensor) -> Tensor:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class _InstanceNormMixin:
    def _apply_instance_norm(self, input: Tensor) -> Tensor:  # torch.nn's forward does the rest
        return F.instance_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )


class InstanceNorm1d(_InstanceNormMixin, nn.InstanceNorm1d):
    pass


class InstanceNorm2d(_InstanceNormMixin, nn.InstanceNorm2d):
    pass


class InstanceNorm3d(_InstanceNormMixin, nn.InstanceNorm3d):
    pass


class LocalResponseNorm(nn.LocalResponseNorm):
    def forward(self, input: Tensor) -> Tensor:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)


class Dropout(nn.Dropout):
    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)


_SWAP = {
    nn.LayerNorm: LayerNorm,
    nn.RMSNorm: RMSNorm,
    nn.BatchNorm1d: BatchNorm1d,
    nn.BatchNorm2d: BatchNorm2d,
    nn.BatchNorm3d: BatchNorm3d,
    nn.GroupNorm: GroupNorm,
    nn.InstanceNorm1d: InstanceNorm1d,
    nn.InstanceNorm2d: InstanceNorm2d,
    nn.InstanceNorm3d: InstanceNorm3d,
    nn.LocalResponseNorm: LocalResponseNorm,
    nn.Dropout: Dropout,
}


def _swapped(m: nn.Module) -> nn.Module:
    cls = _SWAP.get(type(m))
    if cls is None:
        return m
    new = cls.__new__(cls)
    new.__dict__.update(m.__dict__)  # the same parameters, buffers, hooks and mode
    return new


def convert(model: nn.Module) -> nn.Module:
    """Replace every ``torch.nn`` module of ``model`` (exactly one of the classes above, not a
    subclass) by normkit's, in place, sharing its parameters and buffers; returns ``model`` (or
    the replacement, when ``model`` itself is such a module)."""
    for name, child in list(model.named_children()):
        new = _swapped(child)
        if new is not child:
            setattr(model, name, new)
        else:
            convert(child)
    return _swapped(model)
