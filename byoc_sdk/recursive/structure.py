"""Tree and DAG structures: which node's state feeds which.

A :class:`Structure` is one tree or DAG, stored as a child-index array: row ``v`` lists the
children of node ``v`` (``-1`` pads rows of nodes with fewer children than the widest).
It is the shape only; the words or features at its nodes travel separately. Structures are
checked when they are made, so a cycle, a child index that names no node or a tree node with
two parents is reported once, with the node named, instead of surfacing as a wrong answer or a
crash inside a compiled kernel.

Builders: :meth:`Structure.from_parents` (parent arrays, as in the SST data),
:meth:`Structure.from_nested` (nested tuples), :meth:`Structure.from_children`
(child-index arrays), plus generators for complete, random binary and grid-shaped structures.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from byoc_sdk.errors import ByocError

Kind = Literal["tree", "dag"]


class StructureError(ByocError):
    """A tree or DAG is malformed. The message names the structure and the node."""


class CycleError(StructureError):
    """Nodes depend on each other in a loop, so no node of the loop can ever be computed."""


class MissingChildError(StructureError):
    """A node names a child that does not exist."""


class ArityError(StructureError):
    """A node has a number of children the model's cell does not take."""


@dataclass(frozen=True, eq=False)
class Structure:
    """One tree or DAG: ``children[v]`` are node ``v``'s children, ``-1`` padded.

    ``name`` appears in every error about the structure. Use the ``from_*`` builders, which
    check the structure; the constructor checks it too.
    """

    children: np.ndarray
    kind: Kind = "tree"
    name: str = "structure"
    _stats: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        children = np.asarray(self.children)
        if children.ndim == 1:
            children = children.reshape(-1, 1) if children.size else children.reshape(0, 0)
        if children.ndim != 2 or not np.issubdtype(children.dtype, np.integer):
            raise StructureError(f"{self.name}: children must be a 2-D integer array, "
                                 f"got {children.dtype} of shape {children.shape}")
        children = np.ascontiguousarray(children, dtype=np.int32)
        children.setflags(write=False)
        object.__setattr__(self, "children", children)
        self._stats["levels"] = _check(children, self.kind, self.name)

    # --- builders -------------------------------------------------------------------

    @classmethod
    def from_children(
        cls, children: Sequence[Sequence[int]] | np.ndarray, *, kind: Kind = "tree",
        name: str = "structure",
    ) -> Structure:
        """From a child-index array or a list of child lists (ragged lists are padded)."""
        if isinstance(children, np.ndarray):
            return cls(children, kind, name)
        rows = [list(row) for row in children]
        width = max((len(row) for row in rows), default=0)
        array = np.full((len(rows), width), -1, dtype=np.int64)
        for v, row in enumerate(rows):
            array[v, : len(row)] = row
        return cls(array, kind, name)

    @classmethod
    def from_parents(cls, parents: Sequence[int] | np.ndarray, *, name: str = "tree") -> Structure:
        """From a parent array: ``parents[v]`` is node ``v``'s parent, ``-1`` for the root.

        Children are listed in node order (the SST convention: left child first).
        """
        parents = np.asarray(parents, dtype=np.int64)
        n = len(parents)
        bad = np.flatnonzero((parents < -1) | (parents >= n))
        if bad.size:
            v = int(bad[0])
            raise MissingChildError(f"{name}: node {v} names parent {int(parents[v])}, "
                                    f"which is not a node (the tree has {n} nodes)")
        roots = np.flatnonzero(parents == -1)
        if roots.size != 1:
            raise StructureError(f"{name}: a tree has exactly one root (parent -1), "
                                 f"found {roots.size}: nodes {roots[:5].tolist()}")
        has_parent = parents >= 0
        nodes = np.flatnonzero(has_parent)
        # Stable sort by parent: each parent's children stay in node order.
        by_parent = nodes[np.argsort(parents[nodes], kind="stable")]
        counts = np.bincount(parents[nodes], minlength=n)
        width = int(counts.max(initial=0))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        slot = np.arange(len(by_parent)) - starts[parents[by_parent]]
        children = np.full((n, width), -1, dtype=np.int32)
        children[parents[by_parent], slot] = by_parent
        return cls(children, "tree", name)

    @classmethod
    def from_nested(cls, nested: Any, *, name: str = "tree") -> Structure:
        """From nested tuples: a tuple is an internal node of its items, anything else a leaf.

        ``((a, b), c)`` is a root with children ``(a, b)`` and ``c``. Nodes are numbered in
        post-order, so the root is the last node.
        """
        rows: list[list[int]] = []
        # Iterative post-order: deep trees must not hit Python's recursion limit.
        stack: list[tuple[Any, list[int] | None]] = [(nested, None)]
        results: list[int] = []
        while stack:
            item, done = stack.pop()
            if isinstance(item, tuple) and done is None:
                if not item:
                    raise StructureError(f"{name}: an empty tuple is not a node")
                stack.append((item, []))
                stack.extend((child, None) for child in reversed(item))
                continue
            if isinstance(item, tuple):
                kids = results[len(results) - len(item):]
                del results[len(results) - len(item):]
                rows.append(kids)
            else:
                rows.append([])
            results.append(len(rows) - 1)
        return cls.from_children(rows, kind="tree", name=name)

    # --- properties -----------------------------------------------------------------

    @property
    def num_nodes(self) -> int:
        return int(self.children.shape[0])

    @property
    def max_arity(self) -> int:
        return int(self.children.shape[1])

    @property
    def num_children(self) -> np.ndarray:
        """How many children each node has."""
        return self.memo("num_children", lambda: (self.children >= 0).sum(axis=1))

    @property
    def arities(self) -> frozenset[int]:
        """The distinct child counts of internal nodes."""
        return self.memo(
            "arities", lambda: frozenset(int(a) for a in np.unique(self.num_children) if a))

    @property
    def leaves(self) -> np.ndarray:
        """Indices of the nodes without children."""
        return self.memo("leaves", lambda: np.flatnonzero(self.num_children == 0))

    @property
    def roots(self) -> np.ndarray:
        """Indices of the nodes no node names as a child (a tree has one)."""
        def find() -> np.ndarray:
            named = np.zeros(self.num_nodes, dtype=bool)
            named[self.children[self.children >= 0]] = True
            return np.flatnonzero(~named)
        return self.memo("roots", find)

    @property
    def height(self) -> int:
        """The number of edges on the longest leaf-to-root path."""
        from byoc_sdk.recursive.linearize import node_levels

        return self.memo("height", lambda: int(node_levels(self).max(initial=0)))

    def memo(self, key: Any, compute: Any) -> Any:
        """``compute()``, once per structure and ``key``: facts about a structure (its
        levels, its children padded to a model's arity) are computed on first use only."""
        if key not in self._stats:
            self._stats[key] = compute()
        return self._stats[key]

    def __repr__(self) -> str:
        return (f"Structure({self.name!r}, {self.kind}, {self.num_nodes} nodes, "
                f"{len(self.leaves)} leaves)")


def check_arity(structure: Structure, arity: int, *, allow_fewer: bool = False) -> None:
    """Raise :class:`ArityError` when an internal node has a child count the cell does not take.

    ``allow_fewer`` accepts 1..``arity`` children (a DAG cell that pads missing
    predecessors with zero states).
    """
    counts = structure.num_children
    bad = (counts > arity) if allow_fewer else ((counts != 0) & (counts != arity))
    if bad.any():
        v = int(np.flatnonzero(bad)[0])
        wanted = f"1 to {arity}" if allow_fewer else str(arity)
        raise ArityError(f"{structure.name}: node {v} has {int(counts[v])} children, "
                         f"the model's internal cell takes {wanted}")


# --- checks -------------------------------------------------------------------------


def _check(children: np.ndarray, kind: Kind, name: str) -> np.ndarray:
    """Ranges, duplicates, parents per node (trees) and cycles; returns the node levels."""
    if kind not in ("tree", "dag"):
        raise StructureError(f"{name}: kind must be 'tree' or 'dag', not {kind!r}")
    n = children.shape[0]
    if n == 0:
        raise StructureError(f"{name}: a structure needs at least one node")
    bad = (children < -1) | (children >= n)
    if bad.any():
        v, k = (int(i) for i in np.argwhere(bad)[0])
        raise MissingChildError(f"{name}: node {v} names child {int(children[v, k])}, "
                                f"which is not a node (the structure has {n} nodes)")
    _check_padding(children, name)
    named = children[children >= 0]
    if kind == "tree":
        counts = np.bincount(named, minlength=n)
        if (counts > 1).any():
            v = int(np.flatnonzero(counts > 1)[0])
            parents = np.flatnonzero((children == v).any(axis=1))[:3].tolist()
            raise StructureError(f"{name}: node {v} has {int(counts[v])} parents "
                                 f"(nodes {parents}); in a tree every node has at most one "
                                 "(use kind='dag' for shared nodes)")
    from byoc_sdk.recursive.linearize import node_levels

    levels = node_levels(children, name=name)  # raises CycleError
    if kind == "tree":
        roots = np.flatnonzero(np.bincount(named, minlength=n) == 0)
        if roots.size != 1:
            raise StructureError(f"{name}: a tree has one root, found {roots.size} "
                                 f"(nodes {roots[:5].tolist()} are nobody's child)")
    return levels


def _check_padding(children: np.ndarray, name: str) -> None:
    """Children fill each row from the left; a node names each child once."""
    present = children >= 0
    if present.shape[1] > 1:
        gaps = ~present[:, :-1] & present[:, 1:]
        if gaps.any():
            v = int(np.flatnonzero(gaps.any(axis=1))[0])
            raise StructureError(f"{name}: node {v} has a gap in its children "
                                 f"{children[v].tolist()} (-1 may only pad the end)")
        ordered = np.sort(np.where(present, children, -1 - np.arange(children.shape[1])), axis=1)
        dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if dup.any():
            v = int(np.flatnonzero(dup.any(axis=1))[0])
            raise StructureError(f"{name}: node {v} names the same child twice "
                                 f"{children[v].tolist()}")
    self_loop = (children == np.arange(len(children))[:, None]).any(axis=1)
    if self_loop.any():
        v = int(np.flatnonzero(self_loop)[0])
        raise CycleError(f"{name}: node {v} is its own child")


# --- generators ---------------------------------------------------------------------


def complete_tree(height: int, arity: int = 2, *, name: str | None = None) -> Structure:
    """The complete tree of ``height`` edges root to leaf (``arity**height`` leaves).

    Nodes are numbered level by level from the leaves, so the root is the last node.
    """
    if height < 0 or arity < 1:
        raise ValueError("height must be >= 0 and arity >= 1")
    rows: list[list[int]] = [[] for _ in range(arity ** height)]
    level = list(range(len(rows)))
    while len(level) > 1:
        parents = []
        for start in range(0, len(level), arity):
            rows.append(level[start:start + arity])
            parents.append(len(rows) - 1)
        level = parents
    return Structure.from_children(rows, name=name or f"complete tree of height {height}")


def random_binary_tree(
    num_leaves: int, rng: np.random.Generator, *, name: str | None = None
) -> Structure:
    """A binary tree with ``num_leaves`` leaves, merged in random adjacent pairs.

    Adjacent merges give parse-tree-like shapes (and keep leaf order left to right).
    """
    if num_leaves < 1:
        raise ValueError("a tree needs at least one leaf")
    rows: list[list[int]] = [[] for _ in range(num_leaves)]
    frontier = list(range(num_leaves))
    while len(frontier) > 1:
        i = int(rng.integers(len(frontier) - 1))
        rows.append([frontier[i], frontier[i + 1]])
        frontier[i:i + 2] = [len(rows) - 1]
    return Structure.from_children(rows, name=name or f"random tree of {num_leaves} leaves")


def grid_dag(rows: int, cols: int, *, name: str | None = None) -> Structure:
    """The DAG-RNN grid: node ``(i, j)`` has predecessors ``(i-1, j)`` and ``(i, j-1)``.

    Node ``(i, j)`` is number ``i * cols + j``; ``(0, 0)`` is the only leaf and the bottom
    right node the only root. Border nodes have one predecessor.
    """
    children = np.full((rows * cols, 2), -1, dtype=np.int64)
    for i in range(rows):
        for j in range(cols):
            preds = ([(i - 1) * cols + j] if i else []) + ([i * cols + j - 1] if j else [])
            children[i * cols + j, : len(preds)] = preds
    return Structure(children, "dag", name or f"{rows}x{cols} grid")


def random_dag(
    num_nodes: int, max_preds: int, rng: np.random.Generator, *, name: str | None = None
) -> Structure:
    """A random DAG: each node takes up to ``max_preds`` distinct earlier nodes as children."""
    children = np.full((num_nodes, max_preds), -1, dtype=np.int64)
    for v in range(1, num_nodes):
        count = int(rng.integers(0, min(v, max_preds) + 1))
        if count:
            children[v, :count] = rng.choice(v, size=count, replace=False)
    return Structure(children, "dag", name or f"random dag of {num_nodes} nodes")


def load_parent_arrays(path: str | Path, limit: int | None = None) -> list[Structure]:
    """Trees from a file of parent arrays, one tree a line (``sst_tree_parents.txt``)."""
    trees = []
    with open(path) as lines:
        for number, line in enumerate(lines, start=1):
            if limit is not None and len(trees) >= limit:
                break
            if line.strip():
                parents = np.array(line.split(), dtype=np.int64)
                trees.append(Structure.from_parents(parents, name=f"{Path(path).name}:{number}"))
    return trees


@functools.cache
def _sst_path() -> Path:
    """``BYOC_SST_DATA`` if set, else ``shared/data/sst_tree_parents.txt`` beside the
    repository, found from the current folder or from this module (in a checkout, or
    in a virtual environment inside one)."""
    configured = os.environ.get("BYOC_SST_DATA")
    if configured:
        return Path(configured)
    for start in (Path.cwd().resolve(), Path(__file__).resolve()):
        for parent in (start, *start.parents):
            candidate = parent.parent / "shared" / "data" / "sst_tree_parents.txt"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        "sst_tree_parents.txt not found beside the repository (../shared/data); "
        "set BYOC_SST_DATA to its path"
    )


def sst_trees(limit: int | None = None, path: str | Path | None = None) -> list[Structure]:
    """The SST parse-tree shapes (``../shared/data/sst_tree_parents.txt`` by default)."""
    return load_parent_arrays(path or _sst_path(), limit)
