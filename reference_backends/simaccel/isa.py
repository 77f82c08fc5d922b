"""The simaccel instruction set and its binary encoding (format version 1).

A program is, in order (all little-endian):

* a 96-byte header: magic ``SIMACCEL``, version, the sizes of the records that follow,
  the counts of slots, instructions, data bytes, inputs, outputs and constants, and the
  machine the program was compiled for (array, vector lanes, SRAM partitions, DMA and
  clock parameters: the simulator runs that machine);
* a slot table, 24 bytes a slot: the DRAM tensors the program addresses (region inputs,
  region outputs, constants by their index in the artifact's list, zeroed scratch, and
  tensors in the data section);
* the instructions, 96 bytes each: opcode, two small operands, dtype, then 23 words;
* the data section: derived tensors the compiler computed (folded scales and shifts).

DRAM is addressed by slot and element offset; SRAM by byte address into one space laid
out as input buffer, weight buffer, accumulator buffer. Strides count elements. The
C++ simulator (``cpp/src/simaccel_*``) validates everything before running; the layout
here and there must match (``tests/test_simaccel_isa.py`` checks it).
``docs/backends/simaccel.md`` documents each field.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from reference_backends.simaccel.limits import SimAccelLimits

MAGIC = b"SIMACCEL"
VERSION = 1
HEADER_SIZE = 96
SLOT_SIZE = 24
INSTRUCTION_SIZE = 96
WORDS = 23
NUM_SEMAPHORES = 32

_HEADER = struct.Struct("<8sHHHH16I16x")
_SLOT = struct.Struct("<BBHIQQ")
_INSTRUCTION = struct.Struct(f"<BBBB{WORDS}I")
assert _HEADER.size == HEADER_SIZE and _SLOT.size == SLOT_SIZE
assert _INSTRUCTION.size == INSTRUCTION_SIZE


class Opcode(IntEnum):
    DMA_LOAD = 0x01
    DMA_STORE = 0x02
    DMA_FILL = 0x03
    GEMM = 0x10
    VEC = 0x20
    POOL = 0x21
    SIGNAL = 0x30
    WAIT = 0x31


class Engine(IntEnum):
    """The three in-order queues instructions issue to."""

    DMA = 0
    MXU = 1
    VPU = 2


class DType(IntEnum):
    F32 = 0


class VecOp(IntEnum):
    COPY = 0  # a
    ADD = 1  # a + b
    SUB = 2  # a - b
    MUL = 3  # a * b
    FMA = 4  # a * b + c
    MAX = 5
    MIN = 6


class Act(IntEnum):
    """Activations the vector unit applies to a result before writing it."""

    NONE = 0
    RELU = 1
    LEAKY_RELU = 2  # alpha
    CLIP = 3  # alpha = min, beta = max
    SIGMOID = 4
    TANH = 5
    HARD_SIGMOID = 6  # alpha, beta
    HARD_SWISH = 7


class PoolKind(IntEnum):
    MAX = 0
    AVG = 1  # divides by the window's cells inside the input (count_include_pad = 0)


class SlotKind(IntEnum):
    INPUT = 0
    OUTPUT = 1
    CONSTANT = 2
    SCRATCH = 3
    DATA = 4


#: The engine each opcode runs on (SIGNAL and WAIT name theirs).
ENGINE_OF = {
    Opcode.DMA_LOAD: Engine.DMA, Opcode.DMA_STORE: Engine.DMA, Opcode.DMA_FILL: Engine.DMA,
    Opcode.GEMM: Engine.MXU, Opcode.VEC: Engine.VPU, Opcode.POOL: Engine.VPU,
}

#: Operands each vector op reads, besides its destination.
VEC_SOURCES = {VecOp.COPY: 1, VecOp.FMA: 3}


def f32_bits(value: float) -> int:
    """The IEEE-754 bits of ``value`` as float32, for a word of an instruction."""
    return struct.unpack("<I", struct.pack("<f", value))[0]


def bits_f32(word: int) -> float:
    return struct.unpack("<f", struct.pack("<I", word))[0]


def _u32(value: int) -> int:
    """Signed fields (pool padding) travel as two's complement words."""
    if not -(2**31) <= value < 2**32:
        raise ValueError(f"{value} does not fit a 32-bit field")
    return value & 0xFFFFFFFF


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: opcode, two small operands (``a``, ``b``), dtype, words."""

    opcode: Opcode
    a: int = 0
    b: int = 0
    dtype: DType = DType.F32
    words: tuple[int, ...] = ()

    def encode(self) -> bytes:
        words = [_u32(w) for w in self.words] + [0] * (WORDS - len(self.words))
        if len(words) != WORDS:
            raise ValueError(f"{self.opcode.name} has {len(self.words)} words, at most {WORDS}")
        return _INSTRUCTION.pack(self.opcode, self.a, self.b, self.dtype, *words)

    @property
    def engine(self) -> Engine:
        if self.opcode in (Opcode.SIGNAL, Opcode.WAIT):
            return Engine(self.a)
        return ENGINE_OF[self.opcode]


def _dims(counts: Sequence[int], *strides: Sequence[int], n: int) -> list[list[int]]:
    """Pad ``counts`` and each stride list on the outside to ``n`` dims (count 1, stride 0)."""
    if len(counts) > n or any(len(s) != len(counts) for s in strides):
        raise ValueError(f"need at most {n} dims with one stride each, got {counts} {strides}")
    pad = n - len(counts)
    return [[1] * pad + list(counts)] + [[0] * pad + list(s) for s in strides]


# --- instruction builders -----------------------------------------------------------


def dma(opcode: Opcode, slot: int, dram_offset: int, sram: int, counts: Sequence[int],
        dram_strides: Sequence[int], sram_strides: Sequence[int]) -> Instruction:
    """DMA_LOAD (DRAM -> SRAM) or DMA_STORE (SRAM -> DRAM) of a box of up to 4 dims,
    outermost first; element ``i`` of the box is at ``dram_offset + sum(i_d * dram_d)``
    in the slot and at byte ``sram + 4 * sum(i_d * sram_d)`` in SRAM."""
    counts4, dram4, sram4 = _dims(counts, dram_strides, sram_strides, n=4)
    return Instruction(opcode, words=(slot, dram_offset, sram, *counts4, *dram4, *sram4))


def dma_fill(sram: int, counts: Sequence[int], sram_strides: Sequence[int],
             value: float) -> Instruction:
    """DMA_FILL: write ``value`` to a box of SRAM (zero padding, -inf for max pooling)."""
    counts4, sram4 = _dims(counts, sram_strides, n=4)
    return Instruction(Opcode.DMA_FILL,
                       words=(0, 0, sram, *counts4, 0, 0, 0, 0, *sram4, f32_bits(value)))


@dataclass(frozen=True)
class MatrixOperand:
    """Where a GEMM operand lives: byte address and element strides. For A and C the row
    index ``m`` splits into ``(m // m_inner, m % m_inner)``, for A and B the reduction
    index ``k`` into ``(k // k_inner, k % k_inner)``: two-level strides let the array read
    an im2col matrix straight out of a feature-map tile."""

    address: int
    inner: int = 0  # A: m stride within a row group; B: k stride within a group; C: m inner
    outer: int = 0  # the stride between groups (same roles)
    k_inner: int = 0  # A only: stride of k within a group
    k_outer: int = 0  # A only: stride between k groups
    n: int = 0  # B and C: stride along n


def gemm(m: int, k: int, n: int, *, m_inner: int, k_inner: int, a: MatrixOperand,
         b: MatrixOperand, c: MatrixOperand, accumulate: bool) -> Instruction:
    """GEMM on the systolic array: ``C[m, n] (+)= sum_k A[m, k] * B[k, n]``.

    A: ``a.address + (m // m_inner) * a.outer + (m % m_inner) * a.inner
    + (k // k_inner) * a.k_outer + (k % k_inner) * a.k_inner`` (input buffer);
    B: ``b.address + (k // k_inner) * b.outer + (k % k_inner) * b.inner + n * b.n``
    (weight buffer); C: ``c.address + (m // m_inner) * c.outer + (m % m_inner) * c.inner
    + n * c.n`` (accumulator buffer). Addresses are bytes, strides elements.
    """
    words = (m, k, n, a.address, m_inner, a.inner, a.outer, k_inner, a.k_inner, a.k_outer,
             b.address, b.inner, b.outer, b.n, c.address, c.inner, c.outer, c.n)
    return Instruction(Opcode.GEMM, a=1 if accumulate else 0, words=words)


@dataclass(frozen=True)
class VecOperand:
    """A vector operand: byte address and 3 element strides (outermost first; 0 broadcasts)."""

    address: int
    strides: tuple[int, int, int] = (0, 0, 0)


_NO_OPERAND = VecOperand(0)


def vec(op: VecOp, counts: Sequence[int], dst: VecOperand, a: VecOperand,
        b: VecOperand = _NO_OPERAND, c: VecOperand = _NO_OPERAND, *, act: Act = Act.NONE,
        alpha: float = 0.0, beta: float = 0.0) -> Instruction:
    """VEC on the vector unit: ``dst = act(op(a, b, c))`` over a box of up to 3 dims."""
    (counts3,) = _dims(counts, n=3)
    words = [*counts3]
    for operand in (dst, a, b, c):
        words += [operand.address, *operand.strides]
    words += [f32_bits(alpha), f32_bits(beta)]
    return Instruction(Opcode.VEC, a=op, b=act, words=tuple(words))


@dataclass(frozen=True)
class PoolGeometry:
    """A pooling window over a ``channels x in_h x in_w`` SRAM tile: output cell
    ``(oy, ox)`` covers rows ``oy * stride_h - pad_top`` to ``+ kernel_h`` and likewise
    columns, clipped to the tile."""

    channels: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int


def pool(kind: PoolKind, g: PoolGeometry, src: int, src_strides: tuple[int, int],
         dst: int, dst_strides: tuple[int, int]) -> Instruction:
    """POOL on the vector unit; strides are (channel, row); columns are contiguous."""
    words = (g.channels, g.in_h, g.in_w, g.out_h, g.out_w, g.kernel_h, g.kernel_w, g.stride_h,
             g.stride_w, g.pad_top, g.pad_left, src, *src_strides, dst, *dst_strides)
    return Instruction(Opcode.POOL, a=kind, words=words)


def signal(engine: Engine, semaphore: int) -> Instruction:
    """SIGNAL: once everything ``engine`` issued before has completed, add 1 to the
    semaphore. Does not hold the engine up."""
    return Instruction(Opcode.SIGNAL, a=engine, words=(semaphore,))


def wait(engine: Engine, semaphore: int, count: int) -> Instruction:
    """WAIT: ``engine`` starts nothing more until the semaphore reaches ``count``."""
    return Instruction(Opcode.WAIT, a=engine, words=(semaphore, count))


# --- programs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A DRAM tensor of the program (elements of ``dtype``)."""

    kind: SlotKind
    index: int  # input / output / constant index; 0 for scratch and data
    elements: int
    data_offset: int = 0  # DATA: byte offset into the data section
    dtype: DType = DType.F32


@dataclass
class Program:
    """A whole program, before encoding or after decoding."""

    machine: SimAccelLimits
    slots: list[Slot] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)
    data: bytes = b""
    inputs: int = 0
    outputs: int = 0
    constants: int = 0

    def encode(self) -> bytes:
        m = self.machine
        header = _HEADER.pack(
            MAGIC, VERSION, HEADER_SIZE, SLOT_SIZE, INSTRUCTION_SIZE,
            len(self.slots), len(self.instructions), len(self.data),
            self.inputs, self.outputs, self.constants,
            m.array_rows, m.array_cols, m.vector_lanes,
            m.input_bytes, m.weight_bytes, m.accumulator_bytes,
            m.dma_bytes_per_cycle, m.dma_latency_cycles, m.vector_latency_cycles, m.clock_mhz,
        )
        slots = b"".join(_SLOT.pack(s.kind, s.dtype, 0, s.index, s.elements, s.data_offset)
                         for s in self.slots)
        code = b"".join(i.encode() for i in self.instructions)
        return header + slots + code + self.data


def decode(data: bytes) -> Program:
    """Parse a program's bytes (no validation beyond the layout: the simulator does that)."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    (magic, version, _h, _s, _i, n_slots, n_instr, n_data, inputs, outputs, constants,
     rows, cols, lanes, in_b, w_b, acc_b, bw, latency, vlat, clock) = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a simaccel v{VERSION} program (magic {magic!r}, v{version})")
    machine = SimAccelLimits(
        array_rows=rows, array_cols=cols, vector_lanes=lanes, vector_latency_cycles=vlat,
        sram_kib=(in_b + w_b + acc_b) // 1024, input_kib=in_b // 1024, weight_kib=w_b // 1024,
        accumulator_kib=acc_b // 1024, dma_bytes_per_cycle=bw, dma_latency_cycles=latency,
        clock_mhz=clock,
    )
    offset = HEADER_SIZE
    slots = []
    for _ in range(n_slots):
        kind, dtype, _r, index, elements, data_offset = _SLOT.unpack_from(data, offset)
        slots.append(Slot(SlotKind(kind), index, elements, data_offset, DType(dtype)))
        offset += SLOT_SIZE
    instructions = []
    for _ in range(n_instr):
        opcode, a, b, dtype, *words = _INSTRUCTION.unpack_from(data, offset)
        instructions.append(Instruction(Opcode(opcode), a, b, DType(dtype), tuple(words)))
        offset += INSTRUCTION_SIZE
    return Program(machine, slots, instructions, bytes(data[offset:offset + n_data]),
                   inputs, outputs, constants)


def disassemble(data: bytes) -> str:
    """A readable listing of a program: header, slots, one line per instruction."""
    program = decode(data)
    m = program.machine
    lines = [
        f"simaccel v{VERSION}: {m.array_rows}x{m.array_cols} array, {m.vector_lanes} lanes, "
        f"SRAM {m.input_kib}+{m.weight_kib}+{m.accumulator_kib} KiB, DMA "
        f"{m.dma_bytes_per_cycle} B/cycle +{m.dma_latency_cycles}, {m.clock_mhz} MHz",
    ]
    for number, slot in enumerate(program.slots):
        lines.append(f"slot {number}: {slot.kind.name.lower()} {slot.index} "
                     f"({slot.elements} elements)")
    for number, instr in enumerate(program.instructions):
        lines.append(f"{number:6d}  {_describe(instr)}")
    return "\n".join(lines)


def _describe(instr: Instruction) -> str:
    w = instr.words
    op = instr.opcode
    if op in (Opcode.DMA_LOAD, Opcode.DMA_STORE):
        arrow = "->" if op == Opcode.DMA_LOAD else "<-"
        return (f"{op.name:<9} slot {w[0]}+{w[1]} {arrow} sram {w[2]:#x}  counts {w[3:7]} "
                f"dram {w[7:11]} sram {w[11:15]}")
    if op == Opcode.DMA_FILL:
        return (f"{op.name:<9} sram {w[2]:#x}  counts {w[3:7]} strides {w[11:15]} "
                f"= {bits_f32(w[15])}")
    if op == Opcode.GEMM:
        acc = " +=" if instr.a else " ="
        return (f"GEMM{acc:<5} M{w[0]} K{w[1]} N{w[2]}  A {w[3]:#x} B {w[10]:#x} "
                f"C {w[14]:#x}")
    if op == Opcode.VEC:
        act = Act(instr.b).name.lower()
        return (f"VEC {VecOp(instr.a).name.lower():<5} {w[0:3]} dst {w[3]:#x} a {w[7]:#x} "
                f"b {w[11]:#x} c {w[15]:#x} act {act}")
    if op == Opcode.POOL:
        return (f"POOL {PoolKind(instr.a).name.lower()} c{w[0]} {w[1]}x{w[2]} -> {w[3]}x{w[4]} "
                f"k{w[5]}x{w[6]} s{w[7]}x{w[8]}  src {w[11]:#x} dst {w[14]:#x}")
    return f"{op.name:<9} {Engine(instr.a).name.lower()} sem {w[0]}" + (
        f" >= {w[1]}" if op == Opcode.WAIT else "")
