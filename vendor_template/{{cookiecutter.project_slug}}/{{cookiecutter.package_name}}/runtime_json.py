"""The runtime: loads a JSON graph once, runs it many times (numpy stands in for the device).

It imports neither the target nor the codegen, so a machine that only runs packages
needs nothing else of this backend. byoc finds it through the ``byoc.runtimes`` entry
point named in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from byoc_sdk import Binary, JsonGraph, RegionSignature, VendorRuntime

from .about import RUNTIME
from .kernels import KERNELS, execute

FORMAT = f"{RUNTIME}-graph"
VERSION = 1


class DeviceRuntime(VendorRuntime):
    """Runs one region's graph. A run keeps its values to itself: thread-safe."""

    name = RUNTIME
    thread_safe = True

    def __init__(self, artifact: JsonGraph | Binary, constants: Mapping[str, np.ndarray],
                 signature: RegionSignature) -> None:
        if not isinstance(artifact, JsonGraph):
            raise TypeError(f"{RUNTIME} runs JSON graphs, not {type(artifact).__name__}")
        graph = artifact.graph
        _check(graph, constants, signature)
        self.inputs: list[str] = graph["inputs"]
        self.outputs: list[str] = graph["outputs"]
        self.nodes = [(n["op"], n["inputs"], n["output"]) for n in graph["nodes"]]
        self.constants = {n: np.asarray(constants[n], dtype=np.float32)
                          for n in graph["constants"]}

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        values = dict(self.constants)
        values.update(zip(self.inputs, inputs, strict=True))
        for op, args, output in self.nodes:
            values[output] = execute(op, [values[a] for a in args])
        return [values[name] for name in self.outputs]

    def stats(self) -> Mapping[str, Any]:
        return {"nodes": len(self.nodes)}


def _check(graph: Any, constants: Mapping[str, np.ndarray], signature: RegionSignature) -> None:
    """Validate a graph once, when it loads: a bad graph fails the load, never a run."""
    if not isinstance(graph, dict) or graph.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} graph")
    if graph.get("version") != VERSION:
        raise ValueError(f"{FORMAT} version {graph.get('version')!r} is not supported "
                         f"(this runtime reads version {VERSION})")
    if graph["inputs"] != [s.name for s in signature.inputs] or \
            graph["outputs"] != [s.name for s in signature.outputs]:
        raise ValueError(f"the graph does not fit region {signature.region}")
    missing = [n for n in graph["constants"] if n not in constants]
    if missing:
        raise ValueError(f"constants {missing} were not provided")
    shapes = {s.name: tuple(s.shape) for s in signature.inputs}
    shapes.update({n: tuple(np.shape(constants[n])) for n in graph["constants"]})
    for index, node in enumerate(graph["nodes"]):
        op, args = node["op"], node["inputs"]
        if op not in KERNELS or len(args) != KERNELS[op][0]:
            raise ValueError(f"node {index}: unknown op {op!r} or wrong number of inputs")
        undefined = [a for a in args if a not in shapes]
        if undefined:
            raise ValueError(f"node {index} ({op}) reads undefined values {undefined}")
        shapes[node["output"]] = tuple(node["shape"])
    for spec in signature.outputs:
        if shapes.get(spec.name) != tuple(spec.shape):
            raise ValueError(f"output {spec.name} is not computed as {spec.shape}")
