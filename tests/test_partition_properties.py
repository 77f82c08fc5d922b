"""Property-based tests of the whole partitioner (hypothesis).

Random DAGs of mixed ops, random support for one to three targets (random op subsets,
random per-node refusals, random merge styles, constant modes, patterns with checks,
structural or not, and policies, some of which drop composites):

* no cycle: the partitioned model passes the full ONNX checker (topologically sorted);
* every node lands in exactly one place: a region's function body or the host;
* the partitioned model computes what the original computes (onnxruntime).
"""

from __future__ import annotations

import zlib

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byoc_sdk import RegionPolicy, Target, any_input, const, op, partition_model
from byoc_sdk.model_zoo import random_dag
from byoc_sdk.testing import assert_equivalent

OPS = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Softmax", "Add", "Mul", "Sub", "Max",
       "MatMul", "Split", "Concat"]
ACTIVATIONS = ("Relu", "Tanh", "Sigmoid")
#: Region policies, for a target or for all: none (the default), keep-all, and two that
#: drop small regions, with or without a compute-heavy op.
POLICIES = [None, RegionPolicy.keep_all(), RegionPolicy(min_nodes=3, require_compute=False),
            RegionPolicy(min_nodes=4)]
#: Composite patterns a target may declare: MatMul with a weight, or any unary op (common
#: in the random graphs, so that policies often drop composites), then an activation.
PATTERNS = {
    "mm_act": op(ACTIVATIONS, op("MatMul", any_input(), const())),
    "unary_act": op(ACTIVATIONS, op(("Abs", "Neg", *ACTIVATIONS), any_input(),
                                    allow_external_uses=True)),
}


@st.composite
def targets(draw) -> list[Target]:
    made = []
    for i in range(draw(st.integers(1, 3))):
        target = Target(
            f"t{i}",
            priority=draw(st.integers(0, 3)),
            merge_style=draw(st.sampled_from(["regions", "per-op"])),
            constants=draw(st.sampled_from(["bind", "inputs"])),
            policy=draw(st.sampled_from(POLICIES)),
        )
        ops = draw(st.lists(st.sampled_from(OPS), min_size=1, unique=True))
        salt = draw(st.integers(0, 1000))
        refuse_one_in = draw(st.sampled_from([0, 2, 3, 5]))

        def check(node, salt=salt, refuse_one_in=refuse_one_in):
            if refuse_one_in and zlib.crc32(f"{salt}{node.name}".encode()) % refuse_one_in == 0:
                return "refused at random"
            return True

        target.support(*ops)(check)
        if draw(st.booleans()):
            refused = draw(st.sampled_from([None, *ACTIVATIONS]))

            def fuses(match, refused=refused):
                """Structural: it reads only the activation's op type."""
                return match.root.op_type != refused or f"{refused} is not fused"

            name = draw(st.sampled_from(sorted(PATTERNS)))
            target.pattern(name, PATTERNS[name], fuses, structural=draw(st.booleans()))
        made.append(target)
    return made


def _placed_nodes(proto: onnx.ModelProto) -> list[str]:
    """Original node names, found by expanding every call into its function body."""
    functions = {(f.domain, f.name): f for f in proto.functions}
    names = []

    def walk(nodes):
        for node in nodes:
            props = {p.key: p.value for p in node.metadata_props}
            body = functions.get((node.domain, node.op_type))
            if "byoc.members" in props:  # a composite: its body may be shared
                names.extend(props["byoc.members"].split(","))
            elif body is not None:
                walk(body.node)
            elif not (node.op_type == "Constant" and node.name.endswith("_const")):
                names.append(node.name)

    walk(proto.graph.node)
    return names


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(1, 40),
    chosen=targets(),
    policy=st.sampled_from(POLICIES),
)
def test_random_partitions_are_acyclic_complete_and_equivalent(seed, size, chosen, policy):
    model = random_dag(seed, size)
    result = partition_model(model, chosen, policy=policy)
    proto = result.to_proto()
    onnx.checker.check_model(proto, full_check=True)

    original = sorted(n.name for n in model.graph.node)
    assert sorted(_placed_nodes(proto)) == original
    assert sorted(n.name for n in result.report.nodes) == original
    targets_of_region = {r.name: r.target for r in result.report.regions}
    for node in result.report.nodes:
        if node.region is None:
            assert node.target == "host"
        else:
            assert targets_of_region[node.region] == node.target
        # A composite is kept in a region, or dropped and expanded back into its nodes,
        # which only a lower-priority target's pattern may fuse again.
        assert node.composite is None or node.region is not None
        first = node.reason.split(";")[0]
        if " dropped: " in first and node.composite is not None:
            dropper = first.split(" pattern ")[0]
            assert node.target != dropper
            assert f"fused by {node.target} pattern" in node.reason

    assert_equivalent(model, proto, rtol=1e-4, atol=1e-5)
