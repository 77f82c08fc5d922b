"""Sliding windows with one thread per output element: MaxPool, AveragePool and
depthwise convolution.

Each thread walks its window over the input plane and skips taps that fall in the
padding (a convolution reads them as zeros instead), so no padded copy of the plane is
needed; neighbouring threads compute neighbouring output columns, so their loads from
the plane coalesce for stride 1.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from reference_backends.cpu.cwriter import CWriter
from reference_backends.cpu.graph import Op, Tensor
from reference_backends.cpu.kernels.base import KernelContext
from reference_backends.cpu.kernels.conv import bias_steps
from reference_backends.cpu.kernels.elementwise import Epilogue
from reference_backends.cpu.kernels.window import Window, pool_window
from reference_backends.cuda.kernels.base import CudaKernel, Launch, flat_launch, grid_stride
from reference_backends.cuda.params import BlockSchedule


@dataclass(eq=False)
class WindowKernel(CudaKernel):
    """Shared by pooling and depthwise convolution: the thread's output position, the
    loop over in-image taps, the store."""

    window: Window | None = None

    def launch(self) -> Launch:
        return flat_launch(self.output.size, self.params)

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        g = self.window
        plane = g.oh * g.ow
        with grid_stride(w, "i", self.output.size):
            w.line(f"const long u = i / {plane}, p = i % {plane};")
            w.line(f"const long oh = p / {g.ow}, ow = p % {g.ow};")
            self.begin(w, ctx)
            zeros = self.taps_padding()
            with w.block(f"for (int kh = 0; kh < {g.kh}; ++kh)"):
                w.line(f"const long ih = oh * {g.sh} - {g.pt} + kh * {g.dh};")
                counting = self.counts_padding()
                if counting:
                    w.line(f"const int row_in_pad = ih >= -{g.pt} && ih < {g.h + g.pb};")
                elif not zeros:
                    w.line(f"if (ih < 0 || ih >= {g.h}) continue;")
                with w.block(f"for (int kw = 0; kw < {g.kw}; ++kw)"):
                    w.line(f"const long iw = ow * {g.sw} - {g.pl} + kw * {g.dw};")
                    if counting:
                        w.line(f"padded += row_in_pad && iw >= -{g.pl} && iw < {g.w + g.pr};")
                        w.line(f"if (ih < 0 || ih >= {g.h}) continue;")
                    if zeros:
                        self.tap(w, f"byoc_conv_tap(src, 0, ih, iw, {g.h}, {g.w})")
                    else:
                        w.line(f"if (iw < 0 || iw >= {g.w}) continue;")
                        self.tap(w, f"src[ih * {g.w} + iw]")
            self.store(w, ctx, self.result(ctx), [(0, 2, "u"), (2, 4, "p")])

    def counts_padding(self) -> bool:
        """Whether taps in the padding are counted (``padded``): average pooling with
        ``count_include_pad``."""
        return False

    def taps_padding(self) -> bool:
        """Whether taps in the padding are folded in as zeros rather than skipped."""
        return False

    @abc.abstractmethod
    def begin(self, w: CWriter, ctx: KernelContext) -> None:
        """Declarations before the window loop: ``src`` (the input plane), ``acc``."""

    @abc.abstractmethod
    def tap(self, w: CWriter, value: str) -> None:
        """Fold one in-image input ``value`` (window position ``kh``, ``kw``) in."""

    @abc.abstractmethod
    def result(self, ctx: KernelContext) -> str:
        """The C expression of the window's result, from ``acc``."""


@dataclass(eq=False)
class PoolKernel(WindowKernel):
    """MaxPool (values only) or AveragePool over every (image, channel) plane. The
    average divides by the taps inside the image, or inside the padded image with
    ``count_include_pad``."""

    @property
    def _max(self) -> bool:
        return self.root.op_type == "MaxPool"

    def counts_padding(self) -> bool:
        return not self._max and bool(self.root.attr("count_include_pad", 0))

    def begin(self, w: CWriter, ctx: KernelContext) -> None:
        g = self.window
        w.line(f"const float* __restrict__ src = {ctx.ptr(self.root.inputs[0])} "
               f"+ u * {g.h * g.w};")
        w.line(f"float acc = {'-INFINITY' if self._max else '0.0f'};")
        if not self._max:
            w.line("int counted = 0, padded = 0;")
            w.line("(void)padded;")

    def tap(self, w: CWriter, value: str) -> None:
        if self._max:
            w.line(f"acc = byoc_maxf(acc, {value});")
        else:
            w.line(f"acc += {value};")
            w.line("++counted;")

    def result(self, ctx: KernelContext) -> str:
        if self._max:
            return "acc"
        return f"acc / (float){'padded' if self.counts_padding() else 'counted'}"


def pool_kernel(op: Op, params: BlockSchedule) -> PoolKernel:
    return PoolKernel(op, Epilogue(op.output), params, window=pool_window(op))


@dataclass(eq=False)
class DepthwiseKernel(WindowKernel):
    """Convolution with one input channel per group (``multiplier`` outputs each); a
    folded BatchNormalization scales each weight as it is read."""

    multiplier: int = 1
    scale: Tensor | None = None

    def begin(self, w: CWriter, ctx: KernelContext) -> None:
        g, op = self.window, self.root
        x, weights = op.inputs[0], op.inputs[1]
        channels = x.shape[1]
        out_channels = self.output.shape[1]
        w.line(f"const long n = u / {out_channels}, oc = u % {out_channels};")
        w.line(f"const float* __restrict__ src = {ctx.ptr(x)} + "
               f"(n * {channels} + oc / {self.multiplier}) * {g.h * g.w};")
        w.line(f"const float* __restrict__ wk = {ctx.ptr(weights)} + oc * {g.kh * g.kw};")
        w.line("float acc = 0.0f;")

    def taps_padding(self) -> bool:
        # A convolution's padding is zeros that the weights multiply, as onnxruntime and
        # the GEMM path compute it: an inf or NaN weight over the padding gives NaN.
        return True

    def tap(self, w: CWriter, value: str) -> None:
        w.line(f"acc += wk[kh * {self.window.kw} + kw] * {value};")

    def result(self, ctx: KernelContext) -> str:
        return "acc" if self.scale is None else f"acc * {ctx.load(self.scale, 'oc')}"


def depthwise_kernel(op: Op, window: Window, params: BlockSchedule) -> DepthwiseKernel:
    scale = op.attr("byoc.scale")
    multiplier = op.output.shape[1] // op.inputs[0].shape[1]
    return DepthwiseKernel(op, Epilogue(op.output, bias_steps(op)), params, window=window,
                           multiplier=multiplier,
                           scale=None if scale is None else
                           Tensor.derived(f"{op.name}/folded_scale", scale))

