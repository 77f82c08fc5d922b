"""InlineFunctions: replace calls to the model's own functions by the ops they hold.

Exporters write modules as model-local functions: PyTorch's
``export_modules_as_functions`` makes each ``nn.Module`` a ``FunctionProto``, and
onnxscript models call their own functions too. To a target such a call is one op
(``__main__::Block``) that no target supports, so everything inside it would stay on the
host. Inlining turns the calls into the plain ops inside them, recursively, with
attribute references resolved and default attributes applied (onnx_ir's
:class:`~onnx_ir.passes.common.InlinePass` does the work), and removes the functions no
call uses any more.

Left as they are:

* functions in byoc's own domains (``byoc.<target>`` regions and
  ``byoc.<target>.composite`` composites, as in a model partitioned before): they are
  what byoc made, and the runtime finds them by their domain;
* functions that import a version of an opset other than the model's, or that a call
  passes a graph attribute to: they cannot be inlined as they are, and a call keeps
  computing the right thing on the host;
* every function, when functions call each other in a cycle.

An inlined node is named ``<call>/<node in the function>`` (``/b1/Block/Conv_0``), so a
name in the report leads back to the call it came from; nested calls give nested
prefixes. A note says what was inlined (``model.meta["byoc.load_notes"]``).
"""

from __future__ import annotations

from collections import Counter

import onnx_ir as ir
from onnx_ir.passes.common import InlinePass, ShapeInferencePass

from byoc_sdk.loader import NOTES_KEY

_GRAPH_ATTRIBUTES = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


class InlineFunctionsPass(ir.passes.InPlacePass):
    """Inline every call to a model-local function outside byoc's own domains."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if not model.functions:
            return ir.passes.PassResult(model, modified=False)
        calls, given_graphs = _calls(model)
        inlinable = _inlinable(model, given_graphs)
        if not any(op_id in inlinable for op_id in calls):
            return ir.passes.PassResult(model, modified=False)
        notes: list[str] = model.meta.setdefault(NOTES_KEY, [])
        try:
            _NamingInlinePass(lambda function: function.identifier() in inlinable)(model)
        except ir.passes.PreconditionError as error:  # a cycle; nothing was changed yet
            notes.append(f"model-local functions not inlined, calls stay on the host: {error}")
            return ir.passes.PassResult(model, modified=False)
        # Values inside a function body carry no types; targets ask for shapes.
        ShapeInferencePass(strict_mode=False)(model)
        inlined = Counter({op_id: n for op_id, n in calls.items() if op_id in inlinable})
        listed = ", ".join(f"{_label(op_id)} x{n}" for op_id, n in sorted(inlined.items()))
        notes.append(
            f"inlined the model-local functions {listed} (x: call sites) so "
            "that targets see the ops inside them; their nodes are named <call>/<node>"
        )
        return ir.passes.PassResult(model, modified=True)


class _NamingInlinePass(InlinePass):
    """InlinePass naming each inlined node after its call site.

    InlinePass keeps a body node's own name (``Conv_0``, ``Conv_0_2``, ...), which says
    nothing of the call it came from; exporters name calls by module path (``/b1/Block``).
    """

    def _instantiate_call(self, node: ir.Node, call_site_id: str):  # type: ignore[override]
        body = list(self._functions[node.op_identifier()])
        nodes, values = super()._instantiate_call(node, call_site_id)
        for original, new in zip(body, nodes, strict=True):
            name = f"{call_site_id}/{original.name or original.op_type}"
            candidate, n = name, 1
            while candidate in self._used_node_names:
                n += 1
                candidate = f"{name}_{n}"
            self._used_node_names.add(candidate)
            new.name = candidate
        return nodes, values


def _is_byoc_domain(domain: str) -> bool:
    """Whether ``domain`` is one byoc writes: ``byoc.<target>[.composite]``."""
    return domain == "byoc" or domain.startswith("byoc.")


def _calls(model: ir.Model) -> tuple[Counter[ir.OperatorIdentifier], set[ir.OperatorIdentifier]]:
    """How often each model-local function is called, in any graph or function, and which
    functions some call passes a graph attribute to (InlinePass cannot inline those)."""
    calls: Counter[ir.OperatorIdentifier] = Counter()
    given_graphs: set[ir.OperatorIdentifier] = set()
    for graph in (model.graph, *(f.graph for f in model.functions.values())):
        for node in ir.traversal.RecursiveGraphIterator(graph):
            op_id = node.op_identifier()
            if op_id in model.functions:
                calls[op_id] += 1
                if any(attr.type in _GRAPH_ATTRIBUTES for attr in node.attributes.values()):
                    given_graphs.add(op_id)
    return calls, given_graphs


def _inlinable(model: ir.Model, given_graphs: set[ir.OperatorIdentifier]
               ) -> set[ir.OperatorIdentifier]:
    """The functions InlinePass can inline and byoc should (see the module docstring)."""
    inlinable = set()
    for op_id, function in model.functions.items():
        if _is_byoc_domain(function.domain) or op_id in given_graphs:
            continue
        if any(attr.type in _GRAPH_ATTRIBUTES for attr in function.attributes.values()):
            continue
        if any(model.opset_imports.get(domain, version) != version
               for domain, version in function.opset_imports.items()):
            continue
        inlinable.add(op_id)
    return inlinable


def _label(op_id: ir.OperatorIdentifier) -> str:
    domain, name, overload = op_id
    return f"{domain}::{name}" + (f":{overload}" if overload else "")
