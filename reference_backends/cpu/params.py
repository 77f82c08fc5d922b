"""Explicit codegen parameters: layout and loop schedules, with defaults from the shapes.

Everything the generator decides that a tuner might want to change is a field of a
frozen dataclass here, never a constant buried in a kernel. Each kernel family has one
schedule class; :func:`default_gemm` and :func:`default_conv` pick schedules from the
shapes (the other families start from their class defaults), and
:func:`resolve_params` merges what the region's options ask for on top.
``lower.plan(region).kernel_params()`` lists what every kernel of a region got.

Options (``Target.options``, ``build(options={"cpu": ...})`` or a per-region tuning
record, ``build(tuning={region: ...})`` / ``byoc build --tuning FILE.json``) take this
form::

    {
      "vector_width": 16,          # floats per SIMD vector (4, 8 or 16); default: the host's
      "threads": 0,                # OpenMP threads of parallel loops; 0: OMP_NUM_THREADS
      "layout": "NCHW",            # activation layout of 4-D tensors inside the region
      "ops": {"Conv": {"tile_rows": 4}},           # per op type, for every such kernel
      "kernels": {"block1/conv2": {"mr": 8}}       # per kernel, by its root node's name
    }

Per-kernel entries win over per-op entries, which win over the defaults. Unknown keys
and values out of range raise :class:`ParamError`; the build reports it as the reason
the region fell back, so a typo in a tuning file is never silently ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

#: Activation layouts the parameters can name. The generator emits ``NCHW`` and
#: ``NHWC`` (channels-last 4-D activations inside the region, see ``layout.py``); the
#: blocked ``NCHW{x}c`` form is accepted by the parameter model (for tuning records and
#: the ALT layout search) and refused by the generator with a clear reason until its
#: kernels exist.
LAYOUT_PATTERN = re.compile(r"^(NCHW|NHWC|NCHW(\d+)c)$")
IMPLEMENTED_LAYOUTS = frozenset({"NCHW", "NHWC"})
VECTOR_WIDTHS = (4, 8, 16)
S = TypeVar("S", bound="Schedule")
REGION_KEYS = frozenset({"vector_width", "threads", "layout", "ops", "kernels"})


class ParamError(ValueError):
    """A codegen parameter or tuning record is malformed or out of range."""


# --- schedules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Base of the per-kernel schedules: validation shared by all of them."""

    #: Fields that must be positive integers.
    positive: ClassVar[tuple[str, ...]] = ()
    #: Upper bounds of fields that size generated code (a register tile is spelled out
    #: statement by statement, an unroll repeats the loop body): beyond them a tuning
    #: record would have the generator or the C compiler run out of memory or time.
    limits: ClassVar[Mapping[str, int]] = MappingProxyType(
        {"mr": 32, "nv": 16, "unroll": 64})

    def validate(self) -> None:
        for name in self.positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamError(f"{type(self).__name__}.{name} must be a positive integer, "
                                 f"not {value!r}")
        self.check_limits()

    def check_limits(self) -> None:
        for name, limit in self.limits.items():
            value = getattr(self, name, None)
            if isinstance(value, int) and value > limit:
                raise ParamError(f"{type(self).__name__}.{name} must be at most {limit}, "
                                 f"not {value!r}")


@dataclass(frozen=True)
class LoopSchedule(Schedule):
    """Plain loop nests (elementwise, pooling, reductions, data movement).

    ``parallel_min`` is the number of output elements from which the outer loop runs in
    parallel; ``simd`` marks the innermost loop ``omp simd``; ``unroll`` (0: compiler's
    choice) unrolls it.
    """

    parallel_min: int = 1 << 15
    simd: bool = True
    unroll: int = 0

    def validate(self) -> None:
        if self.parallel_min < 0 or self.unroll < 0:
            raise ParamError("LoopSchedule.parallel_min and unroll must be >= 0")
        self.check_limits()


@dataclass(frozen=True)
class GemmSchedule(Schedule):
    """Register-blocked matrix product ``C[M, N] = A[M, K] B[K, N]``.

    The micro-kernel keeps an ``mr`` x ``nv`` * vector_width tile of C in registers;
    ``mc`` rows and ``nc`` columns form one unit of parallel work (B panels stay in
    cache across the ``mc / mr`` micro-kernel calls of a unit); ``unroll`` unrolls the
    K loop; ``parallel_min`` is the FLOP count from which units run in parallel.
    """

    positive: ClassVar[tuple[str, ...]] = ("mr", "nv", "mc", "nc", "unroll")
    mr: int = 8
    nv: int = 2
    mc: int = 64
    nc: int = 128
    unroll: int = 4
    parallel_min: int = 1 << 18


ALGORITHMS = ("gemm", "implicit", "depthwise")


@dataclass(frozen=True)
class ConvSchedule(Schedule):
    """2-D convolution.

    ``algorithm`` "gemm" multiplies packed weights with an im2col tile of ``tile_rows``
    output rows (1x1 stride-1 convolutions read the input directly); "implicit" (stride
    1 only) multiplies them with shifted windows of a zero-padded copy of the input, an
    im2col that is never written; "depthwise" runs a direct kernel on a zero-padded copy
    of each channel, producing ``tile_rows`` output rows by one vector per step. ``mr``,
    ``nv`` and ``unroll`` are the micro-kernel's (see :class:`GemmSchedule`).
    """

    positive: ClassVar[tuple[str, ...]] = ("tile_rows", "mr", "nv", "unroll")
    algorithm: Literal["gemm", "implicit", "depthwise"] = "gemm"
    tile_rows: int = 4
    mr: int = 8
    nv: int = 2
    unroll: int = 4
    parallel_min: int = 1 << 18
    #: "pixels": register tiles of ``mr`` output pixels by ``nv`` vectors of output
    #: channels; "channels": ``mr`` channels by ``nv`` vectors of pixels.
    orientation: Literal["pixels", "channels"] = "pixels"
    #: With orientation "channels": copy each panel of input columns into contiguous
    #: scratch before the micro-kernels use it (always so for "implicit").
    copy_panels: bool = False

    def validate(self) -> None:
        super().validate()
        if self.algorithm not in ALGORITHMS:
            raise ParamError(f"ConvSchedule.algorithm must be one of {ALGORITHMS}, "
                             f"not {self.algorithm!r}")
        if self.orientation not in ("pixels", "channels"):
            raise ParamError("ConvSchedule.orientation must be 'pixels' or 'channels', "
                             f"not {self.orientation!r}")


@dataclass(frozen=True)
class WindowSchedule(Schedule):
    """Sliding-window kernels (pooling): each step produces ``tile_rows`` output rows by
    one vector of columns from a padded copy of the input plane."""

    positive: ClassVar[tuple[str, ...]] = ("tile_rows",)
    tile_rows: int = 4
    parallel_min: int = 1 << 16


@dataclass(frozen=True)
class RegionParams:
    """Parameters that hold for a whole region."""

    vector_width: int
    threads: int = 0
    layout: str = "NCHW"
    ops: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kernels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# --- defaults ----------------------------------------------------------------------


def host_vector_width() -> int:
    """Floats per SIMD vector that the C compiler the toolchain uses (``CC``, default
    ``cc``) targets with ``-march=native``."""
    return _vector_width_of(os.environ.get("CC", "cc"))


@functools.cache
def _vector_width_of(compiler: str) -> int:
    """16 with AVX-512, 8 with AVX, else 4 (also when the compiler cannot be asked)."""
    try:
        done = subprocess.run(
            [compiler, "-march=native", "-dM", "-E", "-x", "c", "-"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return 4
    macros = done.stdout
    if "__AVX512F__" in macros:
        return 16
    if "__AVX__" in macros:
        return 8
    return 4


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def default_gemm(m: int, n: int, k: int, vector_width: int) -> GemmSchedule:
    """A GEMM schedule for ``(m, n, k)``: a tall register tile unless M is small, two
    vectors of columns unless N is narrow, and units of work of about 2 MFLOP."""
    nv = 2 if n > vector_width else 1
    # A product of no rows (a batch of 0) is never run, but its schedule is still made
    # (and listed in tuning records): sized as for one row, every tile holds at least one.
    rows = max(m, 1)
    mr = min(8 if nv == 2 else 12, rows)
    nr = nv * vector_width
    nc = min(_round_up(n, nr), 4 * nr)
    rows_for_work = max(1, (1 << 20) // max(1, nc * k))
    mc = min(_round_up(rows, mr), _round_up(max(mr, rows_for_work), mr), 8 * mr)
    return GemmSchedule(mr=mr, nv=nv, mc=mc, nc=nc)


def default_conv(
    out_channels_per_group: int,
    out_width: int,
    reduction: int,
    depthwise: bool,
    vector_width: int,
    stride: int = 1,
    pointwise: bool = False,
) -> ConvSchedule:
    """A convolution schedule. Depthwise: the direct kernel. Deep reductions into many
    channels: register tiles of pixels by two vectors of channels, with the implicit
    im2col for stride 1. Shallow reductions (a stem on RGB input) or few channels:
    tiles of channels by vectors of pixels, which store whole vectors, as do 1x1
    convolutions that read their input in place (``pointwise``). im2col tiles hold a few
    output rows whose columns fit in half of a 1 MiB L2 cache."""
    if depthwise:
        return ConvSchedule(algorithm="depthwise", tile_rows=4)
    budget_rows = max(1, (512 * 1024) // max(1, 4 * reduction * out_width))
    shallow = reduction < DEEP_REDUCTION or out_channels_per_group <= vector_width
    if shallow or pointwise:
        nv = 2 if out_width * 2 > vector_width else 1
        return ConvSchedule(algorithm="gemm", orientation="channels", nv=nv,
                            mr=min(8, out_channels_per_group),
                            tile_rows=min(max(1, -(-256 // out_width)), budget_rows))
    nv = 2
    mr = 12
    rows_for_pixels = max(1, -(-512 // out_width))
    if stride == 1:
        return ConvSchedule(algorithm="implicit", tile_rows=rows_for_pixels, mr=mr, nv=nv)
    return ConvSchedule(algorithm="gemm", tile_rows=min(rows_for_pixels, budget_rows), mr=mr,
                        nv=nv)


def default_conv_channels_last(out_channels_per_group: int, out_width: int, reduction: int,
                               depthwise: bool, vector_width: int,
                               stride: int = 1) -> ConvSchedule:
    """A convolution schedule for a channels-last (NHWC) input. Every product tiles by
    pixels (channels are contiguous in both the input rows and the output), two vectors
    of channels unless there are few; stride 1 uses the implicit im2col of a padded copy,
    other strides im2col tiles that fit in half of a 1 MiB L2. Depthwise convolutions
    use the direct kernel, vectorized over channels."""
    if depthwise:  # tile_rows: output pixels per block of the channel loop
        return ConvSchedule(algorithm="depthwise", tile_rows=8)
    nv = 2 if out_channels_per_group > vector_width else 1
    mr = 12 if nv == 2 else 14
    rows_for_pixels = max(1, -(-512 // out_width))
    if stride == 1:
        return ConvSchedule(algorithm="implicit", tile_rows=rows_for_pixels, mr=mr, nv=nv)
    budget_rows = max(1, (512 * 1024) // max(1, 4 * reduction * out_width))
    return ConvSchedule(algorithm="gemm", tile_rows=min(rows_for_pixels, budget_rows),
                        mr=mr, nv=nv)


#: From this reduction depth (input channels x kernel taps) on, convolutions into more
#: than one vector of channels tile by pixels (see ConvSchedule).
DEEP_REDUCTION = 64


# --- merging -----------------------------------------------------------------------


def region_params(options: Mapping[str, Any], vector_width: int | None = None) -> RegionParams:
    """The region-wide parameters from a region's options, validated."""
    unknown = set(options) - REGION_KEYS
    if unknown:
        raise ParamError(f"unknown cpu codegen options {sorted(unknown)} "
                         f"(known: {sorted(REGION_KEYS)})")
    width = options.get("vector_width", vector_width or host_vector_width())
    if width not in VECTOR_WIDTHS:
        raise ParamError(f"vector_width must be one of {VECTOR_WIDTHS}, not {width!r}")
    threads = options.get("threads", 0)
    if not isinstance(threads, int) or threads < 0:
        raise ParamError(f"threads must be an integer >= 0, not {threads!r}")
    layout = options.get("layout", "NCHW")
    if not isinstance(layout, str) or not LAYOUT_PATTERN.match(layout):
        raise ParamError(f"layout must be NCHW, NHWC or NCHW<x>c, not {layout!r}")
    if layout not in IMPLEMENTED_LAYOUTS:
        raise ParamError(f"layout {layout} is not implemented by the cpu generator yet "
                         f"(implemented: {sorted(IMPLEMENTED_LAYOUTS)})")
    ops, kernels = override_tables(options)
    return RegionParams(width, threads, layout, _without_layout(ops, layout),
                        _without_layout(kernels, layout))


def _without_layout(table: Mapping[str, Mapping[str, Any]],
                    layout: str) -> dict[str, Mapping[str, Any]]:
    """Per-op or per-kernel entries without their ``layout`` key. Records from
    ``kernel_params()`` name the region's layout in every entry; layouts are chosen per
    region, not per kernel, so any other value is an error."""
    stripped: dict[str, Mapping[str, Any]] = {}
    for name, entry in table.items():
        asked = entry.get("layout", layout)
        if asked != layout:
            raise ParamError(f"kernel {name!r} asks for layout {asked!r} in a region laid "
                             f"out {layout} (layouts are chosen per region)")
        stripped[name] = {k: v for k, v in entry.items() if k != "layout"}
    return stripped


def override_tables(options: Mapping[str, Any]) -> tuple[Mapping, Mapping]:
    """The ``ops`` and ``kernels`` tables of a region's options (per op type and per
    kernel schedule overrides), checked; shared with the cuda generator."""
    ops = options.get("ops", {})
    kernels = options.get("kernels", {})
    for key, table in (("ops", ops), ("kernels", kernels)):
        if not isinstance(table, Mapping) or not all(isinstance(v, Mapping)
                                                     for v in table.values()):
            raise ParamError(f"option {key!r} must map names to parameter objects")
    return ops, kernels


def resolve_params(
    default: S, op_type: str, kernel: str, region: RegionParams
) -> S:
    """``default`` with the region's per-op and then per-kernel overrides applied."""
    merged = dict(region.ops.get(op_type, {}))
    merged.update(region.kernels.get(kernel, {}))
    if not merged:
        return default
    names = {f.name for f in dataclasses.fields(default)}
    unknown = set(merged) - names
    if unknown:
        raise ParamError(f"kernel {kernel!r} ({type(default).__name__}) has no parameters "
                         f"{sorted(unknown)} (known: {sorted(names)})")
    params = dataclasses.replace(default, **merged)
    params.validate()
    return params


def describe(params: Schedule) -> str:
    """``name=value`` pairs, for comments in the generated source and for reports."""
    return ", ".join(f"{f.name}={getattr(params, f.name)}" for f in dataclasses.fields(params))


def as_record(params: Schedule) -> dict[str, Any]:
    """The schedule as a tuning record entry (what ``kernels`` takes)."""
    return dataclasses.asdict(params)
