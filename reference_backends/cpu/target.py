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
    FLOAT32,
    cast_check,
    conv_transpose2d_check,
    declare_float_kernels,
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

declare_float_kernels(target)

# --- beyond the shared set: what plain C on the host can also run -------------------

target.support("ConvTranspose", dtypes=FLOAT32, static_shapes=True,
               note="2-D, group 1, no dilation, explicit pads")(conv_transpose2d_check)
target.support("Transpose", "Concat", dtypes=FLOAT32, static_shapes=True)
target.support("Slice", dtypes=FLOAT32, const_inputs=(1, 2, 3, 4), static_shapes=True)
target.support("Gather", dtypes=FLOAT32, static_shapes=True, note="indices may be computed")
target.support("Cast", static_shapes=True, note="any numeric type to float32")(cast_check())
