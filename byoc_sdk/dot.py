"""A Graphviz view of a partitioned model: one cluster per region, coloured by target.

Drawn from the partitioned model itself, so it shows exactly what was written: host
nodes in grey, each region's nodes inside a box labelled with its name and target,
composites as single nodes listing the ops they fused.
"""

from __future__ import annotations

import onnx_ir as ir

from partition.decision import PATTERN_KEY

_PALETTE = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5")
_HOST_COLOUR = "#d9d9d9"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class _DotWriter:
    def __init__(self, model: ir.Model, targets: list[str]) -> None:
        self.model = model
        self.colour = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(targets)}
        self.ids: dict[ir.Node, str] = {}
        self.clusters: set[ir.Node] = set()
        self.lines: list[str] = []

    def node_id(self, node: ir.Node) -> str:
        return self.ids.setdefault(node, f"n{len(self.ids)}")

    def function_of(self, call: ir.Node) -> ir.Function | None:
        return self.model.functions.get((call.domain, call.op_type, call.overload))

    def source(self, value: ir.Value, scope: dict[ir.Value, ir.Value]) -> ir.Node | None:
        """The drawn node producing ``value``, looking through function boundaries."""
        while value in scope:  # a function parameter: follow it to the call's input
            value = scope[value]
        producer = value.producer()
        while producer in self.clusters:
            function = self.function_of(producer)
            value = function.outputs[producer.outputs.index(value)]
            producer = value.producer()
        return producer

    def draw(self) -> str:
        self.lines = ["digraph partition {", "  rankdir=TB;", "  node [shape=box, style=filled];"]
        graph = self.model.graph
        scope: dict[ir.Value, ir.Value] = {}
        edges: list[tuple[ir.Node, list[ir.Value]]] = []
        for node in graph:
            target = node.metadata_props.get("byoc.target")
            region = node.metadata_props.get("byoc.region")
            function = self.function_of(node) if region and target != "host" else None
            if function is None:
                self._box(node, _HOST_COLOUR, "  ")
                edges.append((node, list(node.inputs)))
                continue
            self.clusters.add(node)
            scope.update(zip(function.inputs, node.inputs, strict=True))
            self.lines.append(f"  subgraph cluster_{region} {{")
            self.lines.append(f"    label={_quote(f'{region} ({target})')}; style=rounded;")
            for inner in function:
                if inner.op_type == "Constant" and not inner.inputs:
                    continue  # bound weights would drown the picture
                self._box(inner, self.colour.get(target, _HOST_COLOUR), "    ")
                edges.append((inner, list(inner.inputs)))
            self.lines.append("  }")
        for node, inputs in edges:
            for value in inputs:
                if value is None:
                    continue
                producer = self.source(value, scope)
                if producer is not None and producer in self.ids:
                    self.lines.append(f"  {self.node_id(producer)} -> {self.node_id(node)};")
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    def _box(self, node: ir.Node, colour: str, indent: str) -> None:
        label = f"{node.name}\n{node.op_type}"
        pattern = node.metadata_props.get(PATTERN_KEY)
        if pattern:
            function = self.function_of(node)
            ops = ", ".join(n.op_type for n in function) if function else ""
            label = f"{node.name}\n{ops}"
        self.lines.append(
            f"{indent}{self.node_id(node)} [label={_quote(label)}, fillcolor={_quote(colour)}];"
        )


def to_dot(model: ir.Model, targets: list[str]) -> str:
    """Graphviz source for a partitioned model; ``targets`` fixes the colour order."""
    return _DotWriter(model, targets).draw()
