"""The codegen: each region becomes a JSON graph that the runtime (runtime.py) interprets.

The route of TVM's JSON runtime: the codegen names the device's ops, the runtime builds
its engine from the graph when a model loads. Constants never go into the JSON: the
graph names them, and byoc hands the runtime their values.
"""

from __future__ import annotations

from byoc_sdk import JsonGraph, Region

from .about import RUNTIME
from .lowering import lower

FORMAT = f"{RUNTIME}-graph"
VERSION = 1


def codegen(region: Region) -> JsonGraph:
    """The JSON graph of ``region``."""
    program = lower(region)
    graph = {
        "format": FORMAT,
        "version": VERSION,
        "inputs": program.inputs,
        "outputs": program.outputs,
        "constants": program.constants,
        "nodes": [{"op": s.op, "inputs": list(s.inputs), "output": s.output,
                   "shape": list(s.shape)} for s in program.steps],
    }
    return JsonGraph(graph, runtime=RUNTIME, constants=program.constants)
