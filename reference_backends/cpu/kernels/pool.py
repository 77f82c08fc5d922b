"""MaxPool and AveragePool (2-D) on the direct sliding-window loop: per plane in NCHW,
vectorized over channels (``ChannelLoop``) when the input is stored NHWC.

Padding is made real in the plane copy (-inf for max, 0 for average). Average pooling
divides by the number of window positions that count: inside the image, or inside the
padded image with ``count_include_pad``; the counts are separable, so the kernel
carries one small table per axis (or a constant when every window counts the same).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reference_backends.cpu.cwriter import CWriter, float_literal, int_list
from reference_backends.cpu.graph import Op
from reference_backends.cpu.kernels.base import Kernel, KernelContext
from reference_backends.cpu.kernels.elementwise import Epilogue
from reference_backends.cpu.kernels.window import (
    ChannelLoop,
    DirectLoop,
    Window,
    channel_chunk,
    pool_window,
)
from reference_backends.cpu.params import RegionParams, WindowSchedule, resolve_params


def window_counts(size: int, out: int, kernel: int, stride: int, dilation: int, pad: int,
                  pad_end: int, include_pad: bool) -> list[int]:
    """Per output position, how many of its window taps count for the average."""
    lo, hi = (-pad, size + pad_end) if include_pad else (0, size)
    counts = []
    for o in range(out):
        start = o * stride - pad
        counts.append(sum(1 for k in range(kernel) if lo <= start + k * dilation < hi))
    return counts


@dataclass(eq=False)
class PoolKernel(Kernel):
    """A pool over every (image, channel) plane."""

    window: Window
    mode: str = "max"

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        p: WindowSchedule = self.params
        g = self.window
        x = self.root.inputs[0]
        planes = x.shape[0] * x.shape[1]
        init, update, finish = self._fold(w)
        work = planes * g.oh * g.ow * g.kh * g.kw
        if x.layout == "NHWC":
            channels = x.shape[1]
            loop = ChannelLoop(g, channels, channels, channel_chunk(channels, ctx.vector_width),
                               init, update, finish, p.tile_rows,
                               self.output.layout == "NHWC")
            loop.emit(w, ctx, ctx.ptr(x), x.shape[0], ctx.parallel(work, p.parallel_min),
                      self.store)
            return
        loop = DirectLoop(g, p.tile_rows, ctx.vector_width, init, init, update, finish)
        xp = ctx.ptr(x)
        w.pragma(ctx.parallel(work, p.parallel_min))
        with w.loop("u", planes):
            w.line(f"const float* restrict plane = {xp} + u * {g.h * g.w};")
            loop.emit(w, ctx, "plane", self.store, "u")

    def _fold(self, w: CWriter) -> tuple[str, Callable[[str, str], str], Callable[[str], str]]:
        """The accumulators' start value (also the padding), the update and the finish."""
        if self.mode == "max":
            return "(-INFINITY)", lambda acc, v: f"byoc_maxf({acc}, {v})", lambda acc: acc
        return "0.0f", lambda acc, v: f"{acc} + {v}", self._divide(w)

    def _divide(self, w: CWriter) -> Callable[[str], str]:
        """The average's division: by a constant, or by per-axis count tables."""
        g, op = self.window, self.root
        include = bool(op.attr("count_include_pad", 0))
        rows = window_counts(g.h, g.oh, g.kh, g.sh, g.dh, g.pt, g.pb, include)
        cols = window_counts(g.w, g.ow, g.kw, g.sw, g.dw, g.pl, g.pr, include)
        if len(set(rows)) == 1 and len(set(cols)) == 1:
            divisor = float_literal(rows[0] * cols[0])
            return lambda acc: f"{acc} / {divisor}"
        w.line(f"static const int count_h[{g.oh}] = {int_list(rows)};")
        w.line(f"static const int count_w[{g.ow}] = {int_list(cols)};")
        return lambda acc: f"{acc} / (float)(count_h[oh] * count_w[ow])"


def pool_kernel(op: Op, region: RegionParams) -> Kernel:
    """MaxPool (values only) or AveragePool."""
    window = pool_window(op)
    params = resolve_params(WindowSchedule(), op.op_type, op.name, region)
    mode = "max" if op.op_type == "MaxPool" else "avg"
    return PoolKernel(op, Epilogue(op.output), params, window=window, mode=mode)
