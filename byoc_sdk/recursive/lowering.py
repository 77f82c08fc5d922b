"""Lowering cells to kernel programs: shapes, constants, hoisting, stacking, views, fusion.

The steps, for each cell:

1. **Analyse** — per-node shapes and folded constants (numpy on one dummy node), and what
   each value depends on: the node's word (``vocab``), its dense features (``dense``) or its
   children's states (``state``).
2. **Stack siblings** — MatMuls that apply one weight to several per-node vectors (a forget
   gate to each child's ``h``) become one MatMul over the stacked vectors, so a level's GEMM
   covers every child of every node and reads the weight once.
3. **Hoist** — values that depend only on the word are computed at compile time for every
   vocabulary entry (tables); values that depend on features but not on states are computed
   for all nodes at once before the level loop; only the rest runs level by level. Leaf cells
   have no state inputs, so leaves are all hoisted.
4. **Plan** each runtime stage as a :class:`Plan`: GEMMs, fused elementwise loops and copies
   over views of buffers (Split, Slice, Reshape and most Concats cost nothing: producers
   write straight into place).

Codegens (C and CUDA) turn plans into code; they do not look at ONNX.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from byoc_sdk.recursive.cells import CellError
from byoc_sdk.recursive.ops import (
    ELEMENTWISE_BINARY,
    ELEMENTWISE_UNARY,
    CellGraph,
    Step,
    per_node_axis,
    run_step,
    slice_ranges,
    split_sizes,
)

Dep = Literal["vocab", "dense", "state"]
VIEW_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Identity")


@dataclass
class Value:
    """A value of a cell: per-node shape, dependencies (empty: a constant), folded constant."""

    name: str
    shape: tuple[int, ...]
    deps: frozenset[str]
    const: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Analysis:
    """A cell with every value's shape and dependencies; ``steps`` are the non-constant ones."""

    cell: CellGraph
    values: dict[str, Value]
    steps: list[Step]

    def consumers(self) -> dict[str, list[Step]]:
        users: dict[str, list[Step]] = {}
        for step in self.steps:
            for name in step.inputs:
                if name:
                    users.setdefault(name, []).append(step)
        return users


def analyse(cell: CellGraph, inputs: Mapping[str, tuple[tuple[int, ...], Dep]]) -> Analysis:
    """Shapes, constants and dependencies of every value of ``cell``."""
    values = {name: Value(name, tuple(a.shape), frozenset(), a)
              for name, a in cell.constants.items()}
    dummy: dict[str, np.ndarray] = {name: a[None] for name, a in cell.constants.items()}
    for name in cell.inputs:
        shape, dep = inputs[name]
        values[name] = Value(name, tuple(shape), frozenset({dep}))
        dummy[name] = np.full((1, *shape), 0.5)
    steps = []
    for step in cell.steps:
        args = [dummy[n] if n else None for n in step.inputs]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            results = run_step(step, args, cell.name)
        deps = frozenset().union(*(values[n].deps for n in step.inputs if n))
        for name, result in zip(step.outputs, results, strict=True):
            folded = np.asarray(result[0]) if not deps else None
            if folded is not None and folded.dtype.kind == "f":
                folded = folded.astype(np.float32)
            values[name] = Value(name, tuple(result.shape[1:]), deps, folded)
            dummy[name] = result
        if deps:
            steps.append(step)
    return Analysis(cell, values, steps)


# --- rewrites -------------------------------------------------------------------------


class _Names:
    """Fresh value names for rewrites."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.count = prefix, 0

    def __call__(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}{self.count}"


def _const(analysis: Analysis, names: _Names, array: np.ndarray, hint: str) -> str:
    name = names(hint)
    analysis.values[name] = Value(name, tuple(array.shape), frozenset(), array)
    return name


def lower_gemm(analysis: Analysis) -> Analysis:
    """Gemm with constant B (and C) becomes MatMul and Add, scales folded into constants."""
    names = _Names("gemm.")
    steps: list[Step] = []
    for step in analysis.steps:
        if step.op != "Gemm":
            steps.append(step)
            continue
        a, b = (analysis.values[n] for n in step.inputs[:2])
        if b.const is None or step.attrs.get("transA", 0):
            raise CellError(f"{analysis.cell.name}: node {step.name}: Gemm is compiled only with "
                            "a constant B and transA=0 (write MatMul and Add otherwise)")
        weight = b.const.T if step.attrs.get("transB", 0) else b.const
        weight = (weight * step.attrs.get("alpha", 1.0)).astype(np.float32)
        product = names("product")
        out = step.outputs[0]
        has_c = len(step.inputs) > 2 and step.inputs[2]
        matmul_out = product if has_c else out
        analysis.values[matmul_out] = replace(analysis.values[out], name=matmul_out)
        steps.append(Step(step.name, "MatMul", (a.name, _const(analysis, names, weight, "B")),
                          (matmul_out,), {}))
        if has_c:
            c = analysis.values[step.inputs[2]]
            beta = step.attrs.get("beta", 1.0)
            if c.const is None and beta != 1.0:
                raise CellError(f"{analysis.cell.name}: node {step.name}: Gemm with a computed "
                                "C needs beta=1")
            bias = (_const(analysis, names, (c.const * beta).astype(np.float32), "C")
                    if c.const is not None else c.name)
            steps.append(Step(step.name + ".bias", "Add", (product, bias), (out,), {}))
    analysis.steps = steps
    return analysis


def stack_siblings(analysis: Analysis) -> Analysis:
    """One MatMul for every group of MatMuls that share a constant weight.

    ``h_k W`` for k = 0..n-1 (per-node vectors, one stage) becomes
    ``[h_0; ...; h_n-1] W`` followed by free slices: a level's GEMM then has ``n`` rows a node
    and reads ``W`` once. Members must not depend on one another.
    """
    groups: dict[tuple[str, frozenset[str]], list[Step]] = {}
    for step in analysis.steps:
        if step.op != "MatMul":
            continue
        a, b = (analysis.values[n] for n in step.inputs)
        if b.const is not None and b.const.ndim == 2 and a.deps and len(a.shape) == 1:
            groups.setdefault((step.inputs[1], _stage_of(a.deps)), []).append(step)
    names = _Names("stack.")
    replaced: dict[str, list[Step]] = {}
    for (weight, _), members in groups.items():
        if len(members) < 2 or _depend_on_each_other(analysis, members):
            continue
        k = analysis.values[members[0].inputs[0]].width
        n_out = analysis.values[weight].const.shape[1]
        deps = frozenset().union(*(analysis.values[m.inputs[0]].deps for m in members))
        rows = []
        new: list[Step] = []
        axes = _const(analysis, names, np.array([0], dtype=np.int64), "axes")
        for member in members:
            row = names("row")
            analysis.values[row] = Value(row, (1, k), deps)
            new.append(Step(member.name + ".row", "Unsqueeze", (member.inputs[0], axes), (row,),
                            {}))
            rows.append(row)
        stacked, product = names("stacked"), names("product")
        analysis.values[stacked] = Value(stacked, (len(members), k), deps)
        analysis.values[product] = Value(product, (len(members), n_out), deps)
        new.append(Step(members[0].name + ".stack", "Concat", tuple(rows), (stacked,), {"axis": 0}))
        new.append(Step(members[0].name + ".stacked", "MatMul", (stacked, weight), (product,), {}))
        for i, member in enumerate(members):
            starts = _const(analysis, names, np.array([i], dtype=np.int64), "start")
            ends = _const(analysis, names, np.array([i + 1], dtype=np.int64), "end")
            part = names("part")
            analysis.values[part] = Value(part, (1, n_out), deps)
            new.append(Step(member.name + ".part", "Slice", (product, starts, ends, axes),
                            (part,), {}))
            new.append(Step(member.name + ".squeeze", "Squeeze", (part, axes),
                            (member.outputs[0],), {}))
        replaced[members[0].name] = new
        for member in members[1:]:
            replaced[member.name] = []
    if replaced:
        steps = []
        for step in analysis.steps:
            steps.extend(replaced.get(step.name, [step]))
        analysis.steps = _topological(steps, analysis)
    return analysis


def _stage_of(deps: frozenset[str]) -> frozenset[str]:
    return frozenset({"state"}) if "state" in deps else deps


def _depend_on_each_other(analysis: Analysis, members: Sequence[Step]) -> bool:
    outputs = {m.outputs[0] for m in members}
    producers = {out: step for step in analysis.steps for out in step.outputs}
    for member in members:
        seen, todo = set(), [member.inputs[0]]
        while todo:
            name = todo.pop()
            if name in outputs:
                return True
            if name in seen or name not in producers:
                continue
            seen.add(name)
            todo.extend(n for n in producers[name].inputs if n)
    return False


def _topological(steps: list[Step], analysis: Analysis) -> list[Step]:
    """Steps in an order where every input is ready (stable: keeps the given order if it can)."""
    ready = {n for n, v in analysis.values.items() if not any(n in s.outputs for s in steps)}
    done: list[Step] = []
    pending = list(steps)
    while pending:
        for i, step in enumerate(pending):
            if all(not n or n in ready for n in step.inputs):
                done.append(pending.pop(i))
                ready.update(step.outputs)
                break
        else:  # pragma: no cover - the rewrites keep the graph acyclic
            raise CellError(f"{analysis.cell.name}: rewriting left a cycle")
    return done


# --- plans -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """Where a value lives: ``buffer`` (a name), float ``offset`` in each node's row."""

    buffer: str
    offset: int = 0


@dataclass(frozen=True)
class Buffer:
    """A region with one row per node of ``width`` floats, rows ``ld`` apart: ``kind`` input
    or output (bound by the driver), temp (scratch) or const (weights: one row for all)."""

    name: str
    kind: Literal["input", "output", "temp", "const"]
    width: int
    ld: int
    array: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Gemm:
    """``c = a @ b`` per node. ``rows`` > 0: one GEMM of ``rows`` x m rows over the level
    (``b`` constant, ``a`` and ``c`` rows at strides ``k`` and ``n`` inside each node);
    ``rows`` == 0: one GEMM of shape ``m_ x k x n`` per node.

    ``leaf_tables`` (per-node GEMMs only): ``a`` is constant and ``b`` holds one block of
    ``k / arity`` rows per child; entry ``j`` is the index, among the cell's tables, of the
    vocabulary table holding child ``j``'s share ``a_j @ b_j`` for a leaf child of each
    word. A node reads that row for a leaf child instead of multiplying."""

    a: Ref
    b: Ref
    c: Ref
    m_: int
    k: int
    n: int
    rows: int
    leaf_tables: tuple[int, ...] = ()


@dataclass(frozen=True)
class Elementwise:
    """``out = expr`` over the per-node ``shape``; leaves of ``expr`` are (Ref, shape)."""

    out: Ref
    shape: tuple[int, ...]
    expr: tuple


@dataclass(frozen=True)
class Copy:
    """``outer`` blocks of ``chunk`` floats per node: ``dst[o*dst_step] = src[o*src_step]``."""

    dst: Ref
    src: Ref
    outer: int
    chunk: int
    dst_step: int
    src_step: int


Op = Gemm | Elementwise | Copy


@dataclass
class Plan:
    """A runtime stage: what a codegen turns into one function over ``m`` nodes.

    Buffers of kind input/output are bound by the driver (``inputs``/``outputs`` say which
    cell values they carry); temps live in scratch; consts are weights.
    """

    name: str
    buffers: dict[str, Buffer]
    ops: list[Op]
    inputs: dict[str, list[tuple[str, int]]]
    outputs: dict[str, str]

    @property
    def scratch_width(self) -> int:
        return sum(b.width for b in self.buffers.values() if b.kind == "temp")

    def temp_offsets(self) -> dict[str, int]:
        """Where each temp starts in a chunk's scratch, in floats per row of the chunk."""
        offsets, at = {}, 0
        for b in self.buffers.values():
            if b.kind == "temp":
                offsets[b.name] = at
                at += b.width
        return offsets


class _Planner:
    """Turns one stage's steps into a :class:`Plan` (views, aliases, fusion, op choice)."""

    def __init__(self, name: str, analysis: Analysis, steps: Sequence[Step],
                 input_groups: Mapping[str, tuple[Sequence[str], int]],
                 outputs: Sequence[tuple[str, int]]) -> None:
        self.analysis, self.values = analysis, analysis.values
        self.plan = Plan(name, {}, [], {}, {})
        self.where: dict[str, Ref | _Pending] = {}
        self.steps = list(steps)
        self.output_names = [name for name, _ in outputs]
        self.outputs = list(outputs)
        for group, (members, ld) in input_groups.items():
            self._input_group(group, members, ld)
        self.users: dict[str, list[Step]] = {}
        for step in self.steps:
            for n in step.inputs:
                if n:
                    self.users.setdefault(n, []).append(step)

    def _input_group(self, group: str, members: Sequence[str], ld: int) -> None:
        offset, placed = 0, []
        for name in members:
            self.where[name] = Ref(group, offset)
            placed.append((name, offset))
            offset += self.values[name].width
        self.plan.buffers[group] = Buffer(group, "input", offset, ld)
        self.plan.inputs[group] = placed

    def build(self) -> Plan:
        self._place_outputs()
        self._alias_concats()
        fused = self._fusable()
        for step in self.steps:
            if step.outputs[0] in fused:
                continue
            self._lower(step, fused)
        for name in dict.fromkeys(self.output_names):
            self._ensure_output(name)
        return self.plan

    # storage ------------------------------------------------------------------------

    def _place_outputs(self) -> None:
        """Each output gets a buffer, and the op computing it (through any Identity or
        Reshape) writes there directly; an output that cannot (an input, a value output
        twice) is copied at the end."""
        for i, (name, ld) in enumerate(self.outputs):
            buffer = f"out{i}"
            self.plan.buffers[buffer] = Buffer(buffer, "output", self.values[name].width, ld)
            self.plan.outputs[buffer] = name
            base = name
            while (producer := self._producer(base)) is not None and producer.op in VIEW_OPS:
                base = producer.inputs[0]
            if self._producer(base) is not None and base not in self.where and \
                    not self._is_view(base):
                self.where[base] = Ref(buffer)

    def _is_view(self, name: str) -> bool:
        step = self._producer(name)
        return step is not None and (step.op in VIEW_OPS or (step.op in ("Slice", "Split")
                                     and self._slice_is_view(step)))

    def _producer(self, name: str) -> Step | None:
        return next((s for s in self.steps if name in s.outputs), None)

    def _alias_concats(self) -> None:
        """Producers of a Concat's parts write straight into the Concat's output.

        Runs from the last Concat back, so nested Concats resolve into the outermost.
        """
        for step in reversed(self.steps):
            if step.op != "Concat" or self._concat_outer(step) != 1:
                continue
            out = step.outputs[0]
            offset = 0
            for part in step.inputs:
                value = self.values[part]
                producer = self._producer(part)
                if (part not in self.where and producer is not None and value.const is None
                        and not self._is_view(part) and part not in self.output_names):
                    self.where[part] = _Pending(out, offset)
                offset += value.width

    def _concat_outer(self, step: Step) -> int:
        shape = self.values[step.outputs[0]].shape
        axis = per_node_axis(int(step.attrs["axis"]), len(shape))
        return int(np.prod(shape[:axis], dtype=np.int64))

    def _slice_is_view(self, step: Step) -> bool:
        return all(outer == 1 for outer, *_ in self._slice_parts(step))

    def _slice_parts(self, step: Step) -> list[tuple[int, int, int, int]]:
        """(outer, chunk, offset, row) for each output of a Slice or Split (one axis)."""
        shape = self.values[step.inputs[0]].shape
        if step.op == "Split":
            axis = per_node_axis(int(step.attrs.get("axis", 0)), len(shape))
            sizes = split_sizes([None, *self._const_args(step)[1:]], step.attrs,
                                len(step.outputs), shape[axis])
            starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
            cuts = [(axis, int(b), int(b + s)) for b, s in zip(starts, sizes, strict=True)]
        else:
            cuts = slice_ranges(self._const_args(step), shape)
            if len(cuts) != 1:
                raise CellError(f"{self.analysis.cell.name}: node {step.name}: Slice over "
                                "several axes is not supported (slice one axis at a time)")
        parts = []
        for axis, begin, stop in cuts:
            outer = int(np.prod(shape[:axis], dtype=np.int64))
            inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
            parts.append((outer, (stop - begin) * inner, begin * inner, shape[axis] * inner))
        return parts

    def _const_args(self, step: Step) -> list[np.ndarray | None]:
        return [None if not n or self.values[n].const is None else self.values[n].const[None]
                for n in step.inputs]

    def ref(self, name: str) -> Ref:
        """The resolved location of ``name`` (allocating a temp on first use)."""
        where = self.where.get(name)
        if isinstance(where, _Pending):
            base = self.ref(where.value)
            where = Ref(base.buffer, base.offset + where.offset)
            self.where[name] = where
        if where is None:
            value = self.values[name]
            if value.const is not None:
                buffer = f"const:{name}"
                self.plan.buffers[buffer] = Buffer(buffer, "const", value.width, 0,
                                                   np.ascontiguousarray(value.const, np.float32))
            else:
                buffer = f"tmp{len(self.plan.buffers)}"
                self.plan.buffers[buffer] = Buffer(buffer, "temp", value.width, value.width)
            where = self.where[name] = Ref(buffer)
        return where

    def _ensure_output(self, name: str) -> None:
        """Copy ``name`` into every output buffer it is not computed in already."""
        value = self.values[name]
        for buffer, output in self.plan.outputs.items():
            if output == name and self.ref(name) != Ref(buffer):
                self.plan.ops.append(Elementwise(Ref(buffer), value.shape,
                                                 ("leaf", self.ref(name), value.shape)))

    # ops -----------------------------------------------------------------------------

    def _fusable(self) -> set[str]:
        """Elementwise results used once, by an elementwise op of the same shape: inlined."""
        elementwise = tuple(o for o in (*ELEMENTWISE_BINARY, *ELEMENTWISE_UNARY)
                            if o != "Identity")
        fused = set()
        for step in self.steps:
            if step.op not in elementwise:
                continue
            name = step.outputs[0]
            users = self.users.get(name, [])
            if (len(users) == 1 and users[0].op in elementwise and name not in self.where
                    and name not in self.output_names
                    and self.values[users[0].outputs[0]].shape == self.values[name].shape):
                fused.add(name)
        return fused

    def _lower(self, step: Step, fused: set[str]) -> None:
        op = step.op
        if op in VIEW_OPS:
            source = self.ref(step.inputs[0])
            self._alias_or_copy(step.outputs[0], source)
        elif op in ("Slice", "Split"):
            self._lower_slice(step)
        elif op == "Concat":
            self._lower_concat(step)
        elif op == "MatMul":
            self._lower_matmul(step)
        else:
            out = step.outputs[0]
            self.plan.ops.append(Elementwise(self.ref(out), self.values[out].shape,
                                             self._expr(step, fused)))

    def _alias_or_copy(self, name: str, source: Ref) -> None:
        """``name`` becomes a view of ``source``, or a copy when it already has a place."""
        if name in self.where:  # an output or a Concat part: copy into place
            width = self.values[name].width
            self.plan.ops.append(Copy(self.ref(name), source, 1, width, 0, 0))
        else:
            self.where[name] = source

    def _lower_slice(self, step: Step) -> None:
        source = self.ref(step.inputs[0])
        for out, (outer, chunk, offset, row) in zip(step.outputs, self._slice_parts(step),
                                                    strict=True):
            moved = Ref(source.buffer, source.offset + offset)
            if outer == 1:
                self._alias_or_copy(out, moved)
            else:
                self.plan.ops.append(Copy(self.ref(out), moved, outer, chunk, chunk, row))

    def _lower_concat(self, step: Step) -> None:
        out = step.outputs[0]
        outer = self._concat_outer(step)
        total = self.values[out].width // outer
        parts = [self.ref(p) for p in step.inputs]
        widths = [self.values[p].width // outer for p in step.inputs]
        if out not in self.where and outer == 1 and _adjacent(parts, widths, self.plan):
            self.where[out] = parts[0]
            return
        target = self.ref(out)
        offset = 0
        for ref, width in zip(parts, widths, strict=True):
            place = Ref(target.buffer, target.offset + offset)
            if ref != place:
                self.plan.ops.append(Copy(place, ref, outer, width, total, width))
            offset += width

    def _lower_matmul(self, step: Step) -> None:
        a, b = (self.values[n] for n in step.inputs)
        out = step.outputs[0]
        if a.const is not None and b.const is None and len(b.shape) == 1:
            # W x == x W^T: a constant matrix times a per-node vector batches as rows.
            weight = _Names("t.")
            name = weight(a.name)
            self.values[name] = Value(name, a.shape[::-1], frozenset(),
                                      np.ascontiguousarray(a.const.T))
            a, b = b, self.values[name]
        m_ = a.shape[0] if len(a.shape) == 2 else 1
        k = a.shape[-1]
        n = b.shape[-1] if len(b.shape) == 2 else 1
        rows = m_ if b.const is not None else 0
        self.plan.ops.append(Gemm(self.ref(a.name), self.ref(b.name), self.ref(out), m_, k, n,
                                  rows))

    def _expr(self, step: Step, fused: set[str]) -> tuple:
        args = []
        for name in step.inputs:
            if name in fused:
                args.append(self._expr(self._producer(name), fused))
            else:
                args.append(("leaf", self.ref(name), self.values[name].shape))
        return (step.op, *args)


@dataclass(frozen=True)
class _Pending:
    """A place inside a Concat's output, resolved once the output has a place."""

    value: str
    offset: int


def _adjacent(parts: Sequence[Ref], widths: Sequence[int], plan: Plan) -> bool:
    """Whether the parts already lie side by side in one (non-constant) buffer."""
    at = parts[0].offset
    for ref, width in zip(parts, widths, strict=True):
        if ref.buffer != parts[0].buffer or ref.offset != at:
            return False
        at += width
    return plan.buffers[parts[0].buffer].kind != "const"


def plan_stage(name: str, analysis: Analysis, steps: Sequence[Step],
               input_groups: Mapping[str, tuple[Sequence[str], int]],
               outputs: Sequence[tuple[str, int]]) -> Plan:
    """The :class:`Plan` of one stage: ``input_groups`` maps an input buffer to the values
    it holds side by side and its row stride; ``outputs`` are (value, row stride)."""
    return _Planner(name, analysis, steps, input_groups, outputs).build()


def broadcast_shapes(out: tuple[int, ...], operand: tuple[int, ...]) -> list[int]:
    """Element strides of ``operand`` (numpy-broadcast to ``out``), one per axis of ``out``."""
    padded = (1,) * (len(out) - len(operand)) + tuple(operand)
    if len(padded) != len(out):
        raise CellError(f"cannot broadcast {operand} to {out}")
    strides, step = [], 1
    for dim, full in zip(reversed(padded), reversed(out), strict=True):
        if dim not in (1, full):
            raise CellError(f"cannot broadcast {operand} to {out}")
        strides.append(step if dim == full and full != 1 else 0)
        step *= dim
    return strides[::-1]


def leaves_of(expr: tuple) -> Iterable[tuple]:
    """The operand reads ``("leaf", ref, shape)`` of an elementwise expression tree."""
    if expr[0] == "leaf":
        yield expr
        return
    for arg in expr[1:]:
        yield from leaves_of(arg)

