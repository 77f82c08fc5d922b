"""MergeRegions: maximal regions of one target, never a cycle between regions.

Each test states a small graph, which ops a target supports, and where every node must
end up. ``RegionPolicy.keep_all()`` switches the size policies off unless a test is
about them.
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import onnx
import pytest

from byoc_sdk import RegionPolicy, any_input, const, op, partition_model
from byoc_sdk.testing import assert_equivalent, onnx_text
from partition.graph_index import GraphIndex
from partition.merge_regions import HOST, group

KEEP_ALL = RegionPolicy.keep_all()


def placement(model, targets, policy=KEEP_ALL):
    result = partition_model(model, targets, policy=policy)
    assert_equivalent(model, result.model)
    return {k: sorted(v) for k, v in result.report.placement().items()}, result


def test_a_chain_of_supported_ops_is_one_region(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t1 = Relu(x)
          [b] t2 = Tanh(t1)
          [c] y = Sigmoid(t2)
        }""")
    placed, _ = placement(model, [make_target("acc", ["Relu", "Tanh", "Sigmoid"])])
    assert placed == {"acc_0": ["a", "b", "c"]}


def test_an_unsupported_op_splits_a_chain(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t1 = Relu(x)
          [u] t2 = Softmax(t1)
          [c] y = Sigmoid(t2)
        }""")
    placed, _ = placement(model, [make_target("acc", ["Relu", "Sigmoid"])])
    assert placed == {"acc_0": ["a"], "host": ["u"], "acc_1": ["c"]}


def test_a_diamond_through_the_host_is_not_merged(make_target):
    # a -> u (host) -> d and a -> d: one region {a, d} would feed u and read it back.
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t1 = Relu(x)
          [u] t2 = Softmax(t1)
          [d] y = Add(t1, t2)
        }""")
    placed, _ = placement(model, [make_target("acc", ["Relu", "Add"])])
    assert placed == {"acc_0": ["a"], "host": ["u"], "acc_1": ["d"]}


def test_unconnected_siblings_of_one_target_share_a_region(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y, float[2,4] z) {
          [a] y = Relu(x)
          [b] z = Tanh(x)
        }""")
    placed, result = placement(model, [make_target("acc", ["Relu", "Tanh"])])
    assert placed == {"acc_0": ["a", "b"]}
    assert result.report.regions[0].outputs == ["y", "z"]


def test_siblings_join_after_host_work_they_do_not_depend_on(make_target):
    # s runs on the host first; a and b, both ready afterwards, still merge.
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y, float[2,4] z) {
          [s] t = Softmax(x)
          [a] y = Relu(t)
          [b] z = Tanh(x)
        }""")
    placed, _ = placement(model, [make_target("acc", ["Relu", "Tanh"])])
    assert placed == {"host": ["s"], "acc_0": ["a", "b"]}


def test_a_region_may_feed_graph_outputs_and_inner_nodes_at_once(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] mid, float[2,4] y) {
          [a] mid = Relu(x)
          [b] t = Tanh(mid)
          [u] y = Softmax(t)
        }""")
    placed, result = placement(model, [make_target("acc", ["Relu", "Tanh"])])
    assert placed == {"acc_0": ["a", "b"], "host": ["u"]}
    assert result.report.regions[0].outputs == ["mid", "t"]


def test_the_higher_priority_target_wins_a_node_both_support(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t = Relu(x)
          [b] y = Tanh(t)
        }""")
    low = make_target("low", ["Relu", "Tanh"], priority=1)
    high = make_target("high", ["Tanh"], priority=5)
    placed, _ = placement(model, [low, high])
    assert placed == {"low_0": ["a"], "high_0": ["b"]}


def test_regions_of_two_targets_never_form_a_cycle(make_target):
    # A region {a, x} of t1 and {y, z} of t2 would each read the other.
    model = onnx_text("""
        g (float[2,4] i) => (float[2,4] o1, float[2,4] o2) {
          [a] ta = Relu(i)
          [z] tz = Tanh(i)
          [y] o1 = Sigmoid(ta)
          [x] o2 = Abs(tz)
        }""")
    t1 = make_target("tone", ["Relu", "Abs"], priority=2)
    t2 = make_target("ttwo", ["Tanh", "Sigmoid"], priority=1)
    placed, result = placement(model, [t1, t2])
    regions = {k: v for k, v in placed.items() if k != "host"}
    assert sorted(n for names in regions.values() for n in names) == ["a", "x", "y", "z"]
    for names in regions.values():
        assert not ({"a", "x"} <= set(names) and {"y", "z"} & set(names))
    assert len(result.report.regions) == 3


def test_per_op_targets_get_one_region_per_node(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t = Relu(x)
          [b] y = Tanh(t)
        }""")
    placed, _ = placement(model, [make_target("lib", ["Relu", "Tanh"], merge_style="per-op")])
    assert placed == {"lib_0": ["a"], "lib_1": ["b"]}


def test_regions_below_min_nodes_go_back_to_the_host_with_the_reason(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t1 = Relu(x)
          [u] t2 = Softmax(t1)
          [b] t3 = Relu(t2)
          [c] y = Tanh(t3)
        }""")
    policy = RegionPolicy(min_nodes=2, require_compute=False)
    placed, result = placement(model, [make_target("acc", ["Relu", "Tanh"])], policy)
    assert placed == {"host": ["a", "u"], "acc_0": ["b", "c"]}
    reason = {n.name: n.reason for n in result.report.nodes}["a"]
    assert "1 node" in reason and "min_nodes=2" in reason


def test_regions_without_compute_heavy_ops_go_back_to_the_host(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}> {
          [a] t1 = Relu(x)
          [u] t2 = Softmax(t1)
          [m] t3 = MatMul(t2, w)
          [b] y = Relu(t3)
        }""")
    policy = RegionPolicy(min_nodes=1, require_compute=True)
    placed, result = placement(model, [make_target("acc", ["Relu", "MatMul"])], policy)
    assert placed == {"host": ["a", "u"], "acc_0": ["b", "m"]}
    assert "no compute-heavy op" in {n.name: n.reason for n in result.report.nodes}["a"]


def test_the_default_policy_applies_when_none_is_given(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] t = Relu(x)
          [b] y = Tanh(t)
        }""")
    placed, _ = placement(model, [make_target("acc", ["Relu", "Tanh"])], policy=None)
    assert placed == {"host": ["a", "b"]}  # no compute-heavy op


def test_a_target_policy_is_used_unless_overridden(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] y = Relu(x)
        }""")
    target = make_target("acc", ["Relu"], policy=RegionPolicy.keep_all())
    placed, _ = placement(model, [target], policy=None)
    assert placed == {"acc_0": ["a"]}


def test_control_flow_stays_on_the_host_and_keeps_working(make_target):
    from byoc_sdk.model_zoo import with_control_flow

    model = with_control_flow()
    ops = {n.op_type for n in model.graph.node} - {"If"}
    placed, result = placement(model, [make_target("acc", ops)])
    if_nodes = [n.name for n in model.graph.node if n.op_type == "If"]
    assert set(if_nodes) <= set(placed["host"])
    assert "subgraph" in {n.name: n.reason for n in result.report.nodes}[if_nodes[0]]


def _contracted_is_acyclic(index: GraphIndex, regions: list[list[int]]) -> bool:
    owner = list(range(len(index)))
    for r, members in enumerate(regions):
        for v in members:
            owner[v] = len(index) + r
    contracted = nx.DiGraph()
    contracted.add_nodes_from(set(owner))
    for v, preds in enumerate(index.preds):
        for p in preds:
            if owner[p] != owner[v]:
                contracted.add_edge(owner[p], owner[v])
    return nx.is_directed_acyclic_graph(contracted)


@pytest.mark.parametrize("seed", range(40))
def test_grouping_random_dags_never_makes_a_cycle(seed):
    import random

    import onnx_ir as ir

    from byoc_sdk.model_zoo import random_dag

    rng = random.Random(seed)
    model = ir.from_proto(random_dag(seed, rng.randint(5, 120)))
    index = GraphIndex.build(model.graph)
    n_targets = rng.randint(1, 3)
    labels = [rng.choice([HOST, *range(n_targets)]) for _ in range(len(index))]
    per_op = [rng.random() < 0.3 for _ in range(n_targets)]
    regions = group(index, labels, per_op)
    placed = sorted(v for r in regions for v in r)
    assert placed == sorted(v for v in range(len(index)) if labels[v] != HOST)
    assert all(len({labels[v] for v in r}) == 1 for r in regions)
    assert all(len(r) == 1 for r in regions if per_op[labels[r[0]]])
    assert _contracted_is_acyclic(index, regions)


def test_nodes_a_policy_drops_go_to_the_next_target_that_accepts_them(make_target):
    # high's region {b} holds no compute-heavy op and is dropped; low runs everything.
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}> {
          [a] t = MatMul(x, w)
          [u] s = Softmax(t)
          [b] y = Relu(s)
        }""")
    high = make_target("high", ["MatMul", "Relu"], priority=5,
                       policy=RegionPolicy(min_nodes=1, require_compute=True))
    low = make_target("low", ["Relu"], priority=1, policy=RegionPolicy.keep_all())
    placed, result = placement(model, [high, low], policy=None)
    assert placed == {"high_0": ["a"], "host": ["u"], "low_0": ["b"]}
    reason = {n.name: n.reason for n in result.report.nodes}["b"]
    assert reason == ("high supports it, but its region holds no compute-heavy op "
                      "(policy require_compute); low supports it")


def test_a_check_that_raises_declines_the_node_and_says_so(make_target, caplog):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y) {
          [a] y = Relu(x)
        }""")
    target = make_target("acc", [])
    target.support("Relu", check=lambda node: 1 / 0)
    with caplog.at_level("DEBUG", logger="byoc.vendor"):
        placed, result = placement(model, [target])
    assert placed == {"host": ["a"]}
    assert result.report.nodes[0].reason == (
        "acc's check of Relu failed (ZeroDivisionError: division by zero)"
    )
    # The report keeps one line; the traceback goes to the log `byoc --debug` shows.
    (record,) = [r for r in caplog.records if r.name == "byoc.vendor"]
    assert "target acc" in record.getMessage() and record.exc_info[0] is ZeroDivisionError
    garbage = make_target("acc", [])
    garbage.support("Relu", check=lambda node: 3)
    _, result = placement(model, [garbage])
    assert "acc's check of Relu failed" in result.report.nodes[0].reason


CONV_RELU = """
    g (float[1,1,4,4] x) => (float[1,1,2,2] y)
    <float[1,1,3,3] w = {1,0,0, 0,1,0, 0,0,1}> {
      [conv] c = Conv(x, w)
      [relu] y = Relu(c)
    }"""


def test_members_of_a_dropped_composite_are_fused_by_the_next_targets_pattern(monkeypatch):
    from byoc_sdk.registry import get_target

    # simaccel fuses conv+relu into conv_act, then its policy drops the region; cpu (which
    # keeps every region, and has a conv_act pattern of its own) fuses the members again
    # instead of taking them op by op, and the report tells the whole story.
    model = onnx_text(CONV_RELU)
    simaccel = get_target("simaccel")
    monkeypatch.setattr(simaccel, "policy", RegionPolicy(min_nodes=3))
    placed, result = placement(model, [simaccel, "cpu"], policy=None)
    assert placed == {"cpu_0": ["conv", "relu"]}
    dropped = "its region has 2 nodes, fewer than min_nodes=3"
    records = {n.name: n for n in result.report.nodes}
    for name in ("conv", "relu"):
        assert records[name].reason == (
            f"simaccel pattern conv_act dropped: {dropped}; "
            "fused by cpu pattern conv_act (conv, relu)")
        assert records[name].composite == "conv_act_1"
        assert records[name].target == "cpu"
    domains = {f.domain for f in result.model.functions.values()}
    assert "byoc.cpu.composite" in domains and "byoc.simaccel.composite" not in domains
    (region,) = [f for f in result.model.functions.values() if f.domain == "byoc.cpu"]
    assert [n.op_type for n in region] == ["Constant", "conv_act_0"]


def test_members_of_a_dropped_composite_go_to_the_next_target_as_plain_ops(monkeypatch):
    from byoc_sdk.registry import get_target

    # The same, but cpu has no pattern for them: it takes the members op by op. As plain
    # ops simaccel still claims them first, and its policy drops them once more.
    model = onnx_text(CONV_RELU)
    simaccel = get_target("simaccel")
    monkeypatch.setattr(simaccel, "policy", RegionPolicy(min_nodes=3))
    cpu = dataclasses.replace(get_target("cpu"), patterns=[])
    placed, result = placement(model, [simaccel, cpu], policy=None)
    assert placed == {"cpu_0": ["conv", "relu"]}
    dropped = "its region has 2 nodes, fewer than min_nodes=3"
    assert {n.name: n.reason for n in result.report.nodes} == {
        name: f"simaccel pattern conv_act dropped: {dropped}; "
              f"simaccel supports it, but {dropped}; cpu supports it"
        for name in ("conv", "relu")
    }
    assert all(n.composite is None for n in result.report.nodes)
    assert not [f for f in result.model.functions.values() if f.domain.endswith(".composite")]


MM_ADD = """
    g (float[2,4] x) => (float[2,4] y)
    <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4}> {
      [mm] m = MatMul(x, w)
      [add] y = Add(m, b)
    }"""


def _mm_add_target(make_target, name, ops=(), **fields):
    target = make_target(name, ops, **fields)
    target.pattern("mm_add", op("Add", op("MatMul", any_input(), const()), const()))
    return target


def test_members_of_a_dropped_composite_take_plain_support_in_priority_order(make_target):
    acc = _mm_add_target(make_target, "acc", priority=5, policy=RegionPolicy(min_nodes=3))
    low = make_target("low", ["MatMul", "Add"], priority=1, policy=KEEP_ALL)
    placed, result = placement(onnx_text(MM_ADD), [acc, low], policy=None)
    assert placed == {"low_0": ["add", "mm"]}
    reasons = {n.name: n.reason for n in result.report.nodes}
    assert reasons == {
        "mm": "acc pattern mm_add dropped: its region has 2 nodes, fewer than min_nodes=3; "
              "low supports MatMul",
        "add": "acc pattern mm_add dropped: its region has 2 nodes, fewer than min_nodes=3; "
               "low supports Add",
    }


def test_members_of_a_dropped_composite_no_target_accepts_go_to_the_host(make_target):
    acc = _mm_add_target(make_target, "acc", priority=5, policy=RegionPolicy(min_nodes=3))
    low = make_target("low", ["Add"], priority=1, policy=RegionPolicy(min_nodes=1))
    placed, result = placement(onnx_text(MM_ADD), [acc, low], policy=None)
    assert placed == {"host": ["add", "mm"]}
    story = "acc pattern mm_add dropped: its region has 2 nodes, fewer than min_nodes=3"
    assert {n.name: n.reason for n in result.report.nodes} == {
        "mm": f"{story}; MatMul is not supported by acc; MatMul is not supported by low",
        "add": f"{story}; low supports it, but its region holds no compute-heavy op "
               "(policy require_compute)",
    }
    recorded = {n.name: n.metadata_props["byoc.reason"] for n in result.model.graph}
    assert recorded == {n.name: n.reason for n in result.report.nodes}
    assert not result.model.functions


def test_a_composite_fused_again_and_dropped_again_falls_through_to_plain_ops(make_target):
    # acc's mm_add is dropped; mid fuses the members with its own mm_add, and its policy
    # drops that one too; low takes them op by op. Each step adds to the story, and the
    # one function left is low's region.
    acc = _mm_add_target(make_target, "acc", priority=9, policy=RegionPolicy(min_nodes=3))
    mid = _mm_add_target(make_target, "mid", priority=5, policy=RegionPolicy(min_nodes=4))
    low = make_target("low", ["MatMul", "Add"], priority=1, policy=KEEP_ALL)
    placed, result = placement(onnx_text(MM_ADD), [acc, mid, low], policy=None)
    assert placed == {"low_0": ["add", "mm"]}
    first = "acc pattern mm_add dropped: its region has 2 nodes, fewer than min_nodes=3"
    second = "mid pattern mm_add dropped: its region has 2 nodes, fewer than min_nodes=4"
    assert {n.name: n.reason for n in result.report.nodes} == {
        "mm": f"{first}; {second}; low supports MatMul",
        "add": f"{first}; {second}; low supports Add",
    }
    assert all(n.composite is None for n in result.report.nodes)
    assert [f.domain for f in result.model.functions.values()] == ["byoc.low"]


def test_a_composite_fused_again_gets_a_function_of_its_target(make_target):
    # Two mm_add chains, both fused by acc first (one function for both); acc's policy
    # keeps the first region and drops the second, which low's own mm_add then fuses
    # into a function of low's. acc's function stays for the call that is kept.
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4}> {
          [mm] m = MatMul(x, w)
          [add] a = Add(m, b)
          [relu] r = Relu(a)
          [sm] s = Softmax(r)
          [mm2] m2 = MatMul(s, w)
          [add2] y = Add(m2, b)
        }""")
    acc = _mm_add_target(make_target, "acc", ["Relu"], priority=5,
                         policy=RegionPolicy(min_nodes=3))
    low = _mm_add_target(make_target, "low", priority=1, policy=KEEP_ALL)
    placed, result = placement(model, [acc, low], policy=None)
    assert placed == {"acc_0": ["add", "mm", "relu"], "host": ["sm"], "low_0": ["add2", "mm2"]}
    records = {n.name: n for n in result.report.nodes}
    assert records["mm"].composite == "mm_add_0"
    assert records["mm2"].composite == "mm_add_2" and records["mm2"].target == "low"
    assert records["add2"].reason == (
        "acc pattern mm_add dropped: its region has 2 nodes, fewer than min_nodes=3; "
        "fused by low pattern mm_add (mm2, add2)")
    names = sorted((f.domain, f.name) for f in result.model.functions.values()
                   if f.domain.endswith(".composite"))
    assert names == [("byoc.acc.composite", "mm_add_0"), ("byoc.low.composite", "mm_add_0")]
    proto = result.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert_equivalent(model, proto)


def test_a_shared_composite_function_survives_for_the_calls_that_are_kept(make_target):
    # Both mm_add instances call one function; only the second one's region is dropped.
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4},
         float[4,4] w2 = {0,1,0,0, 1,0,0,0, 0,0,0,1, 0,0,1,0}, float[4] b2 = {4, 3, 2, 1}> {
          [mm] m = MatMul(x, w)
          [add] a = Add(m, b)
          [relu] r = Relu(a)
          [sm] s = Softmax(r)
          [mm2] m2 = MatMul(s, w2)
          [add2] y = Add(m2, b2)
        }""")
    acc = _mm_add_target(make_target, "acc", ["Relu"], priority=5,
                         policy=RegionPolicy(min_nodes=3))
    low = make_target("low", ["MatMul"], priority=1, policy=KEEP_ALL)
    placed, result = placement(model, [acc, low], policy=None)
    assert placed == {"acc_0": ["add", "mm", "relu"], "host": ["add2", "sm"], "low_0": ["mm2"]}
    composites = [f for f in result.model.functions.values() if f.domain == "byoc.acc.composite"]
    assert [f.name for f in composites] == ["mm_add_0"]
    records = {n.name: n for n in result.report.nodes}
    assert records["mm"].composite == "mm_add_0" and records["mm"].region == "acc_0"
    assert records["mm2"].composite is None and records["mm2"].target == "low"
    assert records["add2"].reason.startswith("acc pattern mm_add dropped: its region has 2")
    proto = result.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert_equivalent(model, proto)


def test_expanded_calls_of_a_shared_composite_keep_their_own_names(make_target):
    # Both mm_add instances call one function, whose body holds the first one's names.
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4}> {
          [mm] m = MatMul(x, w)
          [add] a = Add(m, b)
          [mm2] m2 = MatMul(a, w)
          [add2] y = Add(m2, b)
        }""")
    acc = _mm_add_target(make_target, "acc", policy=RegionPolicy(min_nodes=5))
    placed, result = placement(model, [acc], policy=None)
    assert placed == {"host": ["add", "add2", "mm", "mm2"]}
    proto = result.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert [(n.name, list(n.output)) for n in proto.graph.node] == [
        (n.name, list(n.output)) for n in model.graph.node
    ]


MM_ADD_RELU = """
    g (float[2,4] x) => (float[2,4] y)
    <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4}> {
      [mm] m = MatMul(x, w)
      [add] a = Add(m, b)
      [relu] y = Relu(a)
    }"""


def vendor_and_fallback(make_target, fallback_policy=None):
    """A vendor that runs Add and Relu but no MatMul, and wants a compute-heavy op in each
    region; a fallback that runs all three and fuses them."""
    vendor = make_target("vendor", ["Add", "Relu"], priority=20,
                         policy=RegionPolicy(min_nodes=1, require_compute=True))
    fallback = make_target("fallback", ["MatMul", "Add", "Relu"], policy=fallback_policy)
    fallback.pattern("mm_add_relu", op("Relu", op("Add", op("MatMul", any_input(), const()),
                                                  const())))
    return [vendor, fallback]


def test_nodes_a_dropped_region_lets_go_may_be_fused_by_a_lower_targets_pattern(make_target):
    # The vendor accepts Add and Relu as plain ops, which keeps the fallback's pattern off
    # them; its region then holds no compute-heavy op and is dropped: the fallback fuses
    # the chain after all, rather than running it op by op.
    placed, result = placement(onnx_text(MM_ADD_RELU), vendor_and_fallback(make_target),
                               policy=None)
    assert placed == {"fallback_0": ["add", "mm", "relu"]}
    records = {n.name: n for n in result.report.nodes}
    assert {n.composite for n in records.values()} == {"mm_add_relu_0"}
    reason = records["add"].reason  # the composite's: what its members went through
    assert "vendor supports it, but its region holds no compute-heavy op" in reason
    assert reason.endswith("fused by fallback pattern mm_add_relu (mm, add, relu)")


def test_a_refused_composite_dropped_in_turn_does_not_fuse_again(make_target):
    # The fallback's own policy drops the composite made from the vendor's released nodes
    # (min_nodes 4): its members are annotated anew, the vendor takes and drops them again,
    # and they must not be fused a second time (that would go round forever).
    targets = vendor_and_fallback(make_target, RegionPolicy(min_nodes=4))
    placed, _ = placement(onnx_text(MM_ADD_RELU), targets, policy=None)
    assert placed == {"host": ["add", "mm", "relu"]}
