"""Example target ``jsondemo``: a codegen that describes each region as a JSON graph.

This is the route of TVM's JSON runtime (used for TensorRT and DNNL): the codegen does
little more than translate ONNX nodes into the vendor's own op names, and the vendor
runtime — which owns the real kernels, here numpy — builds its engine from the graph
when the model loads. The codegen returns a :class:`~byoc_sdk.JsonGraph` naming the
runtime; the format is documented in :mod:`examples.targets.json_graph_runtime`.

Constants never go into the JSON: the graph refers to them by name and lists the
names in the artifact's ``constants``; byoc stores each once in the package and hands
the runtime the arrays when it loads.

Unlike ``cdemo``, which expands composites into their ops, this backend has a fused
``matmul_add`` op of its own, so a ``matmul_add`` composite call becomes one node.
"""

from __future__ import annotations

from byoc_sdk import JsonGraph, Region, RegionPolicy, Target

from .json_graph_runtime import FORMAT, VERSION, JsonDemoRuntime
from .ops import declare_support, lower


def codegen(region: Region) -> JsonGraph:
    """The JSON graph of ``region``, run by :class:`JsonDemoRuntime`."""
    program = lower(region, keep_composites=True)
    graph = {
        "format": FORMAT,
        "version": VERSION,
        "inputs": [spec.name for spec in program.inputs],
        "outputs": [spec.name for spec in program.outputs],
        "constants": program.constant_names,
        "nodes": [
            {"op": step.op, "inputs": list(step.inputs), "outputs": [step.output], "attrs": {}}
            for step in program.steps
        ],
    }
    return JsonGraph(graph, runtime=JsonDemoRuntime.name, constants=program.constant_names)


target = declare_support(Target(
    "jsondemo",
    version="1.0.0",
    vendor="byoc examples",
    description="Example: JSON graph per region, run by the jsondemo runtime (numpy)",
    policy=RegionPolicy.keep_all(),
    codegen=codegen,
))
