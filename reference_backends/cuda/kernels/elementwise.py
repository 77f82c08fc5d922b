"""Elementwise ops no producer absorbed: one thread per output element.

The expressions and the epilogue are the cpu generator's
(``reference_backends.cpu.kernels.elementwise``): the same C text is valid CUDA, and the
helper functions it calls (``byoc_maxf``, ``byoc_sigmoid``...) are ``__device__``
functions in the cuda prelude. The flat output index is the only coordinate; the
epilogue turns it into each operand's broadcast index.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_backends.cpu.cwriter import CWriter
from reference_backends.cpu.graph import Op, UnsupportedError
from reference_backends.cpu.kernels.base import KernelContext
from reference_backends.cpu.kernels.elementwise import Epilogue, Step, operands_of
from reference_backends.cuda.kernels.base import CudaKernel, Launch, flat_launch, grid_stride
from reference_backends.cuda.params import BlockSchedule


@dataclass(eq=False)
class MapKernel(CudaKernel):
    """``out[i] = chain(operands at i)`` over every output element."""

    def launch(self) -> Launch:
        return flat_launch(self.output.size, self.params)

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        out = self.output
        if not out.shape:
            with w.block("if (blockIdx.x == 0 && threadIdx.x == 0)"):
                self.store(w, ctx, None, [])
            return
        with grid_stride(w, "i", out.size):
            self.store(w, ctx, None, [(0, out.rank, "i")])


def map_kernel(op: Op, params: BlockSchedule) -> MapKernel:
    """The map kernel of elementwise ``op`` (every argument read from memory)."""
    if op.op_type == "BatchNormalization" and op.input(0).rank < 2:
        raise UnsupportedError(f"BatchNormalization {op.name!r} of a rank-1 tensor")
    return MapKernel(op, Epilogue(op.output, [Step(op, operands_of(op, None))]), params)
