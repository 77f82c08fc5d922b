"""The simaccel runtime: runs simaccel programs on the simulator in the native core.

Registered as the vendor runtime ``simaccel`` (entry point group ``byoc.runtimes``), so a
package with simaccel regions runs where only byoc's runtime is installed: this module
imports nothing of the compiler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from byoc_sdk.codegen import Binary, JsonGraph
from byoc_sdk.vendor_runtime import RegionSignature, VendorRuntime


class SimAccelRuntime(VendorRuntime):
    """One region's program on one simulated core. Loading validates the program and
    runs the timing model once (timing does not depend on the data); every ``run`` is a
    functional simulation, and ``stats`` reports the simulated cycles, MAC utilisation,
    DRAM traffic and SRAM peak, plus the host time of the last run."""

    name = "simaccel"

    def __init__(self, artifact: JsonGraph | Binary, constants: Mapping[str, np.ndarray],
                 signature: RegionSignature) -> None:
        from byoc_sdk import _native

        if not isinstance(artifact, Binary):
            raise TypeError(f"simaccel runs binary artifacts, not {type(artifact).__name__}")
        arrays = [np.ascontiguousarray(constants[name]) for name in artifact.constants]
        self._simulator = _native.simaccel.Simulator(bytes(artifact.data), arrays)
        self._shapes = [spec.shape for spec in signature.outputs]
        for what, specs, sizes in (
            ("inputs", signature.inputs, self._simulator.input_elements),
            ("outputs", signature.outputs, self._simulator.output_elements),
        ):
            wanted = [int(np.prod(spec.shape, dtype=np.int64)) or 1 for spec in specs]
            if wanted != list(sizes):
                raise ValueError(f"the program's {what} ({list(sizes)} elements) do not match "
                                 f"region {signature.region} ({wanted})")

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        flat = self._simulator.run([np.ascontiguousarray(a) for a in inputs])
        return [array.reshape(shape) for array, shape in zip(flat, self._shapes, strict=True)]

    def stats(self) -> Mapping[str, Any]:
        return self._simulator.stats()
