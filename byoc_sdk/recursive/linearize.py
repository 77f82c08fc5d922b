"""Linearization: one numbering of a batch of structures in which every level is a range.

A node's *level* is 0 for a leaf and one more than its highest child's otherwise, so every
node's children sit on lower levels: once levels ``0..l-1`` are computed, all of level ``l``
can be computed at once. Numbering the nodes of a whole batch by (level, batch position) —
a stable counting sort — makes the leaves the range ``[0, level_starts[1])`` and level ``l``
the range ``[level_starts[l], level_starts[l+1])``, so a kernel walks levels as loop bounds
and finds each child's state by index. This is Cortex's linearization.

This module is the readable numpy statement of the numbering; compiled kernels carry the same
pass in C (``codegen_c.LINEARIZE_C``) so that it runs inside the call, and the tests check that
both give the same numbering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from byoc_sdk.recursive.structure import CycleError, Structure, StructureError


def node_levels(structure: Structure | np.ndarray, *, name: str = "structure") -> np.ndarray:
    """Each node's level (0 for leaves). Raises :class:`CycleError` naming a node of a cycle.

    One pass in topological order (Kahn's algorithm): a node is taken once its last child
    is, and raises each parent's level to its own plus one. That is O(nodes + edges) however
    high the structure is; relaxing all nodes once per level instead costs nodes x height,
    minutes for a 100k-node chain. Nodes never taken lie on or above a cycle.
    """
    if isinstance(structure, Structure):
        return structure.memo("levels", lambda: node_levels(structure.children,
                                                            name=structure.name))
    children = structure
    n = children.shape[0]
    present = children >= 0
    rows, cols = np.nonzero(present)
    named = children[rows, cols].astype(np.int64)
    # Each node's parents, as a CSR list: parents[starts[v]:starts[v + 1]].
    parents = rows[np.argsort(named, kind="stable")].tolist()
    starts = np.concatenate(([0], np.cumsum(np.bincount(named, minlength=n)))).tolist()
    waiting = present.sum(axis=1)  # children not yet taken
    ready = np.flatnonzero(waiting == 0).tolist()
    waiting_list = waiting.tolist()
    # Python lists, not numpy scalars: the loop touches one element at a time.
    level = [0] * n
    taken = 0
    while ready:
        v = ready.pop()
        taken += 1
        above = level[v] + 1
        for p in parents[starts[v]:starts[v + 1]]:
            if level[p] < above:
                level[p] = above
            waiting_list[p] -= 1
            if not waiting_list[p]:
                ready.append(p)
    if taken < n:
        cycle = _find_cycle(children)
        if len(cycle) > 12:  # a long cycle is named by its start, not printed whole
            shown = ", ".join(str(v) for v in cycle[:10])
            raise CycleError(f"{name}: nodes [{shown}, ...] form a cycle of "
                             f"{len(cycle) - 1} nodes")
        raise CycleError(f"{name}: nodes {cycle} form a cycle")
    return np.array(level, dtype=np.int32)


def _find_cycle(children: np.ndarray) -> list[int]:
    """The nodes of one cycle, in order (only called once a cycle is known to exist)."""
    state = np.zeros(len(children), dtype=np.int8)  # 0 new, 1 on the path, 2 done
    for start in range(len(children)):
        if state[start]:
            continue
        path, iters = [start], [iter(children[start][children[start] >= 0].tolist())]
        state[start] = 1
        while path:
            child = next(iters[-1], None)
            if child is None:
                state[path.pop()] = 2
                iters.pop()
            elif state[child] == 1:
                return [*path[path.index(child):], child]
            elif state[child] == 0:
                state[child] = 1
                path.append(child)
                iters.append(iter(children[child][children[child] >= 0].tolist()))
    return []


@dataclass(frozen=True)
class Linearization:
    """A batch numbered level by level.

    Batch indices number the nodes of structure ``s`` from ``offsets[s]``. ``order[p]`` is the
    batch index of the node at position ``p``; ``position`` is its inverse. ``level_starts``
    bounds the levels (``level_starts[0] == 0``, level ``l`` is ``[level_starts[l],
    level_starts[l+1])``). ``children`` are positions of each position's children (``-1``
    padded); ``roots`` are the batch indices of the roots, structure by structure, and
    ``root_structure`` says whose each is.
    """

    order: np.ndarray
    position: np.ndarray
    level_starts: np.ndarray
    children: np.ndarray
    roots: np.ndarray
    root_structure: np.ndarray
    offsets: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.order)

    @property
    def num_levels(self) -> int:
        return len(self.level_starts) - 1

    def level(self, index: int) -> range:
        return range(int(self.level_starts[index]), int(self.level_starts[index + 1]))


def linearize(structures: Sequence[Structure]) -> Linearization:
    """Number the nodes of ``structures`` (a batch) so that every level is a contiguous range."""
    structures = list(structures)
    if not structures:
        raise StructureError("linearize: the batch is empty; it needs at least one structure")
    for i, s in enumerate(structures):
        if not isinstance(s, Structure):
            raise StructureError(f"linearize: batch item {i} is a {type(s).__name__}, not a "
                                 "Structure (build one with Structure.from_parents, "
                                 "from_nested or from_children)")
    sizes = np.array([s.num_nodes for s in structures], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    width = max(s.max_arity for s in structures)
    children = np.full((int(offsets[-1]), width), -1, dtype=np.int64)
    for s, start in zip(structures, offsets[:-1], strict=False):
        local = s.children
        children[start:start + s.num_nodes, : local.shape[1]] = np.where(
            local >= 0, local + start, -1)
    levels = np.concatenate([node_levels(s) for s in structures])
    order = np.argsort(levels, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    counts = np.bincount(levels)
    level_starts = np.concatenate(([0], np.cumsum(counts)))
    moved = children[order]
    linear_children = np.where(moved >= 0, position[np.maximum(moved, 0)], -1)
    roots = np.concatenate([s.roots + start for s, start in zip(structures, offsets, strict=False)])
    root_structure = np.repeat(np.arange(len(structures)), [len(s.roots) for s in structures])
    return Linearization(order, position, level_starts, linear_children.astype(np.int32),
                         roots, root_structure, offsets)
