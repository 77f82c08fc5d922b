"""MergeComposite: fuse each match of a target's patterns into one composite call.

Runs first, so that annotation sees a conv+bias+relu as one unit a target claims as a
whole rather than three ops it might split. Patterns of higher-priority targets match
first, over the whole graph, before any of a lower-priority target's; within a target,
larger patterns first. Roots are visited from the graph's end backwards, so a chain is
taken by the pattern that reaches furthest down it.

A pattern never takes a node that a higher-priority target accepts on its own: priority
decides between targets that both accept a node, whether as a plain op or inside a
composite, so a cpu fallback's patterns cannot take a model away from a vendor target
that runs its ops one by one.

Instances that are structurally identical — same ops, wiring, attributes and input
types — call one shared function, as TVM deduplicates composite functions: a model of
repeated blocks gets one function per distinct block, and a codegen compiles each
once. The weights differ per instance and are call inputs, never part of the body.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

import onnx_ir as ir

from byoc_sdk.errors import vendor_log
from byoc_sdk.node_info import NodeInfo, is_constant
from byoc_sdk.patterns import Match, Matcher
from byoc_sdk.target import CompositePattern, Target
from partition.decision import COMPOSITE_KEY, MEMBERS_KEY, PATTERN_KEY, CompositeInfo
from partition.graph_index import ensure_sorted, sorted_nodes
from partition.names import numbered
from partition.outline import call_instead, outline
from partition.support import opset_of, verdict

#: ``model.meta`` key of the composite functions made so far, by (target, pattern,
#: signature), so that composites fused later (MergeRegions re-fuses the members of a
#: dropped composite) share them too.
FUNCTIONS_KEY = "byoc.composite_functions"
#: ``model.meta`` key of the number of calls made so far per pattern (call names).
INSTANCES_KEY = "byoc.composite_instances"


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
        if not any(target.patterns for target in self.targets):
            return ir.passes.PassResult(model, modified=False)
        return ir.passes.PassResult(model, modified=bool(fuse(model, self.targets)))


def fuse(
    model: ir.Model,
    targets: Sequence[Target],
    among: Collection[ir.Node] | None = None,
    originals: Mapping[ir.Node, ir.Node] | None = None,
) -> list[ir.Node]:
    """Replace the matches of ``targets``' patterns in the main graph by composite calls,
    and return the calls in graph order.

    ``among`` restricts the matches to those nodes. ``originals`` names, for nodes that
    are copies, the node each copies: a composite records the originals as its members,
    since the report reads those.
    """
    graph = model.graph
    nodes, position = sorted_nodes(graph)
    claimed: set[ir.Node] = set() if among is None else set(nodes).difference(among)
    matcher = Matcher(graph, position, claimed, lambda n: opset_of(model, n))
    found: list[tuple[Target, CompositePattern, Match, Hashable]] = []
    taken_by_earlier = _AcceptedEarlier(model, targets)
    # Targets in priority order: a higher-priority target's patterns take nodes first,
    # anywhere in the graph, before a lower one's are tried.
    for rank, target in enumerate(targets):
        by_root: dict[str, list[CompositePattern]] = {}
        for composite in target.patterns:
            for op_type in composite.pattern.op_types:
                by_root.setdefault(op_type, []).append(composite)
        if not by_root:
            continue
        verdicts: dict[Hashable, bool] = {}
        for node in reversed(nodes):
            if node in claimed:
                continue
            for composite in by_root.get(node.op_type, ()):
                match = matcher.match(composite.pattern, node)
                if match is None:
                    continue
                if taken_by_earlier.accept_any(match.nodes, rank):
                    continue
                signature = _signature(match.nodes, match.inputs, match.outputs)
                if _accepted(composite, match, signature, verdicts):
                    claimed.update(match.nodes)
                    found.append((target, composite, match, signature))
                    break
    found.sort(key=lambda item: position[item[2].root])  # outline in graph order
    shared: dict[Hashable, ir.Function] = model.meta.setdefault(FUNCTIONS_KEY, {})
    instances: dict[str, int] = model.meta.setdefault(INSTANCES_KEY, {})
    taken = {node.name for node in nodes}
    originals = originals or {}
    calls: list[ir.Node] = []
    # Outlining a match gives its outputs new values (the call's); later matches read
    # those instead. Their boundary is otherwise what the matcher found: in the same
    # first-use order, since their own nodes have not changed. Nor has their
    # signature: the new values have the old ones' types, and the wiring is the same.
    renamed: dict[ir.Value, ir.Value] = {}
    for target, composite, match, signature in found:
        inputs = [renamed.get(value, value) for value in match.inputs]
        outputs = match.outputs
        key = (target.name, composite.name, signature)
        function = shared.get(key)
        if function is None:
            domain = target.composite_domain
            name, _ = numbered(composite.name, 0, {n for d, n, _ in model.functions if d == domain})
            call = outline(model, match.nodes, domain=domain, name=name)
            shared[key] = model.functions[(call.domain, call.op_type, "")]
        else:
            call = call_instead(model, match.nodes, function, inputs, outputs)
        renamed.update(zip(outputs, call.outputs, strict=True))
        call.name, number = numbered(composite.name, instances.get(composite.name, 0), taken)
        instances[composite.name] = number + 1
        taken.add(call.name)
        members = tuple(originals.get(n, n) for n in match.nodes)
        call.meta[COMPOSITE_KEY] = CompositeInfo(target.name, composite.name, members)
        call.metadata_props[PATTERN_KEY] = composite.name
        call.metadata_props[MEMBERS_KEY] = ",".join(n.name or "" for n in members)
        calls.append(call)
    if any(len(m.outputs) > len(m.root.outputs) for _, _, m, _ in found):
        ensure_sorted(graph)  # an exported inner value may have readers before the root
    return calls


def forget_functions(model: ir.Model, identifiers: Collection[ir.OperatorIdentifier]) -> None:
    """Remove composite functions no call uses any more, from the model and from the
    table later fusions share functions through."""
    for identifier in identifiers:
        model.functions.pop(identifier)
    shared: dict[Hashable, ir.Function] = model.meta.get(FUNCTIONS_KEY, {})
    for key in [k for k, f in shared.items() if f.identifier() in identifiers]:
        del shared[key]


class _AcceptedEarlier:
    """Whether a target ranked before a given one accepts a node as a plain op.

    Each (target, node) question is asked once: a node is tried as part of many
    candidate matches.
    """

    def __init__(self, model: ir.Model, targets: Sequence[Target]) -> None:
        self.model, self.targets = model, targets
        self.answers: dict[tuple[int, ir.Node], bool] = {}

    def accept_any(self, nodes: Sequence[ir.Node], rank: int) -> bool:
        return any(self.accepts(earlier, node) for node in nodes for earlier in range(rank))

    def accepts(self, rank: int, node: ir.Node) -> bool:
        answer = self.answers.get((rank, node))
        if answer is None:
            info = NodeInfo(node, opset_of(self.model, node))
            answer = self.answers[rank, node] = verdict(self.targets[rank], info) is None
        return answer


def _accepted(
    composite: CompositePattern,
    match: Match,
    signature: Hashable,
    verdicts: dict[Hashable, bool],
) -> bool:
    """The pattern's own check says yes. A structural check runs once per structure and
    its verdict is kept in ``verdicts``: a model of repeated blocks checks each block
    kind once."""
    if not composite.structural:
        return _evaluate(composite, match)
    key = (composite.name, signature, _value_structure(match))
    verdict = verdicts.get(key)
    if verdict is None:
        verdict = verdicts[key] = _evaluate(composite, match)
    return verdict


def _evaluate(composite: CompositePattern, match: Match) -> bool:
    """Run the pattern's check. One that raises declines: a vendor bug in one check must
    not stop the partitioning (the ops are then annotated one by one)."""
    try:
        return composite.evaluate(match) is None
    except Exception:  # a vendor check can fail in any way
        vendor_log.debug("pattern %s: its check raised on the match at %r", composite.name,
                         match.root.name, exc_info=True)
        return False


def _value_structure(match: Match) -> Hashable:
    """What a structural check may see beyond the signature: which inputs are constants,
    and the types of the values the members make (dimensions as they are, not as text:
    stricter than the signature, which only costs a check more now and then)."""
    return (
        tuple([is_constant(value) for value in match.inputs]),
        tuple([
            (value.dtype, None if value.shape is None else value.shape.dims)
            for node in match.nodes
            for value in node.outputs
        ]),
    )


def _signature(
    nodes: Sequence[ir.Node], inputs: list[ir.Value], outputs: list[ir.Value]
) -> Hashable:
    """What makes two instances interchangeable: ops, wiring, attributes, input types."""
    place = {node: i for i, node in enumerate(nodes)}
    param = {value: ("in", i) for i, value in enumerate(inputs)}
    parts = []
    for node in nodes:
        wiring = tuple([
            None if value is None else param.get(value) or _from_member(value, place)
            for value in node.inputs
        ])
        parts.append((node.domain, node.op_type, wiring, _attributes(node), len(node.outputs)))
    results = tuple([_from_member(v, place) for v in outputs])
    types = []
    for value in inputs:
        shape = value.shape
        types.append((value.dtype, None if shape is None else _dims_text(shape.dims)))
    return tuple(parts), results, tuple(types)


def _from_member(value: ir.Value, place: Mapping[ir.Node, int]) -> Hashable:
    """Which output of which member ``value`` is."""
    return place[value.producer()], value.index()


@functools.lru_cache(maxsize=1024)
def _dims_text(dims: tuple[int | ir.SymbolicDim, ...]) -> tuple[str, ...]:
    """Dimensions as text, so a symbolic "3" equals a static 3. Cached: repeated blocks
    repeat their shapes, and the cache is cheaper than the conversion."""
    return tuple(map(str, dims))


def _attributes(node: ir.Node) -> tuple[tuple[str, Any], ...]:
    """A node's attributes as sorted, hashable (name, value) pairs."""
    attributes = node.attributes
    if not attributes:
        return ()  # most members have none: skip building a view of them
    return tuple(sorted([(name, _hashable(attr)) for name, attr in attributes.items()]))


_SUBGRAPHS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def _hashable(attr: ir.Attr) -> Any:
    kind = attr.type
    if kind in _SUBGRAPHS:
        return ("graph", id(attr))  # never shared
    if kind == ir.AttributeType.TENSOR:
        tensor = attr.value
        return ("tensor", tensor.dtype, tuple(tensor.shape.numpy()), tensor.tobytes())
    value = attr.value
    return tuple(value) if isinstance(value, list | tuple) else value
