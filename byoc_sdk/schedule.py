"""Cutting a partitioned model into the steps the runtime executes, in order.

Compiled regions become *external* steps. Everything else — host nodes, and regions
whose build fell back to the host — is grouped into *host* steps: the same cycle-free
grouping the partitioner uses for regions, with host nodes as the one "target" and
compiled regions left as single units. Each host group becomes a small ONNX model of
its own, run by onnxruntime. Steps are ordered topologically.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import onnx
import onnx_ir as ir

from byoc_sdk import versions
from byoc_sdk.errors import OnnxRuntimeError
from byoc_sdk.loader import attribute_graphs
from partition.graph_index import GraphIndex, captured_values
from partition.merge_regions import HOST, group


@dataclass(frozen=True)
class StepPlan:
    """One step before it has a runner: which nodes, which values in and out."""

    kind: str  # "external" or "host"
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[int, ...]  # positions in the main graph


def plan_steps(model: ir.Model, external: Collection[str]) -> list[StepPlan]:
    """Steps for ``model`` where the region call nodes named in ``external`` run as
    external steps; everything else runs on the host."""
    graph = model.graph
    index = GraphIndex.build(graph)
    is_external = [node.name in external for node in index.nodes]
    labels = [HOST if ext else 0 for ext in is_external]
    host_groups = group(index, labels, [False])
    unit = list(range(len(index)))
    units: dict[int, list[int]] = {v: [v] for v in range(len(index)) if is_external[v]}
    for members in host_groups:
        for v in members:
            unit[v] = members[0]
        units[members[0]] = members
    order = _unit_order(index, unit, units)
    graph_outputs = {v.name for v in graph.outputs}
    steps: list[StepPlan] = []
    host_count = 0
    for head in order:
        members = units[head]
        inside = set(members)
        reads: dict[str, None] = {}
        writes: list[str] = []
        for v in members:
            node = index.nodes[v]
            for value in (*node.inputs, *captured_values(node, graph)):
                if value is not None and (value.producer() is None or
                                          index.position.get(value.producer()) not in inside):
                    reads[value.name] = None
            for value in node.outputs:
                if value.name in graph_outputs or any(
                    index.position.get(user) not in inside for user, _ in value.uses()
                ):
                    writes.append(value.name)
        if is_external[head]:
            kind, name = "external", index.nodes[head].name
        elif not writes:
            continue  # dead nodes, read by nothing: onnxruntime refuses a session of them
        else:
            kind, name = "host", f"host_{host_count}"
            host_count += 1
        steps.append(StepPlan(kind, name, tuple(reads), tuple(writes), tuple(members)))
    return steps


def _unit_order(index: GraphIndex, unit: list[int], units: dict[int, list[int]]) -> list[int]:
    """Units (external nodes and host groups, by head position) in topological order."""
    preds: dict[int, set[int]] = {head: set() for head in units}
    for v, node_preds in enumerate(index.preds):
        for p in node_preds:
            if unit[p] != unit[v]:
                preds[unit[v]].add(unit[p])
    succs: dict[int, list[int]] = {head: [] for head in units}
    for head, before in preds.items():
        for p in before:
            succs[p].append(head)
    missing = {head: len(before) for head, before in preds.items()}
    ready = sorted(head for head, count in missing.items() if count == 0)
    order = []
    while ready:
        head = ready.pop(0)
        order.append(head)
        for s in sorted(succs[head]):
            missing[s] -= 1
            if missing[s] == 0:
                ready.append(s)
    if len(order) != len(units):
        raise AssertionError("the partitioned model's steps form a cycle")  # a partitioner bug
    return order


class ModelTables:
    """Lookups over one model that every host step's sub-model needs: the value types,
    initializers and local functions by name. Made once per model (``host_model`` on a
    model of thousands of host steps would otherwise rebuild them for each step)."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        graph = proto.graph
        self.infos = {i.name: i for i in (*graph.input, *graph.value_info, *graph.output)}
        self.initializers = {t.name: t for t in graph.initializer}
        # IR 10 lets one (domain, name) have several overloads, each node naming its own:
        # keyed without the overload, a step would carry one body for calls to all of them.
        self.functions = {_function_key(f): f for f in proto.functions}


def host_model(
    proto: onnx.ModelProto, plan: StepPlan, tables: ModelTables | None = None
) -> onnx.ModelProto:
    """A standalone ONNX model running one host step's nodes of ``proto``; ``tables``, when
    given, are ``ModelTables(proto)`` (made once for all of a model's steps)."""
    graph = proto.graph
    tables = tables or ModelTables(proto)
    infos, initializers = tables.infos, tables.initializers
    sub = onnx.GraphProto(name=plan.name)
    sub.node.extend(graph.node[i] for i in plan.nodes)
    for name in plan.inputs:
        if name in initializers:
            sub.initializer.append(initializers[name])
        else:
            sub.input.append(_info(graph, infos, name, plan))
    sub.output.extend(_info(graph, infos, name, plan) for name in plan.outputs)
    model = onnx.helper.make_model(
        sub, opset_imports=list(proto.opset_import), ir_version=versions.pinned_ir_version()
    )
    model.functions.extend(_functions_used(tables.functions, sub.node))
    return model


def _info(graph: onnx.GraphProto, infos: dict[str, onnx.ValueInfoProto], name: str,
          plan: StepPlan) -> onnx.ValueInfoProto:
    """The declared type of a value a host step reads or writes: its sub-model must
    declare each of its inputs and outputs."""
    if name in infos:
        return infos[name]
    # The loader types every value onnx or onnxruntime can infer, so an untyped one comes
    # from an op neither knows (a custom domain): the user must see which node, not a bug.
    # Looked up only here, on the way to an error: a model's steps are many.
    producer = next((node for node in graph.node if name in node.output), None)
    if producer is None:
        raise OnnxRuntimeError(f"value '{name}' has no type, so host step {plan.name} "
                               "cannot declare it", target="host", region=plan.name)
    op = f"{producer.domain}:{producer.op_type}" if producer.domain else producer.op_type
    raise OnnxRuntimeError(
        f"neither onnx nor onnxruntime knows op {op}, so its output '{name}' has no type "
        f"and host step {plan.name} cannot declare it",
        node=f"{producer.name or '#' + str(list(graph.node).index(producer))} ({op})",
        target="host", region=plan.name,
    )


FunctionKey = tuple[str, str, str]


def _function_key(function: onnx.FunctionProto) -> FunctionKey:
    return function.domain, function.name, function.overload


def _functions_used(functions: dict[FunctionKey, onnx.FunctionProto],
                    nodes) -> list[onnx.FunctionProto]:
    """The model-local functions (``functions``, by domain, name and overload) ``nodes``
    call, directly or through other functions."""
    found: dict[FunctionKey, onnx.FunctionProto] = {}
    pending = list(nodes)
    while pending:
        node = pending.pop()
        key = (node.domain, node.op_type, node.overload)
        if key in functions and key not in found:
            found[key] = functions[key]
            pending.extend(functions[key].node)
        for attr in node.attribute:
            for sub in attribute_graphs(attr):
                pending.extend(sub.node)
    return list(found.values())
