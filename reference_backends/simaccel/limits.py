"""The simaccel machine's limits, shared by its support declarations and its compiler."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimAccelLimits:
    """What one simaccel core can do.

    A weight-stationary ``array_rows`` x ``array_cols`` systolic array runs Conv, Gemm and
    MatMul; int8 products accumulate in ``accumulator_dtype``. A vector unit runs the
    elementwise ops, activations and pooling. ``sram_kib`` of on-chip SRAM holds the
    tiles in flight; the compiler tiles anything larger, so it is not a support limit.
    """

    array_rows: int = 16
    array_cols: int = 16
    sram_kib: int = 512
    max_kernel: int = 7
    max_channels: int = 4096
    max_rank: int = 4
    dtypes: frozenset[str] = field(default_factory=lambda: frozenset({"float32", "int8"}))
    accumulator_dtype: str = "int32"

    @property
    def sram_bytes(self) -> int:
        return self.sram_kib * 1024


#: The limits of the simulated chip the bundled target describes.
LIMITS = SimAccelLimits()
