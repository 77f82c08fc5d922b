"""Compiling a recursive model for a target, and running it on batches of structures.

``compile_model(model, "cpu")`` stages the cells (``stages.py``), generates the fused kernel
(``codegen_c.py``; ``codegen_cuda.py`` for ``cuda``), builds it with the SDK toolchain (cached
by content) and loads it with the native core. The module takes fixed-shape buffers, so the
runner binds one function per power-of-two node capacity and reuses its buffers; a batch is
copied into the smallest that fits, and the kernel is told how many nodes are real.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from byoc_sdk.errors import ByocError
from byoc_sdk.recursive.cells import RecursiveModel
from byoc_sdk.recursive.kernel import KernelSpec, int_layout, make_spec
from byoc_sdk.recursive.reference import (
    Batch,
    NodeFeatures,
    RecursiveInputError,
    RecursiveOutput,
    check_batch,
    check_model_arity,
)
from byoc_sdk.recursive.stages import StageOptions, stage_model
from byoc_sdk.recursive.structure import Structure, whole_number

TARGETS = ("cpu", "cuda")
MIN_CAPACITY = 64


INVALID_ARGUMENT = 2  # BYOC_INVALID_ARGUMENT in cpp/include/byoc/abi.h


class RecursiveCompileError(ByocError):
    """A recursive model could not be compiled or loaded for a target."""


class RecursiveRunError(ByocError):
    """A compiled kernel failed while running (e.g. no usable CUDA device)."""


@dataclass
class _Bound:
    """One capacity's reused buffers and its function bound to them (the native core
    checks the buffers once, at bind time, not at every call; the bound call keeps the
    function alive)."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    call: Callable[[dict], None]
    #: Each state component of the first root, as a view of ``outputs[0]`` in its shape:
    #: a one-tree batch's roots are copies of these (no slicing per call).
    first_root: dict[str, np.ndarray]


#: The table of per-call values a bound call is given: every buffer is bound, so none.
_NO_VALUES: dict = {}
#: The batch containers the batch-1 path takes as they are (anything else is checked).
_PLAIN = (list, tuple)


class CompiledRecursiveModel:
    """A model compiled for one target. :meth:`run` takes a batch of structures.

    Calls are serialised (the reused buffers belong to this object); compile the model once
    per thread for parallel use.
    """

    def __init__(self, spec: KernelSpec, library: str, target: str, source: str) -> None:
        from byoc_sdk import _native

        self.spec, self.target, self.source = spec, target, source
        self.model = spec.model
        self._library = _native.Library(library)
        self._bound: dict[int, _Bound] = {}
        self._lock = threading.RLock()
        self._dense = spec.dense
        # Whether a batch can be just a structure and its word ids (see _plain_tree).
        self._words_only = spec.has_words and not spec.dense
        self._slices = []
        at = 0
        for c in self.model.state:
            self._slices.append((c.name, at, at + c.size, c.shape))
            at += c.size

    def run(
        self,
        structures: Sequence[Structure],
        words: Sequence[np.ndarray] | None = None,
        features: Sequence[NodeFeatures] | None = None,
        *,
        all_nodes: bool = False,
    ) -> RecursiveOutput:
        """Root states (and, with ``all_nodes``, every node's) of a batch of structures.

        ``words`` (one int array per structure) feed vocabulary features; ``features`` (one
        dict per structure, name -> ``[nodes, *shape]``) feed dense ones.
        """
        tree = self._plain_tree(structures, words, features)
        if tree is not None:
            return self._run_tree(*tree, all_nodes)
        batch = check_batch(self.model, structures, words, features, kernel_checks=True)
        structures = batch.structures
        n = sum(s.num_nodes for s in structures)
        with self._lock:
            bound = self._bind(_capacity(n))
            self._fill(bound, batch, n, all_nodes)
            self._call(bound, structures)
            return self._results(bound, structures, n, all_nodes)

    def _plain_tree(self, structures: object, words: object,
                    features: object) -> tuple[Structure, np.ndarray] | None:
        """The tree and word ids of a batch of one tree, when it needs no check that the
        kernel does not make anyway (ids against the vocabulary, child counts): a tree as
        wide as the model's arity, int32 ids of its size, no dense features. None for any
        other batch, valid or not: those go through ``check_batch``, which says what is
        wrong.

        Batch 1 is where the Python side shows, and more than its warm cost suggests: right
        after another framework ran, each Python step costs several times its warm time
        (cold caches), and the general path took 20-35 us more than this one there
        (TreeLSTM and TreeGRU, H = 256, on SST shapes right after node-by-node PyTorch).
        """
        if (not self._words_only or features is not None or type(structures) not in _PLAIN
                or type(words) not in _PLAIN or len(structures) != 1 or len(words) != 1):
            return None
        tree, ids = structures[0], words[0]
        if (type(tree) is Structure and tree.kind == "tree" and type(ids) is np.ndarray
                and ids.dtype == np.int32 and tree.children.shape[1] == self.model.arity
                and ids.shape == tree.children.shape[:1]):
            return tree, ids
        return None

    def _run_tree(self, tree: Structure, ids: np.ndarray, all_nodes: bool) -> RecursiveOutput:
        """:meth:`run` on a batch that :meth:`_plain_tree` took apart."""
        n = ids.shape[0]
        with self._lock:
            bound = self._bind(_capacity(n))
            sizes, children, tree_sizes, buffer = bound.inputs
            sizes[0], sizes[1], sizes[2] = n, 1, int(all_nodes)
            children[:n] = tree.children
            tree_sizes[0] = n
            buffer[:n] = ids
            self._call(bound, (tree,))
            if all_nodes:
                return self._results(bound, (tree,), n, all_nodes)
            return RecursiveOutput({name: view.copy() for name, view in bound.first_root.items()},
                                   np.zeros(1, int))

    def _call(self, bound: _Bound, structures: Sequence[Structure]) -> None:
        """Run the kernel on the filled buffers; its refusal becomes the reference's error."""
        try:
            bound.call(_NO_VALUES)
        except RuntimeError as exc:  # the kernel refused the batch or failed, and said why
            refused = getattr(exc, "status", None) == INVALID_ARGUMENT
            if refused:  # a node with the wrong child count: the reference's ArityError
                for s in structures:
                    check_model_arity(self.model, s)
            names = ", ".join(s.name for s in structures[:3])
            error = RecursiveInputError if refused else RecursiveRunError
            raise error(f"model {self.model.name} ({self.target}), batch of "
                        f"{names}{'...' if len(structures) > 3 else ''}: {exc}") from exc

    def _bind(self, cap: int) -> _Bound:
        bound = self._bound.get(cap)
        if bound is None:
            from byoc_sdk import _native

            ins, outs = self.spec.input_specs(cap), self.spec.output_specs(cap)
            function = _native.Function(self._library, self.spec.entry, ins, outs)
            try:  # the module keeps the constants (the cuda one uploads them here, once)
                function.init(list(self.spec.constants))
            except RuntimeError as exc:
                raise RecursiveRunError(f"model {self.model.name} ({self.target}): the module "
                                        f"could not take its constants: {exc}") from exc
            inputs = [np.zeros(shape, dtype) for dtype, shape in ins]
            outputs = [np.zeros(shape, dtype) for dtype, shape in outs]
            call = function.bind(inputs, outputs, [f"in{i}" for i in range(len(inputs))],
                                 [f"out{i}" for i in range(len(outputs))])
            first_root = {name: outputs[0][:1, lo:hi].reshape(1, *shape)
                          for name, lo, hi, shape in self._slices}
            bound = self._bound[cap] = _Bound(inputs, outputs, call, first_root)
        return bound

    def _fill(self, bound: _Bound, batch: Batch, n: int, all_nodes: bool) -> None:
        """Copy a checked batch into the bound buffers."""
        structures, arity = batch.structures, self.model.arity
        sizes, children, tree_sizes = bound.inputs[:3]
        sizes[0], sizes[1], sizes[2] = n, len(structures), int(all_nodes)
        # One structure (batch 1, where these microseconds show) skips the lists.
        if len(structures) == 1:
            children[:n] = _children(structures[0], arity)
            tree_sizes[0] = n
        else:
            np.concatenate([_children(s, arity) for s in structures], out=children[:n])
            tree_sizes[: len(structures)] = [s.num_nodes for s in structures]
        index = 3
        if batch.words is not None:  # int32 now; the kernel checks them against the vocabulary
            if len(batch.words) == 1:
                bound.inputs[3][:n] = batch.words[0]
            else:
                np.concatenate(batch.words, out=bound.inputs[3][:n])
            index += 1
        for f in self._dense:
            np.concatenate([given[f.name].reshape(s.num_nodes, -1)
                            for s, given in zip(structures, batch.features, strict=True)],
                           out=bound.inputs[index][:n])
            index += 1

    def _results(self, bound: _Bound, structures: Sequence[Structure], n: int,
                 all_nodes: bool) -> RecursiveOutput:
        # A tree has one root (checked when it was made): only a DAG's are counted.
        root_counts = [1 if s.kind == "tree" else len(s.roots) for s in structures]
        total = sum(root_counts)
        roots_flat = bound.outputs[0][:total]
        roots = {name: roots_flat[:, lo:hi].reshape(total, *shape).copy()
                 for name, lo, hi, shape in self._slices}
        owner = (np.arange(len(structures)) if total == len(structures)  # a root each
                 else np.repeat(np.arange(len(structures)), root_counts))
        nodes = None
        if all_nodes:
            flat = bound.outputs[1]
            nodes, at = [], 0
            for s in structures:
                block = flat[at:at + s.num_nodes]
                nodes.append({name: block[:, lo:hi].reshape(s.num_nodes, *shape).copy()
                              for name, lo, hi, shape in self._slices})
                at += s.num_nodes
        return RecursiveOutput(roots, owner, nodes)


    def numbering(self, structures: Sequence[Structure]) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's own linearization of a batch: (order, level_starts), read back from
        its work buffers after a run (for checking it against ``linearize.py``)."""
        n = sum(s.num_nodes for s in structures)
        words = ([np.zeros(s.num_nodes, np.int32) for s in structures]
                 if self.spec.has_words else None)
        features = ([{f.name: np.zeros((s.num_nodes, *f.shape), np.float32)
                      for f in self.spec.dense} for s in structures] if self.spec.dense else None)
        with self._lock:
            self.run(structures, words, features)
            cap = _capacity(n)
            work = self._bound[cap].outputs[2]
            layout = int_layout(cap, self.spec.arity)
            order = work[layout["order"]:layout["order"] + n].copy()
            levels = work[layout["level"]:layout["level"] + n]
            starts = np.concatenate(([0], np.cumsum(np.bincount(levels))))
        return order, starts


def _capacity(n: int) -> int:
    return max(MIN_CAPACITY, 1 << (n - 1).bit_length())


def _children(structure: Structure, arity: int) -> np.ndarray:
    """The structure's children as exactly ``arity`` columns: its own array when it has
    that width (a binary tree for a binary model), else a padded or cut copy kept on the
    structure."""
    children = structure.children
    if children.shape[1] == arity:
        return children

    def pad() -> np.ndarray:
        padded = np.full((structure.num_nodes, arity), -1, dtype=np.int32)
        padded[:, : children.shape[1]] = children[:, :arity]
        return padded

    return structure.memo(("padded", arity), pad)


def compile_model(
    model: RecursiveModel,
    target: str = "cpu",
    *,
    chunk_rows: int | None = None,
    options: StageOptions | None = None,
    toolchain=None,
    emulate: bool | None = None,
) -> CompiledRecursiveModel:
    """Compile ``model`` into one fused kernel for ``target`` ("cpu" or "cuda").

    ``chunk_rows`` caps the nodes a stage processes at once (default: sized for the cache);
    ``options`` switch techniques off, to measure them. ``emulate`` builds the cuda kernel
    for the host CUDA emulation (default: the ``BYOC_CUDA_EMULATE`` environment variable),
    which runs it, slowly, on a machine without a GPU.
    """
    from byoc_sdk.toolchain import (
        CompileJob,
        Toolchain,
        ToolchainError,
        cuda_emulation_requested,
    )

    if target not in TARGETS:
        raise RecursiveCompileError(f"model {model.name}: unknown target {target!r} "
                                    f"(recursive models compile for {', '.join(TARGETS)})")
    if chunk_rows is not None:
        # The kernels step through levels by chunk_rows: zero or less would never end
        # (cuda) or skip nodes (C).
        chunk_rows = whole_number(chunk_rows, f"model {model.name}", "chunk_rows", 1,
                                  RecursiveCompileError)
    stages = stage_model(model, options)
    entry = "byoc_recursive_" + _digest(model)
    spec = make_spec(stages, entry, chunk_rows)
    if target == "cpu":
        from byoc_sdk.recursive.codegen_c import generate_c

        artifact = generate_c(spec)
    else:
        from byoc_sdk.recursive.codegen_cuda import generate_cuda

        if emulate is None:
            emulate = cuda_emulation_requested()
        artifact = generate_cuda(spec, emulate=emulate)
    toolchain = toolchain or Toolchain()
    try:
        library = toolchain.compile(CompileJob(f"recursive:{model.name}", target, artifact))
    except ToolchainError as exc:
        raise RecursiveCompileError(f"model {model.name}: {exc}", target=target) from exc
    source = next(iter(artifact.sources.values()))
    return CompiledRecursiveModel(spec, str(library), target, source)


def _digest(model: RecursiveModel) -> str:
    digest = hashlib.sha256(model.leaf.SerializeToString())
    digest.update(model.internal.SerializeToString())
    return digest.hexdigest()[:12]
