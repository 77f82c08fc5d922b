"""Recursive models (TreeLSTM, TreeGRU, TreeFC, MV-RNN, DAG-RNN...) compiled Cortex-style.

A model is a leaf cell and an internal cell, each an ONNX graph over one node, plus the
structure it runs on. :func:`compile_model` turns both cells and the level-by-level schedule
into one fused kernel for the ``cpu`` target (C) or the ``cuda`` target (a persistent CUDA
kernel); :class:`Reference` runs the same cells node by node in numpy. See
``docs/recursive.md``.

    from byoc_sdk import recursive as rec
    model = rec.tree_lstm(256)
    compiled = rec.compile_model(model, "cpu")
    out = compiled.run(trees, words=word_ids)        # out.roots["h"]: [trees, 256]
"""

from byoc_sdk.recursive.cells import (
    CellBuilder,
    CellError,
    Feature,
    RecursiveModel,
    StateSpec,
    child_input,
)
from byoc_sdk.recursive.compiler import (
    CompiledRecursiveModel,
    RecursiveCompileError,
    RecursiveRunError,
    compile_model,
)
from byoc_sdk.recursive.linearize import Linearization, linearize, node_levels
from byoc_sdk.recursive.models import SHIPPED, dag_rnn, mv_rnn, tree_fc, tree_gru, tree_lstm
from byoc_sdk.recursive.reference import RecursiveInputError, RecursiveOutput, Reference
from byoc_sdk.recursive.structure import (
    ArityError,
    CycleError,
    MissingChildError,
    Structure,
    StructureError,
    complete_tree,
    grid_dag,
    load_parent_arrays,
    random_binary_tree,
    random_dag,
    sst_trees,
)

__all__ = [
    "SHIPPED",
    "ArityError",
    "CellBuilder",
    "CellError",
    "CompiledRecursiveModel",
    "CycleError",
    "Feature",
    "Linearization",
    "MissingChildError",
    "RecursiveCompileError",
    "RecursiveInputError",
    "RecursiveModel",
    "RecursiveOutput",
    "RecursiveRunError",
    "Reference",
    "StateSpec",
    "Structure",
    "StructureError",
    "child_input",
    "compile_model",
    "complete_tree",
    "dag_rnn",
    "grid_dag",
    "linearize",
    "load_parent_arrays",
    "mv_rnn",
    "node_levels",
    "random_binary_tree",
    "random_dag",
    "sst_trees",
    "tree_fc",
    "tree_gru",
    "tree_lstm",
]
