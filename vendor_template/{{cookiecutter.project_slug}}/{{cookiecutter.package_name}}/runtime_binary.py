"""The runtime: decodes a program once, runs it many times (numpy stands in for the device).

It imports neither the target nor the codegen, so a machine that only runs packages
needs nothing else of this backend. byoc finds it through the ``byoc.runtimes`` entry
point named in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from byoc_sdk import Binary, JsonGraph, RegionSignature, VendorRuntime

from .about import RUNTIME
from .kernels import execute
from .program import OP_OF, decode


class DeviceRuntime(VendorRuntime):
    """Runs one region's program. Each run has its own slots: thread-safe."""

    name = RUNTIME
    thread_safe = True

    def __init__(self, artifact: JsonGraph | Binary, constants: Mapping[str, np.ndarray],
                 signature: RegionSignature) -> None:
        if not isinstance(artifact, Binary):
            raise TypeError(f"{RUNTIME} runs Binary programs, not {type(artifact).__name__}")
        program = decode(bytes(artifact.data))
        inputs = [tuple(s.shape) for s in signature.inputs]
        if program.inputs != len(inputs) or program.constants != len(artifact.constants) \
                or list(program.shapes[:len(inputs)]) != inputs:
            raise ValueError(f"the program does not fit region {signature.region}")
        self.program = program
        self.constants = [_constant(constants[name], program.shapes[program.inputs + i], name)
                          for i, name in enumerate(artifact.constants)]
        self.steps = [(OP_OF[i.opcode], i.reads) for i in program.instructions]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        slots: list[np.ndarray] = [*inputs, *self.constants]
        for op, reads in self.steps:
            slots.append(execute(op, [slots[s] for s in reads]))
        return [slots[s] for s in self.program.outputs]

    def stats(self) -> Mapping[str, Any]:
        return {"instructions": len(self.steps)}


def _constant(value: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A constant in the shape its slot declares (the device sees only its elements)."""
    array = np.asarray(value, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"constant {name} has {array.size} elements, its slot {shape}")
    return array.reshape(shape)
