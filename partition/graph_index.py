"""A compact integer view of a graph's dependencies, shared by the passes.

Passes over 100k-node graphs cannot afford to walk ``onnx_ir`` objects repeatedly;
they index the nodes once (positions in topological order, predecessor and successor
lists) and work on integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as ir


@dataclass
class GraphIndex:
    """Nodes of one graph in topological order, with their dependencies by position.

    A node holding subgraphs (If, Loop, Scan) also depends on the producers of the
    outer values its subgraphs read, though no input edge says so.
    """

    nodes: list[ir.Node]
    position: dict[ir.Node, int]
    preds: list[list[int]]
    succs: list[list[int]]

    @classmethod
    def build(cls, graph: ir.Graph) -> GraphIndex:
        nodes, position = sorted_nodes(graph)
        preds: list[list[int]] = []
        succs: list[list[int]] = [[] for _ in nodes]
        for i, node in enumerate(nodes):
            mine: dict[int, None] = {}
            for value in _read_values(node, graph):
                producer = None if value is None else value.producer()
                if producer is not None and producer in position:
                    mine[position[producer]] = None
            preds.append(list(mine))
            for p in mine:
                succs[p].append(i)
        return cls(nodes, position, preds, succs)

    def __len__(self) -> int:
        return len(self.nodes)


def ensure_sorted(graph: ir.Graph) -> None:
    """Sort ``graph`` topologically unless it already is (a linear check)."""
    if _positions_if_sorted(graph) is None:
        graph.sort()


def sorted_nodes(graph: ir.Graph) -> tuple[list[ir.Node], dict[ir.Node, int]]:
    """The nodes of ``graph`` in topological order and their positions, sorting the graph
    first if needed; one walk when it already is sorted (as the passes keep it)."""
    position = _positions_if_sorted(graph)
    if position is None:
        graph.sort()
        position = {node: i for i, node in enumerate(graph)}
    return list(position), position


def _positions_if_sorted(graph: ir.Graph) -> dict[ir.Node, int] | None:
    """Each node's position, or ``None`` if some node reads a value of ``graph`` that a
    later node produces."""
    position: dict[ir.Node, int] = {}
    for node in graph:
        for value in node.inputs:
            if value is not None:
                producer = value.producer()
                if producer is not None and producer not in position and producer.graph is graph:
                    return None
        position[node] = len(position)
    return position


_SUBGRAPH_TYPES = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def has_subgraphs(node: ir.Node) -> bool:
    attributes = node.attributes
    # Most nodes have no attributes: skip building a view of them.
    return bool(attributes) and any(attr.type in _SUBGRAPH_TYPES for attr in attributes.values())


def _read_values(node: ir.Node, graph: ir.Graph) -> Sequence[ir.Value | None]:
    """The values ``node`` reads, its inputs (``None`` for omitted ones) first."""
    if has_subgraphs(node):
        return [*node.inputs, *captured_values(node, graph)]
    return node.inputs


def captured_values(node: ir.Node, graph: ir.Graph) -> list[ir.Value]:
    """Values of ``graph`` that the subgraphs of ``node`` read from the outer scope."""
    found: dict[ir.Value, None] = {}
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            subgraphs = [attr.value]
        elif attr.type == ir.AttributeType.GRAPHS:
            subgraphs = list(attr.value)
        else:
            continue
        for subgraph in subgraphs:
            for inner in ir.traversal.RecursiveGraphIterator(subgraph):
                for value in inner.inputs:
                    if value is not None and value.graph is graph:
                        found[value] = None
    return list(found)
