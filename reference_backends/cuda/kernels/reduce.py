"""Reductions and row-wise normalizations: ReduceMean/Sum/Max, GlobalAveragePool,
Softmax and LayerNormalization, one thread block per output row.

Each block walks its row with all its threads (neighbouring threads read neighbouring
elements when the row is contiguous), then combines the partial results through a
shared-memory tree (``byoc_block_sum`` / ``byoc_block_max`` in the prelude). Blocks are
as wide as the row needs, from 32 to ``threads`` (a power of two), so short rows do
not idle most of a block. Which input element a (row, position) pair reads comes from
the cpu generator's axis runs, so any set of reduced axes costs a few divisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reference_backends.cpu.cwriter import CWriter, float_literal
from reference_backends.cpu.graph import Op, UnsupportedError
from reference_backends.cpu.kernels.base import Coords, KernelContext, operand_index
from reference_backends.cpu.kernels.elementwise import Epilogue
from reference_backends.cpu.kernels.reduce import (
    Run,
    combine_for,
    reduced_axes,
    row_extents,
    runs,
)
from reference_backends.cuda.kernels.base import CudaKernel, Launch
from reference_backends.cuda.params import BlockSchedule


def block_threads(row: int, params: BlockSchedule) -> int:
    """Threads for a block that reduces ``row`` elements: a power of two in
    [32, params.threads]."""
    threads = 32
    while threads < row and threads < params.threads:
        threads *= 2
    return min(threads, params.threads)


def run_offset(groups: Sequence[Run], index: str) -> str:
    """The input offset of flat position ``index`` over ``groups`` (outermost first)."""
    terms, inner = [], 1
    for group in reversed(groups):
        coord = index if inner == 1 else f"({index} / {inner})"
        if inner * group.extent != _total(groups):
            coord = f"({coord} % {group.extent})"
        terms.append(coord if group.stride == 1 else f"{coord} * {group.stride}")
        inner *= group.extent
    return " + ".join(reversed(terms)) or "0"


def _total(groups: Sequence[Run]) -> int:
    return int(np.prod([g.extent for g in groups], dtype=np.int64))


@dataclass(eq=False)
class RowKernel(CudaKernel):
    """A kernel with one block per row (``rows`` of them, blocks stride over them)."""

    rows: int = 1
    row: int = 1

    def launch(self) -> Launch:
        params: BlockSchedule = self.params
        return Launch((max(1, min(self.rows, params.max_blocks)), 1, 1),
                      block_threads(self.row, params))

    def rows_loop(self, w: CWriter):
        """The loop over this block's rows (uniform within a block, so the barriers
        inside are reached by every thread)."""
        w.line(f"__shared__ float red[{self.launch().threads}];")
        return w.block(f"for (long o = blockIdx.x; o < {self.rows}; o += gridDim.x)")


@dataclass(eq=False)
class ReduceKernel(RowKernel):
    """A reduction over ``axes`` of input 0: a row is one output's reduced elements."""

    axes: frozenset[int] = frozenset()

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        x = self.root.inputs[0]
        groups = runs(x.shape, set(self.axes))
        kept = [g for g in groups if not g.reduced]
        reduced = [g for g in groups if g.reduced]
        combine = combine_for(self.root.op_type, self.row)
        block = "byoc_block_max" if self.root.op_type == "ReduceMax" else "byoc_block_sum"
        xp = ctx.ptr(x)
        coords: Coords = [(0, self.output.rank, "o")] if self.output.rank else []
        with self.rows_loop(w):
            w.line(f"const long base = {run_offset(kept, 'o')};")
            w.line(f"float acc = {combine.init};")
            with w.block(f"for (long r = threadIdx.x; r < {self.row}; r += blockDim.x)"):
                element = f"{xp}[base + {run_offset(reduced, 'r')}]"
                w.line(f"acc = {combine.fold('acc', element)};")
            w.line(f"acc = {block}(acc, red);")
            with w.block("if (threadIdx.x == 0)"):
                self.store(w, ctx, combine.finish("acc"), coords)


def reduce_kernel(op: Op, params: BlockSchedule) -> ReduceKernel:
    """ReduceMean/Sum/Max over constant axes (keepdims either way); GlobalAveragePool."""
    axes = reduced_axes(op) or ()
    if op.op_type == "GlobalAveragePool":
        op = Op(op.name, "ReduceMean", op.inputs[:1], op.outputs, {}, op.opset)
    shape = op.inputs[0].shape
    row = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    rows = op.output.size
    return ReduceKernel(op, Epilogue(op.output), params, rows=rows, row=row,
                        axes=frozenset(axes))


@dataclass(eq=False)
class SoftmaxKernel(RowKernel):
    """Softmax over axes ``[first, last)``: per row the maximum, the sum of
    exponentials, then every element through the epilogue."""

    first: int = 0
    last: int = 0

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        x = self.root.inputs[0]
        _outer, row, inner = row_extents(x.shape, self.first, self.last)
        xp = ctx.ptr(x)
        coords: Coords = [(0, self.first, f"(o / {inner})"),
                          (self.first, self.last, "r"), (self.last, x.rank, f"(o % {inner})")]
        coords = [c for c in coords if c[0] < c[1]]
        element = f"{xp}[base + r * {inner}]" if inner > 1 else f"{xp}[base + r]"
        with self.rows_loop(w):
            w.line(f"const long base = (o / {inner}) * {row * inner} + o % {inner};")
            w.line("float top = -INFINITY, sum = 0.0f;")
            with w.block(f"for (long r = threadIdx.x; r < {row}; r += blockDim.x)"):
                w.line(f"top = byoc_maxf(top, {element});")
            w.line("top = byoc_block_max(top, red);")
            with w.block(f"for (long r = threadIdx.x; r < {row}; r += blockDim.x)"):
                w.line(f"sum += byoc_expf({element} - top);")
            w.line("sum = byoc_block_sum(sum, red);")
            with w.block(f"for (long r = threadIdx.x; r < {row}; r += blockDim.x)"):
                self.store(w, ctx, f"byoc_expf({element} - top) / sum", coords)


def softmax_kernel(op: Op, params: BlockSchedule) -> SoftmaxKernel:
    x = op.inputs[0]
    rank = x.rank
    axis = int(op.attr("axis", -1 if op.opset >= 13 else 1)) % max(rank, 1)
    last = axis + 1 if op.opset >= 13 else rank
    outer, row, inner = row_extents(x.shape, axis, last)
    return SoftmaxKernel(op, Epilogue(op.output), params, rows=outer * inner, row=row,
                         first=axis, last=last)


@dataclass(eq=False)
class LayerNormKernel(RowKernel):
    """LayerNormalization over axes ``[axis, rank)``: the mean, then the variance of
    the row (two passes, as exact as the host's), then the normalized, scaled and
    shifted row through the epilogue."""

    axis: int = -1

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        op = self.root
        x, scale, bias = op.inputs[0], op.inputs[1], op.input(2)
        row = self.row
        eps = float_literal(float(op.attr("epsilon", 1e-5)))
        xp = ctx.ptr(x)
        coords: Coords = [(0, self.axis, "o"), (self.axis, x.rank, "r")]
        coords = [c for c in coords if c[0] < c[1]]
        out = self.output.shape
        with self.rows_loop(w):
            w.line(f"const float* __restrict__ xr = {xp} + o * {row};")
            w.line("float mean = 0.0f, var = 0.0f;")
            with w.block(f"for (long r = threadIdx.x; r < {row}; r += blockDim.x)"):
                w.line("mean += xr[r];")
            w.line(f"mean = byoc_block_sum(mean, red) / {float_literal(row)};")
            with w.block(f"for (long r = threadIdx.x; r < {row}; r += blockDim.x)"):
                w.line("var += (xr[r] - mean) * (xr[r] - mean);")
            w.line(f"var = byoc_block_sum(var, red) / {float_literal(row)};")
            w.line(f"const float inv = 1.0f / sqrtf(var + {eps});")
            with w.block(f"for (long r = threadIdx.x; r < {row}; r += blockDim.x)"):
                gain = ctx.load(scale, operand_index(scale.shape, out, coords))
                value = f"(xr[r] - mean) * inv * {gain}"
                if bias is not None:
                    value += f" + {ctx.load(bias, operand_index(bias.shape, out, coords))}"
                self.store(w, ctx, value, coords)


def layernorm_kernel(op: Op, params: BlockSchedule) -> LayerNormKernel:
    if len(op.outputs) > 1 and any(t.consumers or t.output_index is not None
                                   for t in op.outputs[1:]):
        raise UnsupportedError(f"LayerNormalization {op.name!r}: mean/inv-std outputs "
                               "are not supported")
    x = op.inputs[0]
    axis = int(op.attr("axis", -1)) % x.rank
    outer, row, _ = row_extents(x.shape, axis, x.rank)
    return LayerNormKernel(op, Epilogue(op.output), params, rows=outer, row=row, axis=axis)
