"""Explicit codegen parameters of the cuda generator: thread blocks and GEMM tiles.

As for cpu (``reference_backends.cpu.params``), every choice a tuner may want to change
is a field of a frozen dataclass. Options (``Target.options``,
``build(options={"cuda": ...})`` or a per-region tuning record) take this form::

    {
      "device": 0,                 # CUDA device ordinal the module runs on
      "arch": "sm_90",             # nvcc -arch: a GPU architecture, or "native"
      "emulate": false,            # build for the host-side CUDA emulation (see below)
      "ops": {"Conv": {"bm": 32}},                 # per op type
      "kernels": {"block1/conv2": {"tm": 2}}       # per kernel, by its root node's name
    }

``emulate`` compiles the same CUDA source with the host C++ compiler against
``byoc/cuda_emulation.h``: every thread block runs on the CPU, so machines without a GPU
(CI) check the generated kernels' numbers. Its default comes from the environment
variable ``BYOC_CUDA_EMULATE`` (``1`` to emulate), so a test run can switch a whole
build over without touching the model's options.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from byoc_sdk.toolchain import cuda_emulation_requested
from reference_backends.cpu.params import ParamError, Schedule, override_tables

REGION_KEYS = frozenset({"device", "arch", "emulate", "ops", "kernels"})

#: What ``arch`` may name: nvcc's ``-arch`` values for real GPUs, or ``native``.
ARCH_PATTERN = re.compile(r"^(native|sm_\d+[af]?)$")

#: Most threads a block may have on every CUDA GPU.
MAX_THREADS = 1024


@dataclass(frozen=True)
class BlockSchedule(Schedule):
    """A kernel of independent threads (elementwise, pooling, per-row reductions):
    ``threads`` per block; grids stop growing at ``max_blocks`` blocks and each thread
    then strides over several elements."""

    positive: ClassVar[tuple[str, ...]] = ("threads", "max_blocks")
    threads: int = 256
    max_blocks: int = 65535

    def validate(self) -> None:
        super().validate()
        if self.threads > MAX_THREADS or self.threads & (self.threads - 1):
            raise ParamError(f"BlockSchedule.threads must be a power of two <= {MAX_THREADS}, "
                             f"not {self.threads}")


@dataclass(frozen=True)
class TileSchedule(Schedule):
    """Shared-memory tiled matrix product: a block computes a ``bm`` x ``bn`` tile of C
    from ``bk``-deep slices of A and B staged in shared memory; each thread keeps a
    ``tm`` x ``tn`` tile of accumulators in registers. Threads per block:
    ``(bm / tm) * (bn / tn)``."""

    positive: ClassVar[tuple[str, ...]] = ("bm", "bn", "bk", "tm", "tn")
    limits: ClassVar[Mapping[str, int]] = MappingProxyType({"tm": 16, "tn": 16})
    bm: int = 64
    bn: int = 64
    bk: int = 16
    tm: int = 4
    tn: int = 4

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    def validate(self) -> None:
        super().validate()
        if self.bm % self.tm or self.bn % self.tn:
            raise ParamError("TileSchedule: bm must be a multiple of tm and bn of tn")
        if self.threads > MAX_THREADS:
            raise ParamError(f"TileSchedule: {self.threads} threads per block "
                             f"(more than {MAX_THREADS})")
        if 4 * self.bk * (self.bm + self.bn + 2) > 48 * 1024:  # rows padded by one
            raise ParamError("TileSchedule: the tiles need more than 48 KiB of shared memory")


def default_tiles(m: int, n: int) -> TileSchedule:
    """Tiles for a product of ``m`` x ``n`` outputs: 64 x 64 when both sides are large,
    narrower where one side is small, so skinny products do not idle most threads."""
    bm = 64 if m > 32 else (32 if m > 16 else 16)
    bn = 64 if n > 32 else (32 if n > 16 else 16)
    return TileSchedule(bm=bm, bn=bn, tm=max(1, bm // 16), tn=max(1, bn // 16))


@dataclass(frozen=True)
class CudaParams:
    """Parameters that hold for a whole region (``ops``/``kernels`` as in cpu, read by
    :func:`reference_backends.cpu.params.resolve_params`)."""

    device: int = 0
    #: nvcc's ``-arch`` (``None``: nvcc's default architecture plus PTX, which the driver
    #: compiles for a newer GPU at the first load).
    arch: str | None = None
    emulate: bool = False
    ops: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kernels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def cuda_params(options: Mapping[str, Any]) -> CudaParams:
    """The region-wide parameters from a region's options, validated."""
    unknown = set(options) - REGION_KEYS
    if unknown:
        raise ParamError(f"unknown cuda codegen options {sorted(unknown)} "
                         f"(known: {sorted(REGION_KEYS)})")
    device = options.get("device", 0)
    if not isinstance(device, int) or isinstance(device, bool) or device < 0:
        raise ParamError(f"device must be a device ordinal (an integer >= 0), not {device!r}")
    arch = options.get("arch")
    if arch is not None and (not isinstance(arch, str) or not ARCH_PATTERN.match(arch)):
        raise ParamError(f"arch must be a GPU architecture such as 'sm_90', or 'native', "
                         f"not {arch!r}")
    emulate = options.get("emulate", cuda_emulation_requested())
    if not isinstance(emulate, bool):
        raise ParamError(f"emulate must be true or false, not {emulate!r}")
    ops, kernels = override_tables(options)
    return CudaParams(device, arch, emulate, ops, kernels)
