"""Convolution: a product of packed weights and input columns, a direct depthwise
kernel, and ConvTranspose as a product followed by a row-wise col2im.

Conv (NCHW) is a product per image and group: ``out[oc, p] = sum_k W[oc, k] col[k, p]``
with ``k`` running over (input channel, kernel row, kernel column) and ``p`` over output
pixels, on the micro-kernel of ``gemm.py``. Constant weights are packed once in
``_init`` (a folded BatchNormalization scales them on the way). The input columns are
read in place (1x1), built per tile of output rows into thread scratch (im2col), or
read as shifted windows of a zero-padded copy of the input (stride 1, no im2col at
all); :class:`ConvKernel` says how the two sides map onto the register tile. The bias
(or the folded BN shift) and the fused activations run in the store.

An input stored channels-last (NHWC, see ``layout.py``) makes the same product with
output pixels as the rows (``x[N*H*W, C] @ W^T[C, OC]`` for a 1x1 convolution, read in
place) and the depth ordered (kernel row, kernel column, channel), so every column of
the implicit or explicit im2col is a run of contiguous channels; depthwise
convolutions then slide vectors of channels over the image (``window.ChannelLoop``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from reference_backends.cpu.cwriter import CWriter, int_list
from reference_backends.cpu.graph import Op, Tensor, UnsupportedError
from reference_backends.cpu.kernels.base import Kernel, KernelContext, simd_span
from reference_backends.cpu.kernels.elementwise import Epilogue, Operand, Step
from reference_backends.cpu.kernels.gemm import (
    PACKING,
    GemmLoops,
    Panels,
    RowBlocks,
    emit_microkernel_call,
    packed_constant_b,
)
from reference_backends.cpu.kernels.window import (
    ChannelLoop,
    DirectLoop,
    Window,
    channel_chunk,
    conv_window,
    emit_padded_plane,
    is_depthwise,
)
from reference_backends.cpu.params import (
    ConvSchedule,
    GemmSchedule,
    RegionParams,
    default_conv,
    default_conv_channels_last,
    default_gemm,
    resolve_params,
)


def bias_step(owner: Op, tensor: Tensor, rank: int) -> Step:
    """``+ bias[channel]`` on axis 1 of a rank-``rank`` output."""
    add = Op(f"{owner.name}/bias", "Add", [None, tensor], [owner.output], {}, owner.opset)
    return Step(add, [None, Operand(tensor, (tensor.size,) + (1,) * (rank - 2))])


def bias_steps(op: Op) -> list[Step]:
    """The bias, or the folded BN shift, as the first epilogue step."""
    folded = op.attr("byoc.bias")
    if folded is not None:
        return [bias_step(op, Tensor.derived(f"{op.name}/folded_bias", folded), 4)]
    bias = op.input(2)
    return [bias_step(op, bias, 4)] if bias is not None else []


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _packed_weights(ctx: KernelContext, op: Op, weights: Tensor, groups: int, rows: int,
                    depth: int, mr: int, scale: np.ndarray | None,
                    transposed: bool = False) -> str:
    """State buffer: each group's ``rows`` x ``depth`` weight matrix packed into blocks of
    ``mr`` rows, row ``r`` scaled by ``scale[r]`` (a folded BatchNormalization). The
    matrix is the weights as stored, or (``transposed``) their transpose."""
    module = ctx.module
    module.helper("packing", PACKING)
    source = module.constant_source(weights)
    factors = (module.embedded_array(Tensor.derived(f"{op.name}/bn_scale", scale))
               if scale is not None else None)
    padded = _round_up(rows, mr)
    row_stride, col_stride = (1, rows) if transposed else (depth, 1)

    def fill(w: CWriter) -> None:
        with w.loop("g", groups):
            row_scale = f"{factors} + g * {rows}" if factors else "NULL"
            w.line(f"byoc_pack_a(S.{name} + g * {padded * depth}, {source} + g * "
                   f"{rows * depth}, {rows}, {depth}, {row_stride}, {col_stride}, {mr}, "
                   f"{row_scale});")

    name = module.state_field(f"pa_{op.name}_{mr}", "float", groups * padded * depth, fill)
    return ctx.state(name)


@dataclass(eq=False)
class ConvKernel(Kernel):
    """Grouped 2-D convolution as a product of the weights and the input columns.

    The input columns come from one of three places: the input itself (1x1, stride 1,
    no padding: "direct"), an im2col tile of ``tile_rows`` output rows in thread scratch
    ("gemm"), or, for stride 1, a zero-padded copy of the input in the workspace whose
    shifted windows *are* the im2col columns ("implicit": column ``k`` starts at a
    tabulated offset, and the kernel computes the output over the padded width,
    dropping the columns past the real width on the way out).

    ``orientation`` "pixels" makes output pixels the rows of the register tile (the
    input columns are A, read with broadcasts) and output channels its vectors (the
    weights are B, packed once into panels); "channels" swaps them (weights as A, packed
    in blocks of ``mr`` channels; input columns as B panels), which stores whole
    vectors of pixels and so suits shallow reductions (few input channels).
    """

    window: Window
    groups: int = 1
    padded: Tensor | None = None

    def temporaries(self) -> list[Tensor]:
        return [self.padded] if self.padded is not None else []

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        p: ConvSchedule = self.params
        g, op = self.window, self.root
        x = op.inputs[0]
        batch, channels = x.shape[:2]
        cg, ocg = channels // self.groups, self.output.shape[1] // self.groups
        depth, nr, mr = cg * g.kh * g.kw, p.nv * ctx.vector_width, p.mr
        by_pixels = p.orientation == "pixels"
        kind = _columns_kind(g, p)
        width = g.pl + g.w + g.pr if kind == "implicit" else g.ow  # pixels per output row
        pixels = g.oh * width
        if kind == "gemm":
            tile_rows = min(p.tile_rows, g.oh)
            tile, tiles = tile_rows * g.ow, -(-g.oh // tile_rows)
        else:
            step = mr if by_pixels else nr
            tile = min(_round_up(p.tile_rows * width, step), _round_up(pixels, step))
            tiles = -(-pixels // tile)
        # Units of parallel work: (image, group, pixel tile, share of the channels). An
        # im2col tile is rebuilt for every share, so it is shared out only as a last resort.
        channel_blocks = -(-ocg // (nr if by_pixels else mr))
        units = batch * self.groups * tiles
        wanted = 2 if kind == "gemm" else 8
        split = max(1, min(channel_blocks, -(-wanted // units)))
        per_split = -(-channel_blocks // split)
        split = -(-channel_blocks // per_split)
        last = self.channels_last
        if kind == "implicit":
            source = self._emit_padding(w, ctx, batch * channels)
            plane = (g.pt + g.h + g.pb) * width
            _offsets_table(w, cg, g, plane, width, channels if last else None)
        else:
            source, plane = ctx.ptr(x), g.h * g.w
        weights = (self._weight_panels(ctx, depth, ocg, nr, channel_blocks) if by_pixels
                   else self._weight_rows(ctx, depth, ocg, mr))
        work = 2 * batch * self.output.shape[1] * depth * g.oh * g.ow
        w.pragma(ctx.parallel(work, p.parallel_min, extra="schedule(static)"))
        with w.loop("u", units * split):
            w.line(f"const long s = u % {split}, t = u / {split} % {tiles};")
            w.line(f"const long g = u / {split * tiles} % {self.groups}, "
                   f"n = u / {split * tiles * self.groups};")
            w.line(f"const long p0 = t * {tile}, np = byoc_minl({tile}, {pixels} - p0);")
            # xg: the group's first input channel of image n (pixels at stride
            # ``channels`` channels-last, channel planes at stride ``plane`` otherwise).
            first = (f"n * {plane * channels} + g * {cg}" if last
                     else f"(n * {channels} + g * {cg}) * {plane}")
            w.line(f"const float* restrict xg = {source} + {first};")
            columns = self._columns(w, ctx, kind, cg, tile, pixels, by_pixels)
            w.line(f"float tile[{mr * nr}] __attribute__((aligned(64)));")
            share = (f"s * {per_split}", f"byoc_minl((s + 1) * {per_split}, {channel_blocks})")
            if by_pixels:
                self._pixel_rows(w, ctx, weights, columns, share, depth, ocg, kind, width)
            else:
                self._channel_rows(w, ctx, weights, columns, share, depth, ocg, kind, width)

    def _pixel_rows(self, w: CWriter, ctx: KernelContext, weights: Panels, columns: RowBlocks,
                    share: tuple[str, str], depth: int, ocg: int, kind: str,
                    width: int) -> None:
        """For each panel of channels (B), every register tile of pixels (A)."""
        p = self.params
        nr, mr = p.nv * ctx.vector_width, p.mr
        with w.loop("jp", share[1], start=share[0]):
            w.line(f"const long cols = byoc_minl({nr}, {ocg} - jp * {nr});")
            ldb = weights.select(w, ctx)
            with w.loop("i0", "np", step=mr):
                emit_microkernel_call(w, ctx, columns, mr, p.nv, p.unroll, depth, "bp", ldb)
                w.line(f"const long rows = byoc_minl({mr}, np - i0);")
                self._store(w, ctx, kind, width, "c", "cols", nr, "r", "rows", mr,
                            pixel="p0 + i0 + r", channel=f"g * {ocg} + jp * {nr} + c")

    def _channel_rows(self, w: CWriter, ctx: KernelContext, weights: RowBlocks,
                      columns: Panels, share: tuple[str, str], depth: int, ocg: int,
                      kind: str, width: int) -> None:
        """For each panel of pixels (B), every register tile of channels (A)."""
        p = self.params
        nr, mr = p.nv * ctx.vector_width, p.mr
        with w.loop("jp", f"(np + {nr - 1}) / {nr}"):
            w.line(f"const long cols = byoc_minl({nr}, np - jp * {nr});")
            ldb = columns.select(w, ctx)
            stop = f"byoc_minl({share[1]} * {mr}, {ocg})"
            with w.loop("i0", stop, start=f"{share[0]} * {mr}", step=mr):
                emit_microkernel_call(w, ctx, weights, mr, p.nv, p.unroll, depth, "bp", ldb)
                w.line(f"const long rows = byoc_minl({mr}, {ocg} - i0);")
                self._store(w, ctx, kind, width, "r", "rows", mr, "c", "cols", nr,
                            pixel=f"p0 + jp * {nr} + c", channel=f"g * {ocg} + i0 + r")

    def _store(self, w: CWriter, ctx: KernelContext, kind: str, width: int, outer: str,
               outer_count: str, outer_full: int, inner: str, inner_count: str,
               inner_full: int, pixel: str, channel: str) -> None:
        """The register tile through the epilogue, vectorized along ``inner``, the
        tile's pixels, which are contiguous in an NCHW output. An NHWC output has its
        channels contiguous: when those are the tile's vector lanes ``c`` (orientation
        "pixels"), the loops swap; tiles of channels by vectors of pixels keep their
        order, since a short loop over their rows compiles to scalar code.
        "implicit" skips the padded columns."""
        g, nr = self.window, self.params.nv * ctx.vector_width
        if self.output.layout == "NHWC" and outer == "c":
            outer, outer_count, outer_full, inner, inner_count, inner_full = (
                inner, inner_count, inner_full, outer, outer_count, outer_full)
        value = f"tile[r * {nr} + c]"  # r: the micro-kernel's rows, c: its vector lanes

        def body(w: CWriter) -> None:
            if kind != "implicit":
                self.store(w, ctx, value, [(0, 1, "n"), (1, 2, channel), (2, 4, pixel)])
                return
            w.line(f"const long q = {pixel}, oh = q / {width}, ow = q - oh * {width};")
            with w.block(f"if (ow < {g.ow})"):
                self.store(w, ctx, value, [(0, 1, "n"), (1, 2, channel),
                                           (2, 4, f"oh * {g.ow} + ow")])

        with w.loop(outer, outer_count):
            simd_span(w, inner, inner_count, inner_full, body)

    def _weight_panels(self, ctx: KernelContext, depth: int, ocg: int, nr: int,
                       panels: int) -> Panels:
        """B: each group's weights as a ``depth`` x ``ocg`` matrix in panels, packed once
        (with a folded BatchNormalization's factors) when constant, else per unit."""
        op = self.root
        weights = op.inputs[1]
        if not weights.is_const:
            return Panels("pack", f"{ctx.ptr(weights)} + g * {ocg * depth}", depth, nr,
                          row_stride=1, col_stride=depth)
        factors = _bn_factors(ctx, op)
        if self.channels_last:
            packed = _packed_taps_first(ctx, op, self.groups, ocg, depth, self.window, nr,
                                        factors)
            return Panels("packed", packed, depth, nr, panels=panels, matrix="g")
        offsets = [group * ocg * depth for group in range(self.groups)]
        packed, _ = packed_constant_b(ctx, f"pw_{op.name}_{nr}", weights, offsets, depth, ocg,
                                      1, depth, nr, col_scale=factors)
        return Panels("packed", packed, depth, nr, panels=panels, matrix="g")

    def _weight_rows(self, ctx: KernelContext, depth: int, ocg: int, mr: int) -> RowBlocks:
        """A: each group's weights as an ``ocg`` x ``depth`` matrix, packed once into
        blocks of ``mr`` channels when constant."""
        op = self.root
        weights = op.inputs[1]
        if not weights.is_const:
            return RowBlocks(f"{ctx.ptr(weights)} + g * {ocg * depth}", depth, 1, ocg)
        packed = _packed_weights(ctx, op, weights, self.groups, ocg, depth, mr,
                                 op.attr("byoc.scale"))
        return RowBlocks(f"{packed} + g * {_round_up(ocg, mr) * depth}", 1, mr, ocg,
                         padded=True, block_stride=depth)

    @property
    def channels_last(self) -> bool:
        """Whether the input is stored NHWC: pixel rows of contiguous channels are then
        the A operand, and the depth runs over (kernel row, kernel column, channel)."""
        return self.root.inputs[0].layout == "NHWC"

    def _columns(self, w: CWriter, ctx: KernelContext, kind: str, cg: int, tile: int,
                 pixels: int, by_pixels: bool) -> RowBlocks | Panels:
        """Prepare the unit's input columns, as A (rows ``i0`` count from pixel ``p0``)
        or as B panels."""
        g, p = self.window, self.params
        depth, nr = cg * g.kh * g.kw, p.nv * ctx.vector_width
        if self.channels_last:
            return self._pixel_columns(w, ctx, kind, cg, tile, pixels)
        if kind == "direct":
            if by_pixels:
                return RowBlocks("xg + p0", 1, g.h * g.w, pixels, index="p0 + i0")
            return Panels("rows", "xg + p0", depth, nr, row_stride=g.h * g.w,
                          copy=p.copy_panels)
        if kind == "implicit":
            if by_pixels:
                return RowBlocks("xg + p0", 1, "koff", pixels, padded=True)
            return Panels("table", "xg + p0", depth, nr, full=True)
        stride = _round_up(tile, p.mr if by_pixels else nr)
        self._emit_im2col(w, ctx, cg, stride)
        if by_pixels:
            return RowBlocks("col", 1, stride, stride, padded=True)
        return Panels("rows", "col", depth, nr, row_stride=stride, full=True,
                      copy=p.copy_panels)

    def _pixel_columns(self, w: CWriter, ctx: KernelContext, kind: str, cg: int, tile: int,
                       pixels: int) -> RowBlocks:
        """Channels-last A: rows are output pixels, columns (kernel row, kernel column,
        channel); read in place (1x1), through ``koff`` (implicit), or im2col rows."""
        g, mr = self.window, self.params.mr
        channels = self.root.inputs[0].shape[1]
        if kind == "direct":
            return RowBlocks(f"xg + p0 * {channels}", channels, 1, pixels, index="p0 + i0")
        if kind == "implicit":
            return RowBlocks(f"xg + p0 * {channels}", channels, "koff", pixels, padded=True)
        depth, stride = cg * g.kh * g.kw, _round_up(tile, mr)
        self._emit_pixel_im2col(w, ctx, cg, depth * stride)
        return RowBlocks("col", depth, 1, stride, padded=True)

    def _emit_pixel_im2col(self, w: CWriter, ctx: KernelContext, cg: int, floats: int) -> None:
        """``col[p][(kh, kw, ci)]`` for the tile's pixels: one copy of ``cg`` contiguous
        channels per tap, zeros where the tap falls in the padding."""
        g = self.window
        channels = self.root.inputs[0].shape[1]
        w.line(f"float* restrict col = {ctx.scratch(4 * floats)};")
        with w.loop("r", "np"):
            w.line(f"const long q = p0 + r, oh = q / {g.ow}, ow = q - oh * {g.ow};")
            with w.loop("kh", g.kh), w.loop("kw", g.kw):
                w.line(f"float* restrict d = col + r * {cg * g.kh * g.kw} + (kh * {g.kw} + kw)"
                       f" * {cg};")
                w.line(f"const long ih = oh * {g.sh} + kh * {g.dh} - {g.pt}, "
                       f"iw = ow * {g.sw} + kw * {g.dw} - {g.pl};")
                with w.block(f"if (ih < 0 || ih >= {g.h} || iw < 0 || iw >= {g.w})"):
                    with w.loop("ci", cg, pragma="omp simd"):
                        w.line("d[ci] = 0.0f;")
                    w.line("continue;")
                w.line(f"memcpy(d, xg + (ih * {g.w} + iw) * {channels}, {cg} * sizeof(float));")

    def _emit_padding(self, w: CWriter, ctx: KernelContext, planes: int) -> str:
        """Copy every input plane, zero-padded, into the workspace; return its name.
        Channels-last, an image is one plane whose pixels are ``channels`` floats wide."""
        g = self.window
        ph, pw = g.pt + g.h + g.pb, g.pl + g.w + g.pr
        padded = ctx.ptr(self.padded, write=True)
        x = ctx.ptr(self.root.inputs[0])
        if self.channels_last:
            batch, channels = self.root.inputs[0].shape[:2]
            planes, pw = batch, pw * channels
            g = dataclasses.replace(g, w=g.w * channels, pl=g.pl * channels,
                                    pr=g.pr * channels)
        w.pragma(ctx.parallel(planes * ph * pw, self.params.parallel_min))
        with w.loop("u", planes):
            w.line(f"float* restrict target = {padded} + u * {ph * pw};")
            w.line(f"const float* restrict plane = {x} + u * {g.h * g.w};")
            emit_padded_plane(w, "target", "plane", g, ph, pw, "0.0f")
        with w.loop("j", self.padded.size, start=planes * ph * pw):
            w.line(f"{padded}[j] = 0.0f;")
        return padded

    def _emit_im2col(self, w: CWriter, ctx: KernelContext, cg: int, stride: int) -> None:
        """``col[(ci, kh, kw)][p]`` for the tile's output rows, zero where padded and
        past the tile's pixels."""
        g = self.window
        depth = cg * g.kh * g.kw
        columns = [g.valid_columns(kw) for kw in range(g.kw)]
        panel_bytes = 4 * depth * self.params.nv * ctx.vector_width  # Panels' buffer
        w.line(f"float* restrict col = {ctx.scratch(4 * depth * stride, panel_bytes)};")
        w.line(f"static const long lo_tab[{g.kw}] = {int_list([c[0] for c in columns])};")
        w.line(f"static const long hi_tab[{g.kw}] = {int_list([c[1] for c in columns])};")
        w.line(f"const long oh0 = t * {min(self.params.tile_rows, g.oh)}, "
               f"out_rows = np / {g.ow};")
        with w.loop("ci", cg), w.loop("kh", g.kh), w.loop("kw", g.kw):
            w.line(f"float* restrict dst = col + ((ci * {g.kh} + kh) * {g.kw} + kw) * "
                   f"{stride};")
            w.line("const long lo = lo_tab[kw], hi = hi_tab[kw];")
            with w.loop("r", "out_rows"):
                w.line(f"const long ih = (oh0 + r) * {g.sh} + kh * {g.dh} - {g.pt};")
                w.line(f"float* restrict d = dst + r * {g.ow};")
                with w.block(f"if (ih < 0 || ih >= {g.h})"):
                    with w.loop("o", g.ow, pragma="omp simd"):
                        w.line("d[o] = 0.0f;")
                    w.line("continue;")
                w.line(f"const float* restrict srow = xg + (ci * {g.h} + ih) * {g.w} "
                       f"+ kw * {g.dw} - {g.pl};")
                with w.loop("o", "lo"):
                    w.line("d[o] = 0.0f;")
                with w.loop("o", "hi", start="lo", pragma="omp simd"):
                    w.line(f"d[o] = srow[o * {g.sw}];")
                with w.loop("o", g.ow, start="hi"):
                    w.line("d[o] = 0.0f;")
            with w.loop("o", stride, start="np"):
                w.line("dst[o] = 0.0f;")


def _columns_kind(g: Window, params: ConvSchedule) -> str:
    """Where a convolution's input columns come from (see :class:`ConvKernel`)."""
    if g.kh == g.kw == 1 and g.sh == g.sw == 1 and g.pt == g.pl == g.pb == g.pr == 0:
        return "direct"
    return "implicit" if params.algorithm == "implicit" else "gemm"


def _offsets_table(w: CWriter, cg: int, g: Window, plane: int, width: int,
                   channels: int | None = None) -> None:
    """``koff[k]``: where column k = (channel, kernel row, kernel column) of the implicit
    im2col starts in the padded image; channels-last (``channels`` floats per pixel),
    k = (kernel row, kernel column, channel) instead."""
    if channels is not None:
        offsets = [(kh * g.dh * width + kw * g.dw) * channels + c
                   for kh in range(g.kh) for kw in range(g.kw) for c in range(cg)]
    else:
        offsets = [c * plane + kh * g.dh * width + kw * g.dw
                   for c in range(cg) for kh in range(g.kh) for kw in range(g.kw)]
    w.line(f"static const long koff[{len(offsets)}] = {int_list(offsets)};")


def _padded_tensor(op: Op, g: Window, reach: int) -> Tensor:
    """The workspace holding a zero-padded copy of the input, with enough zeros after it
    for reads of up to ``reach`` pixels past the end (a pixel is ``channels`` floats
    channels-last)."""
    x = op.inputs[0]
    planes = x.shape[0] * x.shape[1]
    pixel = x.shape[1] if x.layout == "NHWC" else 1
    size = (planes * (g.pt + g.h + g.pb) * (g.pl + g.w + g.pr)
            + ((g.kw - 1) * g.dw + 2 * reach) * pixel)
    return Tensor(f"{op.name}/padded", (size,), "float32")


def _bn_factors(ctx: KernelContext, op: Op) -> str:
    """The C array of a folded BatchNormalization's per-channel factors, or "NULL"."""
    scale = op.attr("byoc.scale")
    if scale is None:
        return "NULL"
    return ctx.module.embedded_array(Tensor.derived(f"{op.name}/bn_scale", scale))


def _packed_taps_first(ctx: KernelContext, op: Op, groups: int, ocg: int, depth: int,
                       g: Window, nr: int, factors: str) -> str:
    """State buffer: each group's weights as a ``depth`` x ``ocg`` B matrix in panels,
    with the depth ordered (kernel row, kernel column, channel) as channels-last columns
    are; packed tap by tap, since in the stored (oc, ci, kh, kw) order a tap's channels
    are ``taps`` apart."""
    module = ctx.module
    module.helper("packing", PACKING)
    source = module.constant_source(op.inputs[1])
    taps = g.kh * g.kw
    cg, panels = depth // taps, -(-ocg // nr)

    def fill(w: CWriter) -> None:
        scale = "NULL" if factors == "NULL" else f"{factors} + g * {ocg}"
        with w.loop("g", groups), w.loop("jp", panels), w.loop("t", taps):
            w.line(f"byoc_pack_panel(S.{name} + (g * {panels} + jp) * {depth * nr} + t * "
                   f"{cg * nr}, {source} + g * {ocg * depth} + t, {cg}, jp * {nr}, "
                   f"byoc_minl({nr}, {ocg} - jp * {nr}), {taps}, {depth}, {nr}, 1.0f, "
                   f"{scale});")

    name = module.state_field(f"pt_{op.name}_{nr}", "float", groups * panels * depth * nr,
                              fill)
    return ctx.state(name)


@dataclass(eq=False)
class DepthwiseKernel(Kernel):
    """One input channel per group: a direct kernel over a padded copy of the plane."""

    window: Window

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        p: ConvSchedule = self.params
        g, op = self.window, self.root
        x, weights = op.inputs[0], op.inputs[1]
        if x.layout == "NHWC":
            self._emit_channels_last(w, ctx)
            return
        batch, channels = x.shape[:2]
        out_channels = self.output.shape[1]
        multiplier = out_channels // channels
        taps = g.kh * g.kw
        if weights.is_const:
            wp = _packed_weights(ctx, op, weights, 1, out_channels, taps, 1,
                                 op.attr("byoc.scale"))
        else:
            wp = ctx.ptr(weights)
        loop = DirectLoop(g, p.tile_rows, ctx.vector_width, "0.0f", "0.0f",
                          lambda acc, value: f"{acc} + wk[kh * {g.kw} + kw] * {value}",
                          lambda acc: acc)
        xp = ctx.ptr(x)
        work = 2 * batch * out_channels * g.oh * g.ow * taps
        w.pragma(ctx.parallel(work, p.parallel_min, extra="schedule(static)"))
        with w.loop("u", batch * out_channels):
            w.line(f"const long n = u / {out_channels}, oc = u % {out_channels};")
            w.line(f"const float* restrict plane = {xp} + (n * {channels} + oc / {multiplier})"
                   f" * {g.h * g.w};")
            w.line(f"const float* restrict wk = {wp} + oc * {taps};")
            loop.emit(w, ctx, "plane", self.store, "u")

    def _emit_channels_last(self, w: CWriter, ctx: KernelContext) -> None:
        """NHWC input: vectors of channels slide over the image (``ChannelLoop``), the
        weights transposed once to (tap, channel) so that a tap's are contiguous."""
        p: ConvSchedule = self.params
        g, op = self.window, self.root
        x, weights = op.inputs[0], op.inputs[1]
        batch, channels = x.shape[:2]
        out_channels, taps = self.output.shape[1], g.kh * g.kw
        wt, _ = packed_constant_b(ctx, f"pdw_{op.name}", weights, [0], taps, out_channels, 1,
                                  taps, out_channels, col_scale=_bn_factors(ctx, op))
        loop = ChannelLoop(g, out_channels, channels,
                           channel_chunk(out_channels, ctx.vector_width), "0.0f",
                           lambda acc, v: f"{acc} + {wt}[(kh * {g.kw} + kw) * {out_channels}"
                                          f" + c] * {v}",
                           lambda acc: acc, p.tile_rows, self.output.layout == "NHWC")
        work = 2 * batch * out_channels * g.oh * g.ow * taps
        loop.emit(w, ctx, ctx.ptr(x), batch,
                  ctx.parallel(work, p.parallel_min, extra="schedule(static)"), self.store)


def conv_kernel(op: Op, region: RegionParams) -> Kernel:
    """Conv: the depthwise kernel for one input channel per group, else a product of
    weights and input columns (see :class:`ConvKernel`)."""
    x = op.inputs[0]
    window = conv_window(op)
    groups = int(op.attr("group", 1))
    channels, out_channels = x.shape[1], op.output.shape[1]
    depthwise = is_depthwise(op)
    pointwise = _columns_kind(window, ConvSchedule()) == "direct"
    reduction = channels // groups * window.kh * window.kw
    stride = max(window.sh, window.sw)
    if x.layout == "NHWC":
        default = default_conv_channels_last(out_channels // groups, window.ow, reduction,
                                             depthwise, region.vector_width, stride=stride)
    else:
        default = default_conv(out_channels // groups, window.ow, reduction, depthwise,
                               region.vector_width, stride=stride, pointwise=pointwise)
    params = resolve_params(default, "Conv", op.name, region)
    if x.layout == "NHWC" and params.orientation != "pixels":
        raise UnsupportedError(f"Conv {op.name!r}: orientation 'channels' needs an NCHW "
                               "input (channels-last products tile by pixels)")
    if params.algorithm == "depthwise" and not depthwise:
        raise UnsupportedError(f"Conv {op.name!r}: algorithm 'depthwise' needs one input "
                               "channel per group")
    if params.algorithm == "implicit" and (window.sh, window.sw) != (1, 1):
        raise UnsupportedError(f"Conv {op.name!r}: algorithm 'implicit' needs stride 1")
    epilogue = Epilogue(op.output, bias_steps(op))
    if params.algorithm == "depthwise":
        return DepthwiseKernel(op, epilogue, params, window=window)
    padded = None
    if _columns_kind(window, params) == "implicit":
        # The last register tile reads up to mr pixels (or a panel nr pixels) past the end.
        reach = max(params.mr, params.nv * region.vector_width)
        padded = _padded_tensor(op, window, reach)
    return ConvKernel(op, epilogue, params, window=window, groups=groups, padded=padded)


# --- ConvTranspose -------------------------------------------------------------------


@dataclass(eq=False)
class ConvTransposeKernel(Kernel):
    """``col = W^T x`` per image (the GEMM loops), then each output row gathers its
    contributions from ``col`` (col2im) and goes through the epilogue."""

    window: Window
    col: Tensor

    def temporaries(self) -> list[Tensor]:
        return [self.col]

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        p: GemmSchedule = self.params
        g, op = self.window, self.root
        x = op.inputs[0]
        batch, channels = x.shape[:2]
        out_channels = self.output.shape[1]
        rows, pixels = out_channels * g.kh * g.kw, g.h * g.w
        nr = p.nv * ctx.vector_width
        weights = op.inputs[1]
        if weights.is_const:
            packed = _packed_weights(ctx, op, weights, 1, rows, channels, p.mr, None,
                                     transposed=True)
            blocks = RowBlocks(packed, 1, p.mr, rows, padded=True, block_stride=channels)
        else:
            blocks = RowBlocks(ctx.ptr(weights), 1, rows, rows)
        col = ctx.ptr(self.col, write=True)
        xp = ctx.ptr(x)
        columns = [_input_columns(g, kw) for kw in range(g.kw)]
        w.line(f"static const long lo_tab[{g.kw}] = {int_list([c[0] for c in columns])};")
        w.line(f"static const long hi_tab[{g.kw}] = {int_list([c[1] for c in columns])};")
        with w.loop("n", batch):
            panels = Panels("rows", f"{xp} + n * {channels * pixels}", channels, nr,
                            row_stride=pixels)

            def store(w: CWriter) -> None:
                with w.loop("r", "rows"):
                    simd_span(w, "c", "cols", nr, lambda w: w.line(
                        f"{col}[(i0 + r) * {pixels} + jp * {nr} + c] = tile[r * {nr} + c];"))

            GemmLoops(rows, pixels, channels, 1, p).emit(w, ctx, blocks, panels, store)
            work = out_channels * g.oh * g.ow * g.kh * g.kw
            w.pragma(ctx.parallel(work, p.parallel_min, collapse=2))
            with w.loop("oc", out_channels), w.loop("oh", g.oh):
                w.line(f"float line[{g.ow}] __attribute__((aligned(64)));")
                with w.loop("ow", g.ow, pragma="omp simd"):
                    w.line("line[ow] = 0.0f;")
                with w.loop("kh", g.kh):
                    w.line(f"const long t = oh + {g.pt} - kh;")
                    w.line(f"if (t < 0 || t % {g.sh} != 0 || t / {g.sh} >= {g.h}) continue;")
                    w.line(f"const long ih = t / {g.sh};")
                    with w.loop("kw", g.kw):
                        w.line(f"const float* restrict src = {col} + ((oc * {g.kh} + kh) * "
                               f"{g.kw} + kw) * {pixels} + ih * {g.w};")
                        with w.loop("iw", "hi_tab[kw]", start="lo_tab[kw]", pragma="omp simd"):
                            w.line(f"line[iw * {g.sw} + kw - {g.pl}] += src[iw];")
                with w.loop("ow", g.ow, pragma="omp simd"):
                    self.store(w, ctx, "line[ow]", [(0, 1, "n"), (1, 2, "oc"),
                                                    (2, 4, f"oh * {g.ow} + ow")])


def _input_columns(g: Window, kw: int) -> tuple[int, int]:
    """Input columns ``[lo, hi)`` whose output column ``iw * sw - pl + kw`` exists."""
    lo = max(0, -(-(g.pl - kw) // g.sw))
    hi = min(g.w, (g.ow - 1 + g.pl - kw) // g.sw + 1)
    return lo, max(lo, hi)


def conv_transpose_kernel(op: Op, region: RegionParams) -> Kernel:
    """ConvTranspose (2-D, group 1, no dilation): GEMM into a workspace, then col2im."""
    weights = op.inputs[1]
    if weights.rank != 4 or int(op.attr("group", 1)) != 1:
        raise UnsupportedError(f"ConvTranspose {op.name!r}: only 2-D, group 1")
    if any(d != 1 for d in op.attr("dilations") or (1, 1)):
        raise UnsupportedError(f"ConvTranspose {op.name!r}: dilation is not supported")
    kernel = tuple(op.attr("kernel_shape") or weights.shape[2:])
    x, y = op.inputs[0], op.output
    strides = tuple(op.attr("strides") or (1, 1))
    pads = tuple(op.attr("pads") or (0, 0, 0, 0))
    window = Window(x.shape[2], x.shape[3], y.shape[2], y.shape[3], *kernel, *strides, 1, 1,
                    *pads)
    rows, pixels = y.shape[1] * kernel[0] * kernel[1], x.shape[2] * x.shape[3]
    default = default_gemm(rows, pixels, x.shape[1], region.vector_width)
    params = resolve_params(default, "ConvTranspose", op.name, region)
    if params.mc % params.mr:  # units of work hold whole register tiles
        params = dataclasses.replace(params, mc=_round_up(params.mc, params.mr))
    col = Tensor(f"{op.name}/col", (rows, x.shape[2] * x.shape[3]), "float32")
    epilogue = Epilogue(op.output, bias_steps(op))
    return ConvTransposeKernel(op, epilogue, params, window=window, col=col)
