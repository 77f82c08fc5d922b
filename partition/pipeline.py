"""The whole flow: load, prepare, the four passes, and the report.

``partition_model`` is what ``byoc partition`` and ``byoc_sdk.partition_model`` run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir

from byoc_sdk import versions
from byoc_sdk.bulk import bulk_allocation
from byoc_sdk.flops import node_flops
from byoc_sdk.loader import NOTES_KEY, SOURCE_KEY, ModelSource, load_external_data, load_model
from byoc_sdk.registry import resolve_targets
from byoc_sdk.report import NodeRecord, PartitionReport, RegionRecord
from byoc_sdk.target import NEEDS_STATIC_SHAPES, Target
from partition.annotate import AnnotateTargetPass
from partition.decision import HOST, composite_of, decision_of
from partition.fold_constants import FOLDED_KEY
from partition.merge_composite import MergeCompositePass
from partition.merge_regions import REGIONS_KEY, MergeRegionsPass, RegionPlan
from partition.partition_graph import PartitionGraphPass
from partition.policy import RegionPolicy
from partition.prepare import PrepareGraphPass

Progress = Callable[[str], None]


@dataclass
class PartitionResult:
    """A partitioned model (still valid ONNX) and the report of how it was cut."""

    model: ir.Model
    report: PartitionReport
    targets: list[Target]

    def to_proto(self) -> onnx.ModelProto:
        """The model as a ``ModelProto`` with the IR version onnxruntime accepts, every
        tensor in it (external data read in)."""
        versions.pin(self.model)
        load_external_data(self.model)
        return ir.to_proto(self.model)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path``. A model that came with external data writes its
        tensors of more than 1 KiB to ``<name>.data`` beside it, as the original did:
        initializers, and the ``Constant`` nodes that bound weights became in region
        functions (onnx_ir's writer moves initializers only, so it would inline those)."""
        versions.pin(self.model)
        path = Path(path)
        if not load_external_data(self.model):
            ir.save(self.model, path)
            return
        data = path.with_name(f"{path.name}.data")
        data.unlink(missing_ok=True)  # onnx appends to an existing file; all is in memory
        onnx.save_model(ir.to_proto(self.model), path, save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data.name,
                        size_threshold=1024, convert_attribute=True)


def partition_model(
    model: ir.Model | ModelSource,
    targets: Sequence[Target | str],
    *,
    policy: RegionPolicy | None = None,
    progress: Progress | None = None,
) -> PartitionResult:
    """Partition ``model`` between ``targets`` (names or objects) and the host.

    ``model`` is an ``onnx_ir`` model (changed in place) or anything
    :func:`~byoc_sdk.loader.load_model` takes. ``policy`` overrides every target's
    region policy. ``progress`` is called with the name of each stage as it starts.
    """
    with bulk_allocation():
        return _partition(model, targets, policy, progress or (lambda _stage: None))


def _partition(
    model: ir.Model | ModelSource,
    targets: Sequence[Target | str],
    policy: RegionPolicy | None,
    say: Progress,
) -> PartitionResult:
    seconds: dict[str, float] = {}
    if not isinstance(model, ir.Model):
        say("load")
        start = time.perf_counter()
        model = load_model(model)
        seconds["load"] = time.perf_counter() - start
    resolved = resolve_targets(targets)
    stages: list[tuple[str, ir.passes.PassBase]] = [
        ("prepare", PrepareGraphPass()),
        ("merge composite", MergeCompositePass(resolved)),
        ("annotate", AnnotateTargetPass(resolved)),
        ("merge regions", MergeRegionsPass(resolved, policy)),
    ]
    original: list[ir.Node] = []
    flops: dict[ir.Node, int] = {}
    for stage, pass_ in stages:
        say(stage)
        start = time.perf_counter()
        pass_(model)
        seconds[stage] = time.perf_counter() - start
        if stage == "prepare":
            # Before composites detach their members from the values they read.
            original = list(model.graph)
            flops = {node: node_flops(node) for node in original}
    plans: list[RegionPlan] = model.meta[REGIONS_KEY]
    members = _composite_members(model.graph)
    say("partition")
    start = time.perf_counter()
    PartitionGraphPass(resolved)(model)
    seconds["partition"] = time.perf_counter() - start
    say("report")
    start = time.perf_counter()
    report = _report(model, resolved, original, flops, members, plans)
    seconds["report"] = time.perf_counter() - start
    report.seconds = seconds
    return PartitionResult(model, report, resolved)


def _composite_members(graph: ir.Graph) -> dict[ir.Node, ir.Node]:
    """Original node -> the composite call that holds it."""
    members = {}
    for node in graph:
        composite = composite_of(node)
        if composite is not None:
            for member in composite.nodes:
                members[member] = node
    return members


def _report(
    model: ir.Model,
    targets: list[Target],
    original: list[ir.Node],
    flops_of: dict[ir.Node, int],
    members: dict[ir.Node, ir.Node],
    plans: list[RegionPlan],
) -> PartitionReport:
    records: list[NodeRecord] = []
    region_flops: dict[str, int] = {}
    region_nodes: dict[str, int] = {}
    for node in original:
        # A member of a composite in the graph speaks through it: a node carries a
        # decision of its own only where no composite holds it (members that a dropped
        # composite put back, and fused again, gave theirs up).
        holder = members.get(node)
        decision = decision_of(node if holder is None else holder)
        flops = flops_of[node]
        records.append(
            NodeRecord(
                node.name or node.op_type,
                node.op_type,
                decision.target or HOST,
                decision.region,
                decision.reason,
                flops,
                holder.name if holder else None,
            )
        )
        if decision.region:
            region_flops[decision.region] = region_flops.get(decision.region, 0) + flops
            region_nodes[decision.region] = region_nodes.get(decision.region, 0) + 1
    calls = {n.name: n for n in model.graph if "byoc.region" in n.metadata_props}
    regions = [
        RegionRecord(
            plan.name,
            plan.target,
            region_nodes.get(plan.name, 0),
            region_flops.get(plan.name, 0),
            [v.name for v in calls[plan.name].inputs if v is not None],
            [v.name for v in calls[plan.name].outputs],
        )
        for plan in plans
    ]
    return PartitionReport(
        source=str(model.meta.get(SOURCE_KEY, "<model>")),
        targets=[t.name for t in targets],
        nodes=records,
        regions=regions,
        notes=[*model.meta.get(NOTES_KEY, []), *_static_shapes_hint(model, records)],
        folded=list(model.meta.get(FOLDED_KEY, [])),
    )


def _static_shapes_hint(model: ir.Model, records: list[NodeRecord]) -> list[str]:
    """A note when nodes stayed on the host for want of static shapes while graph inputs
    have dynamic dimensions: giving those shapes is the fix, and nothing else says so."""
    held = sum(1 for r in records if r.target == HOST and NEEDS_STATIC_SHAPES in r.reason)
    dynamic = [v for v in model.graph.inputs if not v.is_initializer()
               and (v.shape is None or not v.shape.is_static())]
    if not held or not dynamic:
        return []
    shapes, examples = [], []
    for value in dynamic:
        dims = value.shape.dims if value.shape is not None else None
        shapes.append(f"{value.name} [{', '.join(map(str, dims))}]" if dims is not None
                      else f"{value.name} (rank unknown)")
        if dims is not None:  # a batch of one, say, for every dynamic dimension
            example = "x".join(str(d) if isinstance(d, int) else "1" for d in dims)
            examples.append(f"--input-shape {value.name}={example}")
    fix = f"e.g. {' '.join(examples)}" if examples else "--input-shape NAME=AxBxC"
    return [f"{held} nodes stayed on the host for want of static shapes, and inputs with "
            f"dynamic dimensions feed the model ({'; '.join(shapes)}): fix them with {fix} "
            "(input_shapes= from Python)"]
