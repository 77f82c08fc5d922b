"""Data movement: Transpose, Concat, Slice, Gather and Cast, and the layout pass's
``byoc.Relayout`` copies.

Each is a loop nest over its output that computes where the value comes from; the value
then goes through the kernel's epilogue like any other, so ``Relu(Transpose(x))`` is
still one pass. (Reshape, Flatten, Squeeze and Unsqueeze generate no code at all: their
output shares the input's memory.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference_backends.cpu.cwriter import CWriter
from reference_backends.cpu.graph import Op, Tensor, UnsupportedError
from reference_backends.cpu.kernels.base import (
    Coords,
    Kernel,
    KernelContext,
    ModuleContext,
    add_terms,
    ctype,
    loop_nest,
    scaled,
    strides_of,
)
from reference_backends.cpu.kernels.elementwise import Epilogue
from reference_backends.cpu.params import LoopSchedule


@dataclass(frozen=True)
class Axis:
    """One loop of a gather-style nest: output axes ``[first, stop)`` (flattened),
    ``extent`` iterations, and the source offset ``offset + i * stride``."""

    first: int
    stop: int
    extent: int
    stride: int
    offset: int = 0


@dataclass(eq=False)
class StridedCopyKernel(Kernel):
    """``out[i...] = source[sum(offset + i * stride)]`` over a loop per :class:`Axis`."""

    source: Tensor
    axes: tuple[Axis, ...] = ()

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        params: LoopSchedule = self.params
        axes = self.axes
        names = [f"i{n}" for n in range(len(axes))]
        offset = sum(a.offset for a in axes)
        index = add_terms([*(scaled(n, a.stride) for n, a in zip(names, axes, strict=True)),
                           str(offset) if offset else None])
        coords: Coords = [(a.first, a.stop, n) for a, n in zip(axes, names, strict=True)]
        value = _convert(self.source, f"{ctx.ptr(self.source)}[{index}]")
        size = int(np.prod([a.extent for a in axes], dtype=np.int64))
        parallel = ctx.parallel(size, params.parallel_min) if len(axes) > 1 else ""
        with loop_nest(w, [a.extent for a in axes], names, parallel=parallel,
                       simd=params.simd, unroll=params.unroll):
            self.store(w, ctx, value, coords)


def _convert(tensor: Tensor, load: str) -> str:
    """A load of ``tensor`` as a float."""
    if tensor.dtype == "float32":
        return load
    if tensor.dtype == "float16":
        return f"byoc_half_to_float({load})"
    if tensor.dtype == "bfloat16":
        return f"byoc_bf16_to_float({load})"
    ctype(tensor)  # refuses element types the generator has no C type for
    return f"(float){load}"


def _merge(axes: list[Axis]) -> list[Axis]:
    """Merge neighbouring loops whose source is contiguous across them."""
    merged: list[Axis] = []
    for axis in axes:
        if axis.extent == 1 and merged:
            last = merged[-1]
            merged[-1] = Axis(last.first, axis.stop, last.extent, last.stride,
                              last.offset + axis.offset)
            continue
        if merged and merged[-1].stride == axis.stride * axis.extent:
            last = merged[-1]
            merged[-1] = Axis(last.first, axis.stop, last.extent * axis.extent, axis.stride,
                              last.offset + axis.offset)
            continue
        merged.append(axis)
    return merged


def transpose_kernel(op: Op, params: LoopSchedule) -> Kernel:
    x = op.inputs[0]
    perm = op.attr("perm") or tuple(reversed(range(x.rank)))
    strides = strides_of(x.shape)
    axes = [Axis(i, i + 1, x.shape[p], strides[p]) for i, p in enumerate(perm)]
    return StridedCopyKernel(op, Epilogue(op.output), params, source=x, axes=tuple(_merge(axes)))


def slice_kernel(op: Op, params: LoopSchedule) -> Kernel:
    """Slice with constant starts, ends, axes and steps (numpy semantics)."""
    x = op.inputs[0]
    rank = x.rank
    if op.opset < 10:
        starts, ends = op.attr("starts"), op.attr("ends")
        axes, steps = op.attr("axes") or tuple(range(len(starts))), (1,) * len(starts)
    else:
        values = [op.const_input(i) for i in range(1, 5)]
        if any(v is None and op.input(i + 1) is not None for i, v in enumerate(values)):
            raise UnsupportedError(f"Slice {op.name!r}: starts/ends/axes/steps must be "
                                   "constants")
        starts, ends = values[0].reshape(-1), values[1].reshape(-1)
        axes = tuple(range(len(starts))) if values[2] is None else values[2].reshape(-1)
        steps = (1,) * len(starts) if values[3] is None else values[3].reshape(-1)
    begin, step = [0] * rank, [1] * rank
    for start, end, axis, stride in zip(starts, ends, axes, steps, strict=True):
        axis = int(axis) % rank
        first, _, stride = slice(int(start), int(end), int(stride)).indices(x.shape[axis])
        begin[axis], step[axis] = first, stride
    strides = strides_of(x.shape)
    axes_list = [Axis(a, a + 1, op.output.shape[a], strides[a] * step[a], begin[a] * strides[a])
                 for a in range(rank)]
    return StridedCopyKernel(op, Epilogue(op.output), params, source=x,
                             axes=tuple(_merge(axes_list)))


def cast_kernel(op: Op, params: LoopSchedule) -> Kernel:
    """Cast of any numeric type to float32, as a flat loop."""
    x = op.inputs[0]
    axes = (Axis(0, op.output.rank, x.size, 1),) if x.rank else ()
    return StridedCopyKernel(op, Epilogue(op.output), params, source=x, axes=axes)


@dataclass(eq=False)
class ConcatKernel(Kernel):
    """Concat: one strided copy per input into its slab of the output."""

    axis: int

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        out = self.output
        outer = int(np.prod(out.shape[: self.axis], dtype=np.int64))
        inner = int(np.prod(out.shape[self.axis + 1:], dtype=np.int64))
        offset = 0
        for x in self.root.inputs:
            if x is None or x.size == 0:
                continue
            slab = x.shape[self.axis] * inner
            axes = (Axis(0, self.axis, outer, slab), Axis(self.axis, out.rank, slab, 1))
            with w.block():
                self._emit_part(w, ctx, x, axes, offset * inner)
            offset += x.shape[self.axis]

    def _emit_part(self, w: CWriter, ctx: KernelContext, x: Tensor, axes: tuple[Axis, ...],
                   start: int) -> None:
        names = ["i0", "i1"]
        coords: Coords = [(axes[0].first, axes[0].stop, "i0"),
                          (axes[1].first, axes[1].stop, f"{start} + i1" if start else "i1")]
        coords = [c for c in coords if c[0] < c[1]]
        params: LoopSchedule = self.params
        parallel = ctx.parallel(x.size, params.parallel_min)
        with loop_nest(w, [axes[0].extent, axes[1].extent], names, parallel=parallel,
                       simd=params.simd, unroll=params.unroll):
            self.store(w, ctx, f"{ctx.ptr(x)}[i0 * {axes[0].stride} + i1]", coords)


def concat_kernel(op: Op, params: LoopSchedule) -> Kernel:
    axis = int(op.attr("axis")) % op.output.rank
    return ConcatKernel(op, Epilogue(op.output), params, axis=axis)


@dataclass(eq=False)
class GatherKernel(Kernel):
    """Gather along ``axis``; indices may be computed, negative ones count from the end,
    and an index out of range fails the call with a message."""

    axis: int

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        data, indices = self.root.inputs[0], self.root.inputs[1]
        out = self.output
        dim = data.shape[self.axis]
        outer = int(np.prod(data.shape[: self.axis], dtype=np.int64))
        inner = int(np.prod(data.shape[self.axis + 1:], dtype=np.int64))
        count = indices.size
        ip = ctx.ptr(indices)
        with w.loop("q", count):
            w.line(f"const long index = (long){ip}[q];")
            with w.block(f"if (index < -{dim} || index >= {dim})"):
                message = f"Gather {self.root.name!r}: index out of range [-{dim}, {dim})"
                w.line(f'return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, '
                       f'"{_escape(message)}");')
        data_ptr = ctx.ptr(data)
        stop = self.axis + indices.rank
        coords: Coords = [(0, self.axis, "o"), (self.axis, stop, "q"), (stop, out.rank, "i")]
        coords = [c for c in coords if c[0] < c[1]]
        params: LoopSchedule = self.params
        with w.loop("o", outer, pragma=ctx.parallel(out.size, params.parallel_min)), \
                w.loop("q", count):
            w.line(f"long index = (long){ip}[q];")
            w.line(f"if (index < 0) index += {dim};")
            w.line(f"const float* restrict row = {data_ptr} + (o * {dim} + index) * {inner};")
            with w.loop("i", inner, pragma="omp simd"):
                self.store(w, ctx, "row[i]", coords)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def gather_kernel(op: Op, params: LoopSchedule) -> Kernel:
    data = op.inputs[0]
    axis = int(op.attr("axis", 0)) % data.rank
    if op.inputs[1].dtype not in ("int32", "int64"):
        raise UnsupportedError(f"Gather {op.name!r}: indices must be int32 or int64")
    return GatherKernel(op, Epilogue(op.output), params, axis=axis)


#: Side of the square blocks a relayout copies: 32 x 32 floats (4 KiB) read and written
#: stay in L1 while a block is transposed.
_RELAYOUT_BLOCK = 32


def transpose_helper(module: ModuleContext) -> str:
    """Emit (once) ``byoc_transpose(dst, ld, src, ls, rows, cols)``, ``dst[j * ld + i] =
    src[i * ls + j]``, and return its name. Square blocks of one vector width are
    transposed in registers: log2(width) rounds, each interleaving row ``k`` with row
    ``k + width / 2`` into rows ``2k`` and ``2k + 1``, turn the rows into the columns
    (a scalar copy is about one value per cycle; this is a few per cycle). The edges
    past whole blocks are copied one value at a time."""
    vw = module.region.vector_width
    half = vw // 2
    low = ", ".join(str(x) for k in range(half) for x in (k, vw + k))
    high = ", ".join(str(x) for k in range(half, vw) for x in (k, vw + k))
    rounds = vw.bit_length() - 1
    module.helper("transpose", f"""
#if defined(__clang__)
#define BYOC_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int32_t byoc_vi __attribute__((vector_size({4 * vw})));
#define BYOC_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (byoc_vi){{__VA_ARGS__}})
#endif
static inline void byoc_transpose_block(float* restrict dst, long ld,
                                        const float* restrict src, long ls) {{
  byoc_vf r[{vw}], t[{vw}];
  for (int i = 0; i < {vw}; ++i) r[i] = *(const byoc_vfu*)(src + i * ls);
  for (int round = 0; round < {rounds}; ++round) {{
    for (int k = 0; k < {half}; ++k) {{
      t[2 * k] = BYOC_SHUFFLE(r[k], r[k + {half}], {low});
      t[2 * k + 1] = BYOC_SHUFFLE(r[k], r[k + {half}], {high});
    }}
    for (int i = 0; i < {vw}; ++i) r[i] = t[i];
  }}
  for (int i = 0; i < {vw}; ++i) *(byoc_vfu*)(dst + i * ld) = r[i];
}}
static void byoc_transpose(float* restrict dst, long ld, const float* restrict src,
                           long ls, long rows, long cols) {{
  long i = 0;
  for (; i + {vw} <= rows; i += {vw}) {{
    long j = 0;
    for (; j + {vw} <= cols; j += {vw})
      byoc_transpose_block(dst + j * ld + i, ld, src + i * ls + j, ls);
    for (; j < cols; ++j)
      for (long r = 0; r < {vw}; ++r) dst[j * ld + i + r] = src[(i + r) * ls + j];
  }}
  for (; i < rows; ++i)
    for (long j = 0; j < cols; ++j) dst[j * ld + i] = src[i * ls + j];
}}
""")
    return "byoc_transpose"


@dataclass(eq=False)
class RelayoutKernel(Kernel):
    """A 4-D tensor copied into another layout (``byoc.Relayout``, from the layout pass):
    per image, a transpose between the (channel, pixel) and (pixel, channel) matrices, in
    square blocks so that the strided side of the copy reuses its cache lines. The loop
    inside a block always runs along the pixels: the side it walks with a stride then
    steps by the channel count, never by a whole plane (plane strides are often a power
    of two of 4 KiB or more, whose lines would all compete for one L1 set). A plain copy
    (no fused epilogue) transposes its blocks in registers instead."""

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        params: LoopSchedule = self.params
        x = self.root.inputs[0]
        batch, channels = x.shape[:2]
        pixels = x.shape[2] * x.shape[3]
        block = _RELAYOUT_BLOCK
        channel_blocks, pixel_blocks = -(-channels // block), -(-pixels // block)
        source = (f"(n * {pixels} + p) * {channels} + c" if x.layout == "NHWC"
                  else f"(n * {channels} + c) * {pixels} + p")
        xp = ctx.ptr(x)
        coords: Coords = [(0, 1, "n"), (1, 2, "c"), (2, 4, "p")]
        w.pragma(ctx.parallel(x.size, params.parallel_min))
        with w.loop("u", batch * channel_blocks * pixel_blocks):
            w.line(f"const long n = u / {channel_blocks * pixel_blocks}, "
                   f"c0 = u / {pixel_blocks} % {channel_blocks} * {block}, "
                   f"p0 = u % {pixel_blocks} * {block};")
            w.line(f"const long c1 = byoc_minl(c0 + {block}, {channels}), "
                   f"p1 = byoc_minl(p0 + {block}, {pixels});")
            if not self.epilogue.steps:  # a plain copy: transpose the block in registers
                self._emit_block_transpose(w, ctx, xp, channels, pixels)
            else:
                self._emit_block_loops(w, ctx, f"{xp}[{source}]", coords)

    def _emit_block_loops(self, w: CWriter, ctx: KernelContext, value: str,
                          coords: Coords) -> None:
        """The block value by value through the epilogue (ops fused after the copy)."""
        params: LoopSchedule = self.params
        with w.loop("c", "c1", start="c0"):
            if params.unroll:
                w.pragma(f"GCC unroll {params.unroll}")
            with w.loop("p", "p1", start="p0", pragma="omp simd" if params.simd else ""):
                self.store(w, ctx, value, coords)


    def _emit_block_transpose(self, w: CWriter, ctx: KernelContext, xp: str, channels: int,
                              pixels: int) -> None:
        """The block ``[c0, c1) x [p0, p1)`` through :func:`transpose_helper`."""
        out = ctx.ptr(self.output, write=True)
        transpose = transpose_helper(ctx.module)
        by_channel = (f"(n * {channels} + c0) * {pixels} + p0", pixels)  # NCHW: rows c
        by_pixel = (f"(n * {pixels} + p0) * {channels} + c0", channels)  # NHWC: rows p
        if self.output.layout == "NHWC":
            (src, ls), (dst, ld), rows, cols = by_channel, by_pixel, "c1 - c0", "p1 - p0"
        else:
            (src, ls), (dst, ld), rows, cols = by_pixel, by_channel, "p1 - p0", "c1 - c0"
        w.line(f"{transpose}({out} + {dst}, {ld}, {xp} + {src}, {ls}, {rows}, {cols});")


def relayout_kernel(op: Op, params: LoopSchedule) -> Kernel:
    """The copy of ``byoc.Relayout`` (NCHW to NHWC or back)."""
    return RelayoutKernel(op, Epilogue(op.output), params)
