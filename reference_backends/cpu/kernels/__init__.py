"""Kernel families of the cpu generator, and the table from op type to kernel.

Each family module turns one ONNX op into a :class:`~.base.Kernel` whose ``emit``
writes a C function; the fused elementwise ops after it join its epilogue later (see
``reference_backends.cpu.lower``).
"""

from __future__ import annotations

from collections.abc import Callable

from reference_backends.cpu.graph import Op, UnsupportedError
from reference_backends.cpu.kernels import conv, elementwise, gemm, movement, pool, reduce
from reference_backends.cpu.kernels.base import Kernel
from reference_backends.cpu.params import LoopSchedule, RegionParams, resolve_params

Lowering = Callable[[Op, RegionParams], Kernel]


def _loops(make: Callable[[Op, LoopSchedule], Kernel]) -> Lowering:
    """A lowering for a plain loop-nest kernel, with its LoopSchedule resolved."""

    def lower(op: Op, region: RegionParams) -> Kernel:
        return make(op, resolve_params(LoopSchedule(), op.op_type, op.name, region))

    return lower


LOWERINGS: dict[str, Lowering] = {
    "Gemm": gemm.gemm_kernel,
    "MatMul": gemm.matmul_kernel,
    "Conv": conv.conv_kernel,
    "ConvTranspose": conv.conv_transpose_kernel,
    "MaxPool": pool.pool_kernel,
    "AveragePool": pool.pool_kernel,
    "ReduceMean": _loops(reduce.reduce_kernel),
    "ReduceSum": _loops(reduce.reduce_kernel),
    "ReduceMax": _loops(reduce.reduce_kernel),
    "GlobalAveragePool": _loops(reduce.reduce_kernel),
    "Softmax": _loops(reduce.softmax_kernel),
    "LayerNormalization": _loops(reduce.layernorm_kernel),
    "Transpose": _loops(movement.transpose_kernel),
    "Concat": _loops(movement.concat_kernel),
    "Slice": _loops(movement.slice_kernel),
    "Gather": _loops(movement.gather_kernel),
    "Cast": _loops(movement.cast_kernel),
    **{name: _loops(elementwise.map_kernel) for name in elementwise.ELEMENTWISE_OPS},
    "byoc.Relayout": _loops(movement.relayout_kernel),
}


def lower_op(op: Op, region: RegionParams) -> Kernel:
    """The kernel computing ``op``; :class:`UnsupportedError` when there is none."""
    lowering = LOWERINGS.get(op.op_type)
    if lowering is None:
        raise UnsupportedError(f"node {op.name!r}: the cpu generator has no kernel for "
                               f"{op.op_type}")
    if op.output.dtype != "float32":
        raise UnsupportedError(f"node {op.name!r}: {op.op_type} producing "
                               f"{op.outputs[0].dtype} is not supported (float32 only)")
    return lowering(op, region)
