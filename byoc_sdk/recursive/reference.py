"""Plain numpy reference: run a model's cells node by node over each structure.

No linearization, no batching across nodes, no hoisting: every node is computed from its
children in a topological order, with the cell graphs interpreted op by op in float64. It is
what compiled kernels are checked against. Also here: checking a batch's node inputs (shared
with the compiled models) and the result type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from byoc_sdk.errors import ByocError
from byoc_sdk.recursive.cells import RecursiveModel, child_input
from byoc_sdk.recursive.linearize import node_levels
from byoc_sdk.recursive.ops import CellGraph
from byoc_sdk.recursive.structure import Structure, check_arity

NodeFeatures = Mapping[str, np.ndarray]


class RecursiveInputError(ByocError):
    """The words or features given for a batch do not fit its structures or the model."""


@dataclass(frozen=True)
class Batch:
    """A checked batch: structures, word ids (int32, one array each) and dense features."""

    structures: tuple[Structure, ...]
    words: tuple[np.ndarray, ...] | None
    features: tuple[dict[str, np.ndarray], ...] | None


def check_batch(
    model: RecursiveModel,
    structures: Sequence[Structure],
    words: Sequence[np.ndarray] | None = None,
    features: Sequence[NodeFeatures] | None = None,
) -> Batch:
    """Check that ``structures`` suit the model and that words/features cover every node."""
    if isinstance(structures, Structure):
        structures = [structures]
    if not structures:
        raise RecursiveInputError(f"model {model.name}: a batch needs at least one structure")
    for s in structures:
        if not isinstance(s, Structure):
            raise RecursiveInputError(f"model {model.name}: batch items must be Structures, "
                                      f"got {type(s).__name__}")
        check_arity(s, model.arity, allow_fewer=model.pad_missing)
    return Batch(tuple(structures), _check_words(model, structures, words),
                 _check_features(model, structures, features))


def _check_words(model: RecursiveModel, structures: Sequence[Structure],
                 words: Sequence[np.ndarray] | None) -> tuple[np.ndarray, ...] | None:
    vocab = model.vocab_size
    if vocab is None:
        if words is not None:
            raise RecursiveInputError(f"model {model.name} has no vocabulary; words were given")
        return None
    if words is None or len(words) != len(structures):
        raise RecursiveInputError(f"model {model.name}: give one word-id array per structure "
                                  f"({len(structures)} structures)")
    checked = []
    for s, ids in zip(structures, words, strict=True):
        ids = np.asarray(ids)
        if ids.shape != (s.num_nodes,) or ids.dtype.kind not in "iu":
            raise RecursiveInputError(f"{s.name}: word ids must be {s.num_nodes} integers, got "
                                      f"{ids.dtype} of shape {ids.shape}")
        bad = np.flatnonzero((ids < 0) | (ids >= vocab))
        if bad.size:
            raise RecursiveInputError(f"{s.name}: node {int(bad[0])} has word id "
                                      f"{int(ids[bad[0]])}, outside the vocabulary of {vocab}")
        checked.append(np.ascontiguousarray(ids, dtype=np.int32))
    return tuple(checked)


def _check_features(model: RecursiveModel, structures: Sequence[Structure],
                    features: Sequence[NodeFeatures] | None) -> tuple[dict, ...] | None:
    dense = [f for f in model.features if not f.is_vocab]
    if not dense:
        if features is not None:
            raise RecursiveInputError(f"model {model.name} has no dense features; some were given")
        return None
    if features is None or len(features) != len(structures):
        raise RecursiveInputError(f"model {model.name}: give one feature dict per structure "
                                  f"with {[f.name for f in dense]}")
    checked = []
    for s, given in zip(structures, features, strict=True):
        entry = {}
        for f in dense:
            if f.name not in given:
                raise RecursiveInputError(f"{s.name}: feature {f.name!r} is missing")
            array = np.asarray(given[f.name], dtype=np.float32)
            if array.shape != (s.num_nodes, *f.shape):
                raise RecursiveInputError(f"{s.name}: feature {f.name!r} has shape "
                                          f"{array.shape}, expected {(s.num_nodes, *f.shape)}")
            entry[f.name] = np.ascontiguousarray(array)
        checked.append(entry)
    return tuple(checked)


@dataclass(frozen=True)
class RecursiveOutput:
    """States computed for a batch.

    ``roots[c]`` stacks state component ``c`` of every root, structure by structure
    (``root_structure[i]`` says whose root ``i`` is; a tree has one). ``nodes[s][c]`` holds
    component ``c`` of every node of structure ``s``, in its own numbering, when all node
    states were asked for.
    """

    roots: dict[str, np.ndarray]
    root_structure: np.ndarray
    nodes: list[dict[str, np.ndarray]] | None = None


class Reference:
    """The numpy reference executor of one model (cells parsed once)."""

    def __init__(self, model: RecursiveModel) -> None:
        self.model = model
        self.leaf = CellGraph.parse(model.leaf, f"model {model.name}, leaf cell")
        self.internal = CellGraph.parse(model.internal, f"model {model.name}, internal cell")

    def run(
        self,
        structures: Sequence[Structure],
        words: Sequence[np.ndarray] | None = None,
        features: Sequence[NodeFeatures] | None = None,
        *,
        all_nodes: bool = False,
    ) -> RecursiveOutput:
        batch = check_batch(self.model, structures, words, features)
        per_structure = [self._states(batch, i) for i in range(len(batch.structures))]
        names = [c.name for c in self.model.state]
        roots = {c: np.stack([states[c][r] for s, states in zip(batch.structures, per_structure,
                                                                  strict=True) for r in s.roots])
                 for c in names}
        owner = np.concatenate([np.full(len(s.roots), i) for i, s in enumerate(batch.structures)])
        return RecursiveOutput(roots, owner, per_structure if all_nodes else None)

    def _states(self, batch: Batch, index: int) -> dict[str, np.ndarray]:
        """Every node's state of structure ``index``, computed in topological order."""
        s = batch.structures[index]
        model = self.model
        states = {c.name: np.zeros((s.num_nodes, *c.shape)) for c in model.state}
        for v in np.argsort(node_levels(s), kind="stable"):
            inputs = self._features(batch, index, int(v))
            kids = s.children[v][s.children[v] >= 0]
            if len(kids):
                for c in model.state:
                    for k in range(model.arity):
                        value = states[c.name][kids[k]] if k < len(kids) else np.zeros(c.shape)
                        inputs[child_input(c.name, k)] = value[None]
            cell = self.internal if len(kids) else self.leaf
            for c, out in zip(model.state, cell.evaluate(_only(inputs, cell)), strict=True):
                states[c.name][v] = out[0]
        return states

    def _features(self, batch: Batch, index: int, v: int) -> dict[str, np.ndarray]:
        inputs = {}
        for f in self.model.features:
            if f.table is not None:
                row = f.table[batch.words[index][v]]
            else:
                row = batch.features[index][f.name][v]
            inputs[f.name] = np.asarray(row, dtype=np.float64)[None]
        return inputs


def _only(inputs: dict[str, np.ndarray], cell: CellGraph) -> dict[str, np.ndarray]:
    return {name: inputs[name] for name in cell.inputs}
