"""Example target ``bytedemo``: a codegen that compiles each region to a small bytecode.

The binary route suits a vendor whose toolchain produces an opaque blob — a firmware
image, a command stream, a serialized engine. The codegen returns a
:class:`~byoc_sdk.Binary` naming its runtime; byoc stores the bytes in the package and,
when the model loads, hands them with the constants to that runtime
(:class:`~examples.targets.bytecode_runtime.ByteDemoRuntime`), which decodes them once.

The codegen's job here is register allocation in miniature: every region input,
constant and intermediate value gets a numbered *slot* with a shape, and each op
becomes one fixed-size instruction naming the slots it reads. The format is documented
in :mod:`examples.targets.bytecode_runtime`, which defines it for both sides.

Composite calls (``matmul_add``) are expanded into their ops, which need no opcode of
their own: MatMul, then Add.
"""

from __future__ import annotations

from byoc_sdk import Binary, Region, RegionPolicy, Target

from .bytecode_runtime import (
    MAX_RANK,
    MAX_SLOTS,
    NO_SLOT,
    OPCODE_OF,
    ByteDemoRuntime,
    Instruction,
    Program,
    encode,
)
from .ops import declare_support, lower


def codegen(region: Region) -> Binary:
    """The bytecode of ``region``, run by :class:`ByteDemoRuntime`."""
    lowered = lower(region)
    # Slot numbers: inputs first, then constants, then one per op, in execution order.
    names = [spec.name for spec in lowered.inputs] + lowered.constant_names
    names += [step.output for step in lowered.steps]
    if len(names) > MAX_SLOTS:
        raise NotImplementedError(f"region needs {len(names)} slots; bytedemo has {MAX_SLOTS}")
    slot = {name: index for index, name in enumerate(names)}
    shapes = tuple(lowered.shapes[name] for name in names)
    if any(len(shape) > MAX_RANK for shape in shapes):
        raise NotImplementedError(f"bytedemo runs tensors of rank {MAX_RANK} at most")
    instructions = tuple(
        Instruction(OPCODE_OF[step.op], slot[step.output], slot[step.inputs[0]],
                    slot[step.inputs[1]] if len(step.inputs) > 1 else NO_SLOT)
        for step in lowered.steps
    )
    program = Program(
        inputs=len(lowered.inputs), constants=len(lowered.constants), shapes=shapes,
        outputs=tuple(slot[spec.name] for spec in lowered.outputs), instructions=instructions,
    )
    return Binary(encode(program), runtime=ByteDemoRuntime.name,
                  constants=lowered.constant_names)


target = declare_support(Target(
    "bytedemo",
    version="1.0.0",
    vendor="byoc examples",
    description="Example: bytecode per region, run by the bytedemo runtime (numpy)",
    policy=RegionPolicy.keep_all(),
    codegen=codegen,
))
