"""Layers of the vector unit: depthwise convolution, pooling, elementwise ops.

Each is a stream of tiles: DMA brings the operands' tiles into the input buffer, the
vector unit computes the output tile in the accumulator buffer, DMA stores it; the
pipeline of :mod:`.pipeline` overlaps the three. Depthwise convolution is one fused
multiply-add per kernel tap over a ``[channels][rows][cols]`` tile (BatchNormalization
already folded into its weights and shift); pooling is the POOL instruction; elementwise
ops broadcast with stride-0 operands, and an operand that does not change from one tile
to the next (a bias) is loaded once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reference_backends.simaccel import isa
from reference_backends.simaccel.frontend import Activation
from reference_backends.simaccel.isa import Engine, Instruction, Opcode, PoolKind, VecOp, VecOperand
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

Layout = tuple[list[Buffer], Buffer, list[Step]]


def _fits(machine: SimAccelLimits, inputs: Sequence[int], weights: Sequence[int], acc: int
          ) -> bool:
    """Whether double-buffered slots of these element counts fit their partitions."""
    return (sum(DEPTH * slot_bytes(e) for e in inputs if e) <= machine.input_bytes
            and sum(DEPTH * slot_bytes(e) for e in weights if e) <= machine.weight_bytes
            and DEPTH * slot_bytes(acc) <= machine.accumulator_bytes)


def _largest(fits: Callable[[int], bool], limit: int) -> int:
    """The largest ``v <= limit`` with ``fits(v)`` (monotone); 0 if none."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


@dataclass(frozen=True)
class SpatialTiling:
    channels: int
    rows: int
    cols: int


def _spatial_tiling(machine: SimAccelLimits, channels: int, out_h: int, out_w: int,
                    fits: Callable[[int, int, int], bool],
                    cost: Callable[[int, int, int], float]) -> SpatialTiling:
    """Tiles of ``[channels][rows][cols]`` outputs: for channel counts (all, halves...)
    and widths (full, halves... only while a full row does not fit), as many rows as fit,
    or as many spread evenly; keep the one of least ``cost(channels, rows, cols)``."""
    best: tuple[float, SpatialTiling] | None = None
    c = channels
    while c >= 1:
        width = out_w
        while width >= 1:
            rows = _largest(lambda h, c=c, w=width: fits(c, h, w), out_h)
            if rows:
                for h in {rows, ceil_div(out_h, ceil_div(out_h, rows))}:
                    candidate = (cost(c, h, width), SpatialTiling(c, h, width))
                    if best is None or candidate[0] < best[0]:
                        best = candidate
                break
            width = width // 2 if width > 1 else 0
        c = c // 2 if c > 1 else 0
    if best is None:
        raise DoesNotFit("not even one output of one channel fits SRAM")
    return best[1]


def _stream_cost(machine: SimAccelLimits, channels: int, out_h: int, out_w: int,
                 input_elements: Callable[[int, int, int], int], vector_work: float,
                 extra_outputs: int = 0) -> Callable[[int, int, int], float]:
    """A tiling's cycles by the timing model: the busier of DMA (input tiles with their
    halo, outputs) and the vector unit, plus the first load and last store, plus a little
    per step."""
    def cost(c: int, h: int, w: int) -> float:
        loaded = sum(input_elements(cn, hn, wn) for _, cn in split(channels, c)
                     for _, hn in split(out_h, h) for _, wn in split(out_w, w))
        outputs = channels * out_h * out_w * (1 + extra_outputs)
        dma = 4 * (loaded + outputs) / machine.dma_bytes_per_cycle
        steps = ceil_div(channels, c) * ceil_div(out_h, h) * ceil_div(out_w, w)
        edges = 4 * (input_elements(c, h, w) + (1 + extra_outputs) * c * h * w)
        return (max(dma, vector_work / machine.vector_lanes)
                + edges / machine.dma_bytes_per_cycle + 8 * steps)
    return cost


@dataclass(frozen=True)
class Box:
    """An output tile: channels ``c0..+cn``, rows ``oy0..+ohn``, columns ``ox0..+own`` of
    one image."""

    image: int
    c0: int
    cn: int
    oy0: int
    ohn: int
    ox0: int
    own: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        return self.image, self.c0, self.oy0, self.ox0

    @property
    def pixels(self) -> int:
        return self.ohn * self.own


def _boxes(images: int, channels: int, out_h: int, out_w: int, t: SpatialTiling
           ) -> list[Box]:
    return [Box(image, c0, cn, oy0, ohn, ox0, own) for image in range(images)
            for c0, cn in split(channels, t.channels) for oy0, ohn in split(out_h, t.rows)
            for ox0, own in split(out_w, t.cols)]


def _box_dma(opcode: Opcode, fmap: FeatureMap, box: Box) -> Callable[[int], list[Instruction]]:
    """DMA of ``box`` of a feature map shaped like the output, to or from a dense
    ``[cn][ohn][own]`` tile (the output's store, a residual's load)."""
    def move(address: int) -> list[Instruction]:
        return [isa.dma(opcode, fmap.slot, fmap.offset(box.image, box.c0, box.oy0, box.ox0),
                        address, (box.cn, box.ohn, box.own), (fmap.h * fmap.w, fmap.w, 1),
                        (box.pixels, box.own, 1))]
    return move


# --- depthwise convolution ----------------------------------------------------------


def depthwise_layout(machine: SimAccelLimits, sram: SramPlan, x: FeatureMap, out: FeatureMap,
                     params_slot: int, kernel: tuple[int, int], strides: tuple[int, int],
                     pads: tuple[int, int, int, int], act: Activation,
                     residual: FeatureMap | None) -> Layout:
    """Steps of a depthwise convolution. ``params_slot`` holds the folded weights
    ``[C][KH*KW]`` then the shift ``[C]``; ``residual`` is added before the activation."""
    taps = kernel[0] * kernel[1]
    rows = Axis(x.h, kernel[0], strides[0], pads[0], out.h, subsample=True)
    cols = Axis(x.w, kernel[1], strides[1], pads[1], out.w)
    extra = 1 if residual is not None else 0

    def fits(c: int, h: int, w: int) -> bool:
        return _fits(machine, [c * rows.extent(h) * cols.extent(w), extra * c * h * w],
                     [c * (taps + 1)], c * h * w)

    cost = _stream_cost(machine, x.c, out.h, out.w,
                        lambda c, h, w: c * rows.extent(h) * cols.extent(w),
                        (taps + extra) * x.c * out.h * out.w, extra)
    tiling = _spatial_tiling(machine, x.c, out.h, out.w, fits, cost)
    loader = FeatureTileLoader(x, rows, cols, tiling.rows, tiling.cols, tiling.channels)
    params_elements = tiling.channels * (taps + 1)
    acc_elements = tiling.channels * tiling.rows * tiling.cols
    buffers = [sram.buffer("input", Partition.INPUT, loader.elements, Engine.VPU),
               sram.buffer("params", Partition.WEIGHT, params_elements, Engine.VPU)]
    if residual is not None:
        buffers.append(sram.buffer("residual", Partition.INPUT, acc_elements, Engine.VPU))
    acc = sram.buffer("acc", Partition.ACCUMULATOR, acc_elements, Engine.DMA)
    shift_at = 4 * tiling.channels * taps  # in the params slot, after the weights

    def load_params(c0: int, cn: int) -> Callable[[int], list[Instruction]]:
        def load(address: int) -> list[Instruction]:
            return [isa.dma(Opcode.DMA_LOAD, params_slot, c0 * taps, address, (cn * taps,),
                            (1,), (1,)),
                    isa.dma(Opcode.DMA_LOAD, params_slot, x.c * taps + c0, address + shift_at,
                            (cn,), (1,), (1,))]
        return load

    def taps_of(box: Box) -> Callable:
        """One FMA per tap: acc = x_tap * w_tap + (shift, then acc); act on the last."""
        def compute(addresses, acc_address):
            dst = VecOperand(acc_address, (box.pixels, box.own, 1))
            src, params = addresses["input"], addresses["params"]
            code = []
            for tap in range(taps):
                ky, kx = divmod(tap, kernel[1])
                a = VecOperand(src + 4 * (ky * loader.line + kx),
                               (loader.row_len, rows.step * loader.line, cols.stride))
                w = VecOperand(params + 4 * tap, (taps, 0, 0))
                c = VecOperand(params + shift_at, (1, 0, 0)) if tap == 0 else dst
                last = tap == taps - 1 and residual is None
                code.append(isa.vec(VecOp.FMA, (box.cn, box.ohn, box.own), dst, a, w, c,
                                    **(act.fields() if last else {})))
            return code
        return compute

    steps = []
    for box in _boxes(x.n, x.c, out.h, out.w, tiling):
        tile = Tile("input", box.key, lambda address, b=box: loader.load(
            address, b.image, b.c0, b.cn, b.oy0, b.ohn, b.ox0, b.own))
        step = Step(Engine.VPU, [tile, Tile("params", box.c0, load_params(box.c0, box.cn))],
                    taps_of(box), box.key, _box_dma(Opcode.DMA_STORE, out, box))
        if residual is not None:
            step.drain_reads = [Tile("residual", box.key,
                                     _box_dma(Opcode.DMA_LOAD, residual, box))]
            step.drain = _residual_drain((box.cn, box.pixels), act)
        steps.append(step)
    return buffers, acc, steps


def _residual_drain(shape: tuple[int, int], act: Activation) -> Callable:
    def drain_tile(addresses, acc_address):
        strides = (0, shape[1], 1)
        return drain((1, *shape), VecOperand(acc_address, strides),
                     residual=VecOperand(addresses["residual"], strides), act=act)
    return drain_tile


# --- pooling ------------------------------------------------------------------------


def pool_layout(machine: SimAccelLimits, sram: SramPlan, kind: PoolKind, x: FeatureMap,
                out: FeatureMap, kernel: tuple[int, int], strides: tuple[int, int],
                pads: tuple[int, int, int, int]) -> Layout:
    """Steps of MaxPool, AveragePool (padding excluded from the average) and
    GlobalAveragePool. Tiles hold only the input lines inside the image; POOL clips
    each window to them, which is exactly the padding's effect."""
    rows = Axis(x.h, kernel[0], strides[0], pads[0], out.h)
    cols = Axis(x.w, kernel[1], strides[1], pads[1], out.w)

    def loaded(c: int, h: int, w: int) -> int:
        return c * min(rows.extent(h), x.h) * min(cols.extent(w), x.w)

    cost = _stream_cost(machine, x.c, out.h, out.w, loaded,
                        x.c * out.h * out.w * kernel[0] * kernel[1])
    tiling = _spatial_tiling(machine, x.c, out.h, out.w,
                             lambda c, h, w: _fits(machine, [loaded(c, h, w)], [], c * h * w),
                             cost)
    row_len = min(cols.extent(tiling.cols), x.w)
    plane = min(rows.extent(tiling.rows), x.h) * row_len
    buffers = [sram.buffer("input", Partition.INPUT, tiling.channels * plane, Engine.VPU)]
    acc = sram.buffer("acc", Partition.ACCUMULATOR,
                  tiling.channels * tiling.rows * tiling.cols, Engine.DMA)
    steps = []
    for box in _boxes(x.n, x.c, out.h, out.w, tiling):
        in_rows = [line for _, line in rows.lines(box.oy0, box.ohn)]
        in_cols = [line for _, line in cols.lines(box.ox0, box.own)]
        geometry = isa.PoolGeometry(
            box.cn, in_rows[-1] - in_rows[0] + 1, in_cols[-1] - in_cols[0] + 1, box.ohn,
            box.own, kernel[0], kernel[1], strides[0], strides[1],
            in_rows[0] - (box.oy0 * strides[0] - pads[0]),
            in_cols[0] - (box.ox0 * strides[1] - pads[1]))

        def load(address, b=box, g=geometry, r0=in_rows[0], c0=in_cols[0]):
            return [isa.dma(Opcode.DMA_LOAD, x.slot, x.offset(b.image, b.c0, r0, c0), address,
                            (g.channels, g.in_h, g.in_w), (x.h * x.w, x.w, 1),
                            (plane, row_len, 1))]

        def compute(addresses, acc_address, g=geometry):
            return [isa.pool(kind, g, addresses["input"], (plane, row_len), acc_address,
                             (g.out_h * g.out_w, g.out_w))]

        steps.append(Step(Engine.VPU, [Tile("input", box.key, load)], compute, box.key,
                          _box_dma(Opcode.DMA_STORE, out, box)))
    return buffers, acc, steps


# --- elementwise --------------------------------------------------------------------


@dataclass(frozen=True)
class Operand:
    """An elementwise operand: its DRAM slot and strides over the output's dims
    (0 where it broadcasts)."""

    name: str
    slot: int
    strides: tuple[int, ...]


def broadcast_strides(shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a row-major ``shape`` broadcast to ``out_shape`` (0: repeated)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for dim, out_dim in zip(reversed(padded), reversed(out_shape), strict=True):
        strides.append(0 if dim == 1 and out_dim != 1 else step)
        step *= dim
    return tuple(reversed(strides))


def merge_dims(dims: Sequence[int], strides: Sequence[Sequence[int]]
               ) -> tuple[list[int], list[list[int]]]:
    """Merge neighbouring dims wherever every operand steps through them as one.
    ``strides`` lists each operand's (the output's too); size-1 dims are dropped."""
    keep = [d for d, size in enumerate(dims) if size != 1] or [len(dims) - 1]
    out_dims = [dims[keep[0]]]
    out_strides = [[s[keep[0]]] for s in strides]
    for d in keep[1:]:
        mergeable = all(st[-1] == s[d] * dims[d] for st, s in zip(out_strides, strides,
                                                                  strict=True))
        if mergeable:
            out_dims[-1] *= dims[d]
            for st, s in zip(out_strides, strides, strict=True):
                st[-1] = s[d]
        else:
            out_dims.append(dims[d])
            for st, s in zip(out_strides, strides, strict=True):
                st.append(s[d])
    return out_dims, out_strides


def elementwise_layout(machine: SimAccelLimits, sram: SramPlan, op: VecOp,
                       operands: Sequence[Operand], out_slot: int, out_shape: Sequence[int],
                       act: Activation) -> Layout:
    """Steps of ``out = act(op(operands))``; tiles split the outermost dim that must be
    split for the tile to fit, with every dim inside it whole."""
    shape = list(out_shape) or [1]
    # Operands that read the same data the same way load once (``x * x``). The same
    # data under two shapes (``x + Reshape(x)``: one name once aliases are resolved) is
    # read with different strides, so it is two operands.
    keys = list(dict.fromkeys((o.name, o.strides) for o in operands))
    unique = [next(o for o in operands if (o.name, o.strides) == key) for key in keys]
    dims, merged = merge_dims(shape, [[*(o.strides or (1,))] for o in unique]
                              + [list(broadcast_strides(shape, shape))])
    op_strides, out_strides = merged[:-1], merged[-1]
    rank = len(dims)

    def tile_elements(split_dim: int, size: int, strides: Sequence[int] | None) -> int:
        total = 1
        for d in range(split_dim, rank):
            extent = size if d == split_dim else dims[d]
            total *= extent if strides is None or strides[d] else 1
        return total

    def fits(split_dim: int, size: int) -> bool:
        return _fits(machine, [tile_elements(split_dim, size, s) for s in op_strides], [],
                     tile_elements(split_dim, size, None))

    split_dim = next((d for d in range(rank) if fits(d, 1)), None)
    if split_dim is None:
        raise DoesNotFit("no tile of this elementwise op fits SRAM")
    size = _largest(lambda v: fits(split_dim, v), dims[split_dim])
    buffers = [sram.buffer(f"op{index}", Partition.INPUT,
                       tile_elements(split_dim, size, strides), Engine.VPU)
               for index, strides in enumerate(op_strides)]
    acc = sram.buffer("acc", Partition.ACCUMULATOR, tile_elements(split_dim, size, None),
                  Engine.DMA)
    steps = []
    for outer in _indices(dims[:split_dim]):
        for start, count in split(dims[split_dim], size):
            index = (*outer, start)
            box = [count, *dims[split_dim + 1:]]
            reads = [_operand_tile(f"op{i}", o, strides, index, box, split_dim)
                     for i, (o, strides) in enumerate(zip(unique, op_strides, strict=True))]
            sources = [keys.index((o.name, o.strides)) for o in operands]
            steps.append(Step(Engine.VPU, reads,
                              _vec_compute(op, act, box, op_strides, sources, split_dim),
                              index, _box_store(out_slot, out_strides, index, box, split_dim)))
    return buffers, acc, steps


def _indices(dims: Sequence[int]) -> list[tuple[int, ...]]:
    """Every index of a box of ``dims``, in row-major order (one empty index for no dims)."""
    return list(itertools.product(*(range(size) for size in dims)))


def _compact(box: Sequence[int], strides: Sequence[int]) -> tuple[list[int], list[int]]:
    """SRAM strides of an operand's tile stored densely (0 along broadcast dims), and the
    box counts of the dims it really has."""
    sram, step = [0] * len(box), 1
    for d in reversed(range(len(box))):
        if strides[d]:
            sram[d] = step
            step *= box[d]
    return sram, [box[d] for d in range(len(box)) if strides[d]]


def _operand_tile(buffer: str, operand: Operand, strides: Sequence[int], index: Sequence[int],
                  box: Sequence[int], split_dim: int) -> Tile:
    tail = strides[split_dim:]
    offset = sum(i * s for i, s in zip(index, strides, strict=False))
    key = (operand.name, offset)  # tiles that read the same data share a key: no reload
    sram_strides, counts = _compact(box, tail)
    dram = [s for s in tail if s]
    packed = [s for s in sram_strides if s]

    def load(address: int) -> list[Instruction]:
        if not counts:  # a scalar
            return [isa.dma(Opcode.DMA_LOAD, operand.slot, offset, address, (1,), (1,), (1,))]
        return [isa.dma(Opcode.DMA_LOAD, operand.slot, offset, address, counts, dram, packed)]

    return Tile(buffer, key, load)


def _vec_compute(op: VecOp, act: Activation, box: Sequence[int],
                 op_strides: Sequence[Sequence[int]], sources: Sequence[int], split_dim: int
                 ) -> Callable:
    """VEC instructions over the tile (one per index of a 4th dim, if any)."""
    out_sram, _ = _compact(box, [1] * len(box))
    src_sram = [_compact(box, s[split_dim:])[0] for s in op_strides]

    def compute(addresses, acc_address):
        code = []
        outer = box[:-3] if len(box) > 3 else []
        inner = list(box[-3:])
        for index in _indices(outer):
            dst = _at(acc_address, out_sram, index)
            srcs = [_at(addresses[f"op{i}"], src_sram[i], index) for i in sources]
            code.append(isa.vec(op, inner, dst, *srcs, **act.fields()))
        return code
    return compute


def _at(address: int, strides: Sequence[int], index: Sequence[int]) -> VecOperand:
    """The operand at ``index`` of the leading dims, over its last (up to) three."""
    base = address + 4 * sum(i * s for i, s in zip(index, strides, strict=False))
    tail = list(strides[len(index):])
    return VecOperand(base, (*[0] * (3 - len(tail)), *tail))


def _box_store(slot: int, strides: Sequence[int], index: Sequence[int], box: Sequence[int],
               split_dim: int) -> Callable[[int], list[Instruction]]:
    offset = sum(i * s for i, s in zip(index, strides, strict=False))
    sram, _ = _compact(box, [1] * len(box))

    def store(acc: int) -> list[Instruction]:
        return [isa.dma(Opcode.DMA_STORE, slot, offset, acc, box, strides[split_dim:], sram)]
    return store


__all__ = ["Operand", "broadcast_strides", "depthwise_layout", "elementwise_layout",
           "merge_dims", "pool_layout"]
