"""MergeComposite: fuse each match of a target's patterns into one composite call.

Runs first, so that annotation sees a conv+bias+relu as one unit a target claims as a
whole rather than three ops it might split. Patterns of higher-priority targets match
first; within a target, larger patterns first. Roots are visited from the graph's end
backwards, so a chain is taken by the pattern that reaches furthest down it.

Instances that are structurally identical — same ops, wiring, attributes and input
types — call one shared function, as TVM deduplicates composite functions: a model of
repeated blocks gets one function per distinct block, and a codegen compiles each
once. The weights differ per instance and are call inputs, never part of the body.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import onnx_ir as ir

from byoc_sdk.patterns import Match, Matcher
from byoc_sdk.target import CompositePattern, Target
from partition.decision import COMPOSITE_KEY, MEMBERS_KEY, PATTERN_KEY, CompositeInfo
from partition.graph_index import ensure_sorted
from partition.outline import boundary, call_instead, outline


def opset_of(model: ir.Model, node: ir.Node) -> int | None:
    """The opset a node runs at: its domain's version in the model."""
    domain = node.domain or ""
    version = model.opset_imports.get(domain)
    if version is None and domain in ("", "ai.onnx"):
        version = model.opset_imports.get("ai.onnx" if domain == "" else "")
    return version


class MergeCompositePass(ir.passes.InPlacePass):
    """Replace pattern matches in the main graph by calls to composite functions.

    Composite functions live in domain ``byoc.<target>.composite`` and are named
    ``<pattern>_<k>``, one per distinct structure. Each call node is named
    ``<pattern>_<n>`` (one per instance), carries a
    :class:`~partition.decision.CompositeInfo`, and records in ``metadata_props`` its
    pattern (``byoc.pattern``) and the original nodes it replaced (``byoc.members``).
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        super().__init__()
        self.targets = targets

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        by_root: dict[str, list[tuple[Target, CompositePattern]]] = {}
        for target in self.targets:
            for composite in target.patterns:
                for op_type in composite.pattern.op_types:
                    by_root.setdefault(op_type, []).append((target, composite))
        if not by_root:
            return ir.passes.PassResult(model, modified=False)
        graph = model.graph
        ensure_sorted(graph)
        nodes = list(graph)
        position = {node: i for i, node in enumerate(nodes)}
        claimed: set[ir.Node] = set()
        matcher = Matcher(graph, position, claimed, lambda n: opset_of(model, n))
        found: list[tuple[Target, CompositePattern, Match]] = []
        for node in reversed(nodes):
            if node in claimed:
                continue
            for target, composite in by_root.get(node.op_type, ()):
                match = matcher.match(composite.pattern, node)
                if match is not None and composite.evaluate(match) is None:
                    claimed.update(match.nodes)
                    found.append((target, composite, match))
                    break
        shared: dict[Hashable, ir.Function] = {}
        instances: dict[str, int] = {}
        for target, composite, match in reversed(found):
            # Outlining earlier matches renamed the values this one reads: look again.
            inputs, outputs = boundary(match.nodes)
            key = (target.name, composite.name, _signature(match.nodes, inputs, outputs))
            function = shared.get(key)
            if function is None:
                name = f"{composite.name}_{sum(k[1] == composite.name for k in shared)}"
                call = outline(model, match.nodes, domain=target.composite_domain, name=name)
                shared[key] = model.functions[(call.domain, call.op_type, "")]
            else:
                call = call_instead(model, match.nodes, function, inputs, outputs)
            number = instances.get(composite.name, 0)
            instances[composite.name] = number + 1
            call.name = f"{composite.name}_{number}"
            call.meta[COMPOSITE_KEY] = CompositeInfo(
                target.name, composite.name, tuple(match.nodes)
            )
            call.metadata_props[PATTERN_KEY] = composite.name
            call.metadata_props[MEMBERS_KEY] = ",".join(n.name or "" for n in match.nodes)
        if any(len(m.outputs) > len(m.root.outputs) for _, _, m in found):
            ensure_sorted(graph)  # an exported inner value may have readers before the root
        return ir.passes.PassResult(model, modified=bool(found))


def _signature(
    nodes: Sequence[ir.Node], inputs: list[ir.Value], outputs: list[ir.Value]
) -> Hashable:
    """What makes two instances interchangeable: ops, wiring, attributes, input types."""
    place = {node: i for i, node in enumerate(nodes)}
    param = {value: i for i, value in enumerate(inputs)}
    parts = []
    for node in nodes:
        wiring = tuple(
            None
            if v is None
            else ("in", param[v])
            if v in param
            else ("node", place[v.producer()], v.index())
            for v in node.inputs
        )
        attrs = tuple(sorted((k, _hashable(a)) for k, a in node.attributes.items()))
        parts.append((node.domain, node.op_type, wiring, attrs, len(node.outputs)))
    results = tuple((place[v.producer()], v.index()) for v in outputs)
    types = tuple(
        (v.dtype, None if v.shape is None else tuple(str(d) for d in v.shape.dims)) for v in inputs
    )
    return tuple(parts), results, types


def _hashable(attr: ir.Attr) -> Any:
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        return ("graph", id(attr))  # never shared
    if attr.type == ir.AttributeType.TENSOR:
        tensor = attr.value
        return ("tensor", tensor.dtype, tuple(tensor.shape.numpy()), tensor.tobytes())
    value = attr.value
    return tuple(value) if isinstance(value, list | tuple) else value
