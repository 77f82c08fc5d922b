"""Sliding windows over 2-D planes: the geometry of Conv and pooling, and the direct
kernel loops that depthwise convolution and pooling share (``DirectLoop`` per NCHW
plane, ``ChannelLoop`` over vectors of channels of an NHWC image).

The direct loop copies one input plane into thread scratch with its padding made real
(zeros, or -inf for max pooling), sized so that whole blocks of ``tile_rows`` output
rows by one vector of columns never need a bounds check; then each block keeps its
accumulators in registers while the window slides over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reference_backends.cpu.cwriter import CWriter, int_list
from reference_backends.cpu.graph import Op, UnsupportedError
from reference_backends.cpu.kernels.base import Coords, KernelContext, simd_span
from reference_backends.cpu.kernels.movement import transpose_helper


@dataclass(frozen=True)
class Window:
    """2-D window geometry: input (h, w), output (oh, ow), kernel, strides, dilations and
    pads (top, left, bottom, right; ``auto_pad`` already resolved)."""

    h: int
    w: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    pb: int
    pr: int

    @classmethod
    def of(cls, op: Op, kernel: Sequence[int]) -> Window:
        """The geometry of ``op`` (Conv, ConvTranspose or a pool; N, C, H, W tensors)."""
        x, y = op.inputs[0], op.output
        if x.rank != 4:
            raise UnsupportedError(f"{op.op_type} {op.name!r}: only 2-D (rank-4) data")
        strides = tuple(op.attr("strides") or (1, 1))
        dilations = tuple(op.attr("dilations") or (1, 1))
        pads = spatial_pads(op, x.shape[2:], kernel, strides, dilations)
        return cls(x.shape[2], x.shape[3], y.shape[2], y.shape[3], *kernel, *strides,
                   *dilations, pads[0], pads[1], pads[2], pads[3])

    def valid_columns(self, kw: int) -> tuple[int, int]:
        """Output columns ``[lo, hi)`` whose input column for kernel column ``kw`` is
        inside the image."""
        offset = kw * self.dw - self.pl
        lo = max(0, math.ceil(-offset / self.sw))
        hi = min(self.ow, (self.w - 1 - offset) // self.sw + 1)
        return lo, max(lo, hi)


def conv_window(op: Op) -> Window:
    """A 2-D Conv's window (``kernel_shape``, or the weight's spatial dims)."""
    weights = op.inputs[1]
    if weights.rank != 4:
        raise UnsupportedError(f"Conv {op.name!r}: only 2-D convolution is supported")
    return Window.of(op, tuple(op.attr("kernel_shape") or weights.shape[2:]))


def is_depthwise(op: Op) -> bool:
    """Whether Conv ``op`` has one input channel per group."""
    return (int(op.attr("group", 1)) == op.inputs[0].shape[1]
            and op.inputs[1].shape[1] == 1)


def pool_window(op: Op) -> Window:
    """A MaxPool's or AveragePool's window; the indices output and pools that are not
    2-D are refused."""
    indices = op.outputs[1] if len(op.outputs) > 1 else None
    if indices is not None and (indices.consumers or indices.output_index is not None):
        raise UnsupportedError(f"MaxPool {op.name!r}: the indices output is not supported")
    kernel = tuple(op.attr("kernel_shape"))
    if len(kernel) != 2:
        raise UnsupportedError(f"{op.op_type} {op.name!r}: only 2-D pooling is supported")
    return Window.of(op, kernel)


def spatial_pads(op: Op, size: Sequence[int], kernel: Sequence[int],
                 strides: Sequence[int], dilations: Sequence[int]) -> tuple[int, ...]:
    """(top, left, bottom, right) pads, ``auto_pad`` resolved for the static shape."""
    auto = op.attr("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("NOTSET", ""):
        pads = tuple(op.attr("pads") or (0, 0, 0, 0))
        return pads[0], pads[1], pads[2], pads[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        first = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begin.append(first)
        end.append(total - first)
    return begin[0], begin[1], end[0], end[1]


@dataclass(frozen=True)
class DirectLoop:
    """The direct sliding-window loop over one plane.

    ``init`` is the accumulators' start value; ``update(acc, x)`` folds in input ``x``
    (the C variables ``kh`` and ``kw`` name the window position); ``finish(acc)`` turns
    an accumulator into the output value (``oh``/``ow`` expressions are available as the
    C variables ``oh`` and ``ow``).
    """

    window: Window
    rows: int
    vector: int
    pad_value: str
    init: str
    update: Callable[[str, str], str]
    finish: Callable[[str], str]

    @property
    def plane_shape(self) -> tuple[int, int]:
        """Rows and columns of the padded plane: enough for whole blocks."""
        g, rows, vector = self.window, self.rows, self.vector
        out_rows = -(-g.oh // rows) * rows
        out_cols = -(-g.ow // vector) * vector
        return (out_rows - 1) * g.sh + (g.kh - 1) * g.dh + 1, \
            (out_cols - 1) * g.sw + (g.kw - 1) * g.dw + 1

    def scratch_bytes(self) -> int:
        ph, pw = self.plane_shape
        return 4 * ph * pw

    def emit(self, w: CWriter, ctx: KernelContext, source: str,
             store: Callable[[CWriter, KernelContext, str, Coords], None], unit: str) -> None:
        """Pad plane ``source`` into scratch, then run and store every block; ``store``
        gets the value and the coords ``[(0, 2, unit), (2, 4, flat position)]``."""
        g, rows, vector = self.window, self.rows, self.vector
        ph, pw = self.plane_shape
        w.line(f"float* restrict P = {ctx.scratch(self.scratch_bytes())};")
        self._emit_padding(w, source, ph, pw)
        with w.loop("oh0", g.oh, step=rows), w.loop("ow0", g.ow, step=vector):
            w.line(f"float acc[{rows}][{vector}] __attribute__((aligned(64)));")
            with w.loop("r", rows), w.loop("v", vector, pragma="omp simd"):
                w.line(f"acc[r][v] = {self.init};")
            with w.loop("kh", g.kh), w.loop("kw", g.kw), w.loop("r", rows):
                w.line(f"const float* restrict src = P + ((oh0 + r) * {g.sh} + kh * {g.dh}) "
                       f"* {pw} + ow0 * {g.sw} + kw * {g.dw};")
                with w.loop("v", vector, pragma="omp simd"):
                    w.line(f"acc[r][v] = {self.update('acc[r][v]', f'src[v * {g.sw}]')};")
            w.line(f"const long rows = byoc_minl({rows}, {g.oh} - oh0);")
            w.line(f"const long cols = byoc_minl({vector}, {g.ow} - ow0);")
            def body(w: CWriter) -> None:
                w.line("const long oh = oh0 + r, ow = ow0 + v;")
                store(w, ctx, self.finish("acc[r][v]"),
                      [(0, 2, unit), (2, 4, f"oh * {g.ow} + ow")])

            with w.loop("r", "rows"):
                simd_span(w, "v", "cols", vector, body)

    def _emit_padding(self, w: CWriter, source: str, ph: int, pw: int) -> None:
        emit_padded_plane(w, "P", source, self.window, ph, pw, self.pad_value)


def emit_padded_plane(w: CWriter, target: str, source: str, g: Window, ph: int, pw: int,
                      pad_value: str) -> None:
    """``target[ph][pw]`` <- plane ``source`` (g.h x g.w) at offset (g.pt, g.pl), the rest
    ``pad_value``."""
    left = min(g.pl, pw)
    copied = max(0, min(g.w, pw - left))
    with w.loop("i", ph):
        w.line(f"const long ih = i - {g.pt};")
        w.line(f"float* restrict row = {target} + i * {pw};")
        with w.block(f"if (ih < 0 || ih >= {g.h})"):
            with w.loop("j", pw, pragma="omp simd"):
                w.line(f"row[j] = {pad_value};")
            w.line("continue;")
        if left:
            with w.loop("j", left):
                w.line(f"row[j] = {pad_value};")
        if copied:
            w.line(f"memcpy(row + {left}, {source} + ih * {g.w}, {copied} * sizeof(float));")
        if left + copied < pw:
            with w.loop("j", pw, start=left + copied):
                w.line(f"row[j] = {pad_value};")


@dataclass(frozen=True)
class ChannelLoop:
    """The direct sliding-window loop over a channels-last (NHWC) image, which depthwise
    convolution and pooling share in that layout.

    A step computes ``columns`` neighbouring output pixels of one row (the schedule's
    ``tile_rows``) by a chunk of ``chunk`` channels, vectorized over the channels
    (contiguous in the input and in an NHWC output); the pixels give the accumulators
    independent chains, so the loop is bound by throughput, not by the latency of one
    accumulator. Taps that fall outside
    the image are skipped (zero padding for sums, -inf padding for max): per kernel
    column, a table gives the output columns whose tap is inside. ``update(acc, x)``
    may name the C variables ``kh``, ``kw`` and ``c`` (the output channel);
    ``finish(acc)`` may name ``oh`` and ``ow``. Output channel ``c`` reads input channel
    ``c / multiplier``. Each unit of work is one output row; for an output stored
    otherwise than NHWC (``channels_inner`` off), the row collects in thread scratch, is
    transposed there, and is stored channel by channel, along the pixels, rather than
    scattered a plane apart per value.
    """

    window: Window
    channels: int
    in_channels: int
    chunk: int
    init: str
    update: Callable[[str, str], str]
    finish: Callable[[str], str]
    columns: int
    channels_inner: bool = True

    def emit(self, w: CWriter, ctx: KernelContext, source: str, batch: int, parallel: str,
             store: Callable[[CWriter, KernelContext, str, Coords], None]) -> None:
        """Run every (image, output row) as a unit of ``parallel`` work; ``store`` gets
        each value with coords ``[(0, 1, n), (2, 4, pixel), (1, 2, c)]``."""
        g, chunk, columns = self.window, self.chunk, min(self.columns, self.window.ow)
        multiplier = self.channels // self.in_channels
        channel = "c" if multiplier == 1 else f"c / {multiplier}"
        coords: Coords = [(0, 1, "n"), (2, 4, f"oh * {g.ow} + ow"), (1, 2, "c")]
        valid = [g.valid_columns(kw) for kw in range(g.kw)]
        w.line(f"static const long lo_tab[{g.kw}] = {int_list([v[0] for v in valid])};")
        w.line(f"static const long hi_tab[{g.kw}] = {int_list([v[1] for v in valid])};")
        w.pragma(parallel)
        with w.loop("u", batch * g.oh):
            w.line(f"const long n = u / {g.oh}, oh = u % {g.oh};")
            row_bytes = 4 * g.ow * self.channels
            if not self.channels_inner:
                w.line(f"float* restrict line = {ctx.scratch(row_bytes)};")
            with w.loop("ow0", g.ow, step=columns), w.loop("c0", self.channels, step=chunk):
                w.line(f"const long tn = byoc_minl({columns}, {g.ow} - ow0), "
                       f"cn = byoc_minl({chunk}, {self.channels} - c0);")
                w.line(f"float acc[{columns}][{chunk}] __attribute__((aligned(64)));")
                with w.loop("t", "tn"):
                    simd_span(w, "v", "cn", chunk, lambda w: w.line(f"acc[t][v] = {self.init};"))
                with w.loop("kh", g.kh):
                    w.line(f"const long ih = oh * {g.sh} + kh * {g.dh} - {g.pt};")
                    w.line(f"if (ih < 0 || ih >= {g.h}) continue;")
                    with w.loop("kw", g.kw):
                        # (not t0/t1: workspace tensors are named t<number>)
                        w.line("const long ta = byoc_maxl(lo_tab[kw] - ow0, 0), "
                               "tb = byoc_minl(hi_tab[kw] - ow0, tn);")
                        with w.loop("t", "tb", start="ta"):
                            w.line(f"const float* restrict px = {source} + ((n * {g.h} + ih) "
                                   f"* {g.w} + (ow0 + t) * {g.sw} + kw * {g.dw} - {g.pl}) * "
                                   f"{self.in_channels};")

                            def tap(w: CWriter) -> None:
                                w.line("const long c = c0 + v;")
                                w.line(f"acc[t][v] = {self.update('acc[t][v]', f'px[{channel}]')};")

                            simd_span(w, "v", "cn", chunk, tap)

                def out(w: CWriter) -> None:
                    w.line("const long c = c0 + v;")
                    if self.channels_inner:
                        store(w, ctx, self.finish("acc[t][v]"), coords)
                    else:
                        w.line(f"line[ow * {self.channels} + c] = {self.finish('acc[t][v]')};")

                with w.loop("t", "tn"):
                    w.line("const long ow = ow0 + t;")
                    simd_span(w, "v", "cn", chunk, out)
            if not self.channels_inner:
                transpose = transpose_helper(ctx.module)
                w.line(f"float* restrict planes = {ctx.scratch(row_bytes, row_bytes)};")
                w.line(f"{transpose}(planes, {g.ow}, line, {self.channels}, {g.ow}, "
                       f"{self.channels});")
                with w.loop("c", self.channels), w.loop("ow", g.ow, pragma="omp simd"):
                    store(w, ctx, f"planes[c * {g.ow} + ow]", coords)


def channel_chunk(channels: int, vector_width: int) -> int:
    """Channels per accumulator block of :class:`ChannelLoop`: four vectors at most."""
    return min(channels, 4 * vector_width)
