"""The ``bytedemo`` bytecode: its format, its decoder, and the vendor runtime that runs it.

This is the run-time half of the example target ``bytedemo``
(:mod:`examples.targets.bytecode` holds the codegen, which imports the format from
here; this module never imports the codegen). Importing it registers
:class:`ByteDemoRuntime`.

Format, version 1 — all integers little-endian::

    header        16 bytes   struct "<4sHHHHHH"
      magic        4s        b"BYTD"
      version      u16       1
      inputs       u16       slots 0 .. inputs-1 hold the region inputs, in call order
      constants    u16       the next slots hold the constants, in the artifact's order
      instructions u16       each instruction writes the next slot after those
      outputs      u16       number of entries in the output table
      reserved     u16       0
    slot table    20 bytes per slot (inputs + constants + instructions)  "<B3x4I"
      rank         u8        0 to 4, then 3 bytes of padding
      dims         4 x u32   the shape; dims beyond the rank are 0
    output table  2 bytes per output   "<H": the slot holding each region output
    instructions  8 bytes each         "<BxHHH"
      opcode       u8        see OPCODES; then a padding byte
      dst          u16       the slot written: always the next one (slots are SSA)
      a, b         u16       the slots read; b is NO_SLOT (0xFFFF) for unary ops

The program is the whole blob: a shorter one is truncated, a longer one has trailing
bytes, and both are refused. Every slot an instruction reads must be written before it.

The runtime decodes and checks a program once, when the model loads, and plans its
memory then: every instruction gets an output buffer of its slot's shape, reused by
every run — as a device runtime with fixed on-chip buffers would. That makes a run
mutate the runtime, so the runtime is not ``thread_safe`` (byoc serialises calls into
it), and it must return copies of its output buffers, not the buffers themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from byoc_sdk import Binary, JsonGraph, RegionSignature, VendorRuntime, register_runtime

MAGIC = b"BYTD"
VERSION = 1
HEADER = struct.Struct("<4sHHHHHH")
SLOT = struct.Struct("<B3x4I")
OUTPUT = struct.Struct("<H")
INSTRUCTION = struct.Struct("<BxHHH")
MAX_RANK = 4
NO_SLOT = 0xFFFF
MAX_SLOTS = NO_SLOT  # slot numbers are u16 and 0xFFFF means "none"

Kernel = Callable[..., None]  # kernel(out, a[, b]) writes out in place


def _sigmoid_into(out: np.ndarray, x: np.ndarray) -> None:
    np.negative(x, out=out)
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x: sigmoid is 0
        np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


@dataclass(frozen=True)
class Opcode:
    code: int
    name: str  # the ONNX op type it implements
    arity: int
    kernel: Kernel


OPCODES: dict[int, Opcode] = {op.code: op for op in (
    Opcode(0x01, "Relu", 1, lambda out, a: np.maximum(a, np.float32(0), out=out)),
    Opcode(0x02, "Sigmoid", 1, _sigmoid_into),
    Opcode(0x03, "Tanh", 1, lambda out, a: np.tanh(a, out=out)),
    Opcode(0x04, "Abs", 1, lambda out, a: np.abs(a, out=out)),
    Opcode(0x05, "Neg", 1, lambda out, a: np.negative(a, out=out)),
    Opcode(0x06, "Exp", 1, lambda out, a: np.exp(a, out=out)),
    Opcode(0x10, "Add", 2, lambda out, a, b: np.add(a, b, out=out)),
    Opcode(0x11, "Sub", 2, lambda out, a, b: np.subtract(a, b, out=out)),
    Opcode(0x12, "Mul", 2, lambda out, a, b: np.multiply(a, b, out=out)),
    Opcode(0x13, "Div", 2, lambda out, a, b: np.divide(a, b, out=out)),
    Opcode(0x14, "Max", 2, lambda out, a, b: np.maximum(a, b, out=out)),
    Opcode(0x15, "Min", 2, lambda out, a, b: np.minimum(a, b, out=out)),
    Opcode(0x20, "MatMul", 2, lambda out, a, b: np.matmul(a, b, out=out)),
)}
#: ONNX op type -> opcode, for the encoder.
OPCODE_OF: dict[str, int] = {op.name: op.code for op in OPCODES.values()}


@dataclass(frozen=True)
class Instruction:
    opcode: int
    dst: int
    a: int
    b: int  # NO_SLOT for unary ops

    @property
    def reads(self) -> tuple[int, ...]:
        return (self.a,) if self.b == NO_SLOT else (self.a, self.b)


@dataclass(frozen=True)
class Program:
    """A decoded bytecode program."""

    inputs: int
    constants: int
    shapes: tuple[tuple[int, ...], ...]  # per slot
    outputs: tuple[int, ...]
    instructions: tuple[Instruction, ...]

    @property
    def first_temp(self) -> int:
        return self.inputs + self.constants


def encode(program: Program) -> bytes:
    """The bytes of ``program`` (the inverse of :func:`decode`)."""
    parts = [HEADER.pack(MAGIC, VERSION, program.inputs, program.constants,
                         len(program.instructions), len(program.outputs), 0)]
    for shape in program.shapes:
        if len(shape) > MAX_RANK:
            raise ValueError(f"rank {len(shape)} is above the format's maximum {MAX_RANK}")
        parts.append(SLOT.pack(len(shape), *shape, *[0] * (MAX_RANK - len(shape))))
    parts += [OUTPUT.pack(slot) for slot in program.outputs]
    parts += [INSTRUCTION.pack(i.opcode, i.dst, i.a, i.b) for i in program.instructions]
    return b"".join(parts)


def decode(data: bytes) -> Program:
    """Decode and check a program; raises ``ValueError`` saying what is wrong."""
    data = bytes(data)
    if len(data) < HEADER.size:
        raise ValueError(f"bytedemo program truncated: {len(data)} bytes, the header alone "
                         f"is {HEADER.size}")
    magic, version, n_in, n_const, n_instr, n_out, _reserved = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a bytedemo program: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ValueError(f"bytedemo program version {version} is not supported "
                         f"(this runtime reads version {VERSION})")
    n_slots = n_in + n_const + n_instr
    if n_slots > MAX_SLOTS:
        raise ValueError(f"bytedemo program has {n_slots} slots, more than {MAX_SLOTS}")
    expected = HEADER.size + n_slots * SLOT.size + n_out * OUTPUT.size + n_instr * INSTRUCTION.size
    if len(data) < expected:
        raise ValueError(f"bytedemo program truncated: {len(data)} bytes, its header "
                         f"announces {expected}")
    if len(data) > expected:
        raise ValueError(f"bytedemo program has {len(data) - expected} trailing bytes")
    offset = HEADER.size
    shapes = []
    for slot in range(n_slots):
        rank, *dims = SLOT.unpack_from(data, offset)
        offset += SLOT.size
        if rank > MAX_RANK:
            raise ValueError(f"slot {slot} has rank {rank}, above {MAX_RANK}")
        shapes.append(tuple(dims[:rank]))
    outputs = []
    for _ in range(n_out):
        (slot,) = OUTPUT.unpack_from(data, offset)
        offset += OUTPUT.size
        if slot >= n_slots:
            raise ValueError(f"output slot {slot} does not exist ({n_slots} slots)")
        outputs.append(slot)
    instructions = []
    for index in range(n_instr):
        instruction = Instruction(*INSTRUCTION.unpack_from(data, offset))
        offset += INSTRUCTION.size
        _check_instruction(index, instruction, n_in + n_const, shapes)
        instructions.append(instruction)
    return Program(n_in, n_const, tuple(shapes), tuple(outputs), tuple(instructions))


def _check_instruction(index: int, instr: Instruction, first_temp: int,
                       shapes: list[tuple[int, ...]]) -> None:
    op = OPCODES.get(instr.opcode)
    if op is None:
        raise ValueError(f"instruction {index}: unknown opcode 0x{instr.opcode:02x}")
    if instr.dst != first_temp + index:
        raise ValueError(f"instruction {index}: writes slot {instr.dst}, expected "
                         f"{first_temp + index} (slots are written in order)")
    if len(instr.reads) != op.arity:
        raise ValueError(f"instruction {index}: {op.name} reads {op.arity} slots")
    for slot in instr.reads:
        if slot >= instr.dst:
            raise ValueError(f"instruction {index}: reads slot {slot} before it is written")
    operands = [shapes[s] for s in instr.reads]
    try:
        if op.name == "MatMul":
            x, w = operands
            if len(w) != 2 or not x or x[-1] != w[0]:
                raise ValueError(f"{x} @ {w}")
            result = (*x[:-1], w[1])
        else:
            result = tuple(np.broadcast_shapes(*operands))
    except ValueError as exc:
        raise ValueError(f"instruction {index}: {op.name} of shapes {operands}: {exc}") from None
    if result != shapes[instr.dst]:
        raise ValueError(f"instruction {index}: {op.name} makes {result}, slot {instr.dst} "
                         f"is {shapes[instr.dst]}")


def disassemble(data: bytes) -> str:
    """A readable listing of a program, one instruction a line (for debugging)."""
    program = decode(data)

    def slot(s: int) -> str:
        if s < program.inputs:
            return f"in{s}"
        if s < program.first_temp:
            return f"c{s - program.inputs}"
        return f"t{s - program.first_temp}"

    lines = [f"bytedemo v{VERSION}: {program.inputs} inputs, {program.constants} constants"]
    for i in program.instructions:
        args = ", ".join(slot(s) for s in i.reads)
        lines.append(f"  {slot(i.dst)} = {OPCODES[i.opcode].name}({args})  "
                     f"{program.shapes[i.dst]}")
    lines.append("  return " + ", ".join(slot(s) for s in program.outputs))
    return "\n".join(lines)


@register_runtime
class ByteDemoRuntime(VendorRuntime):
    """Runs ``bytedemo`` programs with numpy, in buffers planned once at load."""

    name = "bytedemo"
    thread_safe = False  # runs write the buffers planned at load: byoc serialises them

    def __init__(
        self,
        artifact: JsonGraph | Binary,
        constants: Mapping[str, np.ndarray],
        signature: RegionSignature,
    ) -> None:
        if not isinstance(artifact, Binary):
            raise TypeError(f"bytedemo runs Binary artifacts, not {type(artifact).__name__}")
        program = decode(artifact.data)
        self.program = program
        self._check_against(program, artifact, constants, signature)
        # slots: inputs (filled per run), constants (fixed), then one buffer per instruction.
        self.slots: list[np.ndarray | None] = [None] * program.inputs
        self.slots += [np.ascontiguousarray(constants[name], dtype=np.float32)
                       for name in artifact.constants]
        self.slots += [np.empty(program.shapes[i.dst], np.float32)
                       for i in program.instructions]
        self.steps = [(OPCODES[i.opcode].kernel, i.dst, i.reads) for i in program.instructions]
        self.size = len(artifact.data)

    @staticmethod
    def _check_against(program: Program, artifact: Binary, constants: Mapping[str, np.ndarray],
                       signature: RegionSignature) -> None:
        """The program must fit the region it was built for."""
        region = signature.region
        if program.inputs != len(signature.inputs) or program.constants != len(
                artifact.constants) or len(program.outputs) != len(signature.outputs):
            raise ValueError(f"bytedemo program does not fit region {region}: "
                             "wrong number of inputs, constants or outputs")
        expected = [*(s.shape for s in signature.inputs),
                    *(np.shape(constants[n]) for n in artifact.constants)]
        for slot, shape in enumerate(expected):
            if program.shapes[slot] != tuple(shape):
                raise ValueError(f"bytedemo program slot {slot} is {program.shapes[slot]}, "
                                 f"region {region} gives {tuple(shape)}")
        for slot, spec in zip(program.outputs, signature.outputs, strict=True):
            if program.shapes[slot] != spec.shape:
                raise ValueError(f"bytedemo output {spec.name} is {program.shapes[slot]} in "
                                 f"the program, {spec.shape} in region {region}")

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        slots = self.slots
        slots[: len(inputs)] = inputs
        for kernel, dst, reads in self.steps:
            kernel(slots[dst], *(slots[s] for s in reads))
        # Copies: the buffers are overwritten by the next run.
        result = [np.array(slots[s], copy=True) for s in self.program.outputs]
        slots[: len(inputs)] = [None] * len(inputs)  # do not keep the caller's arrays alive
        return result

    def stats(self) -> Mapping[str, Any]:
        return {"instructions": len(self.steps), "program_bytes": self.size}
