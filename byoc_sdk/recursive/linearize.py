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

from byoc_sdk.recursive.structure import CycleError, Structure


def node_levels(structure: Structure | np.ndarray, *, name: str = "structure") -> np.ndarray:
    """Each node's level (0 for leaves). Raises :class:`CycleError` naming a node of a cycle.

    Relaxes ``level = 1 + max(level of children)`` until nothing changes: as many vectorized
    steps as the structure is high.
    """
    if isinstance(structure, Structure):
        return structure.memo("levels", lambda: node_levels(structure.children,
                                                            name=structure.name))
    children = structure
    n = children.shape[0]
    present = children >= 0
    safe = np.where(present, children, 0)
    level = np.zeros(n, dtype=np.int32)
    for _ in range(n + 1):
        child_levels = np.where(present, level[safe], -1)
        new = child_levels.max(axis=1, initial=-1) + 1
        if np.array_equal(new, level):
            return level
        level = new.astype(np.int32)
    raise CycleError(f"{name}: nodes {_find_cycle(children)} form a cycle")


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
    if not structures:
        raise ValueError("linearize needs at least one structure")
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
