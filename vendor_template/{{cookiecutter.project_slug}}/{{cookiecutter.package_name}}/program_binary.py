"""The device's program format: encoder, decoder and checks, shared by codegen and runtime.

Version 1, little-endian::

    header       "<4sHHHHH"  magic b"BYOV", version, inputs, constants, instructions, outputs
    slot table   "<B6I"      per slot (inputs, then constants, then one per instruction):
                             rank, then 6 dims (0 beyond the rank)
    output table "<H"        per region output: its slot
    instructions "<BxHHHH"   opcode, padding, dst, a, b, c (NO_SLOT where unused)

Slots are written once, in order: instruction i writes slot inputs+constants+i.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .about import DENSE_RELU

MAGIC = b"BYOV"
VERSION = 1
HEADER = struct.Struct("<4sHHHHH")
MAX_RANK = 6
SLOT = struct.Struct(f"<B{MAX_RANK}I")
OUTPUT = struct.Struct("<H")
INSTRUCTION = struct.Struct("<BxHHHH")
NO_SLOT = 0xFFFF

#: op name -> opcode (the device's instruction set)
OPCODES: dict[str, int] = {
    "Relu": 0x01, "Sigmoid": 0x02, "Tanh": 0x03, "Abs": 0x04, "Neg": 0x05, "Exp": 0x06,
    "Add": 0x10, "Sub": 0x11, "Mul": 0x12, "Div": 0x13, "Max": 0x14, "Min": 0x15,
    "MatMul": 0x20, DENSE_RELU: 0x21,
}
OP_OF: dict[int, str] = {code: op for op, code in OPCODES.items()}
ARITY: dict[str, int] = {**dict.fromkeys(OPCODES, 2), "Relu": 1, "Sigmoid": 1, "Tanh": 1,
                         "Abs": 1, "Neg": 1, "Exp": 1, DENSE_RELU: 3}


@dataclass(frozen=True)
class Instruction:
    opcode: int
    dst: int
    a: int
    b: int = NO_SLOT
    c: int = NO_SLOT

    @property
    def reads(self) -> tuple[int, ...]:
        return tuple(s for s in (self.a, self.b, self.c) if s != NO_SLOT)


@dataclass(frozen=True)
class Program:
    inputs: int
    constants: int
    shapes: tuple[tuple[int, ...], ...]
    outputs: tuple[int, ...]
    instructions: tuple[Instruction, ...]


def encode(program: Program) -> bytes:
    parts = [HEADER.pack(MAGIC, VERSION, program.inputs, program.constants,
                         len(program.instructions), len(program.outputs))]
    for shape in program.shapes:
        if len(shape) > MAX_RANK:
            raise NotImplementedError(f"rank {len(shape)} is above the format's {MAX_RANK}")
        parts.append(SLOT.pack(len(shape), *shape, *[0] * (MAX_RANK - len(shape))))
    parts += [OUTPUT.pack(s) for s in program.outputs]
    parts += [INSTRUCTION.pack(i.opcode, i.dst, i.a, i.b, i.c) for i in program.instructions]
    return b"".join(parts)


def decode(data: bytes) -> Program:
    """Decode and check a program; ``ValueError`` says what is wrong with it."""
    if len(data) < HEADER.size:
        raise ValueError("program truncated: no header")
    magic, version, n_in, n_const, n_instr, n_out = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a version-{VERSION} program (magic {magic!r}, version {version})")
    n_slots = n_in + n_const + n_instr
    size = HEADER.size + n_slots * SLOT.size + n_out * OUTPUT.size + n_instr * INSTRUCTION.size
    if len(data) != size:
        raise ValueError(f"program is {len(data)} bytes, its header announces {size}")
    offset = HEADER.size
    shapes = []
    for _ in range(n_slots):
        rank, *dims = SLOT.unpack_from(data, offset)
        offset += SLOT.size
        if rank > MAX_RANK:
            raise ValueError(f"slot of rank {rank}")
        shapes.append(tuple(dims[:rank]))
    outputs = []
    for _ in range(n_out):
        outputs.append(OUTPUT.unpack_from(data, offset)[0])
        offset += OUTPUT.size
    instructions = []
    for index in range(n_instr):
        instruction = Instruction(*INSTRUCTION.unpack_from(data, offset))
        offset += INSTRUCTION.size
        _check(index, instruction, n_in + n_const, shapes)
        instructions.append(instruction)
    if any(s >= n_slots for s in outputs):
        raise ValueError("an output names a slot that does not exist")
    return Program(n_in, n_const, tuple(shapes), tuple(outputs), tuple(instructions))


def _check(index: int, instr: Instruction, first: int, shapes: list[tuple[int, ...]]) -> None:
    op = OP_OF.get(instr.opcode)
    if op is None:
        raise ValueError(f"instruction {index}: unknown opcode {instr.opcode:#04x}")
    if instr.dst != first + index:
        raise ValueError(f"instruction {index}: writes slot {instr.dst}, not {first + index}")
    if len(instr.reads) != ARITY[op] or any(s >= instr.dst for s in instr.reads):
        raise ValueError(f"instruction {index} ({op}): bad operands {instr.reads}")
    operands = [shapes[s] for s in instr.reads]
    if op in ("MatMul", DENSE_RELU):
        x, w = operands[0], operands[1]
        if len(w) != 2 or not x or x[-1] != w[0]:
            raise ValueError(f"instruction {index} ({op}): {x} @ {w}")
        result = (*x[:-1], w[1])
    else:
        result = tuple(np.broadcast_shapes(*operands))
    if result != shapes[instr.dst]:
        raise ValueError(f"instruction {index} ({op}): makes {result}, slot holds "
                         f"{shapes[instr.dst]}")
