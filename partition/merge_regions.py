"""MergeCompilerRegions: group annotated nodes into regions that never form a cycle.

The grouping walks the graph in a topological order it chooses as it goes (Kahn's
algorithm), with at most one region open at a time:

* a ready node of the open region's target joins it — even with no edge to it, which
  is how siblings of one target merge into one region;
* a ready host node that does not read the open region runs next, since it may make
  more of the region's nodes ready;
* anything that reads the open region waits until the region closes, which it does
  when nothing else can be taken.

No node downstream of an open region is taken while it is open, so no path can leave a
region and come back into it, and every edge of the contracted graph points forward in
the order regions closed: the result has no cycle by construction, in O(nodes + edges).

Regions then face the targets' :class:`~partition.policy.RegionPolicy`; the nodes of a
rejected region go to the next target that accepted them, or to the host (with the rule
that sent them). A rejected composite is put back as its original nodes, which the
patterns of lower-priority targets may fuse again and are otherwise annotated anew as
plain ops. Grouping runs again until every region passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as ir

from byoc_sdk.target import Target
from partition.annotate import AnnotateTargetPass
from partition.decision import DECISION_KEY, Decision, composite_of, decision_of
from partition.graph_index import GraphIndex
from partition.merge_composite import forget_functions, fuse
from partition.names import numbered
from partition.outline import inline
from partition.policy import RegionPolicy

REGIONS_KEY = "byoc.regions"
#: ``node.meta`` key: on a copy made when a composite came apart, the node it copies.
COPY_OF_KEY = "byoc.copy_of"
HOST = -1


@dataclass
class RegionPlan:
    """A region before partitioning: its name, target and nodes in topological order."""

    name: str
    target: str
    nodes: list[ir.Node]


def group(index: GraphIndex, labels: Sequence[int], per_op: Sequence[bool]) -> list[list[int]]:
    """Group node positions into acyclic regions; ``labels`` holds a target number per
    node (lower numbers win when two targets could open a region) or ``HOST``."""
    n = len(index)
    missing = [len(p) for p in index.preds]
    region_of = [HOST] * n
    regions: list[list[int]] = []
    pending: list[list[int]] = [[] for _ in per_op]  # ready, waiting for their target's turn
    joinable: list[int] = []
    free_host: list[int] = []
    deferred_host: list[int] = []
    open_id, open_label = HOST, HOST

    def make_ready(v: int) -> None:
        label = labels[v]
        if label == HOST:
            reads_open = open_id != HOST and any(region_of[p] == open_id for p in index.preds[v])
            (deferred_host if reads_open else free_host).append(v)
        elif label == open_label and not per_op[label]:
            joinable.append(v)
        else:
            pending[label].append(v)

    def finish(v: int) -> None:
        for s in index.succs[v]:
            missing[s] -= 1
            if missing[s] == 0:
                make_ready(s)

    for v in range(n):
        if missing[v] == 0:
            make_ready(v)
    done = 0
    while done < n:
        if open_id != HOST and joinable:
            v = joinable.pop()
            region_of[v] = open_id
            regions[open_id].append(v)
        elif free_host:
            v = free_host.pop()
        elif open_id != HOST:
            open_id, open_label = HOST, HOST
            free_host.extend(deferred_host)
            deferred_host.clear()
            continue
        else:
            open_label = next(label for label, queue in enumerate(pending) if queue)
            open_id = len(regions)
            regions.append([])
            if per_op[open_label]:
                joinable.append(pending[open_label].pop())
            else:
                joinable.extend(reversed(pending[open_label]))
                pending[open_label].clear()
            continue
        done += 1
        finish(v)
        if open_id != HOST and per_op[open_label] and not joinable:
            open_id, open_label = HOST, HOST
            free_host.extend(deferred_host)
            deferred_host.clear()
    return [sorted(r) for r in regions]


class MergeRegionsPass(ir.passes.InPlacePass):
    """Plan the regions of every target; the plan goes to ``model.meta["byoc.regions"]``.

    ``policy`` overrides each target's own region policy when given. A composite whose
    region the policy drops is replaced in the graph by its original nodes, fused anew
    by lower-priority targets' patterns or annotated anew as plain ops.
    """

    def __init__(self, targets: Sequence[Target], policy: RegionPolicy | None = None) -> None:
        super().__init__()
        self.targets = list(targets)
        self.policy = policy
        self.number = {t.name: i for i, t in enumerate(self.targets)}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        per_op = [t.merge_style == "per-op" for t in self.targets]
        index, labels, decisions = self._label(model.graph)
        expanded = False
        while True:
            regions = group(index, labels, per_op)
            dropped: list[ir.Node] = []
            released: dict[int, list[ir.Node]] = {}
            if not self._prune(index, regions, labels, decisions, dropped, released):
                break
            if dropped:
                self._expand(model, dropped)
            if self._fuse_released(model, released) or dropped:
                # Composites came apart or were made: index and label the graph anew.
                index, labels, decisions = self._label(model.graph)
                expanded = True
        plans: list[RegionPlan] = []
        counts: dict[str, int] = {}
        # A region's name is its call node's and its function's: a model-local function
        # already in a target's domain (a user's, or one left by an earlier partition)
        # would otherwise be replaced by the region's body, and its callers run that.
        domains = {target.domain for target in self.targets}
        taken = {node.name for node in index.nodes}
        taken.update(name for domain, name, _ in model.functions if domain in domains)
        for region in regions:
            target = self.targets[labels[region[0]]]
            name, number = numbered(target.name, counts.get(target.name, 0), taken)
            counts[target.name] = number + 1
            for v in region:
                decisions[v].region = name
            plans.append(RegionPlan(name, target.name, [index.nodes[v] for v in region]))
        model.meta[REGIONS_KEY] = plans
        return ir.passes.PassResult(model, modified=expanded)

    def _label(self, graph: ir.Graph) -> tuple[GraphIndex, list[int], list[Decision | None]]:
        """Index ``graph``; each node's decision and target number (or ``HOST``)."""
        index = GraphIndex.build(graph)
        number = self.number
        decisions = [decision_of(node) for node in index.nodes]
        labels = [
            number[d.target] if d is not None and d.target in number else HOST for d in decisions
        ]
        return index, labels, decisions

    def _prune(
        self,
        index: GraphIndex,
        regions: list[list[int]],
        labels: list[int],
        decisions: list[Decision | None],
        dropped: list[ir.Node],
        released: dict[int, list[ir.Node]],
    ) -> bool:
        """Move the nodes of regions that fail their policy to the next target that
        accepts them, or to the host; composites among them go to ``dropped``, to be
        expanded, and plain nodes to ``released``, by the number of the target that let
        them go. True if any region failed."""
        pruned = False
        for region in regions:
            target = self.targets[labels[region[0]]]
            ops = [op for v in region for op in _member_ops(index.nodes[v])]
            reason = target.effective_policy(self.policy).rejects(
                nodes=len(ops),
                compute_heavy=any(op in target.compute_heavy_ops for op in ops),
                per_op=target.merge_style == "per-op",
            )
            if reason is None:
                continue
            pruned = True
            for v in region:
                decision = decisions[v]
                composite = composite_of(index.nodes[v])
                if composite is not None:  # no fallbacks: its members are annotated anew
                    decision.dropped += (
                        f"{target.name} pattern {composite.pattern} dropped: {reason}",
                    )
                    dropped.append(index.nodes[v])
                    continue
                decision.dropped += (f"{target.name} supports it, but {reason}",)
                released.setdefault(labels[v], []).append(index.nodes[v])
                story = "; ".join(decision.dropped)
                if decision.fallbacks:
                    following, *rest = decision.fallbacks
                    labels[v] = self.number[following]
                    decision.target, decision.fallbacks = following, tuple(rest)
                    decision.reason = f"{story}; {following} supports it"
                else:
                    labels[v] = HOST
                    decision.target, decision.reason = None, story
        return pruned

    def _expand(self, model: ir.Model, calls: list[ir.Node]) -> None:
        """Put dropped composites back as (copies of) their original nodes. The patterns of
        the targets after the dropping one may fuse the copies again; the copies left over
        are annotated as plain ops by every target. Either way the reason starts with why
        the composite was dropped. A shared composite function goes once none of its calls
        is left."""
        annotate = AnnotateTargetPass(self.targets)
        for call in calls:
            composite = composite_of(call)
            story = decision_of(call).dropped
            copies = inline(model, call, composite.nodes)
            originals = dict(zip(copies, composite.nodes, strict=True))
            for copy, original in originals.items():
                copy.meta[COPY_OF_KEY] = original
            lower = self.targets[self.number[composite.target] + 1:]
            fused_again: set[ir.Node] = set()
            if any(target.patterns for target in lower):
                for fused in fuse(model, lower, among=copies, originals=originals):
                    self._decide(annotate, model, fused, story)
                    fused_again.update(composite_of(fused).nodes)
            for copy, original in originals.items():
                if original in fused_again:
                    # Its new composite speaks for it in the report, as for any member.
                    original.meta.pop(DECISION_KEY, None)
                    continue
                # The report reads the original node; the graph holds the copy.
                original.meta[DECISION_KEY] = self._decide(annotate, model, copy, story)
        called = {node.op_identifier() for node in model.graph if composite_of(node) is not None}
        forget_functions(model, {call.op_identifier() for call in calls} - called)

    def _fuse_released(self, model: ir.Model, released: dict[int, list[ir.Node]]) -> bool:
        """Let the patterns of the targets after a dropping one fuse the plain nodes it let
        go. MergeComposite kept those patterns off nodes a higher-priority target accepts
        as plain ops, trusting it to run them; when its region policy drops them instead,
        the fallback should get them fused, not op by op. A match may take any plain node
        that the host or those targets hold, except the copies a dropped composite came
        apart into: only ``_expand`` fuses those, with the targets after the one that
        dropped it. That also ends the loop a composite made here and dropped in turn
        would start. True if any composite was made."""
        if not released:
            return False
        lower = self.targets[min(released) + 1:]
        if not any(target.patterns for target in lower):
            return False
        names = {target.name for target in lower}
        among = [node for node in model.graph
                 if composite_of(node) is None and COPY_OF_KEY not in node.meta
                 and _held_by(node, names)]
        if set(among).isdisjoint(node for nodes in released.values() for node in nodes):
            return False
        annotate = AnnotateTargetPass(self.targets)
        calls = fuse(model, lower, among=among)
        for call in calls:
            members = composite_of(call).nodes
            story = tuple(dict.fromkeys(
                line for member in members if (d := decision_of(member)) is not None
                for line in d.dropped))
            self._decide(annotate, model, call, story)
            for member in members:  # its composite speaks for it in the report
                member.meta.pop(DECISION_KEY, None)
        return bool(calls)

    @staticmethod
    def _decide(annotate: AnnotateTargetPass, model: ir.Model, node: ir.Node,
                story: tuple[str, ...]) -> Decision:
        """Annotate ``node`` anew, its reason told after ``story``."""
        decision = annotate.decide(model, node)
        decision.dropped = story
        decision.reason = "; ".join((*story, decision.reason))
        node.meta[DECISION_KEY] = decision
        return decision


def _held_by(node: ir.Node, targets: set[str]) -> bool:
    """The node is on the host or with one of ``targets``."""
    decision = decision_of(node)
    return decision is not None and (decision.target is None or decision.target in targets)


def _member_ops(node: ir.Node) -> tuple[str, ...]:
    composite = composite_of(node)
    return composite.member_ops if composite is not None else (node.op_type,)
