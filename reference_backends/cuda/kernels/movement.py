"""Data movement: Transpose, one thread per output element.

Each thread reads the input element its output position maps to (the permuted
coordinates times the input's strides); consecutive threads write consecutive outputs,
so stores coalesce and the gather on the read side is left to the caches.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_backends.cpu.cwriter import CWriter
from reference_backends.cpu.graph import Op
from reference_backends.cpu.kernels.base import KernelContext, strides_of
from reference_backends.cpu.kernels.elementwise import Epilogue
from reference_backends.cuda.kernels.base import CudaKernel, Launch, flat_launch, grid_stride
from reference_backends.cuda.params import BlockSchedule


@dataclass(eq=False)
class TransposeKernel(CudaKernel):
    """``out[i0, i1, ...] = x[... i_perm ...]`` through the epilogue."""

    perm: tuple[int, ...] = ()

    def launch(self) -> Launch:
        return flat_launch(self.output.size, self.params)

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        x, out = self.root.inputs[0], self.output
        in_strides = strides_of(x.shape)
        out_strides = strides_of(out.shape)
        terms = []
        for axis, source in enumerate(self.perm):
            if out.shape[axis] == 1:
                continue
            coord = f"(i / {out_strides[axis]})" if out_strides[axis] > 1 else "i"
            if axis > 0:
                coord = f"({coord} % {out.shape[axis]})"
            terms.append(coord if in_strides[source] == 1 else f"{coord} * {in_strides[source]}")
        with grid_stride(w, "i", out.size):
            self.store(w, ctx, f"{ctx.ptr(x)}[{' + '.join(terms) or '0'}]",
                       [(0, out.rank, "i")] if out.rank else [])


def transpose_kernel(op: Op, params: BlockSchedule) -> TransposeKernel:
    rank = op.inputs[0].rank
    perm = tuple(int(p) for p in (op.attr("perm") or reversed(range(rank))))
    return TransposeKernel(op, Epilogue(op.output), params, perm=perm)
