"""What every kernel shares: indexing with broadcasting, the emission context, loop nests.

A kernel is one generated C function. It computes one tensor; the values it produces
pass through its :class:`~reference_backends.cpu.kernels.elementwise.Epilogue` (the
elementwise ops fused into it) on the way to memory. Kernels describe *where* a value
goes by :data:`Coords`: groups of consecutive output axes, each with a C expression for
the flattened index over those axes. From coords, :func:`operand_index` finds the
element of any operand that broadcasts to the output, so an epilogue can read a bias
(1, C, 1, 1), a residual (N, C, H, W) or a row vector (N,) at the right place whatever
loop nest the kernel runs.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from reference_backends.cpu.cwriter import CWriter, c_identifier, float_literal
from reference_backends.cpu.graph import Op, Tensor, UnsupportedError
from reference_backends.cpu.params import LoopSchedule, RegionParams, Schedule, describe

if TYPE_CHECKING:
    from reference_backends.cpu.kernels.elementwise import Epilogue

#: ``(first axis, stop axis, C expression of the flat index over those axes)``.
Coords = list[tuple[int, int, str]]

#: numpy dtype name -> C element type.
CTYPES = {
    "float32": "float", "float64": "double", "float16": "uint16_t", "bfloat16": "uint16_t",
    "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
    "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
    "bool": "uint8_t",
}

#: numpy dtype name -> enum byoc_dtype.
ABI_DTYPES = {
    "float32": "BYOC_FLOAT32", "uint8": "BYOC_UINT8", "int8": "BYOC_INT8",
    "uint16": "BYOC_UINT16", "int16": "BYOC_INT16", "int32": "BYOC_INT32",
    "int64": "BYOC_INT64", "bool": "BYOC_BOOL", "float16": "BYOC_FLOAT16",
    "float64": "BYOC_FLOAT64", "uint32": "BYOC_UINT32", "uint64": "BYOC_UINT64",
    "bfloat16": "BYOC_BFLOAT16",
}


def ctype(tensor: Tensor) -> str:
    try:
        return CTYPES[tensor.dtype]
    except KeyError:
        raise UnsupportedError(f"tensor {tensor.name!r} has element type {tensor.dtype}, "
                         "which the cpu generator cannot handle") from None


# --- index expressions -------------------------------------------------------------


def paren(expr: str) -> str:
    """``expr`` wrapped in parentheses unless it is a name or a number."""
    return expr if expr.replace("_", "").isalnum() else f"({expr})"


def scaled(expr: str, factor: int) -> str | None:
    """``expr * factor`` simplified; ``None`` for a zero term."""
    if factor == 0 or expr == "0":
        return None
    return expr if factor == 1 else f"{paren(expr)} * {factor}"


def add_terms(terms: Sequence[str | None]) -> str:
    live = [t for t in terms if t is not None and t != "0"]
    return " + ".join(live) if live else "0"


def strides_of(shape: Sequence[int]) -> list[int]:
    """Row-major strides in elements."""
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return strides[::-1]


def storage_strides(dims: Sequence[int], axes: Sequence[int] | None) -> list[int]:
    """The stride of each logical axis of a tensor of ``dims`` stored with its axes in
    the order ``axes`` (outermost first; ``None``: row-major as shaped)."""
    if axes is None:
        return strides_of(dims)
    stored = strides_of([dims[a] for a in axes])
    strides = [0] * len(dims)
    for position, axis in enumerate(axes):
        strides[axis] = stored[position]
    return strides


def _contiguous(live: Sequence[int], dims: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether the ``live`` axes of a group are stored as one flat run in their order."""
    return all(strides[a] == strides[b] * dims[b] for a, b in itertools.pairwise(live))


def operand_index(shape: Sequence[int], out_shape: Sequence[int], coords: Coords,
                  axes: Sequence[int] | None = None) -> str:
    """The flat index into a tensor of ``shape`` that broadcasts to ``out_shape``, at the
    output position ``coords`` describes (numpy broadcasting: shapes align on the right).
    ``axes`` is the tensor's storage order (``Tensor.storage_axes``); a coords group
    whose axes are not one run in storage is split into its axes."""
    rank = len(out_shape)
    dims = (1,) * (rank - len(shape)) + tuple(shape)
    if axes is not None and len(axes) < rank:  # broadcast to a higher rank: axes shift
        lead = rank - len(axes)
        axes = (*range(lead), *(a + lead for a in axes))
    strides = storage_strides(dims, axes)
    terms: list[str | None] = []
    for start, stop, expr in coords:
        live = [a for a in range(start, stop) if dims[a] != 1]
        if not live:
            continue
        if (all(dims[a] == out_shape[a] for a in range(start, stop))
                and _contiguous(live, dims, strides)):
            terms.append(scaled(expr, strides[live[-1]]))
            continue
        for axis in live:
            inner = math.prod(out_shape[axis + 1:stop])
            coord = expr if inner == 1 else f"{paren(expr)} / {inner}"
            if axis != start:
                coord = f"{paren(coord)} % {out_shape[axis]}"
            terms.append(scaled(coord, strides[axis]))
    return add_terms(terms)


# --- emission context --------------------------------------------------------------


@dataclass
class StateField:
    """A buffer the module builds once in ``_init`` and reads at every call."""

    name: str
    ctype: str
    count: int
    fill: Callable[[CWriter], None]


@dataclass
class ModuleContext:
    """What the kernels of one module share: helpers, state, constants, scratch."""

    region: RegionParams
    helpers: dict[str, str] = field(default_factory=dict)
    state: dict[str, StateField] = field(default_factory=dict)
    constants: list[Tensor] = field(default_factory=list)
    scratch_bytes: int = 0
    embedded_names: dict[int, str] = field(default_factory=dict)
    #: The tensors ``embedded_names`` is keyed by, kept alive: derived values are often
    #: made for one call, and a freed tensor's id may come back for another one.
    embedded_tensors: list[Tensor] = field(default_factory=list)

    def helper(self, key: str, text: str) -> None:
        """A static C function (or type) emitted once before the kernels."""
        self.helpers.setdefault(key, text)

    def constant_index(self, tensor: Tensor) -> int:
        """The position of ``tensor`` among the constants handed to ``_init`` (for a view
        of a constant, such as a reshaped bias, that of the constant it views)."""
        tensor = tensor.root()
        for index, known in enumerate(self.constants):
            if known is tensor:
                return index
        self.constants.append(tensor)
        return len(self.constants) - 1

    def constant_source(self, tensor: Tensor) -> str:
        """In ``_init``: a C pointer expression to the raw data of constant ``tensor``."""
        return f"(({ctype(tensor)} const*)constants[{self.constant_index(tensor)}].data)"

    def state_field(self, key: str, c_type: str, count: int,
                    fill: Callable[[CWriter], None]) -> str:
        """A state buffer named after ``key``, built once by ``fill`` in ``_init``."""
        name = c_identifier(key, "s")
        existing = self.state.get(name)
        if existing is None:
            self.state[name] = StateField(name, c_type, max(1, count), fill)
        return name

    def constant_buffer(self, tensor: Tensor) -> str:
        """A state copy of constant ``tensor`` (copied: the module owns what it reads);
        a build-time derived value is spelled out as a static array instead."""
        if tensor.embedded:
            return self.embedded_array(tensor)
        tensor = tensor.root()  # a view of a constant reads the constant's buffer
        source = self.constant_source(tensor)

        def fill(w: CWriter) -> None:
            w.line(f"memcpy(S.{name}, {source}, {tensor.size} * sizeof({ctype(tensor)}));")

        name = self.state_field(f"c{self.constant_index(tensor)}_{tensor.name}",
                                ctype(tensor), tensor.size, fill)
        return name

    #: How a derived array is declared (the cuda generator puts it in device memory).
    embedded_qualifier: ClassVar[str] = "static const"

    def embedded_array(self, tensor: Tensor) -> str:
        """A ``static const`` array holding derived value ``tensor``; returns its name."""
        name = c_identifier(f"e{len(self.helpers)}_{tensor.name}", "e")
        values = tensor.value.reshape(-1)
        if tensor.dtype == "float32":
            items = ", ".join(float_literal(float(v)) for v in values)
        else:
            items = ", ".join(str(int(v)) for v in values)
        key = f"embedded:{id(tensor)}"
        if key not in self.helpers:
            self.helpers[key] = (f"{self.embedded_qualifier} {ctype(tensor)} "
                                 f"{name}[{max(1, values.size)}] = {{{items}}};\n")
            self.embedded_names[id(tensor)] = name
            self.embedded_tensors.append(tensor)
        return self.embedded_names[id(tensor)]

    def need_scratch(self, nbytes: int) -> None:
        self.scratch_bytes = max(self.scratch_bytes, _align(nbytes))


def _align(nbytes: int, to: int = 64) -> int:
    return -(-nbytes // to) * to


@dataclass
class Param:
    """A parameter of a kernel function and the expression the entry passes for it."""

    decl: str
    argument: str


class KernelContext:
    """Emission of one kernel function: its parameters, state and scratch."""

    #: The language's spelling of ``restrict`` (C99's; CUDA C++ says ``__restrict__``).
    restrict: ClassVar[str] = "restrict"

    def __init__(self, module: ModuleContext, storage_of: Callable[[Tensor], str]) -> None:
        self.module = module
        self._storage_of = storage_of
        self.params: dict[str, Param] = {}
        self.written: set[str] = set()

    @property
    def vector_width(self) -> int:
        return self.module.region.vector_width

    def ptr(self, tensor: Tensor, *, write: bool = False) -> str:
        """The C name of the pointer to ``tensor``'s data inside the kernel function."""
        if tensor.embedded:
            return self.module.embedded_array(tensor)
        if tensor.is_const:
            name = self.module.constant_buffer(tensor.root())
            return self._param(f"s_{name}", ctype(tensor), f"S.{name}", write=False)
        storage = self._storage_of(tensor)
        return self._param(storage, ctype(tensor), storage, write=write)

    def state(self, name: str, c_type: str = "float") -> str:
        """The pointer to state buffer ``name`` (made with ``module.state_field``)."""
        return self._param(f"s_{name}", c_type, f"S.{name}", write=False)

    def _param(self, name: str, c_type: str, argument: str, *, write: bool) -> str:
        if write:
            self.written.add(name)
        qualifier = "" if name in self.written else "const "
        self.params[name] = Param(f"{qualifier}{c_type}* {self.restrict} {name}", argument)
        return name

    def load(self, tensor: Tensor, index: str) -> str:
        """``tensor`` at flat ``index``: a literal for a one-element constant."""
        if tensor.is_scalar_const:
            return float_literal(float(tensor.value.reshape(-1)[0]))
        return f"{self.ptr(tensor)}[{index}]"

    def scratch(self, nbytes: int, offset: int = 0, c_type: str = "float") -> str:
        """``nbytes`` of this thread's scratch from byte ``offset`` on (valid inside
        parallel loops). Two buffers a kernel uses at once take disjoint offsets."""
        offset = _align(offset)
        self.module.need_scratch(offset + nbytes)
        self._param("scratch", "char", "scratch", write=True)
        return (f"(({c_type}*)(scratch + (size_t)omp_get_thread_num() * BYOC_SCRATCH"
                f"{f' + {offset}' if offset else ''}))")

    def parallel(self, work: int, threshold: int, collapse: int = 1, extra: str = "") -> str:
        """An ``omp parallel for`` pragma when ``work`` reaches ``threshold``, else ""."""
        if work < threshold:
            return ""
        clauses = [f"collapse({collapse})"] if collapse > 1 else []
        threads = self.module.region.threads
        if threads:
            clauses.append(f"num_threads({threads})")
        if extra:
            clauses.append(extra)
        return " ".join(["omp parallel for", *clauses])


# --- kernels -----------------------------------------------------------------------


@dataclass(eq=False)
class Kernel(abc.ABC):
    """One generated function: computes ``output`` from ``root`` and its epilogue."""

    root: Op
    epilogue: Epilogue
    params: Schedule

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def output(self) -> Tensor:
        """The tensor the kernel writes: the end of its fused chain."""
        return self.epilogue.output

    def reads(self) -> list[Tensor]:
        """Every tensor the function reads (main inputs and epilogue operands)."""
        main = [t for t in self.root.inputs if t is not None]
        return [*main, *self.epilogue.operands()]

    def temporaries(self) -> list[Tensor]:
        """Workspace tensors the kernel needs while it runs (shared by its threads)."""
        return []

    def layout(self) -> str | None:
        """``NHWC``, ``NCHW->NHWC`` or ``NHWC->NCHW`` (the layouts of the main input and of
        the output) for a kernel that touches a channels-last tensor, else ``None``."""
        main = self.root.input(0)
        read = main.layout if main is not None else "NCHW"
        written = self.output.layout
        if read == written == "NCHW":
            return None
        return read if read == written else f"{read}->{written}"

    def describe(self) -> str:
        fused = self.epilogue.describe()
        extra = f" + {fused}" if fused else ""
        folded = self.root.attr("byoc.folded")
        if folded:
            extra += f" (BatchNormalization {folded!r} folded)"
        layout = self.layout()
        params = describe(self.params)
        if layout is not None:
            params = f"layout={layout}, {params}"
        return f"{self.root.op_type} {self.root.name!r}{extra}; {params}"

    @abc.abstractmethod
    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        """Write the kernel's C function body."""

    def store(self, w: CWriter, ctx: KernelContext, value: str, coords: Coords) -> None:
        """Apply the epilogue to ``value`` and write it at ``coords`` of the output."""
        self.epilogue.store(w, ctx, value, coords)


@contextmanager
def loop_nest(
    w: CWriter,
    extents: Sequence[int],
    names: Sequence[str],
    *,
    parallel: str = "",
    simd: bool = True,
    unroll: int = 0,
) -> Iterator[None]:
    """Nested loops over ``extents`` (outermost first), with the parallel pragma on the
    outermost and ``omp simd`` on the innermost loop."""
    depth = len(extents)
    with _nest(w, list(extents), list(names), 0, depth, parallel, simd, unroll):
        yield


@contextmanager
def _nest(w, extents, names, level, depth, parallel, simd, unroll) -> Iterator[None]:
    if level == depth:
        yield
        return
    innermost = level == depth - 1
    directive = parallel if level == 0 else ""
    if innermost and simd:
        directive = (directive.replace("omp parallel for", "omp parallel for simd", 1)
                     if directive else "omp simd")
    # GCC accepts its unroll pragma before "omp simd" but not before "omp parallel for".
    if innermost and unroll and not (level == 0 and parallel):
        w.pragma(f"GCC unroll {unroll}")
    with w.loop(names[level], extents[level], pragma=directive), \
            _nest(w, extents, names, level + 1, depth, parallel, simd, unroll):
        yield


def simd_span(w: CWriter, var: str, count: str, full: int,
              body: Callable[[CWriter], None]) -> None:
    """``omp simd`` loop of ``count`` (at most ``full``) iterations, with the common
    full-width case as its own loop of constant trip count: compilers vectorize that one
    far better than a loop of unknown length."""
    with w.block(f"if ({count} == {full})"), w.loop(var, full, pragma="omp simd"):
        body(w)
    with w.block("else"), w.loop(var, count, pragma="omp simd"):
        body(w)


def coalesce(out_shape: Sequence[int], shapes: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Groups of consecutive output axes that every operand indexes as one flat axis.

    Two neighbouring axes merge when each operand (right-aligned) either has both at
    full size or broadcasts both; size-1 output axes merge with anything.
    """
    rank = len(out_shape)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    groups: list[tuple[int, int]] = []
    kinds: list[str | None] = []
    for axis in range(rank):
        axis_kinds = [None if out_shape[axis] == 1 else ("full" if s[axis] != 1 else "bcast")
                      for s in padded]
        if groups and all(k is None or g is None or k == g
                          for k, g in zip(axis_kinds, kinds, strict=True)):
            first, _ = groups[-1]
            groups[-1] = (first, axis + 1)
            kinds = [g if k is None else k for k, g in zip(axis_kinds, kinds, strict=True)]
        else:
            groups.append((axis, axis + 1))
            kinds = axis_kinds
    return groups


def stored_groups(out_shape: Sequence[int], shapes: Sequence[Sequence[int]],
                  axes: Sequence[int] | None) -> list[tuple[int, int]]:
    """:func:`coalesce` over the output's axes taken in storage order ``axes``: groups of
    logical axes, listed outermost first in memory, so that a loop nest over them walks
    the output contiguously. ``None``: row-major, exactly ``coalesce``."""
    if axes is None:
        return coalesce(out_shape, shapes)
    rank = len(out_shape)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    stored = coalesce([out_shape[a] for a in axes], [[s[a] for a in axes] for s in padded])
    groups: list[tuple[int, int]] = []
    for first, stop in stored:
        logical = [axes[p] for p in range(first, stop)]
        start = logical[0]
        for previous, axis in itertools.pairwise(logical):
            if axis != previous + 1:  # not consecutive logically: a coords group ends
                groups.append((start, previous + 1))
                start = axis
        groups.append((start, logical[-1] + 1))
    return groups


def loop_schedule(params: Any) -> LoopSchedule:
    return params if isinstance(params, LoopSchedule) else LoopSchedule()
