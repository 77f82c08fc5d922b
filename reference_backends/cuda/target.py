"""cuda: generated CUDA C kernels for NVIDIA GPUs.

It runs float32 tensors of static shape: elementwise ops and activations, Gemm/MatMul,
2-D convolution and pooling, reductions, Softmax and LayerNormalization. Reshape-like ops
are metadata only (they change no data, so their shape inputs must be constants).

This module is the target's support table only; its CUDA code generator comes later in
the build step.
"""

from __future__ import annotations

from byoc_sdk.target import Target
from reference_backends.common import (
    BINARY_OPS,
    FLOAT32,
    REDUCE_OPS,
    UNARY_OPS,
    batchnorm_inference_check,
    conv2d_check,
    declare_composites,
    layernorm_check,
    pool2d_check,
    spatial_rank_check,
)

target = Target(
    "cuda",
    version="0.1.0",
    vendor="byoc",
    description="Generated CUDA C kernels (float32, static shapes)",
    priority=5,
    merge_style="regions",
    constants="bind",
)

F = FLOAT32

# --- compute -----------------------------------------------------------------------

target.support("Conv", dtypes=F, static_shapes=True,
               note="2-D; groups, depthwise, pads, strides, dilations, any auto_pad",
               )(conv2d_check())
target.support("Gemm", "MatMul", dtypes=F, static_shapes=True)
target.support("BatchNormalization", dtypes=F, static_shapes=True,
               note="inference mode")(batchnorm_inference_check)

# --- elementwise -------------------------------------------------------------------

target.support(*BINARY_OPS, *UNARY_OPS, dtypes=F, static_shapes=True)

# --- pooling, reductions, normalization --------------------------------------------

target.support("MaxPool", "AveragePool", dtypes=F, static_shapes=True,
               note="2-D, no indices output")(pool2d_check())
target.support("GlobalAveragePool", dtypes=F, static_shapes=True,
               note="2-D")(spatial_rank_check(2, "pooling"))
target.support(*REDUCE_OPS, dtypes=F, const_inputs=(1,), static_shapes=True)
target.support("Softmax", dtypes=F, static_shapes=True)
target.support("LayerNormalization", dtypes=F, static_shapes=True,
               note="normalized output only")(layernorm_check)

# --- metadata only -----------------------------------------------------------------

target.support("Reshape", "Squeeze", "Unsqueeze", dtypes=F, const_inputs=(1,),
               static_shapes=True)
target.support("Flatten", dtypes=F, static_shapes=True)

# --- composites --------------------------------------------------------------------

declare_composites(target)
