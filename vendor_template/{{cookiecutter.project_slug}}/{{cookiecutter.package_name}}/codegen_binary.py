"""The codegen: each region becomes a packed instruction stream (program.bin in a package).

The route of a vendor whose toolchain emits an opaque blob (a command stream, a firmware
image). Every region input, constant and intermediate value gets a numbered tensor slot;
each step becomes one fixed-size instruction naming the slots it reads. The format is
defined, for both sides, in :mod:`.program`.
"""

from __future__ import annotations

from byoc_sdk import Binary, Region

from .about import RUNTIME
from .lowering import lower
from .program import OPCODES, Instruction, Program, encode


def codegen(region: Region) -> Binary:
    """The program of ``region``."""
    lowered = lower(region)
    names = [*lowered.inputs, *lowered.constants, *(s.output for s in lowered.steps)]
    slot = {name: index for index, name in enumerate(names)}
    instructions = tuple(
        Instruction(OPCODES[s.op], slot[s.output], *(slot[a] for a in s.inputs))
        for s in lowered.steps
    )
    program = Program(
        inputs=len(lowered.inputs), constants=len(lowered.constants),
        shapes=tuple(lowered.shapes[name] for name in names),
        outputs=tuple(slot[name] for name in lowered.outputs), instructions=instructions,
    )
    return Binary(encode(program), runtime=RUNTIME, constants=lowered.constants)
