"""cpu: generated C code for the host CPU, the bundled general-purpose target.

It runs single ops as well as regions (its policy keeps every region it claims), on
float32 tensors of static shape. It has the lowest priority, so accelerators take what
they can and cpu picks up the rest that plain C can run.

This module is the target's support table; its C code generator is
:mod:`reference_backends.cpu.codegen`, attached in the package's ``__init__``.
"""

from __future__ import annotations

from byoc_sdk.target import Target
from partition.policy import RegionPolicy
from reference_backends.common import (
    BINARY_OPS,
    FLOAT32,
    REDUCE_OPS,
    UNARY_OPS,
    batchnorm_inference_check,
    cast_check,
    conv2d_check,
    conv_transpose2d_check,
    declare_composites,
    layernorm_check,
    pool2d_check,
    spatial_rank_check,
)

target = Target(
    "cpu",
    version="0.1.0",
    vendor="byoc",
    description="Generated C code for the host CPU (float32, static shapes)",
    priority=0,
    merge_style="regions",
    constants="bind",
    policy=RegionPolicy(min_nodes=1, require_compute=False),
)

F = FLOAT32

# --- compute -----------------------------------------------------------------------

target.support("Conv", dtypes=F, static_shapes=True,
               note="2-D; groups, depthwise, pads, strides, dilations, any auto_pad",
               )(conv2d_check())
target.support("ConvTranspose", dtypes=F, static_shapes=True,
               note="2-D, group 1, no dilation, explicit pads")(conv_transpose2d_check)
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

# --- data movement -----------------------------------------------------------------

target.support("Reshape", "Squeeze", "Unsqueeze", dtypes=F, const_inputs=(1,),
               static_shapes=True)
target.support("Flatten", "Transpose", "Concat", dtypes=F, static_shapes=True)
target.support("Slice", dtypes=F, const_inputs=(1, 2, 3, 4), static_shapes=True)
target.support("Gather", dtypes=F, static_shapes=True, note="indices may be computed")
target.support("Cast", static_shapes=True, note="any numeric type to float32")(cast_check())

# --- composites --------------------------------------------------------------------

declare_composites(target)
