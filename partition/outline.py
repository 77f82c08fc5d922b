"""Moving a set of nodes into a model-local function, calling functions, and back.

Both composites (MergeComposite) and regions (PartitionGraph) are made by outlining:
the nodes move, unchanged, into a new ONNX function, and one call node takes their
place. The model stays valid ONNX throughout, so onnxruntime can run it at every stage
(it inlines local functions) and Netron can show it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import onnx_ir as ir

from partition.names import numbered


def boundary(nodes: Sequence[ir.Node]) -> tuple[list[ir.Value], list[ir.Value]]:
    """The values flowing into ``nodes`` (first-use order) and out of them (node order).

    A value flows out when a node outside the set, a subgraph, or the graph's outputs
    read it.
    """
    inside = set(nodes)
    inputs: dict[ir.Value, None] = {}
    outputs: list[ir.Value] = []
    for node in nodes:
        for value in node.inputs:
            if value is not None and value.producer() not in inside:
                inputs[value] = None
        for value in node.outputs:
            if value.is_graph_output() or _read_outside(value, inside):
                outputs.append(value)
    return list(inputs), outputs


def _read_outside(value: ir.Value, inside: Collection[ir.Node]) -> bool:
    """True if a node not in ``inside`` reads ``value``."""
    # A plain loop, not any() over a generator: this runs for every output of every
    # match and region, and the generator costs more than the test.
    for user, _ in value.uses():  # noqa: SIM110
        if user not in inside:
            return True
    return False


def outline(
    model: ir.Model,
    nodes: Sequence[ir.Node],
    *,
    domain: str,
    name: str,
    bind: Collection[ir.Value] = (),
) -> ir.Node:
    """Replace ``nodes`` (in topological order) of the main graph by a call to a new function.

    Inputs in ``bind`` (constants) become ``Constant`` nodes inside the function instead
    of call inputs. Outer values keep their names, so the rest of the graph reads the
    same. Initializers left without a reader are dropped. Returns the call node, placed
    where the last node was; the caller re-sorts the graph if other nodes must move.
    """
    inside = set(nodes)
    inputs, outputs = boundary(nodes)
    names = {node.name for node in nodes}  # a Constant's name must not repeat one of them
    body: list[ir.Node] = []
    params: list[ir.Value] = []
    call_inputs: list[ir.Value] = []
    for value in inputs:
        if value in bind and _taken_whole(value, inside):
            # The function takes the initializer over: its readers need no rewiring,
            # which is most of the cost of binding a weight.
            model.graph.initializers.pop(value.name)
            body.append(_constant(value, value, names))
            continue
        inner = ir.Value(
            name=value.name,
            type=value.type,
            shape=value.shape,
            metadata_props=dict(value.metadata_props),
        )
        if value in bind:
            body.append(_constant(value, inner, names))
        else:
            params.append(inner)
            call_inputs.append(value)
        for user, index in value.uses():  # a snapshot: safe to change uses while iterating
            if user in inside:
                user.replace_input_with(index, inner)
    call = _swap_in_call(model.graph, nodes, call_inputs, outputs, domain, name)
    _drop_unread_initializers(model.graph, inputs)
    body.extend(nodes)
    imports = {
        d: model.opset_imports[d] for d in {n.domain for n in body} if d in model.opset_imports
    }
    imports.setdefault("", model.opset_imports.get("", 1))
    function = ir.Function(
        domain,
        name,
        graph=ir.Graph(params, outputs, nodes=body, opset_imports=imports, name=name),
        attributes=[],
    )
    model.functions[function.identifier()] = function
    model.opset_imports.setdefault(domain, 1)
    return call


def _taken_whole(value: ir.Value, inside: Collection[ir.Node]) -> bool:
    """``value`` is an initializer that only nodes in ``inside`` read."""
    return value.is_initializer() and not value.is_graph_output() and not _read_outside(
        value, inside)


def _constant(value: ir.Value, output: ir.Value, taken: set[str]) -> ir.Node:
    """A ``Constant`` node holding ``value``'s tensor, producing ``output``, named
    ``<value>_const`` unless that name is ``taken`` (then added to it)."""
    name = f"{value.name}_const"
    if name in taken:
        name, _ = numbered(name, 0, taken)
        taken.add(name)
    return ir.Node("", "Constant", [], [ir.AttrTensor("value", value.const_value)],
                   outputs=[output], name=name)


def call_instead(
    model: ir.Model,
    nodes: Sequence[ir.Node],
    function: ir.Function,
    inputs: list[ir.Value],
    outputs: list[ir.Value],
) -> ir.Node:
    """Replace ``nodes`` by a call to an existing ``function`` that computes the same.

    ``inputs`` and ``outputs`` are the :func:`boundary` of ``nodes``; the caller
    guarantees ``function``'s body has the structure of ``nodes`` with its parameters
    and results in that order. The replaced nodes are detached: they keep their names
    and attributes but read nothing any more.
    """
    call = _swap_in_call(model.graph, nodes, inputs, outputs, function.domain, function.name)
    for node in nodes:
        node.resize_inputs(0)
    return call


def inline(model: ir.Model, call: ir.Node, originals: Sequence[ir.Node] = ()) -> list[ir.Node]:
    """Put a copy of the body of the function ``call`` calls in place of the call.

    When given ``originals`` (the nodes the call stands for, in body order), the copies
    and their outputs take their names: a function shared by several calls holds the
    names of one of them only. The function itself stays in the model (other calls may
    share it). Returns the new nodes.
    """
    graph = model.graph
    copy = model.functions[(call.domain, call.op_type, call.overload)].clone()
    body = list(copy)
    results = list(copy.outputs)
    copy.graph.outputs.clear()  # a value may be the output of one graph only
    for param, outer in zip(copy.inputs, call.inputs, strict=True):
        for user, index in list(param.uses()):
            user.replace_input_with(index, outer)
    for inner, outer in zip(results, call.outputs, strict=True):
        _redirect(graph, outer, inner, keep=(call,))
    copy.graph.remove(body)
    for node, original in zip(body, originals, strict=False):
        node.name = original.name
        for value, named in zip(node.outputs, original.outputs, strict=True):
            value.name = named.name
    graph.insert_before(call, body)
    graph.remove(call)
    return body


def _swap_in_call(
    graph: ir.Graph,
    nodes: Sequence[ir.Node],
    inputs: list[ir.Value],
    outputs: list[ir.Value],
    domain: str,
    name: str,
) -> ir.Node:
    """Put a call node where ``nodes`` were: it reads ``inputs`` and takes over ``outputs``."""
    inside = set(nodes)
    call_outputs = [ir.Value(name=v.name, type=v.type, shape=v.shape) for v in outputs]
    for value, outer in zip(outputs, call_outputs, strict=True):
        _redirect(graph, value, outer, keep=inside)
    call = ir.Node(domain, name, inputs, outputs=call_outputs, name=name)
    graph.insert_after(nodes[-1], call)
    graph.remove(nodes)
    return call


def _drop_unread_initializers(graph: ir.Graph, values: list[ir.Value]) -> None:
    for value in values:
        if value.is_initializer() and not value.uses() and not value.is_graph_output():
            graph.initializers.pop(value.name)


def _redirect(graph: ir.Graph, old: ir.Value, new: ir.Value, *, keep: Collection[ir.Node]) -> None:
    """Point the uses of ``old`` by nodes not in ``keep``, and graph outputs, at ``new``."""
    for user, index in old.uses():  # a snapshot: safe to change uses while iterating
        if user not in keep:
            user.replace_input_with(index, new)
    if old.is_graph_output():
        for i, output in enumerate(graph.outputs):
            if output is old:
                graph.outputs[i] = new
        new.name = old.name
