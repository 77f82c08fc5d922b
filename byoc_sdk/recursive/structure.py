"""Tree and DAG structures: which node's state feeds which.

A :class:`Structure` is one tree or DAG, stored as a child-index array: row ``v`` lists the
children of node ``v`` (``-1`` pads rows of nodes with fewer children than the widest).
It is the shape only; the words or features at its nodes travel separately. Structures are
checked when they are made, so a cycle, a child index that names no node or a tree node with
two parents is reported once, with the node named, instead of surfacing as a wrong answer or a
crash inside a compiled kernel.

Builders: :meth:`Structure.from_parents` (parent arrays, as in the SST data),
:meth:`Structure.from_nested` (nested tuples or lists), :meth:`Structure.from_children`
(child-index arrays), plus generators for complete, random binary and grid-shaped structures.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
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
        try:
            children = np.asarray(self.children)
        except ValueError as exc:  # ragged rows
            raise StructureError(f"{self.name}: children must be a 2-D integer array; for "
                                 f"ragged child lists use Structure.from_children ({exc})") from exc
        if children.ndim == 1:
            children = children.reshape(-1, 1) if children.size else children.reshape(0, 0)
        if children.ndim != 2:
            raise StructureError(f"{self.name}: children must be a 2-D integer array (row v: "
                                 f"node v's children), got shape {children.shape}")
        n = children.shape[0]
        if n >= 2**31:
            raise StructureError(f"{self.name}: {n} nodes do not fit 32-bit node indices")
        # Indices are range-checked in the caller's dtype before they are narrowed, so
        # 2**32 - 1 or 2**33 + 1 is reported instead of wrapping to -1 (a silently dropped
        # child) or to a valid node. The result is always a new array: the structure
        # locks it read-only and must not lock, or be changed through, the caller's.
        wide = _node_indices(children, n, self.name, "child", "structure")
        children = wide.astype(np.int32)
        children.setflags(write=False)
        object.__setattr__(self, "children", children)
        self._stats["levels"] = _check(children, self.kind, self.name)

    # --- builders -------------------------------------------------------------------

    @classmethod
    def from_children(
        cls, children: Sequence[Sequence[int]] | np.ndarray, *, kind: Kind = "tree",
        name: str = "structure",
    ) -> Structure:
        """From a child-index array or a list of child lists (ragged lists are padded).

        A 1-D array gives each node at most one child; a list must hold one list of child
        indices per node (``[[1, 2], [], []]``), so a flat list such as ``[1, 2, -1]`` is
        refused rather than guessed at. Indices must be integers: floats, bools and strings
        are refused, not rounded.
        """
        if isinstance(children, np.ndarray):
            return cls(children, kind, name)
        if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
            raise StructureError(f"{name}: children must be a 2-D integer array or a list of "
                                 f"child lists (one per node), got {type(children).__name__}")
        rows = list(children)
        for v, row in enumerate(rows):
            if (isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray))
                    or (isinstance(row, np.ndarray) and row.ndim != 1)):
                raise StructureError(f"{name}: children must hold one list of child indices "
                                     f"per node; node {v}'s entry is {row!r}")
        flat = [index for row in rows for index in row]
        # np.asarray would read True as 1 in a list that also holds ints.
        if any(isinstance(index, (bool, np.bool_)) for index in flat):
            raise StructureError(f"{name}: child indices must be integers, not bools")
        try:
            values = np.asarray(flat) if flat else np.zeros(0, dtype=np.int64)
        except ValueError:  # ragged lists inside a row
            values = np.zeros((0, 0))
        if values.ndim != 1:
            raise StructureError(f"{name}: each node's children must be a flat list of "
                                 "child indices, not nested lists")
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max(initial=0))
        wide = _node_indices(values, len(rows), name, "child", "structure",
                             owners=np.repeat(np.arange(len(rows)), lengths))
        array = np.full((len(rows), width), -1, dtype=np.int64)
        # Row-major order of the mask is the order of ``flat``: row by row, left to right.
        array[np.arange(width) < lengths[:, None]] = wide
        return cls(array, kind, name)

    @classmethod
    def from_parents(cls, parents: Sequence[int] | np.ndarray, *, name: str = "tree") -> Structure:
        """From a parent array: ``parents[v]`` is node ``v``'s parent, ``-1`` for the root.

        Children are listed in node order (the SST convention: left child first). Parents
        must be integers: floats, bools and strings are refused, not rounded.
        """
        if isinstance(parents, (str, bytes)):
            raise StructureError(f"{name}: parents must be a 1-D sequence of parent indices, "
                                 "got a string")
        try:
            given = np.asarray(parents)
        except ValueError as exc:  # ragged nesting
            raise StructureError(f"{name}: parents must be a 1-D sequence of parent "
                                 f"indices ({exc})") from exc
        if given.ndim != 1:
            raise StructureError(f"{name}: parents must be a 1-D sequence of parent indices, "
                                 f"got {type(parents).__name__} of shape {given.shape}")
        # np.asarray would read True as 1 in a list that also holds ints.
        if not isinstance(parents, np.ndarray) and any(
                isinstance(p, (bool, np.bool_)) for p in parents):
            raise StructureError(f"{name}: parent indices must be integers, not bools")
        n = len(given)
        if n == 0:  # checked before the dtype: np.asarray([]) is float64
            raise StructureError(f"{name}: parents is empty; a tree needs at least one node")
        parents = _node_indices(given, n, name, "parent", "tree")
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
        """From nested tuples or lists: a tuple or list is an internal node of its items,
        anything else (a word, a number, None) a leaf.

        ``((a, b), c)`` and ``[[a, b], c]`` are a root with children ``(a, b)`` and ``c``.
        Nodes are numbered in post-order, so the root is the last node. An empty tuple or
        list is refused: it would be an internal node without children.
        """
        rows: list[list[int]] = []
        # Iterative post-order: deep trees must not hit Python's recursion limit.
        stack: list[tuple[Any, list[int] | None]] = [(nested, None)]
        results: list[int] = []
        while stack:
            item, done = stack.pop()
            if isinstance(item, (tuple, list)) and done is None:
                if not item:
                    raise StructureError(f"{name}: an empty {type(item).__name__} is not a "
                                         "node (a node is a leaf or has children)")
                stack.append((item, []))
                stack.extend((child, None) for child in reversed(item))
                continue
            if isinstance(item, (tuple, list)):
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


def _node_indices(values: np.ndarray, n: int, name: str, noun: str, whole: str, *,
                  owners: np.ndarray | None = None) -> np.ndarray:
    """``values`` (``noun`` indices, ``-1`` for none) as a new int64 array, once every one
    is checked to be an integer that names one of the ``n`` nodes of the ``whole``.

    The checks run on the values as given, before any cast: a cast would round 2.7 to 2,
    wrap the uint64 2**64 - 1 to -1 (no parent, so a second root) and, narrowed to int32,
    2**33 + 1 to node 1. ``owners[i]`` is the node that names flat value ``i``; by default
    the row (2-D ``values``) or the position (1-D).
    """
    def owner(flat: int) -> int:
        if owners is not None:
            return int(owners[flat])
        return int(np.unravel_index(flat, values.shape)[0])

    def missing(flat: int, value: int) -> MissingChildError:
        return MissingChildError(f"{name}: node {owner(flat)} names {noun} {value}, which is "
                                 f"not a node (the {whole} has {n} nodes)")

    flat_values = values.reshape(-1)
    if values.dtype == np.object_:
        # What numpy could not store as a number: Python ints beyond 64 bits, None, a mix.
        for i, value in enumerate(flat_values.tolist()):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise StructureError(f"{name}: {noun} indices must be integers; node "
                                     f"{owner(i)} names {value!r}")
            if not -1 <= value < n:
                raise missing(i, int(value))
        return flat_values.astype(np.int64).reshape(values.shape)
    if values.dtype.kind not in "iu":
        example = f"; node {owner(0)} names {flat_values[0].item()!r}" if values.size else ""
        raise StructureError(f"{name}: {noun} indices must be integers, got {values.dtype} "
                             f"values{example} (convert them explicitly if they are whole)")
    if values.dtype == np.uint64:
        bad = flat_values >= np.uint64(n)  # compared as uint64: exact, no cast
    else:
        wide = flat_values.astype(np.int64)  # exact for every other integer type
        bad = (wide < -1) | (wide >= n)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise missing(i, int(flat_values[i]))
    return flat_values.astype(np.int64).reshape(values.shape)


def _check(children: np.ndarray, kind: Kind, name: str) -> np.ndarray:
    """Padding, duplicates, parents per node (trees) and cycles; returns the node levels."""
    if kind not in ("tree", "dag"):
        raise StructureError(f"{name}: kind must be 'tree' or 'dag', not {kind!r}")
    n = children.shape[0]
    if n == 0:
        raise StructureError(f"{name}: a structure needs at least one node")
    # Index ranges were checked before the narrowing cast (``_node_indices``).
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


def whole_number(value: object, where: str, what: str, minimum: int,
                 error: type[ByocError] = StructureError) -> int:
    """``value`` as an int, refused (as ``error``) unless it is an integer (numpy's too, but
    no bool) of at least ``minimum``: a float or a negative count has nothing to build."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise error(f"{where}: {what} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise error(f"{where}: {what} must be >= {minimum}, got {value}")
    return int(value)


def complete_tree(height: int, arity: int = 2, *, name: str | None = None) -> Structure:
    """The complete tree of ``height`` edges root to leaf (``arity**height`` leaves).

    Nodes are numbered level by level from the leaves, so the root is the last node.
    """
    height = whole_number(height, "complete_tree", "height", 0)
    arity = whole_number(arity, "complete_tree", "arity", 1)
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
    num_leaves = whole_number(num_leaves, "random_binary_tree", "num_leaves", 1)
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
    rows = whole_number(rows, "grid_dag", "rows", 1)
    cols = whole_number(cols, "grid_dag", "cols", 1)
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
    num_nodes = whole_number(num_nodes, "random_dag", "num_nodes", 1)
    max_preds = whole_number(max_preds, "random_dag", "max_preds", 0)
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
                where = f"{Path(path).name}:{number}"
                try:
                    parents = [int(token) for token in line.split()]
                except ValueError as exc:
                    raise StructureError(f"{where}: parent indices must be integers "
                                         f"({exc})") from exc
                trees.append(Structure.from_parents(parents, name=where))
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
