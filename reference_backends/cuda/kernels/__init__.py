"""Kernel families of the cuda generator, and the table from op type to kernel.

Each family module turns one ONNX op into a :class:`~.base.CudaKernel` whose ``emit``
writes the body of a ``__global__`` function; the fused elementwise ops after it join
its epilogue later (``reference_backends.cpu.lower.make_kernels``, shared with cpu).
"""

from __future__ import annotations

from collections.abc import Callable

from reference_backends.cpu.graph import Op, UnsupportedError
from reference_backends.cpu.kernels.elementwise import ELEMENTWISE_OPS
from reference_backends.cpu.params import resolve_params
from reference_backends.cuda.kernels import elementwise, gemm, movement, reduce, window
from reference_backends.cuda.kernels.base import CudaKernel
from reference_backends.cuda.params import BlockSchedule, CudaParams

Lowering = Callable[[Op, CudaParams], CudaKernel]


def _blocks(make: Callable[[Op, BlockSchedule], CudaKernel]) -> Lowering:
    """A lowering for a kernel of independent threads, its BlockSchedule resolved."""

    def lower(op: Op, params: CudaParams) -> CudaKernel:
        return make(op, resolve_params(BlockSchedule(), op.op_type, op.name, params))

    return lower


LOWERINGS: dict[str, Lowering] = {
    "Gemm": gemm.gemm_kernel,
    "MatMul": gemm.matmul_kernel,
    "Conv": gemm.conv_kernel,
    "MaxPool": _blocks(window.pool_kernel),
    "AveragePool": _blocks(window.pool_kernel),
    "ReduceMean": _blocks(reduce.reduce_kernel),
    "ReduceSum": _blocks(reduce.reduce_kernel),
    "ReduceMax": _blocks(reduce.reduce_kernel),
    "GlobalAveragePool": _blocks(reduce.reduce_kernel),
    "Softmax": _blocks(reduce.softmax_kernel),
    "LayerNormalization": _blocks(reduce.layernorm_kernel),
    "Transpose": _blocks(movement.transpose_kernel),
    **{name: _blocks(elementwise.map_kernel) for name in ELEMENTWISE_OPS},
}


def lower_op(op: Op, params: CudaParams) -> CudaKernel:
    """The kernel computing ``op``; :class:`UnsupportedError` when there is none."""
    lowering = LOWERINGS.get(op.op_type)
    if lowering is None:
        raise UnsupportedError(f"node {op.name!r}: the cuda generator has no kernel for "
                               f"{op.op_type}")
    if op.output.dtype != "float32":
        raise UnsupportedError(f"node {op.name!r}: {op.op_type} producing "
                               f"{op.outputs[0].dtype} is not supported (float32 only)")
    return lowering(op, params)
