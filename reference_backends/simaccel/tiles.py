"""Tiles of feature maps and matrices: how they map to DRAM, and the DMA that moves them.

The compiler keeps ONNX layouts in DRAM (NCHW feature maps, row-major matrices) and
chooses SRAM layouts per tile: a feature-map tile is ``[channels][rows][cols]`` with its
halo, so the systolic array can read an im2col matrix out of it with strides (see
:func:`~reference_backends.simaccel.isa.gemm`) and the DMA engine moves whole rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reference_backends.simaccel import isa
from reference_backends.simaccel.frontend import NO_ACTIVATION, Activation
from reference_backends.simaccel.isa import Instruction, Opcode, VecOp, VecOperand


def split(total: int, tile: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the tiles of ``tile`` covering ``range(total)``."""
    return [(start, min(tile, total - start)) for start in range(0, total, tile)]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a sliding window: output ``o`` reads input lines
    ``o * stride - pad + [0, kernel)`` of ``size`` (lines outside are padding).

    A tile keeps each output's input lines at ``o_local * step + [0, kernel)``. Usually
    ``step`` is the stride and neighbouring windows share lines; when the kernel is
    shorter than the stride and ``subsample`` is set (rows of a 1x1 stride-2 conv), the
    lines between windows are never loaded.
    """

    size: int
    kernel: int
    stride: int
    pad: int
    out: int
    subsample: bool = False

    @property
    def step(self) -> int:
        return self.kernel if self.subsample and self.kernel < self.stride else self.stride

    def extent(self, n: int) -> int:
        """Local lines of a tile of ``n`` outputs."""
        return (n - 1) * self.step + self.kernel

    def lines(self, first: int, n: int) -> list[tuple[int, int]]:
        """``(local, global)`` of each line of the tile of outputs ``first..first+n`` that
        lies inside the input."""
        found = []
        for o in range(n):
            for k in range(self.kernel):
                local = o * self.step + k
                line = (first + o) * self.stride - self.pad + k
                if 0 <= line < self.size:
                    found.append((local, line))
        return sorted(set(found))


def runs(lines: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int, int]]:
    """Group ``(local, global)`` lines into arithmetic runs for one DMA each:
    ``(local start, global start, count, local step, global step)``."""
    found: list[list[int]] = []
    for local, line in lines:
        if found:
            run = found[-1]
            if run[2] == 1 and local > run[0] and line > run[1]:
                run[3], run[4] = local - run[0], line - run[1]
                run[2] = 2
                continue
            if (run[2] > 1 and local == run[0] + run[2] * run[3]
                    and line == run[1] + run[2] * run[4]):
                run[2] += 1
                continue
        found.append([local, line, 1, 1, 1])
    return [(a, b, c, d, e) for a, b, c, d, e in found]


def ranges(values: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted integers as ``[start, stop)`` ranges of consecutive values."""
    found: list[list[int]] = []
    for v in sorted(values):
        if found and v == found[-1][1]:
            found[-1][1] += 1
        else:
            found.append([v, v + 1])
    return [(a, b) for a, b in found]


@dataclass(frozen=True)
class FeatureMap:
    """An NCHW tensor in DRAM: its slot and shape."""

    slot: int
    n: int
    c: int
    h: int
    w: int

    def offset(self, image: int, channel: int, row: int = 0, col: int = 0) -> int:
        return ((image * self.c + channel) * self.h + row) * self.w + col


class FeatureTileLoader:
    """Loads ``[rows][channels][cols]`` tiles of a feature map with their halo, zeros in
    the padding (for convolution).

    Rows outermost: the row ``ky`` of channel ``c`` is line ``ky * channels + c``, so the
    kernel rows and channels of an im2col matrix form one index with one stride and a
    single GEMM can reduce over all of them. Every slot uses the same layout, sized for
    the largest tile, so the padding a slot needs changes little from tile to tile: each
    slot remembers which of its lines may hold data rather than zeros, and only those the
    next tile needs as padding are filled again.
    """

    def __init__(self, source: FeatureMap, rows: Axis, cols: Axis, max_rows: int,
                 max_cols: int, max_channels: int) -> None:
        self.source = source
        self.rows = rows
        self.cols = cols
        self.row_len = cols.extent(max_cols)  # the channel stride
        self.channels = max_channels
        self.line = max_channels * self.row_len  # the row stride
        self.lines = rows.extent(max_rows)
        self.dirty: dict[int, tuple[set[int], tuple[int, int]]] = {}

    @property
    def elements(self) -> int:
        return self.lines * self.line

    def load(self, address: int, image: int, c0: int, cn: int, oy0: int, ohn: int, ox0: int,
             own: int) -> list[Instruction]:
        """Fills and loads for the tile of outputs ``oy0..+ohn`` x ``ox0..+own``, input
        channels ``c0..+cn``, of ``image``, into the slot at ``address``."""
        row_lines = self.rows.lines(oy0, ohn)
        col_lines = self.cols.lines(ox0, own)
        if not row_lines or not col_lines:
            row_lines, col_lines = [], []
        code = self._zero_padding(address, {r for r, _ in row_lines}, self.rows.extent(ohn),
                                  (col_lines[0][0], col_lines[-1][0] + 1) if col_lines else None)
        if not row_lines:
            return code
        # Columns load as one range, the gaps between windows (stride > kernel) included.
        (l0, g0), count = col_lines[0], col_lines[-1][0] - col_lines[0][0] + 1
        for local, line, n, local_step, line_step in runs(row_lines):
            code.append(isa.dma(
                Opcode.DMA_LOAD, self.source.slot, self.source.offset(image, c0, line, g0),
                address + 4 * (local * self.line + l0), (cn, n, count),
                (self.source.h * self.source.w, line_step * self.source.w, 1),
                (self.row_len, local_step * self.line, 1)))
        return code

    def _zero_padding(self, address: int, data_rows: set[int], used_rows: int,
                      data_cols: tuple[int, int] | None) -> list[Instruction]:
        """DMA_FILLs that zero what this tile reads as padding but may hold stale data.

        A slot's state is a box of lines x columns outside which it holds zeros
        (everything, before its first tile).
        """
        dirty_rows, dirty_cols = self.dirty.get(address, (set(range(self.lines)),
                                                          (0, self.row_len)))
        needed = set(range(used_rows))
        code = []
        # Lines that are padding now: zero them across every column that may hold data.
        for start, stop in ranges((dirty_rows - data_rows) & needed):
            code.append(self._fill(address, start, stop, *dirty_cols))
        # Lines that stay data: zero their columns outside the new data columns.
        if data_cols is not None:
            keep = ranges(dirty_rows & data_rows & needed)
            for lo, hi in ((dirty_cols[0], min(dirty_cols[1], data_cols[0])),
                           (max(dirty_cols[0], data_cols[1]), dirty_cols[1])):
                if lo < hi:
                    code += [self._fill(address, start, stop, lo, hi) for start, stop in keep]
        leftover = dirty_rows - needed  # untouched lines keep whatever they held
        if data_cols is None:
            self.dirty[address] = (leftover, dirty_cols)
        else:
            cols = (data_cols if not leftover else
                    (min(data_cols[0], dirty_cols[0]), max(data_cols[1], dirty_cols[1])))
            self.dirty[address] = (data_rows | leftover, cols)
        return code

    def _fill(self, address: int, row0: int, row1: int, col0: int, col1: int) -> Instruction:
        return isa.dma_fill(address + 4 * (row0 * self.line + col0),
                            (row1 - row0, self.channels, col1 - col0),
                            (self.line, self.row_len, 1), 0.0)


def drain(counts: Sequence[int], acc: VecOperand, *, scale: VecOperand | None = None,
          shift: VecOperand | None = None, residual: VecOperand | None = None,
          act: Activation = NO_ACTIVATION) -> list[Instruction]:
    """The vector-unit work on a finished accumulator tile, in place:
    ``acc = act(acc * scale + shift + residual)``, each part optional."""
    acts = act.fields()
    affine = None
    if scale is not None and shift is not None:
        affine = (VecOp.FMA, acc, scale, shift)
    elif scale is not None:
        affine = (VecOp.MUL, acc, scale)
    elif shift is not None:
        affine = (VecOp.ADD, acc, shift)
    code = []
    if affine is not None:
        code.append(isa.vec(affine[0], counts, acc, *affine[1:],
                            **(acts if residual is None else {})))
    if residual is not None:
        code.append(isa.vec(VecOp.ADD, counts, acc, acc, residual, **acts))
    elif affine is None and act != NO_ACTIVATION:
        code.append(isa.vec(VecOp.COPY, counts, acc, acc, **acts))
    return code
