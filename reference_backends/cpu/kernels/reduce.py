"""Reductions and row-wise normalizations: ReduceMean/Sum/Max, GlobalAveragePool,
Softmax and LayerNormalization.

Reduced and kept axes are first merged into runs (``coalesce``-style), so any set of
axes becomes loops over a few (extent, stride) groups. When the innermost run is
reduced, each output is one vectorized reduction; when it is kept, a vector of outputs
accumulates at once while the reduced runs are walked, which keeps memory access
contiguous either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from reference_backends.cpu.cwriter import CWriter, float_literal
from reference_backends.cpu.graph import Op, UnsupportedError
from reference_backends.cpu.kernels.base import (
    Coords,
    Kernel,
    KernelContext,
    operand_index,
    strides_of,
)
from reference_backends.cpu.kernels.elementwise import Epilogue
from reference_backends.cpu.params import LoopSchedule

#: Accumulators of at most this many outputs live on the stack.
_CHUNK = 256


@dataclass(frozen=True)
class Run:
    """Consecutive input axes of one kind: ``extent`` elements ``stride`` apart."""

    extent: int
    stride: int
    reduced: bool


def runs(shape: Sequence[int], reduced: set[int]) -> list[Run]:
    """Merge neighbouring axes that are both reduced or both kept; drop size-1 axes."""
    strides = strides_of(shape)
    result: list[Run] = []
    for axis, (dim, stride) in enumerate(zip(shape, strides, strict=True)):
        if dim == 1:
            continue
        kind = axis in reduced
        if result and result[-1].reduced == kind and result[-1].stride == dim * stride:
            result[-1] = Run(result[-1].extent * dim, stride, kind)
        else:
            result.append(Run(dim, stride, kind))
    return result


@dataclass(frozen=True)
class Combine:
    """How a reduction starts, folds in one value and finishes."""

    init: str
    fold: Callable[[str, str], str]
    clause: str
    finish: Callable[[str], str]


def combine_for(op_type: str, count: int) -> Combine:
    if op_type == "ReduceMax":
        return Combine("(-INFINITY)", lambda a, v: f"byoc_maxf({a}, {v})", "max",
                       lambda a: a)
    if op_type == "ReduceSum" or count == 0:
        # The mean of nothing is 0 in onnxruntime, as the sum is; dividing gives 0 / 0.
        return Combine("0.0f", lambda a, v: f"{a} + {v}", "+", lambda a: a)
    divisor = float_literal(count)
    return Combine("0.0f", lambda a, v: f"{a} + {v}", "+", lambda a: f"{a} / {divisor}")


@dataclass(eq=False)
class ReduceKernel(Kernel):
    """A reduction over ``axes`` of input 0."""

    axes: frozenset[int] = frozenset()

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        params: LoopSchedule = self.params
        x = self.root.inputs[0]
        groups = runs(*_stored(x.shape, self.axes, x.storage_axes))
        kept = [g for g in groups if not g.reduced]
        count = int(np.prod([x.shape[a] for a in self.axes], dtype=np.int64))
        combine = combine_for(self.root.op_type, count)
        out_strides = strides_of([g.extent for g in kept])
        names = {id(g): f"k{i}" for i, g in enumerate(kept)}
        names.update({id(g): f"r{i}" for i, g in enumerate(groups) if g.reduced})
        xp = ctx.ptr(x)
        source = " + ".join(f"{names[id(g)]} * {g.stride}" for g in groups) or "0"
        out_index = " + ".join(f"{names[id(g)]} * {s}" for g, s in zip(kept, out_strides,
                                                                       strict=True)) or "0"
        coords: Coords = [(0, self.output.rank, out_index)] if self.output.rank else []
        parallel = ctx.parallel(x.size, params.parallel_min)
        if groups and not groups[-1].reduced:
            self._emit_kept_inner(w, ctx, groups, names, xp, source, combine, coords, parallel)
            return
        # OpenMP combines the lanes' partial maxima with a max that may drop a NaN, so
        # the lanes skip NaNs and count them instead, and a count above zero gives NaN.
        count_nans = combine.clause == "max"
        result = combine.finish("acc")
        with _loops(w, kept, names, parallel):
            w.line(f"float acc = {combine.init};" + (" int nans = 0;" if count_nans else ""))
            reduced = [g for g in groups if g.reduced]
            with _loops(w, reduced[:-1], names, ""):
                if reduced:
                    last = reduced[-1]
                    pragma = f"omp simd reduction({combine.clause}:acc)"
                    if count_nans:
                        pragma += " reduction(+:nans)"
                    with w.loop(names[id(last)], last.extent, pragma=pragma):
                        if count_nans:
                            w.line(f"const float v = {xp}[{source}];")
                            w.line("nans += v != v; acc = v > acc ? v : acc;")
                        else:
                            w.line(f"acc = {combine.fold('acc', f'{xp}[{source}]')};")
                else:
                    w.line(f"acc = {combine.fold('acc', f'{xp}[{source}]')};")
            self.store(w, ctx, f"(nans ? NAN : {result})" if count_nans else result, coords)

    def _emit_kept_inner(self, w: CWriter, ctx: KernelContext, groups: list[Run],
                         names: dict[int, str], xp: str, source: str, combine: Combine,
                         coords: Coords, parallel: str) -> None:
        """The innermost run is kept: accumulate a chunk of outputs at once."""
        inner = groups[-1]
        inner_name = names[id(inner)]
        chunk = min(inner.extent, _CHUNK)
        outer = [g for g in groups[:-1] if not g.reduced]
        reduced = [g for g in groups if g.reduced]
        with _loops(w, outer, names, parallel):
            w.pragma(parallel if not outer else "")
            with w.loop("c0", inner.extent, step=chunk):
                w.line(_chunk_count(chunk, inner.extent))
                w.line(f"float acc[{chunk}] __attribute__((aligned(64)));")
                with w.loop("v", "cn", pragma="omp simd"):
                    w.line(f"acc[v] = {combine.init};")
                with _loops(w, reduced, names, ""), w.loop("v", "cn", pragma="omp simd"):
                    w.line(f"const long {inner_name} = c0 + v;")
                    w.line(f"acc[v] = {combine.fold('acc[v]', f'{xp}[{source}]')};")
                with w.loop("v", "cn", pragma="omp simd"):
                    w.line(f"const long {inner_name} = c0 + v;")
                    self.store(w, ctx, combine.finish("acc[v]"), coords)


def _stored(shape: Sequence[int], axes: frozenset[int],
            order: Sequence[int] | None) -> tuple[list[int], set[int]]:
    """The shape and reduced axes in storage order ``order`` (``None``: as shaped). The
    layout pass gives reductions an NHWC input only where the kept axes keep their order
    (GlobalAveragePool), so the flat output index is the same either way."""
    if order is None:
        return list(shape), set(axes)
    return [shape[a] for a in order], {order.index(a) for a in axes}


@contextmanager
def _loops(w: CWriter, groups: Sequence[Run], names: dict[int, str],
           pragma: str) -> Iterator[None]:
    """Nested loops over ``groups``, ``pragma`` on the outermost."""
    with ExitStack() as stack:
        for index, group in enumerate(groups):
            stack.enter_context(w.loop(names[id(group)], group.extent,
                                       pragma=pragma if index == 0 else ""))
        yield


def reduced_axes(op: Op) -> tuple[int, ...] | None:
    """The reduced axes (normalized), or ``None`` when the op keeps its input as is."""
    rank = op.inputs[0].rank
    if op.op_type == "GlobalAveragePool":
        return tuple(range(2, rank))
    axes = op.attr("axes")
    if op.input(1) is not None:
        value = op.const_input(1)
        if value is None:
            raise UnsupportedError(f"{op.op_type} {op.name!r}: axes must be a constant")
        axes = tuple(int(a) for a in value.reshape(-1))
    if not axes:
        if op.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(rank))
    return tuple(sorted({int(a) % rank for a in axes})) if rank else ()


def reduce_kernel(op: Op, params: LoopSchedule) -> Kernel:
    """ReduceMean/Sum/Max over constant axes (keepdims either way); GlobalAveragePool."""
    axes = reduced_axes(op)
    if axes is None:
        axes = ()
    if op.op_type == "GlobalAveragePool":
        op = Op(op.name, "ReduceMean", op.inputs[:1], op.outputs, {}, op.opset)
    return ReduceKernel(op, Epilogue(op.output), params, axes=frozenset(axes))


# --- Softmax and LayerNormalization ----------------------------------------------------


def row_extents(shape: Sequence[int], first: int, last: int) -> tuple[int, int, int]:
    """(outer, row, inner) extents for axes ``[first, last)`` as the row."""
    outer = int(np.prod(shape[:first], dtype=np.int64))
    row = int(np.prod(shape[first:last], dtype=np.int64))
    inner = int(np.prod(shape[last:], dtype=np.int64))
    return outer, row, inner


@dataclass(eq=False)
class SoftmaxKernel(Kernel):
    """Softmax over one axis (opset >= 13) or over all axes from ``axis`` (older)."""

    first: int
    last: int

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        params: LoopSchedule = self.params
        x = self.root.inputs[0]
        outer, row, inner = row_extents(x.shape, self.first, self.last)
        xp = ctx.ptr(x)
        parallel = ctx.parallel(x.size * 4, params.parallel_min)
        rank = x.rank
        coords: Coords = [(0, self.first, "o"), (self.first, self.last, "r"),
                          (self.last, rank, "c0 + v")]
        coords = [c for c in coords if c[0] < c[1]]
        if inner == 1:
            self._emit_rows(w, ctx, xp, outer, row, parallel, coords[:-1] if self.last < rank
                            else coords)
            return
        with w.loop("o", outer, pragma=parallel), w.loop("c0", inner, step=_chunk(inner)):
            chunk = _chunk(inner)
            w.line(_chunk_count(chunk, inner))
            w.line(f"float top[{chunk}], sum[{chunk}];")
            base = f"o * {row * inner} + r * {inner} + c0 + v"
            self._vector_pass(w, "top[v] = -INFINITY;", row, chunk,
                              f"top[v] = byoc_maxf(top[v], {xp}[{base}]);")
            self._vector_pass(w, "sum[v] = 0.0f;", row, chunk,
                              f"sum[v] += byoc_expf({xp}[{base}] - top[v]);")
            with w.loop("r", row), w.loop("v", "cn", pragma="omp simd"):
                value = f"byoc_expf({xp}[{base}] - top[v]) / sum[v]"
                self.store(w, ctx, value, coords)

    def _emit_rows(self, w: CWriter, ctx: KernelContext, xp: str, outer: int, row: int,
                   parallel: str, coords: Coords) -> None:
        """Contiguous rows: each pass is one vectorized reduction over the row."""
        with w.loop("o", outer, pragma=parallel):
            w.line(f"const float* restrict xr = {xp} + o * {row};")
            w.line("float top = -INFINITY, sum = 0.0f;")
            with w.loop("r", row, pragma="omp simd reduction(max:top)"):
                w.line("top = byoc_maxf(top, xr[r]);")
            with w.loop("r", row, pragma="omp simd reduction(+:sum)"):
                w.line("sum += byoc_expf(xr[r] - top);")
            with w.loop("r", row, pragma="omp simd"):
                self.store(w, ctx, "byoc_expf(xr[r] - top) / sum", coords)

    @staticmethod
    def _vector_pass(w: CWriter, init: str, row: int, chunk: int, update: str) -> None:
        with w.loop("v", "cn", pragma="omp simd"):
            w.line(init)
        with w.loop("r", row), w.loop("v", "cn", pragma="omp simd"):
            w.line(update)


def _chunk_count(chunk: int, extent: int) -> str:
    """``cn``, the length of the chunk at ``c0`` (a constant when one chunk covers all)."""
    if chunk == extent:
        return f"const long cn = {extent};"
    return f"const long cn = byoc_minl({chunk}, {extent} - c0);"


def _chunk(inner: int) -> int:
    return min(inner, _CHUNK)


def softmax_kernel(op: Op, params: LoopSchedule) -> Kernel:
    x = op.inputs[0]
    rank = x.rank
    axis = int(op.attr("axis", -1 if op.opset >= 13 else 1)) % max(rank, 1)
    last = axis + 1 if op.opset >= 13 else rank
    return SoftmaxKernel(op, Epilogue(op.output), params, first=axis, last=last)


@dataclass(eq=False)
class LayerNormKernel(Kernel):
    """LayerNormalization over axes ``[axis, rank)``: two passes for mean and variance,
    then the normalized, scaled and shifted row through the epilogue."""

    axis: int = -1

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        params: LoopSchedule = self.params
        op = self.root
        x, scale, bias = op.inputs[0], op.inputs[1], op.input(2)
        outer, row, _ = row_extents(x.shape, self.axis, x.rank)
        eps = float_literal(float(op.attr("epsilon", 1e-5)))
        xp = ctx.ptr(x)
        coords: Coords = [(0, self.axis, "o"), (self.axis, x.rank, "r")]
        coords = [c for c in coords if c[0] < c[1]]
        with w.loop("o", outer, pragma=ctx.parallel(x.size * 4, params.parallel_min)):
            w.line(f"const float* restrict xr = {xp} + o * {row};")
            w.line("float mean = 0.0f, var = 0.0f;")
            with w.loop("r", row, pragma="omp simd reduction(+:mean)"):
                w.line("mean += xr[r];")
            w.line(f"mean /= {float_literal(row)};")
            with w.loop("r", row, pragma="omp simd reduction(+:var)"):
                w.line("var += (xr[r] - mean) * (xr[r] - mean);")
            w.line(f"const float inv = 1.0f / sqrtf(var / {float_literal(row)} + {eps});")
            with w.loop("r", row, pragma="omp simd"):
                value = f"(xr[r] - mean) * inv * {ctx.load(scale, self._index(scale, coords))}"
                if bias is not None:
                    value += f" + {ctx.load(bias, self._index(bias, coords))}"
                self.store(w, ctx, value, coords)

    def _index(self, tensor, coords: Coords) -> str:
        return operand_index(tensor.shape, self.output.shape, coords)


def layernorm_kernel(op: Op, params: LoopSchedule) -> Kernel:
    if len(op.outputs) > 1 and any(t.consumers or t.output_index is not None
                                   for t in op.outputs[1:]):
        raise UnsupportedError(f"LayerNormalization {op.name!r}: mean/inv-std outputs "
                               "are not supported")
    rank = op.inputs[0].rank
    axis = int(op.attr("axis", -1)) % rank
    return LayerNormKernel(op, Epilogue(op.output), params, axis=axis)
