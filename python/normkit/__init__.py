"""normkit: fast, deterministic normalization and regularization kernels for NumPy.

Every op has a forward and a backward pass, runs on C++ SIMD kernels (the best ISA of this CPU,
chosen at import) with OpenMP threads, and gives bitwise identical results for any thread count.
"""

from __future__ import annotations

import warnings as _warnings

import ml_dtypes as _ml_dtypes
import numpy as _np

from . import _core

_core._set_bfloat16_dtype(_np.dtype(_ml_dtypes.bfloat16))
if _core.isa_env_error():
    _warnings.warn(_core.isa_env_error(), RuntimeWarning, stacklevel=2)

from . import augment, nn, random
from ._runtime import (
    available_isas,
    get_isa,
    get_num_threads,
    has_cuda,
    set_isa,
    set_num_threads,
    show_config,
)
from .channel import (
    batch_norm,
    batch_norm_backward,
    batch_norm_forward,
    group_norm,
    group_norm_backward,
    group_norm_forward,
    instance_norm,
    instance_norm_backward,
    instance_norm_forward,
    keras_momentum,
)
from .dropout import dropout, dropout_backward, dropout_forward
from .lrn import local_response_norm, local_response_norm_backward, local_response_norm_forward
from .norm import (
    add_layer_norm,
    add_layer_norm_forward,
    add_rms_norm,
    add_rms_norm_forward,
    layer_norm,
    layer_norm_backward,
    layer_norm_forward,
    rms_norm,
    rms_norm_backward,
    rms_norm_forward,
)
from .regularize import (
    EarlyStopping,
    add_l1_grad,
    add_l2_grad,
    l1_penalty,
    l1_prox,
    l2_penalty,
    max_norm,
    weight_decay,
)
from .scaling import MinMaxScaler, StandardScaler, minmax_scale, standardize

__version__: str = _core.__version__
bfloat16 = _ml_dtypes.bfloat16

__all__ = [
    "EarlyStopping",
    "MinMaxScaler",
    "StandardScaler",
    "__version__",
    "add_l1_grad",
    "add_l2_grad",
    "add_layer_norm",
    "add_layer_norm_forward",
    "add_rms_norm",
    "add_rms_norm_forward",
    "augment",
    "available_isas",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_forward",
    "bfloat16",
    "dropout",
    "dropout_backward",
    "dropout_forward",
    "get_isa",
    "get_num_threads",
    "group_norm",
    "group_norm_backward",
    "group_norm_forward",
    "has_cuda",
    "instance_norm",
    "instance_norm_backward",
    "instance_norm_forward",
    "keras_momentum",
    "l1_penalty",
    "l1_prox",
    "l2_penalty",
    "layer_norm",
    "layer_norm_backward",
    "layer_norm_forward",
    "local_response_norm",
    "local_response_norm_backward",
    "local_response_norm_forward",
    "max_norm",
    "minmax_scale",
    "nn",
    "random",
    "rms_norm",
    "rms_norm_backward",
    "rms_norm_forward",
    "set_isa",
    "set_num_threads",
    "show_config",
    "standardize",
    "weight_decay",
]
