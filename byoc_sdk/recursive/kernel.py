"""What a compiled recursive model's module takes and where its work memory goes.

Shared by the C and CUDA codegens and by the Python runner, so that the three agree on one
statement of the entry's inputs and outputs and of the work buffers' layout.

Entry inputs, in order: ``sizes`` (int64 ``[3]``: nodes, structures, whether to write every
node's state), ``children`` (int32 ``[cap, arity]``, each structure's own numbering, ``-1``
padded), ``tree_sizes`` (int32 ``[cap]``), then ``words`` (int32 ``[cap]``) when the model has
a vocabulary, and one float32 ``[cap, width]`` array per dense feature. The constants
(:attr:`KernelSpec.constants`: tables, then weights) go to ``<entry>_init`` once, not to
every call (the cuda module uploads them there). Outputs: ``roots`` and ``nodes``
(float32 ``[cap, state]``), then the int32 and float32 work buffers. ``cap`` is the node
capacity of the call: the runner keeps one bound function per power-of-two capacity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from byoc_sdk.recursive.cells import Feature, RecursiveModel
from byoc_sdk.recursive.lowering import Gemm, Plan
from byoc_sdk.recursive.stages import ModelStages

#: Columns per packed weight panel (the C GEMM walks one panel at a time).
PANEL = 64
#: Bytes per cache line (x86-64, most arm64): where each weight starts.
CACHE_LINE = 64
PACKED = "@packed"

#: The int32 work arrays, in order: (name, entries per node, per node and child, extra).
#: ``lstart`` holds up to cap + 1 level bounds; ``leafword`` the word of each leaf child
#: (-1 for an internal child, -2 for a missing one), for GEMMs with leaf-child tables.
INT_WORK = (("gchild", 0, 1, 0), ("level", 1, 0, 0), ("order", 1, 0, 0), ("pos", 1, 0, 0),
            ("lstart", 1, 0, 2), ("stack", 1, 0, 0), ("nextk", 1, 0, 0), ("lchild", 0, 1, 0),
            ("leafword", 0, 1, 0))


@dataclass
class KernelSpec:
    """A staged model plus everything the codegens decide about memory."""

    stages: ModelStages
    chunk_rows: int
    entry: str
    constants: list[np.ndarray] = field(default_factory=list, repr=False)
    const_index: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def model(self) -> RecursiveModel:
        return self.stages.model

    @property
    def arity(self) -> int:
        return self.model.arity

    @property
    def state_width(self) -> int:
        return self.model.state_size

    @property
    def dense(self) -> list[Feature]:
        return [f for f in self.model.features if not f.is_vocab]

    @property
    def has_words(self) -> bool:
        return self.model.vocab_size is not None

    @property
    def leaf_words(self) -> bool:
        """Whether the level stage reads its children's words (leaf-child tables)."""
        level = self.stages.internal.level
        return level is not None and any(isinstance(op, Gemm) and op.leaf_tables
                                         for op in level.ops)

    def plans(self) -> Iterator[Plan]:
        for cell in (self.stages.leaf, self.stages.internal):
            for plan in (cell.hoist, cell.level):
                if plan is not None:
                    yield plan

    def float_regions(self) -> list[tuple[str, int, int]]:
        """Float work regions: (name, floats per unit of capacity, fixed floats)."""
        r = self.chunk_rows
        regions = [("states", self.state_width, 0),
                   ("hoisted", self.stages.internal.hoisted_width, 0)]
        for plan in self.plans():
            for name, buffer in plan.buffers.items():
                if buffer.kind == "input" and name != "hoisted":
                    regions.append((gather_name(plan, name), 0, r * buffer.ld))
        regions.append(("scratch", 0, r * max((p.scratch_width for p in self.plans()),
                                             default=0)))
        return regions

    def float_work(self, cap: int) -> int:
        return sum(per * cap + fixed for _, per, fixed in self.float_regions())

    def int_work(self, cap: int) -> int:
        return sum(n * cap + a * cap * self.arity + extra for _, n, a, extra in INT_WORK)

    def input_specs(self, cap: int) -> list[tuple[np.dtype, tuple[int, ...]]]:
        specs = [(np.dtype(np.int64), (3,)), (np.dtype(np.int32), (cap, self.arity)),
                 (np.dtype(np.int32), (cap,))]
        if self.has_words:
            specs.append((np.dtype(np.int32), (cap,)))
        specs += [(np.dtype(np.float32), (cap, int(np.prod(f.shape)))) for f in self.dense]
        return specs

    def output_specs(self, cap: int) -> list[tuple[np.dtype, tuple[int, ...]]]:
        s = self.state_width
        return [(np.dtype(np.float32), (cap, s)), (np.dtype(np.float32), (cap, s)),
                (np.dtype(np.int32), (self.int_work(cap),)),
                (np.dtype(np.float32), (self.float_work(cap),))]

    def const(self, plan: Plan, buffer: str, packed: bool = False) -> int:
        """Index of a plan's constant among the entry's inputs (``packed``: its panel copy)."""
        key = (plan.name.split("_")[0], buffer + (PACKED if packed else ""))
        return self.const_index[key]


def int_layout(cap: int, arity: int) -> dict[str, int]:
    """Where each int32 work array starts (the C driver lays them out in this order)."""
    offsets, at = {}, 0
    for name, per_node, per_arity, extra in INT_WORK:
        offsets[name] = at
        at += per_node * cap + per_arity * cap * arity + extra
    return offsets


def gather_name(plan: Plan, buffer: str) -> str:
    """The C name of the gather buffer feeding ``buffer`` of ``plan``."""
    return f"g_{plan.name}_" + "".join(c if c.isalnum() else "_" for c in buffer)


def make_spec(stages: ModelStages, entry: str, chunk_rows: int | None = None) -> KernelSpec:
    """Choose the chunk size and number the constants (tables first, then weights)."""
    spec = KernelSpec(stages, chunk_rows or default_chunk_rows(stages), entry)
    for cell, tables in (("leaf", stages.leaf.tables), ("internal", stages.internal.tables)):
        for i, table in enumerate(tables):
            spec.const_index[(cell, f"table:{i}")] = len(spec.constants)
            spec.constants.append(np.ascontiguousarray(table.array, dtype=np.float32))
    for plan in spec.plans():
        cell = plan.name.split("_")[0]
        weights = {op.b.buffer for op in plan.ops if isinstance(op, Gemm) and op.rows}
        for name, buffer in plan.buffers.items():
            if buffer.kind != "const":
                continue
            if name in weights and (cell, name + PACKED) not in spec.const_index:
                spec.const_index[(cell, name + PACKED)] = len(spec.constants)
                spec.constants.append(pack_panels(buffer.array.reshape(-1, buffer.array.shape[-1])))
            if (cell, name) not in spec.const_index:
                spec.const_index[(cell, name)] = len(spec.constants)
                spec.constants.append(np.ascontiguousarray(buffer.array, dtype=np.float32))
    tables = len(stages.leaf.tables) + len(stages.internal.tables)
    spec.constants[tables:] = cache_aligned(spec.constants[tables:])
    return spec


def cache_aligned(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Copies of ``arrays`` side by side in one block, each starting on a
    :data:`CACHE_LINE` boundary.

    For the weights: numpy puts an array of this size 16, 32 or 48 bytes past a cache
    line, so every 16-float load of a packed panel row straddled two lines; a batch-1
    level, which streams every weight for one or two rows, paid for each split load
    (docs/recursive.md, "Batch-1 fixed cost", has the numbers). The vocabulary tables stay
    where they are: copying them would double their memory, and a level reads only a few
    of their rows.
    """
    spans = [-(-a.nbytes // CACHE_LINE) * CACHE_LINE for a in arrays]
    raw = np.empty(sum(spans) + CACHE_LINE, np.uint8)
    at = -raw.ctypes.data % CACHE_LINE
    copies = []
    for array, span in zip(arrays, spans, strict=True):
        copy = raw[at:at + array.nbytes].view(array.dtype).reshape(array.shape)
        copy[...] = array
        copies.append(copy)
        at += span
    return copies


def pack_panels(weight: np.ndarray) -> np.ndarray:
    """``weight`` [K, N] as column panels of :data:`PANEL` columns, each ``[K, width]``
    contiguous, one after another: a GEMM streams each panel front to back."""
    panels = [weight[:, j:j + PANEL].ravel() for j in range(0, weight.shape[1], PANEL)]
    return np.ascontiguousarray(np.concatenate(panels), dtype=np.float32)


def default_chunk_rows(stages: ModelStages) -> int:
    """Rows a stage processes at once: as many as keep one chunk's temporaries near 1 MiB
    (so they stay in L2 between ops), between 8 and 128, a power of two."""
    plans = [p for c in (stages.leaf, stages.internal) for p in (c.hoist, c.level) if p]
    per_row = max((p.scratch_width + sum(b.ld for b in p.buffers.values() if b.kind == "input")
                   for p in plans), default=1)
    rows = 262144 // max(per_row, 1)
    return int(min(128, max(8, 2 ** int(math.log2(max(rows, 1))))))
