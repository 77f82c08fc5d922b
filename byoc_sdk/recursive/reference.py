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
    structures: Sequence[Structure] | Structure,
    words: Sequence[np.ndarray] | None = None,
    features: Sequence[NodeFeatures] | None = None,
    *,
    kernel_checks: bool = False,
) -> Batch:
    """Check that ``structures`` suit the model and that words/features cover every node.

    ``kernel_checks``: what the compiled kernel checks anyway, while it reads the batch, is
    left to it: int32 word ids against the vocabulary (ids of any other integer type are
    checked here, before the cast to int32 could wrap one into range) and the child count
    of each node of a structure at most ``arity`` children wide (a wider one loses columns
    on the way in, so it is checked here). When the kernel refuses a batch, the runner
    calls :func:`check_model_arity` to raise the same :class:`ArityError` as here.
    """
    if isinstance(structures, Structure):
        structures = [structures]
    elif not isinstance(structures, Sequence):
        try:  # any iterable of structures (a generator, a set...), taken once
            structures = list(structures)
        except TypeError:
            raise RecursiveInputError(f"model {model.name}: a batch is a list of Structures, "
                                      f"not {type(structures).__name__}") from None
    if not structures:
        raise RecursiveInputError(f"model {model.name}: a batch needs at least one structure")
    for s in structures:
        if not isinstance(s, Structure):
            raise RecursiveInputError(f"model {model.name}: batch items must be Structures, "
                                      f"got {type(s).__name__}")
        if not kernel_checks or s.children.shape[1] > model.arity:
            check_model_arity(model, s)
    return Batch(tuple(structures), _check_words(model, structures, words, kernel_checks),
                 _check_features(model, structures, features))


def check_model_arity(model: RecursiveModel, structure: Structure) -> None:
    """Raise :class:`ArityError` when a node of ``structure`` has a child count the model's
    internal cell does not take (remembered per structure, which does not change)."""
    structure.memo(("arity", model.arity, model.pad_missing),
                   lambda: check_arity(structure, model.arity,
                                       allow_fewer=model.pad_missing) or True)


def _one_per_structure(model: RecursiveModel, structures: Sequence[Structure], given: object,
                       what: str) -> Sequence:
    """``given`` as a sequence of one item per structure, or an error saying so."""
    if not isinstance(given, Sequence | np.ndarray) or len(given) != len(structures):
        raise RecursiveInputError(f"model {model.name}: give one {what} per structure "
                                  f"({len(structures)} structures)")
    return given


def _check_words(model: RecursiveModel, structures: Sequence[Structure],
                 words: Sequence[np.ndarray] | None,
                 kernel_checks: bool) -> tuple[np.ndarray, ...] | None:
    vocab = model.vocab_size
    if vocab is None:
        if words is not None:
            raise RecursiveInputError(f"model {model.name} has no vocabulary; words were given")
        return None
    words = _one_per_structure(model, structures, words, "word-id array")
    checked = []
    for s, ids in zip(structures, words, strict=True):
        ids = np.asarray(ids)
        if ids.shape != (s.num_nodes,) or ids.dtype.kind not in "iu":
            raise RecursiveInputError(f"{s.name}: word ids must be {s.num_nodes} integers, got "
                                      f"{ids.dtype} of shape {ids.shape}")
        if not (kernel_checks and ids.dtype == np.int32):
            bad = np.flatnonzero((ids < 0) | (ids >= vocab))
            if bad.size:
                raise RecursiveInputError(f"{s.name}: node {int(bad[0])} has word id "
                                          f"{int(ids[bad[0]])}, outside the vocabulary of "
                                          f"{vocab}")
        checked.append(np.ascontiguousarray(ids, dtype=np.int32))
    return tuple(checked)


def _check_features(model: RecursiveModel, structures: Sequence[Structure],
                    features: Sequence[NodeFeatures] | None) -> tuple[dict, ...] | None:
    dense = [f for f in model.features if not f.is_vocab]
    if not dense:
        if features is not None:
            raise RecursiveInputError(f"model {model.name} has no dense features; some were given")
        return None
    wanted = f"feature dict (with {[f.name for f in dense]})"
    features = _one_per_structure(model, structures, features, wanted)
    checked = []
    for s, given in zip(structures, features, strict=True):
        if not isinstance(given, Mapping):
            raise RecursiveInputError(f"{s.name}: features must be a dict of name -> array, "
                                      f"not {type(given).__name__}")
        entry = {}
        for f in dense:
            if f.name not in given:
                raise RecursiveInputError(f"{s.name}: feature {f.name!r} is missing")
            try:
                array = np.asarray(given[f.name], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise RecursiveInputError(f"{s.name}: feature {f.name!r} is not an array of "
                                          f"numbers: {exc}") from exc
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
