"""Conv, Gemm and MatMul on the systolic array: choosing tiles, and the steps of a layer.

A matrix layer is a GEMM of ``M`` rows (output pixels, or matrix rows), ``K`` reduction
(input channels x kernel taps) and ``N`` columns (output channels). It is cut into
m-, n- and k-tiles; each (m, n) accumulator tile sums its k-tiles in the accumulator
buffer, then drains through the vector unit (scale, shift, residual, activation) and
goes back to DRAM.

:func:`plan` searches the tilings that fit SRAM with double buffering (tile sizes, and
whether the n-tile's weights for the whole K stay resident) and both loop orders
(n-outer: weights loaded once, inputs once per n-tile; m-outer: the reverse) with a
cost model of the same machine, and keeps the fastest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from reference_backends.simaccel import isa
from reference_backends.simaccel.frontend import Epilogue
from reference_backends.simaccel.isa import Engine, Instruction, MatrixOperand, Opcode, VecOperand
from reference_backends.simaccel.limits import SimAccelLimits
from reference_backends.simaccel.pipeline import (
    DEPTH,
    Buffer,
    DoesNotFit,
    Partition,
    SramPlan,
    Step,
    Tile,
    slot_bytes,
)
from reference_backends.simaccel.tiles import (
    Axis,
    FeatureMap,
    FeatureTileLoader,
    ceil_div,
    drain,
    split,
)


@dataclass(frozen=True)
class Tiling:
    """A tiling of a matrix layer. ``m`` is the m-tile's shape (conv: output rows and
    columns; GEMM: rows and 1), ``n`` output channels, ``k`` input channels per tile;
    ``resident``: a weight tile holds all of K, so k-tiles never reload weights."""

    m: tuple[int, int]
    n: int
    k: int
    resident: bool
    n_outer: bool


@dataclass(frozen=True)
class Slots:
    """Elements of one slot of each buffer a tiling needs."""

    input: int
    weight: int
    params: int
    residual: int
    acc: int

    def fits(self, machine: SimAccelLimits) -> bool:
        need_in = DEPTH * (slot_bytes(self.input) + (slot_bytes(self.residual)
                                                      if self.residual else 0))
        need_w = DEPTH * (slot_bytes(self.weight) + (slot_bytes(self.params)
                                                     if self.params else 0))
        return (need_in <= machine.input_bytes and need_w <= machine.weight_bytes
                and DEPTH * slot_bytes(self.acc) <= machine.accumulator_bytes)


def _slots(epilogue: Epilogue, input_elements: int, weight_elements: int, n: int,
           rows: int) -> Slots:
    """The slots of a tiling: input and weight tiles as given; scale and shift when the
    drain has them; an accumulator tile of ``n`` x ``rows``, and a residual tile like it."""
    affine = epilogue.scale is not None or epilogue.shift is not None
    return Slots(input=input_elements, weight=weight_elements, params=2 * n if affine else 0,
                 residual=n * rows if epilogue.residual else 0, acc=n * rows)


class MatrixGeometry(Protocol):
    """What differs between a convolution and a matrix product; the rest is shared."""

    machine: SimAccelLimits
    epilogue: Epilogue
    n_total: int
    k_total: int

    def m_tiles(self, m: tuple[int, int]) -> list[tuple]: ...
    def m_sizes(self, m: tuple[int, int]) -> Iterator[tuple[int, int]]: ...
    def slots(self, tiling: Tiling) -> Slots: ...
    def m_choices(self, n: int, k: int, resident: bool) -> list[tuple[int, int]]: ...
    def gemm_cycles(self, k: int) -> int: ...
    def weight_elements(self, n: int, k: int) -> int: ...
    def load_input(self, address: int, m_tile: tuple, k0: int, kn: int) -> list[Instruction]: ...
    def product_of(self, m_tile: tuple) -> int: ...
    def load_weights(self, address: int, n0: int, nn: int, k0: int, kn: int, product: int
                     ) -> list[Instruction]: ...
    def gemms(self, m_tile: tuple, nn: int, k0: int, kn: int, a: int, w: int, w_k0: int,
              w_k: int, acc: int, first: bool) -> list[Instruction]: ...
    def acc_layout(self, m_tile: tuple, nn: int) -> tuple[tuple[int, ...], tuple[int, ...],
                                                          tuple[int, ...]]: ...
    def out_box(self, m_tile: tuple, n0: int, nn: int
                ) -> tuple[int, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]: ...


# --- convolution --------------------------------------------------------------------


class ConvGeometry:
    """A dense 2-D convolution as an implicit GEMM: M = output pixels, K = input channels
    x taps, N = output channels. Input tiles are ``[rows][channels][cols]`` with halo and
    the array reads the im2col matrix out of them with strides, in one of three ways:

    * ``tap``: one GEMM per kernel tap, K = channels (plenty of channels);
    * ``row``: one GEMM per kernel row, K = channels x kernel width;
    * ``full``: one GEMM, K = kernel rows x channels x kernel width (few channels, such
      as an RGB stem: 3 x 7 x 7 = 147 fills the array where 3 would not). The weight tile
      is then rearranged to ``[n][ky][c][kx]`` by the DMA as it loads.

    whichever keeps the array's rows busiest.
    """

    def __init__(self, machine: SimAccelLimits, x: FeatureMap, out: FeatureMap, weight_slot: int,
                 kernel: tuple[int, int], strides: tuple[int, int],
                 pads: tuple[int, int, int, int], epilogue: Epilogue) -> None:
        self.machine = machine
        self.x, self.out = x, out
        self.weight_slot = weight_slot
        self.kh, self.kw = kernel
        self.rows = Axis(x.h, self.kh, strides[0], pads[0], out.h, subsample=True)
        self.cols = Axis(x.w, self.kw, strides[1], pads[1], out.w)
        self.epilogue = epilogue
        self.n_total, self.k_total = out.c, x.c
        self.taps = self.kh * self.kw
        self.loader: FeatureTileLoader | None = None
        self.full = False

    def blocks(self, k: int) -> dict[str, int]:
        """Array passes (R-row blocks of K) per row of A, per n-block, by mode."""
        r = self.machine.array_rows
        modes = {"tap": self.taps * ceil_div(k, r), "row": self.kh * ceil_div(k * self.kw, r)}
        if k == self.k_total:
            modes["full"] = ceil_div(self.kh * k * self.kw, r)
        return modes

    def mode(self, k: int) -> str:
        modes = self.blocks(k)
        return min(modes, key=lambda name: (modes[name], name != "tap"))

    # --- sizes for the planner -------------------------------------------------------

    def m_tiles(self, m: tuple[int, int]) -> list[tuple]:
        return [(image, oy0, ohn, ox0, own) for image in range(self.x.n)
                for oy0, ohn in split(self.out.h, m[0]) for ox0, own in split(self.out.w, m[1])]

    def m_sizes(self, m: tuple[int, int]) -> Iterator[tuple[int, int]]:
        """(rows of A, input elements per channel) of each m-tile."""
        for _, _, ohn, _, own in self.m_tiles(m):
            yield ohn * own, self.rows.extent(ohn) * self.cols.extent(own)

    def slots(self, t: Tiling) -> Slots:
        return _slots(self.epilogue, t.k * self.rows.extent(t.m[0]) * self.cols.extent(t.m[1]),
                      self.weight_elements(t.n, self.k_total if t.resident else t.k), t.n,
                      t.m[0] * t.m[1])

    def m_choices(self, n: int, k: int, resident: bool) -> list[tuple[int, int]]:
        """Output tile shapes to try: full-width tiles of as many rows as fit (and the
        same count of rows spread evenly), narrower tiles only when a full row won't fit."""
        width = self.out.w
        while width >= 1:
            rows = _largest(lambda h, w=width: self.slots(Tiling((h, w), n, k, resident, True)),
                            self.out.h, self.machine)
            if rows:
                even = ceil_div(self.out.h, ceil_div(self.out.h, rows))
                return sorted({(rows, width), (even, width)})
            if width == 1:
                return []
            width = ceil_div(width, 2)
        return []

    def gemm_cycles(self, k: int) -> int:
        """Array passes per row of A for a k-tile of ``k`` channels and one n-block."""
        return self.blocks(k)[self.mode(k)]

    def weight_elements(self, n: int, k: int) -> int:
        return n * k * self.taps

    # --- instructions ----------------------------------------------------------------

    def prepare(self, tiling: Tiling) -> None:
        self.loader = FeatureTileLoader(self.x, self.rows, self.cols, tiling.m[0], tiling.m[1],
                                        tiling.k)
        self.full = self.mode(tiling.k) == "full"

    def load_input(self, address: int, m_tile: tuple, k0: int, kn: int) -> list[Instruction]:
        image, oy0, ohn, ox0, own = m_tile
        return self.loader.load(address, image, k0, kn, oy0, ohn, ox0, own)

    def product_of(self, m_tile: tuple) -> int:
        return 0  # every image shares the weights

    def load_weights(self, address: int, n0: int, nn: int, k0: int, kn: int, product: int
                     ) -> list[Instruction]:
        per_channel = self.k_total * self.taps  # (Cout, Cin, KH, KW) in DRAM
        offset = n0 * per_channel + k0 * self.taps
        if self.full:  # rearranged to [n][ky][c][kx]
            return [isa.dma(Opcode.DMA_LOAD, self.weight_slot, offset, address,
                            (nn, self.kh, kn, self.kw), (per_channel, self.kw, self.taps, 1),
                            (self.kh * kn * self.kw, kn * self.kw, self.kw, 1))]
        return [isa.dma(Opcode.DMA_LOAD, self.weight_slot, offset, address,
                        (nn, kn * self.taps), (per_channel, 1), (kn * self.taps, 1))]

    def gemms(self, m_tile: tuple, nn: int, k0: int, kn: int, a: int, w: int, w_k0: int,
              w_k: int, acc: int, first: bool) -> list[Instruction]:
        """The GEMMs of one k-tile of one accumulator tile (see the class docstring)."""
        _, _, ohn, _, own = m_tile
        row_len, line = self.loader.row_len, self.loader.line
        pixels = ohn * own
        c = MatrixOperand(acc, inner=1, outer=own, n=pixels)

        def a_at(offset: int, k_inner: int, k_outer: int) -> MatrixOperand:
            return MatrixOperand(a + 4 * offset, inner=self.cols.stride,
                                 outer=self.rows.step * line, k_inner=k_inner, k_outer=k_outer)

        if self.full:
            # k = (ky * kn + c) * KW + kx: kx innermost, then channels and kernel rows,
            # which are one index in the tile (line ky*channels + c) and in the weights.
            b = MatrixOperand(w, inner=1, outer=self.kw, n=self.taps * w_k)
            return [isa.gemm(pixels, self.kh * kn * self.kw, nn, m_inner=own, k_inner=self.kw,
                             a=a_at(0, 1, row_len), b=b, c=c, accumulate=not first)]
        code = []
        packed = self.mode(kn) == "row"
        for ky in range(self.kh):
            for kx in [0] if packed else range(self.kw):
                tap = ky * self.kw + kx
                # k = kx * kn + c when the kernel row is packed, else k = c.
                b = MatrixOperand(w + 4 * ((k0 - w_k0) * self.taps + tap), inner=self.taps,
                                  outer=1, n=w_k * self.taps)
                code.append(isa.gemm(pixels, kn * (self.kw if packed else 1), nn, m_inner=own,
                                     k_inner=kn, a=a_at(ky * line + kx, row_len, 1), b=b, c=c,
                                     accumulate=not first))
                first = False
        return code

    def acc_layout(self, m_tile: tuple, nn: int):
        """(counts, accumulator strides, per-channel strides) of the accumulator tile
        ``[n][pixels]`` for the vector unit."""
        pixels = m_tile[2] * m_tile[4]
        return (1, nn, pixels), (0, pixels, 1), (0, 1, 0)

    def out_box(self, m_tile: tuple, n0: int, nn: int):
        """(slot, DRAM offset, counts, DRAM strides, SRAM strides) of the tile's output."""
        image, oy0, ohn, ox0, own = m_tile
        out = self.out
        return (out.slot, out.offset(image, n0, oy0, ox0), (nn, ohn, own),
                (out.h * out.w, out.w, 1), (ohn * own, own, 1))


# --- matrix products ----------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """One 2-D product of a (possibly batched) MatMul: DRAM offsets of x, w and out."""

    x: int
    w: int
    out: int


class GemmGeometry:
    """``out[M, N] = x[M, K] @ w[K, N]`` (``w`` stored ``[N, K]`` when ``trans_b``), for each
    of ``products`` (batched MatMul with batched weights)."""

    def __init__(self, machine: SimAccelLimits, slots: tuple[int, int, int], m: int, k: int,
                 n: int, trans_b: bool, products: Sequence[Product], epilogue: Epilogue
                 ) -> None:
        self.machine = machine
        self.x_slot, self.w_slot, self.out_slot = slots
        self.m_total, self.k_total, self.n_total = m, k, n
        self.trans_b = trans_b
        self.products = list(products)
        self.epilogue = epilogue

    def m_tiles(self, m: tuple[int, int]) -> list[tuple]:
        return [(p, m0, mn) for p in range(len(self.products))
                for m0, mn in split(self.m_total, m[0])]

    def m_sizes(self, m: tuple[int, int]) -> Iterator[tuple[int, int]]:
        for _, _, mn in self.m_tiles(m):
            yield mn, mn

    def slots(self, t: Tiling) -> Slots:
        return _slots(self.epilogue, t.m[0] * t.k,
                      self.weight_elements(t.n, self.k_total if t.resident else t.k), t.n,
                      t.m[0])

    def m_choices(self, n: int, k: int, resident: bool) -> list[tuple[int, int]]:
        rows = _largest(lambda h: self.slots(Tiling((h, 1), n, k, resident, True)),
                        self.m_total, self.machine)
        if not rows:
            return []
        even = ceil_div(self.m_total, ceil_div(self.m_total, rows))
        return sorted({(rows, 1), (even, 1)})

    def gemm_cycles(self, k: int) -> int:
        return ceil_div(k, self.machine.array_rows)

    def weight_elements(self, n: int, k: int) -> int:
        return n * k

    def prepare(self, tiling: Tiling) -> None:
        pass

    def load_input(self, address: int, m_tile: tuple, k0: int, kn: int) -> list[Instruction]:
        p, m0, mn = m_tile
        return [isa.dma(Opcode.DMA_LOAD, self.x_slot,
                        self.products[p].x + m0 * self.k_total + k0, address, (mn, kn),
                        (self.k_total, 1), (kn, 1))]

    def product_of(self, m_tile: tuple) -> int:
        return m_tile[0]

    def load_weights(self, address: int, n0: int, nn: int, k0: int, kn: int, product: int
                     ) -> list[Instruction]:
        base = self.products[product].w
        if self.trans_b:  # [N][K] in DRAM and in the tile
            return [isa.dma(Opcode.DMA_LOAD, self.w_slot, base + n0 * self.k_total + k0,
                            address, (nn, kn), (self.k_total, 1), (kn, 1))]
        return [isa.dma(Opcode.DMA_LOAD, self.w_slot, base + k0 * self.n_total + n0, address,
                        (kn, nn), (self.n_total, 1), (nn, 1))]

    def gemms(self, m_tile: tuple, nn: int, k0: int, kn: int, a: int, w: int, w_k0: int,
              w_k: int, acc: int, first: bool) -> list[Instruction]:
        _, _, mn = m_tile
        a_op = MatrixOperand(a, inner=kn, k_inner=1)
        if self.trans_b:
            b_op = MatrixOperand(w + 4 * (k0 - w_k0), inner=1, n=w_k)
        else:
            b_op = MatrixOperand(w + 4 * (k0 - w_k0) * nn, inner=nn, n=1)
        c_op = MatrixOperand(acc, inner=nn, n=1)
        return [isa.gemm(mn, kn, nn, m_inner=mn, k_inner=kn, a=a_op, b=b_op, c=c_op,
                         accumulate=not first)]

    def acc_layout(self, m_tile: tuple, nn: int):
        mn = m_tile[2]
        return (1, mn, nn), (0, nn, 1), (0, 0, 1)

    def out_box(self, m_tile: tuple, n0: int, nn: int):
        p, m0, mn = m_tile
        return (self.out_slot, self.products[p].out + m0 * self.n_total + n0, (mn, nn),
                (self.n_total, 1), (nn, 1))


# --- planning -----------------------------------------------------------------------


def _largest(slots_for, limit: int, machine: SimAccelLimits) -> int:
    """The largest ``h <= limit`` whose slots fit (``slots_for(h)`` grows with ``h``); 0 if
    none does."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if slots_for(mid).fits(machine):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _sizes(total: int, unit: int, small: bool) -> list[int]:
    """Tile sizes to try along a dimension: ``total``, multiples of ``unit`` doubling, and
    with ``small`` also fractions of ``unit`` (for chips too small for whole blocks)."""
    sizes, size = {total}, unit
    while size < total:
        sizes.add(size)
        size *= 2
    size = unit // 2
    while small and size >= 1:
        sizes.add(min(size, total))
        size //= 2
    return sorted(sizes)


@dataclass(frozen=True)
class Estimate:
    cycles: float
    steps: int


def estimate(g: MatrixGeometry, t: Tiling) -> Estimate:
    """Cycles of a tiling by the machine's timing model, in closed form: the busiest of
    the three engines (they overlap), plus the first load and the last store."""
    m = g.machine
    m_list = list(g.m_sizes(t.m))
    n_list = [nn for _, nn in split(g.n_total, t.n)]
    k_list = [kn for _, kn in split(g.k_total, t.k)]
    m_count, n_count, k_count = len(m_list), len(n_list), len(k_list)
    rows_sum = sum(max(rows, m.array_rows) for rows, _ in m_list)
    mxu = (rows_sum * sum(ceil_div(nn, m.array_cols) for nn in n_list)
           * sum(g.gemm_cycles(kn) for kn in k_list))
    input_once = sum(elems for _, elems in m_list) * g.k_total
    weights_once = g.weight_elements(g.n_total, g.k_total)
    weights_stay = t.resident or k_count == 1
    if t.n_outer:  # an input tile stays only while it is the only one
        inputs = input_once * (1 if m_count == 1 and k_count == 1 else n_count)
        weights = weights_once * (1 if weights_stay else m_count)
    else:
        inputs = input_once * (1 if k_count == 1 else n_count)
        weights = weights_once * (1 if (n_count == 1 and weights_stay) else m_count)
    pixels = sum(rows for rows, _ in m_list)
    outputs = pixels * g.n_total * (2 if g.epilogue.residual else 1)
    dma = 4 * (inputs + weights + outputs) / m.dma_bytes_per_cycle
    drains = (0 if g.epilogue.is_identity else 1) + (1 if g.epilogue.residual else 0)
    vpu = drains * pixels * g.n_total / m.vector_lanes
    steps = m_count * n_count * k_count
    slots = g.slots(t)
    # The DMA queue is in order and loads go in the order steps need them, so a tile
    # arrives about one step ahead: a load longer than a step shows through.
    step = mxu / steps
    exposed = sum(loaded / elements * max(0.0, 4 * elements / m.dma_bytes_per_cycle - step)
                  for loaded, elements in ((inputs, slots.input), (weights, slots.weight)))
    first = 4 * (slots.input + slots.weight) / m.dma_bytes_per_cycle + m.dma_latency_cycles
    last = 4 * slots.acc / m.dma_bytes_per_cycle * (1 + drains) + m.dma_latency_cycles
    return Estimate(max(mxu + exposed, dma, vpu) + first + last + 4 * steps, steps)


def plan(g: MatrixGeometry) -> Tiling:
    """The fastest tiling that fits, by :func:`estimate`; raises :class:`DoesNotFit`.
    Tiles narrower than the array are tried only when no wider one fits."""
    m = g.machine
    for small in (False, True):
        best: tuple[float, int, Tiling] | None = None
        for n in _sizes(g.n_total, m.array_cols, small):
            for k in _sizes(g.k_total, m.array_rows, small):
                for resident in (True, False) if k < g.k_total else (True,):
                    for shape in g.m_choices(n, k, resident):
                        for n_outer in (True, False):
                            tiling = Tiling(shape, n, k, resident, n_outer)
                            cost = estimate(g, tiling)
                            if best is None or (cost.cycles, cost.steps) < best[:2]:
                                best = (cost.cycles, cost.steps, tiling)
        if best is not None:
            return best[2]
    raise DoesNotFit("no tiling of this layer fits SRAM, even one output row per tile")


# --- steps --------------------------------------------------------------------------


def matrix_steps(g: MatrixGeometry, t: Tiling, sram: SramPlan, *, params_slot: int | None,
                 residual_slot: int | None) -> tuple[list[Buffer], Buffer, list[Step]]:
    """The buffers and steps of a matrix layer under tiling ``t``."""
    g.prepare(t)
    slots = g.slots(t)
    buffers = [sram.buffer("input", Partition.INPUT, slots.input, Engine.MXU),
               sram.buffer("weight", Partition.WEIGHT, slots.weight, Engine.MXU)]
    if slots.params:
        buffers.append(sram.buffer("params", Partition.WEIGHT, slots.params, Engine.VPU))
    if slots.residual:
        buffers.append(sram.buffer("residual", Partition.INPUT, slots.residual, Engine.VPU))
    acc = sram.buffer("acc", Partition.ACCUMULATOR, slots.acc, Engine.DMA)
    m_tiles = g.m_tiles(t.m)
    n_tiles = split(g.n_total, t.n)
    k_tiles = split(g.k_total, t.k)
    order = ([(mt, nt) for nt in n_tiles for mt in m_tiles] if t.n_outer
             else [(mt, nt) for mt in m_tiles for nt in n_tiles])
    steps = []
    for m_tile, (n0, nn) in order:
        for index, (k0, kn) in enumerate(k_tiles):
            steps.append(_step(g, t, m_tile, n0, nn, k0, kn, index == 0, params_slot,
                               residual_slot, slots))
    return buffers, acc, steps


def _step(g: MatrixGeometry, t: Tiling, m_tile: tuple, n0: int, nn: int, k0: int, kn: int,
          first: bool, params_slot: int | None, residual_slot: int | None, slots: Slots
          ) -> Step:
    # A resident weight tile holds every input channel of its n-tile; otherwise one k-tile.
    w_k0, w_k = (0, g.k_total) if t.resident else (k0, kn)
    product = g.product_of(m_tile)
    reads = [
        Tile("input", ("x", m_tile, k0), lambda address: g.load_input(address, m_tile, k0, kn)),
        Tile("weight", ("w", product, n0, w_k0),
             lambda address: g.load_weights(address, n0, nn, w_k0, w_k, product)),
    ]

    def compute(addresses, acc):
        return g.gemms(m_tile, nn, k0, kn, addresses["input"], addresses["weight"], w_k0, w_k,
                       acc, first)

    counts, acc_strides, channel_strides = g.acc_layout(m_tile, nn)
    epilogue = g.epilogue
    drain_reads = []
    if slots.params:
        drain_reads.append(Tile("params", ("p", n0),
                                lambda address: _load_params(params_slot, g, n0, nn, address,
                                                             slots.params // 2)))
    if slots.residual:
        drain_reads.append(Tile("residual", ("r", m_tile, n0),
                                lambda address: _load_residual(residual_slot, g, m_tile, n0,
                                                               nn, address)))

    def drain_tile(addresses, acc):
        scale = shift = res = None
        if slots.params:
            base = addresses["params"]
            half = 4 * (slots.params // 2)
            if epilogue.scale is not None:
                scale = VecOperand(base, channel_strides)
            if epilogue.shift is not None:
                shift = VecOperand(base + half, channel_strides)
        if slots.residual:
            res = VecOperand(addresses["residual"], acc_strides)
        return drain(counts, VecOperand(acc, acc_strides), scale=scale, shift=shift,
                     residual=res, act=epilogue.act)

    def store(acc):
        slot, offset, box, dram_strides, sram_strides = g.out_box(m_tile, n0, nn)
        return [isa.dma(Opcode.DMA_STORE, slot, offset, acc, box, dram_strides, sram_strides)]

    return Step(Engine.MXU, reads, compute, ("acc", m_tile, n0), store,
                None if epilogue.is_identity else drain_tile, drain_reads)


def _load_params(params_slot: int | None, g: MatrixGeometry, n0: int, nn: int, address: int,
                 half: int) -> list[Instruction]:
    """Scale at the start of the params slot, shift ``half`` elements in (data slot
    ``params_slot`` holds scale then shift, ``n_total`` each)."""
    code = []
    if g.epilogue.scale is not None:
        code.append(isa.dma(Opcode.DMA_LOAD, params_slot, n0, address, (nn,), (1,), (1,)))
    if g.epilogue.shift is not None:
        code.append(isa.dma(Opcode.DMA_LOAD, params_slot, g.n_total + n0, address + 4 * half,
                            (nn,), (1,), (1,)))
    return code


def _load_residual(residual_slot: int, g: MatrixGeometry, m_tile: tuple, n0: int, nn: int,
                   address: int) -> list[Instruction]:
    """The residual's tile, laid out like the accumulator tile (same box as the output)."""
    _, offset, box, dram_strides, sram_strides = g.out_box(m_tile, n0, nn)
    return [isa.dma(Opcode.DMA_LOAD, residual_slot, offset, address, box, dram_strides,
                    sram_strides)]


__all__ = ["ConvGeometry", "DoesNotFit", "GemmGeometry", "Product", "Tiling", "estimate",
           "matrix_steps", "plan"]
