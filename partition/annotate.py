"""AnnotateTarget: decide, node by node, which target runs it — and record why.

Targets are asked in priority order; the first that accepts a node gets it. A node no
target accepts goes to the host with every target's reason. Composites already belong
to the target whose pattern made them. Nodes holding subgraphs (If, Loop, Scan) stay on
the host for now; their bodies are left untouched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import onnx_ir as ir

from byoc_sdk.node_info import NodeInfo
from byoc_sdk.target import Target
from partition.decision import DECISION_KEY, Decision, composite_of
from partition.graph_index import has_subgraphs
from partition.support import opset_of, verdict


class AnnotateTargetPass(ir.passes.InPlacePass):
    """Attach a :class:`~partition.decision.Decision` to every node of the main graph."""

    def __init__(self, targets: Sequence[Target]) -> None:
        super().__init__()
        self.targets = targets

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for node in model.graph:
            node.meta[DECISION_KEY] = self.decide(model, node)
        return ir.passes.PassResult(model, modified=True)

    def decide(self, model: ir.Model, node: ir.Node) -> Decision:
        composite = composite_of(node)
        if composite is not None:
            return Decision(
                composite.target,
                f"fused by {composite.target} pattern "
                f"{composite.pattern} ({', '.join(composite.members)})",
            )
        if has_subgraphs(node):
            return Decision(
                None, f"{node.op_type} holds a subgraph; control flow stays on the host"
            )
        info = NodeInfo(node, opset_of(model, node))
        accepted: list[str] = []
        declined: list[str] = []
        for target in self.targets:
            reason = verdict(target, info)
            if reason is None:
                accepted.append(target.name)
            elif not accepted:
                declined.append(_naming(target.name, reason))
        if accepted:
            first, *others = accepted
            return Decision(first, f"{first} supports {node.op_type}", fallbacks=tuple(others))
        if not declined:
            return Decision(None, "no target given")
        return Decision(None, "; ".join(declined))


def _naming(target: str, reason: str) -> str:
    """``reason``, led by the target's name unless it names the target already: a host
    node's reasons are joined, and a check shared by several targets ("1-D convolution
    is not supported") would not say whose it is."""
    if re.search(rf"\b{re.escape(target)}\b", reason):
        return reason
    return f"{target}: {reason}"
