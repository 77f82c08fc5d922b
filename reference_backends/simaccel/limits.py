"""The simaccel machine: one config object for its limits, its compiler and its simulator.

The support declarations (:mod:`.target`) read the op limits (kernel, channels, rank,
dtypes); the compiler reads the sizes it tiles for (array, SRAM partitions); the simulator
reads the timing parameters, which every program carries in its header. Change a field
with :meth:`SimAccelLimits.replace` (or the target option ``machine``) to compile for a
different chip; see ``docs/backends/simaccel.md`` for what each part does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: SRAM is handed out in granules of this many bytes: buffers never share one, so the
#: simulator's hazard checker can follow every buffer separately.
SRAM_GRANULE = 256
#: The most DRAM a simaccel chip can have: the simulator holds at most 2^28 float32
#: elements (1 GiB) in one slot, and in all outputs and scratch together.
MAX_DRAM_MIB = 1024


@dataclass(frozen=True)
class SimAccelLimits:
    """What one simaccel core is and can do.

    A weight-stationary ``array_rows`` x ``array_cols`` systolic array runs Conv, Gemm and
    MatMul; int8 products accumulate in ``accumulator_dtype``. A vector unit of
    ``vector_lanes`` lanes runs the elementwise ops, activations, pooling and depthwise
    convolution, and drains the accumulators. ``sram_kib`` of on-chip SRAM is split into
    an input buffer, a weight buffer and an accumulator buffer; the compiler tiles
    anything larger, so SRAM is not a support limit. ``dram_mib`` of DRAM holds every
    tensor of a region at once (layers run from DRAM to DRAM), so DRAM is a limit: a node
    whose tensors do not fit is declined, a region whose tensors do not fit is not compiled. A
    DMA engine moves ``dma_bytes_per_cycle`` between DRAM and SRAM after
    ``dma_latency_cycles``; the clock turns cycles into time.
    """

    # --- compute ---------------------------------------------------------------------
    array_rows: int = 16
    array_cols: int = 16
    vector_lanes: int = 64
    #: Pipeline depth of the vector unit: the cycles from a lane's input to its result.
    vector_latency_cycles: int = 4
    # --- memory ----------------------------------------------------------------------
    sram_kib: int = 512
    input_kib: int = 192
    weight_kib: int = 192
    accumulator_kib: int = 128
    #: Off-chip memory for a region's tensors: 1 GiB, as on small edge boards.
    dram_mib: int = 1024
    dma_bytes_per_cycle: int = 64
    dma_latency_cycles: int = 64
    clock_mhz: int = 1000
    # --- what the support table declares ---------------------------------------------
    max_kernel: int = 7
    max_channels: int = 4096
    max_rank: int = 4
    dtypes: frozenset[str] = field(default_factory=lambda: frozenset({"float32", "int8"}))
    accumulator_dtype: str = "int32"

    def __post_init__(self) -> None:
        parts = self.input_kib + self.weight_kib + self.accumulator_kib
        if parts != self.sram_kib:
            raise ValueError(f"SRAM partitions ({self.input_kib} + {self.weight_kib} + "
                             f"{self.accumulator_kib} KiB) must add up to sram_kib "
                             f"({self.sram_kib})")
        for name in ("array_rows", "array_cols", "vector_lanes", "input_kib", "weight_kib",
                     "accumulator_kib", "dram_mib", "dma_bytes_per_cycle", "clock_mhz"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.dram_mib > MAX_DRAM_MIB:
            raise ValueError(f"dram_mib must be at most {MAX_DRAM_MIB}, not {self.dram_mib}")

    @property
    def sram_bytes(self) -> int:
        return self.sram_kib * 1024

    @property
    def input_bytes(self) -> int:
        return self.input_kib * 1024

    @property
    def weight_bytes(self) -> int:
        return self.weight_kib * 1024

    @property
    def accumulator_bytes(self) -> int:
        return self.accumulator_kib * 1024

    @property
    def dram_bytes(self) -> int:
        return self.dram_mib * 1024 * 1024

    @property
    def macs_per_cycle(self) -> int:
        return self.array_rows * self.array_cols

    def replace(self, **changes: Any) -> SimAccelLimits:
        """A copy with ``changes``. Resizing one SRAM partition alone resizes ``sram_kib``
        with it, so ``replace(input_kib=8)`` is a smaller chip, not an error."""
        parts = ("input_kib", "weight_kib", "accumulator_kib")
        if "sram_kib" not in changes and any(p in changes for p in parts):
            changes["sram_kib"] = sum(changes.get(p, getattr(self, p)) for p in parts)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], base: SimAccelLimits | None = None
                     ) -> SimAccelLimits:
        """The machine a build asks for: ``base`` (default :data:`LIMITS`) changed by the
        mapping in the codegen option ``machine`` (field name -> value)."""
        base = base or LIMITS
        changes = dict(options.get("machine") or {})
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown simaccel machine parameters {unknown}")
        return base.replace(**changes) if changes else base


def describe_bytes(size: int) -> str:
    """``size`` for messages, in the largest binary unit it reaches ("37.3 GiB")."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


#: The limits of the simulated chip the bundled target describes.
LIMITS = SimAccelLimits()
