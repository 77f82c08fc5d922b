"""simaccel: a simulated accelerator, the bundled example of a small NPU.

A weight-stationary 16x16 systolic array runs Conv, Gemm and MatMul; a vector unit runs
elementwise ops, activations and pooling; 512 KiB of SRAM holds the tiles in flight and
1 GiB of DRAM a region's tensors (see :mod:`reference_backends.simaccel.limits`). Every
shape must be known at build time. The compiler handles float32; the chip's int8 units
(int32 accumulation) are not used yet.

This module is the chip's support table: which ops and fused patterns its compiler
handles, and why it declines the rest. The compiler (:mod:`.compiler`) is loaded on the
first region it compiles; the runtime (:mod:`.runtime`) needs neither.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from byoc_sdk.target import Target
from reference_backends.common import (
    FLOAT32,
    all_of,
    batchnorm_inference_check,
    bias_along,
    conv2d_check,
    conv_add_bias_act_pattern,
    declare_composites,
    gemm_check,
    matmul_add_pattern,
    matmul_check,
    max_rank_check,
    members_supported,
    nonempty_check,
    pool2d_check,
    spatial_mean_check,
    spatial_rank_check,
)
from reference_backends.simaccel.limits import LIMITS, describe_bytes

if TYPE_CHECKING:
    from byoc_sdk.codegen import Binary, Region
    from byoc_sdk.node_info import NodeInfo
    from byoc_sdk.target import CheckResult, OpCheck

target = Target(
    "simaccel",
    version="0.1.0",
    vendor="byoc",
    description="Simulated accelerator: 16x16 weight-stationary systolic array, vector unit, "
    "512 KiB SRAM, 1 GiB DRAM (float32, no empty tensors; the chip's int8 is not compiled yet)",
    priority=10,
    merge_style="regions",
    constants="bind",
)

NAME = target.name
#: What the compiler handles: the chip's array and vector unit also run int8
#: (LIMITS.dtypes), but the compiler is float32-only so far, and a target declares what
#: its codegen compiles, not what its silicon could do.
COMPILED = FLOAT32
#: float32 only: ONNX defines these ops on float types alone (int8 Conv or MatMul are the
#: quantized ops ConvInteger / QLinearConv / MatMulInteger, not declared yet).
FLOAT = FLOAT32
#: Activations the vector unit applies to the array's output as it drains.
FUSED_ACTIVATIONS = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSwish")

rank_limit = max_rank_check(LIMITS.max_rank, NAME)
kernel = f"{LIMITS.max_kernel}x{LIMITS.max_kernel}"


def dram_check(node: NodeInfo) -> CheckResult:
    """Declines a node whose tensors do not fit DRAM together: a layer reads and writes
    them all there (a huge static shape would otherwise be tiled at length, then fail)."""
    # Every slot is float32; shapes are static by then (the rules ask for it). The IR
    # values rather than TensorInfo views, as in nonempty_check: this runs for every node.
    values = {*node.node.inputs, *node.node.outputs}  # a value read twice counts once
    values.discard(None)
    size = 4 * sum([math.prod(v.shape.dims) for v in values])
    if size > LIMITS.dram_bytes:
        return (f"its tensors take {describe_bytes(size)}, more than {NAME}'s "
                f"{describe_bytes(LIMITS.dram_bytes)} of DRAM")
    return True


def on_chip(*checks: OpCheck) -> OpCheck:
    """``checks``, then no empty tensor and room in DRAM: the compiler's layouts and tile
    loops assume at least one element, so an op on a tensor with a zero dimension stays on
    the host, as does one too large for the chip."""
    return all_of(*checks, nonempty_check, dram_check)


# --- systolic array ----------------------------------------------------------------

target.support(
    "Conv", dtypes=FLOAT, const_inputs=(1, 2), static_shapes=True,
    note=f"2-D, kernel <= {kernel}, no dilation, group 1 or depthwise, "
    f"<= {LIMITS.max_channels} channels",
)(on_chip(conv2d_check(owner=NAME, max_kernel=LIMITS.max_kernel,
                       max_channels=LIMITS.max_channels, allow_dilation=False,
                       groups="depthwise")))

target.support(
    "Gemm", dtypes=FLOAT, const_inputs=(1,), static_shapes=True, note="transA 0, alpha = beta = 1",
)(on_chip(gemm_check(allow_trans_a=False, allow_scaling=False)))

target.support(
    "MatMul", dtypes=FLOAT, const_inputs=(1,), static_shapes=True,
    note=f"2-D or batched, rank <= {LIMITS.max_rank}",
)(on_chip(matmul_check(owner=NAME, max_rank=LIMITS.max_rank)))

# --- vector unit -------------------------------------------------------------------

target.support("Add", "Sub", "Mul", dtypes=COMPILED, static_shapes=True,
               note=f"broadcasting, rank <= {LIMITS.max_rank}")(on_chip(rank_limit))
target.support("Relu", dtypes=COMPILED, static_shapes=True, check=on_chip())
target.support("Clip", dtypes=COMPILED, const_inputs=(1, 2), static_shapes=True,
               check=on_chip())
target.support("LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
               dtypes=FLOAT, static_shapes=True, check=on_chip())

pool = on_chip(pool2d_check(owner=NAME, max_kernel=LIMITS.max_kernel, allow_dilation=False,
                            allow_ceil_mode=False, allow_count_include_pad=False))
pool_note = f"2-D, kernel <= {kernel}; no dilation, ceil_mode, count_include_pad"
target.support("MaxPool", dtypes=COMPILED, static_shapes=True, note=pool_note)(pool)
target.support("AveragePool", dtypes=FLOAT, static_shapes=True, note=pool_note)(pool)
target.support("GlobalAveragePool", dtypes=FLOAT, static_shapes=True,
               note="2-D")(on_chip(spatial_rank_check(2, "pooling")))
# PyTorch's exporter writes global average pooling as ReduceMean over the spatial axes;
# declined, it would leave the pooling on the host and cut the classifier off the region.
target.support("ReduceMean", dtypes=FLOAT, const_inputs=(1,), static_shapes=True,
               note="axes 2, 3 of 4-D data (global average pooling), keepdims 0 or 1",
               )(on_chip(spatial_mean_check))

target.support(
    "BatchNormalization", dtypes=FLOAT, const_inputs=(1, 2, 3, 4), static_shapes=True,
    note=f"inference mode, rank <= {LIMITS.max_rank}",
)(on_chip(batchnorm_inference_check, rank_limit))

# --- layout (no data movement) -----------------------------------------------------

target.support("Flatten", dtypes=COMPILED, static_shapes=True, check=on_chip())
target.support("Reshape", dtypes=COMPILED, const_inputs=(1,), static_shapes=True,
               check=on_chip())

# --- composites: the array's output drains through the vector unit -----------------
# conv_bn_act, conv_act, gemm_act and matmul_add_act with the activations above, plus:

declare_composites(target, FUSED_ACTIVATIONS)
target.pattern("conv_add_bias_act", conv_add_bias_act_pattern(FUSED_ACTIVATIONS),
               members_supported(target, bias_along("conv", axis=1)),
               note=f"Conv -> Add(per-channel constant) -> {'|'.join(FUSED_ACTIVATIONS)}",
               structural=True)
target.pattern("matmul_add", matmul_add_pattern(),
               members_supported(target, bias_along("matmul", axis=-1)),
               note="MatMul(x, constant) -> Add(row constant)", structural=True)


def compile_region(region: Region) -> Binary:
    """simaccel's codegen (:func:`reference_backends.simaccel.compiler.compile_region`),
    imported on first use: declaring the target must not load the compiler."""
    from reference_backends.simaccel.compiler import compile_region as compile_

    return compile_(region)


target.codegen = compile_region
