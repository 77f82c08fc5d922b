"""The vendor runtime of the example target ``jsondemo``: a JSON graph run with numpy.

This module is the run-time half of :mod:`examples.targets.json_graph`, and imports
nothing of it: a machine that only runs packages installs this module (through the
``byoc.runtimes`` entry point, or by importing it, which registers the runtime) and never
the codegen.

The graph format, version 1::

    {
      "format": "jsondemo", "version": 1,
      "inputs":    ["x"],                    # region inputs, in call order
      "outputs":   ["r"],                    # region outputs, in call order
      "constants": ["w", "b"],               # constants, by name (values come separately)
      "nodes": [                             # in execution order
        {"op": "matmul_add", "inputs": ["x", "w", "b"], "outputs": ["a"], "attrs": {}},
        {"op": "Relu",       "inputs": ["a"],           "outputs": ["r"], "attrs": {}}
      ]
    }

Ops are the ONNX op types of :mod:`examples.targets.kernels` plus the fused
``matmul_add``. Values are referred to by name; a node may read only region inputs,
constants and earlier nodes' outputs. The runtime checks all of that once, when it
loads, so a bad graph fails the build or the package load, never a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from byoc_sdk import Binary, JsonGraph, RegionSignature, VendorRuntime, register_runtime

from .kernels import BINARY, MATMUL, MATMUL_ADD, UNARY, matmul_add

FORMAT = "jsondemo"
VERSION = 1

#: op name -> (number of inputs, numpy function)
KERNELS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    **{name: (1, fn) for name, fn in UNARY.items()},
    **{name: (2, fn) for name, fn in BINARY.items()},
    MATMUL: (2, np.matmul),
    MATMUL_ADD: (3, matmul_add),
}


@register_runtime
class JsonDemoRuntime(VendorRuntime):
    """Interprets a ``jsondemo`` graph. Each run keeps its values in its own dict, so
    runs from several threads at once are safe (``thread_safe``)."""

    name = "jsondemo"
    thread_safe = True

    def __init__(
        self,
        artifact: JsonGraph | Binary,
        constants: Mapping[str, np.ndarray],
        signature: RegionSignature,
    ) -> None:
        if not isinstance(artifact, JsonGraph):
            raise TypeError(f"jsondemo runs JSON graphs, not {type(artifact).__name__}")
        graph = artifact.graph
        self.signature = signature
        self.inputs, self.outputs, self.nodes = _check_graph(graph, constants, signature)
        self.constants = {name: np.asarray(constants[name]) for name in graph["constants"]}
        self.last_nodes = 0

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        values: dict[str, np.ndarray] = dict(self.constants)
        values.update(zip(self.inputs, inputs, strict=True))
        for op, args, output in self.nodes:
            values[output] = KERNELS[op][1](*(values[a] for a in args))
        # Kernels keep float32 in, float32 out; the cast only guards against a surprise.
        return [np.asarray(values[name], dtype=np.float32) for name in self.outputs]

    def stats(self) -> Mapping[str, Any]:
        return {"nodes": len(self.nodes)}


def _check_graph(
    graph: Any, constants: Mapping[str, np.ndarray], signature: RegionSignature
) -> tuple[list[str], list[str], list[tuple[str, list[str], str]]]:
    """Validate a graph once, at load; returns inputs, outputs and (op, args, output)."""
    if not isinstance(graph, dict) or graph.get("format") != FORMAT:
        raise ValueError("not a jsondemo graph (no 'format': 'jsondemo')")
    if graph.get("version") != VERSION:
        raise ValueError(f"jsondemo graph version {graph.get('version')!r} is not supported "
                         f"(this runtime reads version {VERSION})")
    inputs, outputs = list(graph["inputs"]), list(graph["outputs"])
    if inputs != [s.name for s in signature.inputs] or \
            outputs != [s.name for s in signature.outputs]:
        raise ValueError(f"graph inputs/outputs {inputs}/{outputs} do not match region "
                         f"{signature.region}")
    missing = [name for name in graph["constants"] if name not in constants]
    if missing:
        raise ValueError(f"constants {missing} were not provided")
    known = set(inputs) | set(graph["constants"])
    nodes = []
    for index, node in enumerate(graph["nodes"]):
        op, args, outs = node["op"], list(node["inputs"]), list(node["outputs"])
        if op not in KERNELS:
            raise ValueError(f"node {index}: unknown op {op!r}")
        if len(args) != KERNELS[op][0] or len(outs) != 1:
            raise ValueError(f"node {index}: {op} takes {KERNELS[op][0]} inputs, 1 output")
        undefined = [a for a in args if a not in known]
        if undefined:
            raise ValueError(f"node {index} ({op}) reads undefined values {undefined}")
        known.add(outs[0])
        nodes.append((op, args, outs[0]))
    unproduced = [name for name in outputs if name not in known]
    if unproduced:
        raise ValueError(f"outputs {unproduced} are never computed")
    return inputs, outputs, nodes
