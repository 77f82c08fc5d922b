"""PartitionGraph: turn each planned region into a function and one call node.

Each region becomes a model-local function in domain ``byoc.<target>`` named after the
region (``simaccel_0``), called once from the main graph. Constant inputs are bound
inside the function or passed in as call inputs, as the target asks. Every node of the
main graph records in ``metadata_props`` where it went and why.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from byoc_sdk.content_hash import constant_hash
from byoc_sdk.node_info import is_constant
from byoc_sdk.target import Target
from partition.decision import HOST, decision_of
from partition.graph_index import ensure_sorted
from partition.merge_regions import REGIONS_KEY, RegionPlan
from partition.outline import outline


class PartitionGraphPass(ir.passes.InPlacePass):
    """Outline the regions planned by MergeRegions (``model.meta["byoc.regions"]``)."""

    def __init__(self, targets: Sequence[Target]) -> None:
        super().__init__()
        self.targets = {t.name: t for t in targets}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        plans: list[RegionPlan] = model.meta.get(REGIONS_KEY, [])
        graph = model.graph
        for node in graph:
            _record(node)
        for plan in plans:
            target = self.targets[plan.target]
            constants = {
                v for node in plan.nodes for v in node.inputs if v is not None and is_constant(v)
            }
            for value in constants:
                constant_hash(value)  # recorded on the value for the constant store
            bind = constants if target.constants == "bind" else set()
            call = outline(model, plan.nodes, domain=target.domain, name=plan.name, bind=bind)
            call.metadata_props["byoc.target"] = target.name
            call.metadata_props["byoc.region"] = plan.name
        ensure_sorted(graph)
        return ir.passes.PassResult(model, modified=bool(plans))


def _record(node: ir.Node) -> None:
    """Write a node's decision into ``metadata_props`` (offloaded nodes need no reason:
    their region says it)."""
    decision = decision_of(node)
    if decision is None:
        return
    props = node.metadata_props
    if decision.region:
        props["byoc.target"] = decision.target
        props["byoc.region"] = decision.region
    else:
        props["byoc.target"] = HOST
        props["byoc.reason"] = decision.reason
