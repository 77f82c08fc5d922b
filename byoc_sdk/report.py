"""The partition report: where every node went, why, and what that adds up to.

One record per node of the model after constant folding (composite members counted one
by one), one per region, and the nodes folded away. Rendered as text for
``byoc partition``, as per-node explanations for ``--explain``, and as JSON for
``--json``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from byoc_sdk.errors import one_line
from partition.decision import HOST


# Slots: a report holds one record per model node, 100k and more.
@dataclass(slots=True)
class NodeRecord:
    """One original node: ``target`` is "host" when no target runs it."""

    name: str
    op_type: str
    target: str
    region: str | None
    reason: str
    flops: int
    composite: str | None = None


@dataclass(slots=True)
class FoldedNode:
    """A node computed from constants alone, replaced by its result before partitioning."""

    name: str
    op_type: str


@dataclass(slots=True)
class RegionRecord:
    name: str
    target: str
    nodes: int
    flops: int
    inputs: list[str]
    outputs: list[str]


@dataclass
class TargetSummary:
    target: str
    regions: int = 0
    nodes: int = 0
    flops: int = 0


@dataclass
class PartitionReport:
    source: str
    targets: list[str]
    nodes: list[NodeRecord]
    regions: list[RegionRecord]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    folded: list[FoldedNode] = field(default_factory=list)

    @property
    def total_flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    def summary(self) -> list[TargetSummary]:
        """Per target (host last): regions, nodes and FLOPs placed there."""
        rows = {t: TargetSummary(t) for t in [*self.targets, HOST]}
        for node in self.nodes:
            rows[node.target].nodes += 1
            rows[node.target].flops += node.flops
        for region in self.regions:
            rows[region.target].regions += 1
        return list(rows.values())

    def placement(self) -> dict[str, list[str]]:
        """Node names by where they went: region names, and "host"."""
        placed: dict[str, list[str]] = defaultdict(list)
        for node in self.nodes:
            placed[node.region or HOST].append(node.name)
        return dict(placed)

    def not_offloaded(self) -> dict[str, Counter[str]]:
        """Host nodes grouped by reason, with op-type counts."""
        groups: dict[str, Counter[str]] = defaultdict(Counter)
        for node in self.nodes:
            if node.target == HOST:
                groups[node.reason][node.op_type] += 1
        return dict(sorted(groups.items(), key=lambda kv: -sum(kv[1].values())))

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "targets": self.targets,
            "summary": [asdict(s) for s in self.summary()],
            "total_flops": self.total_flops,
            "regions": [asdict(r) for r in self.regions],
            "not_offloaded": [
                {"reason": reason, "ops": dict(ops)} for reason, ops in self.not_offloaded().items()
            ],
            "nodes": [asdict(n) for n in self.nodes],
            "folded": [asdict(n) for n in self.folded],
            "notes": self.notes,
            "seconds": self.seconds,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self, *, explain: bool = False) -> str:
        """The text report; with ``explain``, one line per node saying where and why."""
        lines = [f"model: {self.source}  ({len(self.nodes)} nodes, {_flops(self.total_flops)})"]
        lines.extend(f"note: {note}" for note in self.notes)
        if self.folded:
            counts = Counter(n.op_type for n in self.folded)
            lines.append(f"note: {len(self.folded)} nodes computed from constants alone were "
                         "folded into constants: "
                         + ", ".join(f"{op} x{n}" for op, n in counts.most_common()))
        total_nodes, total_flops = max(len(self.nodes), 1), max(self.total_flops, 1)
        lines.append("")
        lines.append(f"{'target':<12}{'regions':>8}{'nodes':>14}{'FLOPs':>22}")
        for row in self.summary():
            regions = str(row.regions) if row.target != HOST else "-"
            lines.append(
                f"{row.target:<12}{regions:>8}"
                f"{row.nodes:>7} {row.nodes / total_nodes:>6.1%}"
                f"{_flops(row.flops):>15} {row.flops / total_flops:>6.1%}"
            )
        if self.regions:
            lines.append("")
            lines.append("regions:")
            for region in self.regions:
                lines.append(
                    f"  {region.name:<14} {region.nodes:>5} nodes {_flops(region.flops):>12}"
                    f"   {len(region.inputs)} in / {len(region.outputs)} out"
                )
        groups = self.not_offloaded()
        if groups:
            lines.append("")
            lines.append("not offloaded:")
            for reason, ops in groups.items():
                counts = ", ".join(f"{op} x{n}" for op, n in ops.most_common())
                lines.append(f"  {counts}: {reason}")
        if explain:
            lines.append("")
            lines.append("why each node went where it went:")
            for node in self.nodes:
                where = f"{node.target}/{node.region}" if node.region else node.target
                via = f" [in {node.composite}]" if node.composite else ""
                lines.append(f"  {node.name} ({node.op_type}) -> {where}{via}: {node.reason}")
            for node in self.folded:
                lines.append(f"  {node.name} ({node.op_type}) -> folded: computed from "
                             "constants alone")
        return "\n".join(one_line(line) for line in lines)


def _flops(value: int) -> str:
    """``value`` in the largest decimal unit it reaches once rounded to two decimals, up to
    PFLOP ("20.00 TFLOP"): 999,995,000 is 1000.00 MFLOP rounded, so "1.00 GFLOP". Below
    1000 it is shown exactly."""
    if value < 1000:
        return f"{value} FLOP"
    for unit, scale in (("kFLOP", 1e3), ("MFLOP", 1e6), ("GFLOP", 1e9), ("TFLOP", 1e12)):
        shown = f"{value / scale:.2f}"
        if float(shown) < 1000:
            return f"{shown} {unit}"
    return f"{value / 1e15:.2f} PFLOP"
