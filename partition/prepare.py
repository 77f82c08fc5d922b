"""Prepare: make the main graph ready for the passes.

* calls to the model's own functions (modules exported as functions) are inlined
  (:mod:`partition.inline`), so the passes see the ops inside them, not one op no target
  knows; byoc's own region and composite functions stay;
* every node gets a unique name — reports, regions and ``--explain`` refer to nodes by
  name;
* ``Constant`` nodes become initializers, so a constant is a constant wherever it came
  from;
* what the graph computes from constants alone is folded into constants
  (:mod:`partition.fold_constants`), so a shape computed at run time by an exporter is
  the constant a target asks for;
* every initializer is hashed once (recorded under ``byoc.sha256`` for the package's
  constant store) and identical ones are merged, so a constant is bound or passed once.

Initializers that are also graph inputs can be overridden by a caller: they are neither
merged nor treated as constants.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from byoc_sdk.content_hash import SHA256_KEY, content_hash
from partition.fold_constants import FoldConstantsPass
from partition.inline import InlineFunctionsPass


class PrepareGraphPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        InlineFunctionsPass()(model)  # first: what it inlines is named, lifted and folded too
        graph = model.graph
        nodes = list(graph)
        _name_nodes(nodes)
        if any(node.op_type == "Constant" and node.domain in ("", "ai.onnx") for node in nodes):
            LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
            _name_nodes(list(graph))
        FoldConstantsPass()(model)  # before hashing: what it folds is hashed too
        _deduplicate_constants(graph)
        return ir.passes.PassResult(model, modified=True)


def _name_nodes(nodes: Sequence[ir.Node]) -> None:
    """Give unnamed nodes, and every repeat of a name, a fresh ``OpType_n`` name."""
    names = [node.name for node in nodes]
    taken = set(filter(None, names))
    if len(taken) == len(names):
        return  # every node has a name of its own already, as exported models mostly do
    seen: set[str] = set()
    counter = 0
    for node in nodes:
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        while f"{node.op_type}_{counter}" in taken:
            counter += 1
        node.name = f"{node.op_type}_{counter}"
        taken.add(node.name)
        seen.add(node.name)


def _deduplicate_constants(graph: ir.Graph) -> None:
    first: dict[str, ir.Value] = {}
    for value in list(graph.initializers.values()):
        if value.const_value is None or value.is_graph_input():
            continue
        digest = content_hash(value.const_value)
        value.metadata_props[SHA256_KEY] = digest
        kept = first.setdefault(digest, value)
        if kept is not value and not value.is_graph_output():
            value.replace_all_uses_with(kept)
            graph.initializers.pop(value.name)
