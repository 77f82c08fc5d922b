"""Splitting a model's cells into compile-time tables and runtime stages.

For each cell, every value is put in the earliest stage that can compute it:

* **tables** (compile time): values that depend on the node's word only, evaluated for
  every vocabulary entry; at run time a node gathers its row.
* **hoisted** (run time, once per batch): values that need the node's dense features but no
  child state, computed for all nodes of the cell's kind at once, before the level loop.
* **level** (run time, per level): values that need children's states.

The leaf cell has no level stage. A :class:`ModelStages` is everything the codegens need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from byoc_sdk.recursive.cells import RecursiveModel, child_input
from byoc_sdk.recursive.lowering import (
    Analysis,
    Gemm,
    Op,
    Plan,
    Value,
    analyse,
    lower_gemm,
    plan_stage,
    stack_siblings,
)
from byoc_sdk.recursive.ops import CellGraph, Step, run_step

TABLE_CHUNK = 4096
#: Bytes of leaf-child tables a model may take in all (see ``_add_leaf_child_tables``).
LEAF_TABLE_BYTES = 512 << 20


@dataclass(frozen=True)
class Table:
    """A compile-time table: ``array[word]`` is value ``value`` of a node with that word
    (for a leaf-child table, ``op<i>:<buffer>@leaf<j>``: child ``j``'s share of level op
    ``i`` when that child is a leaf with that word)."""

    value: str
    array: np.ndarray = field(repr=False)

    @property
    def width(self) -> int:
        return int(np.prod(self.array.shape[1:], dtype=np.int64))


@dataclass
class CellStages:
    """One cell, staged.

    ``direct`` maps state components to tables gathered straight into the state (leaf
    outputs that depend on the word only). ``hoist`` computes ``hoisted`` values (or leaf
    state components) for all nodes; ``level`` computes the state per level. The plans'
    input buffers are named ``table:<i>`` (a row of ``tables[i]`` by word),
    ``feature:<name>`` (a dense feature row), ``child:<component>`` (the children's states of
    one component, child by child) and ``hoisted`` (this node's hoisted values).
    """

    tables: list[Table]
    direct: dict[str, int]
    hoist: Plan | None
    hoist_offsets: list[int]
    hoisted: list[tuple[str, int]]
    hoisted_width: int
    level: Plan | None


@dataclass
class ModelStages:
    """Both cells of a model, staged, and the state layout (component offsets)."""

    model: RecursiveModel
    leaf: CellStages
    internal: CellStages
    offsets: dict[str, int]

    @property
    def tables(self) -> list[Table]:
        return [*self.leaf.tables, *self.internal.tables]


@dataclass(frozen=True)
class StageOptions:
    """Switches for the techniques (all on by default; off only to measure them).

    ``precompute_vocab``: tables of word-only values (off: only the raw vocabulary features
    are tables, and everything computed from them runs in the hoisted stage).
    ``stack_siblings``: one GEMM for a weight applied to every child.
    ``leaf_child_tables``: tables of a constant matrix times a leaf child's word-only state
    (below).
    """

    precompute_vocab: bool = True
    stack_siblings: bool = True
    leaf_child_tables: bool = True


def stage_model(model: RecursiveModel, options: StageOptions | None = None) -> ModelStages:
    """Analyse, rewrite and stage both cells of ``model``."""
    options = options or StageOptions()
    offsets, at = {}, 0
    for c in model.state:
        offsets[c.name] = at
        at += c.size
    leaf = _stage_cell(model, "leaf", model.leaf, offsets, False, options)
    internal = _stage_cell(model, "internal", model.internal, offsets, True, options)
    if options.leaf_child_tables and internal.level is not None:
        _add_leaf_child_tables(model, leaf, internal)
    return ModelStages(model, leaf, internal, offsets)


def _add_leaf_child_tables(model: RecursiveModel, leaf: CellStages,
                           internal: CellStages) -> None:
    """Hoist per-node products of a constant and a leaf child's state into tables.

    A per-node GEMM ``W @ [S_0; ...; S_k]`` over the children's states of one component
    (MV-RNN's ``W_M [A; B]``) is ``Σ_j W_j @ S_j``. When child ``j`` is a leaf whose state
    component depends on its word only, ``W_j @ S_j`` does too: it becomes a vocabulary
    table, and a node reads a row instead of multiplying (Cortex's hoisting of word-only
    work, carried one level up). Half the children of a binary tree are leaves, so this
    takes about half of such GEMMs' arithmetic. Tables cost ``vocab x arity x m x n``
    floats; past :data:`LEAF_TABLE_BYTES` in all, the products stay computed.
    """
    plan = internal.level
    budget = LEAF_TABLE_BYTES
    ops = []
    for position, op in enumerate(plan.ops):
        share = _leaf_child_share(model, leaf, plan, op)
        size = 0 if share is None else 4 * len(share[1]) * op.m_ * op.n * model.arity
        if share is None or size > budget:
            ops.append(op)
            continue
        weight, words = share
        kc = op.k // model.arity
        indexes = []
        for j in range(model.arity):
            indexes.append(len(internal.tables))
            internal.tables.append(Table(f"op{position}:{op.b.buffer}@leaf{j}",
                                         _products(weight[:, j * kc:(j + 1) * kc], words)))
        budget -= size
        ops.append(replace(op, leaf_tables=tuple(indexes)))
    plan.ops = ops


def _leaf_child_share(model: RecursiveModel, leaf: CellStages, plan: Plan,
                      op: Op) -> tuple[np.ndarray, np.ndarray] | None:
    """(the constant ``W``, every word's leaf state component ``[vocab, k/arity, n]``) when
    ``op`` is a per-node GEMM of a constant and all children's states of one component
    whose leaf value is a word-only table; else None."""
    if not isinstance(op, Gemm) or op.rows or op.k % model.arity:
        return None
    a, b = plan.buffers[op.a.buffer], plan.buffers[op.b.buffer]
    kind, _, component = op.b.buffer.partition(":")
    kc = op.k // model.arity
    if (a.kind != "const" or op.a.offset or kind != "child" or op.b.offset
            or component not in leaf.direct or b.ld != op.k * op.n
            or model.component(component).size != kc * op.n):
        return None
    words = leaf.tables[leaf.direct[component]].array
    weight = a.array.reshape(op.m_, op.k)
    return weight, words.reshape(len(words), kc, op.n)


def _products(weight: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``weight @ states[w]`` for every word ``w`` (float64 arithmetic, stored as float32),
    one row of ``m x n`` floats a word."""
    m, n = weight.shape[0], states.shape[2]
    out = np.empty((len(states), m * n), dtype=np.float32)
    w64 = weight.astype(np.float64)
    for start in range(0, len(states), TABLE_CHUNK // 16):
        chunk = states[start:start + TABLE_CHUNK // 16].astype(np.float64)
        out[start:start + len(chunk)] = np.matmul(w64, chunk).reshape(len(chunk), m * n)
    return out


def _stage_of(value: Value, raw_inputs: set[str], options: StageOptions) -> str:
    """The earliest stage that can compute ``value`` (see the module docstring)."""
    deps = value.deps
    if "state" in deps:
        return "level"
    if "dense" in deps or (deps and not options.precompute_vocab
                           and value.name not in raw_inputs):
        return "hoist"
    return "table" if deps else "const"


def _stage_cell(model: RecursiveModel, which: str, proto: onnx.ModelProto,
                offsets: dict[str, int], internal: bool, options: StageOptions) -> CellStages:
    """Stage one cell: tables for what the later stages read from the word-only part, the
    hoisted plan (leaf: it writes the state; internal: the hoisted buffer) and, for the
    internal cell, the level plan."""
    cell = CellGraph.parse(proto, f"model {model.name}, {which} cell")
    kinds = {f.name: (f.shape, "vocab" if f.is_vocab else "dense") for f in model.features}
    if internal:
        kinds.update({child_input(c.name, k): (c.shape, "state")
                      for c in model.state for k in range(model.arity)})
    analysis = lower_gemm(analyse(cell, kinds))
    if options.stack_siblings:
        analysis = stack_siblings(analysis)
    values = analysis.values
    raw = set(cell.inputs)
    stage = {name: _stage_of(v, raw, options) for name, v in values.items()}
    by_stage: dict[str, list[Step]] = {"table": [], "hoist": [], "level": []}
    for step in analysis.steps:
        by_stage[stage[step.outputs[0]]].append(step)
    outputs = [(c.name, cell.outputs[i]) for i, c in enumerate(model.state)]

    def used_by(target: str) -> list[str]:
        names = dict.fromkeys(n for s in by_stage[target] for n in s.inputs if n)
        if target == ("level" if internal else "hoist"):
            names.update(dict.fromkeys(out for _, out in outputs))
        return list(names)

    direct: dict[str, int] = {}
    table_values: list[str] = []
    for name in [*used_by("hoist"), *used_by("level")]:
        if stage[name] == "table" and name not in table_values:
            table_values.append(name)
    if not internal:  # leaf outputs that are tables go straight into the state
        for component, out in outputs:
            if stage[out] == "table":
                direct[component] = _index(table_values, out)
    tables = [Table(name, _evaluate_table(model, analysis, by_stage["table"], name))
              for name in table_values]

    hoisted = [n for n in used_by("level") if stage[n] == "hoist"] if internal else []
    hoisted_at, width = [], 0
    for name in hoisted:
        hoisted_at.append((name, width))
        width += values[name].width
    state_width = sum(c.size for c in model.state)
    if internal:
        hoist_outputs = [(n, width) for n in hoisted]
        hoist_offsets = [at for _, at in hoisted_at]
    else:
        hoist_outputs = [(out, state_width) for comp, out in outputs if comp not in direct]
        hoist_offsets = [offsets[comp] for comp, _ in outputs if comp not in direct]
    hoist_plan = None
    if hoist_outputs:
        groups = _groups(model, analysis, by_stage["hoist"], table_values, stage,
                         hoist_outputs, final_stage="hoist")
        hoist_plan = plan_stage(f"{which}_hoist", analysis, by_stage["hoist"], groups,
                                hoist_outputs)
    level_plan = None
    if internal:
        level_outputs = [(out, state_width) for _, out in outputs]
        groups = _groups(model, analysis, by_stage["level"], table_values, stage, level_outputs,
                         final_stage="level", hoisted=(hoisted, width))
        level_plan = plan_stage(f"{which}_level", analysis, by_stage["level"], groups,
                                level_outputs)
    return CellStages(tables, direct, hoist_plan, hoist_offsets, hoisted_at, width, level_plan)


def _index(items: list[str], item: str) -> int:
    """Position of ``item`` in ``items``, appended first if missing."""
    if item not in items:
        items.append(item)
    return items.index(item)


def _groups(model: RecursiveModel, analysis: Analysis, steps: Sequence[Step],
            table_values: list[str], stage: dict[str, str],
            outputs: Sequence[tuple[str, int]], final_stage: str,
            hoisted: tuple[list[str], int] | None = None) -> dict[str, tuple[list[str], int]]:
    """The input buffers of a runtime stage: what its steps (and copied outputs) read."""
    values = analysis.values
    needed = dict.fromkeys(n for s in steps for n in s.inputs if n)
    needed.update(dict.fromkeys(out for out, _ in outputs))
    produced = {o for s in steps for o in s.outputs}
    groups: dict[str, tuple[list[str], int]] = {}
    for c in model.state:
        kids = [child_input(c.name, k) for k in range(model.arity)]
        if any(k in needed for k in kids):
            groups[f"child:{c.name}"] = (kids, model.arity * c.size)
    for name in needed:
        if name in produced or values[name].const is not None:
            continue
        kind = stage[name]
        if kind == "table":
            groups[f"table:{table_values.index(name)}"] = ([name], values[name].width)
        elif kind == "hoist" and final_stage == "hoist":
            feature = model.feature(name)
            groups[f"feature:{feature.name}"] = ([name], values[name].width)
    if hoisted is not None and hoisted[0]:
        groups["hoisted"] = (hoisted[0], hoisted[1])
    return groups


def _evaluate_table(model: RecursiveModel, analysis: Analysis, steps: Sequence[Step],
                    value: str) -> np.ndarray:
    """``value`` for every vocabulary entry (float64 arithmetic, stored as float32)."""
    features = [f for f in model.features if f.is_vocab]
    for f in features:
        if f.name == value:
            return np.ascontiguousarray(f.table.reshape(len(f.table), -1), dtype=np.float32)
    vocab = model.vocab_size or 0
    out = np.empty((vocab, analysis.values[value].width), dtype=np.float32)
    consts = {n: v.const[None].astype(np.float64) if v.const.dtype.kind == "f" else v.const[None]
              for n, v in analysis.values.items() if v.const is not None}
    for start in range(0, vocab, TABLE_CHUNK):
        env = dict(consts)
        env.update({f.name: f.table[start:start + TABLE_CHUNK].astype(np.float64)
                    for f in features})
        for step in steps:
            results = run_step(step, [env[n] if n else None for n in step.inputs],
                               analysis.cell.name)
            env.update(zip(step.outputs, results, strict=True))
        rows = env[value]
        out[start:start + len(rows)] = rows.reshape(len(rows), -1)
    return out
