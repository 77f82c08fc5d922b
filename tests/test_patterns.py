"""The pattern language, as MergeComposite applies it to small graphs.

Each test gives a graph, a pattern, and says which nodes (if any) became one composite.
"""

from __future__ import annotations

import onnx_ir as ir
import pytest

from byoc_sdk import PatternError, RegionPolicy, any_input, const, op, optional, partition_model
from byoc_sdk.target import describe_pattern
from byoc_sdk.testing import onnx_text
from partition.decision import composite_of
from partition.merge_composite import MergeCompositePass

CONV = """
    g (float[1,2,4,4] x) => (float[1,2,4,4] y)
    <float[2,2,3,3] w = {1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1,
                         1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1},
     float[2] b = {1, 2}> {
      [conv] c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
      [relu] y = Relu(c)
    }"""


def composites(text, target) -> dict[str, list[str]]:
    """Composite name -> the original node names it holds, after MergeComposite."""
    return composites_for(text, [target])


def composites_for(text, targets) -> dict[str, list[str]]:
    """:func:`composites` with several targets, in priority order."""
    model = ir.from_proto(onnx_text(text))
    MergeCompositePass(targets)(model)
    return {
        node.name: list(composite_of(node).members)
        for node in model.graph
        if composite_of(node) is not None
    }


def test_an_op_chain_fuses_into_one_composite(make_target):
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const())))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}


def test_op_alternatives(make_target):
    target = make_target("acc", [])
    target.pattern("act", op(("Sigmoid", "Relu"), op("Conv", any_input(), const(), const())))
    assert composites(CONV, target) == {"act_0": ["conv", "relu"]}


def test_an_optional_input_matches_present_or_absent(make_target):
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), optional(const()))))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}
    no_bias = CONV.replace("(x, w, b)", "(x, w)")
    assert composites(no_bias, target) == {"conv_relu_0": ["conv", "relu"]}


def test_a_node_with_more_inputs_than_the_pattern_does_not_match(make_target):
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const())))
    assert composites(CONV, target) == {}


def test_const_requires_an_initializer(make_target):
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", const(), const(), const())))
    assert composites(CONV, target) == {}  # x is a graph input


def test_const_predicate_sees_the_value(make_target):
    target = make_target("acc", [])
    small = const(where=lambda v: v.size <= 2)
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), small)))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}
    target2 = make_target("acc", [])
    target2.pattern("conv_relu", op("Relu", op("Conv", any_input(), small, const())))
    assert composites(CONV, target2) == {}


def test_attribute_values_and_predicates(make_target):
    conv = op("Conv", any_input(), const(), const(), attrs={"pads": [1, 1, 1, 1]})
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", conv))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}
    strided = op("Conv", any_input(), const(), const(), where=lambda n: n.attr("strides") == (2, 2))
    target2 = make_target("acc", [])
    target2.pattern("conv_relu", op("Relu", strided))
    assert composites(CONV, target2) == {}


SWISH = """
    g (float[2,4] x, float[2,4] z) => (float[2,4] y) {
      [sig] s = Sigmoid(x)
      [mul] y = Mul(SECOND, FIRST)
    }"""


def test_a_named_input_must_bind_the_same_value_everywhere(make_target):
    target = make_target("acc", [])
    x = any_input("x")
    target.pattern("swish", op("Mul", x, op("Sigmoid", x), commutative=True))
    same = SWISH.replace("SECOND", "x").replace("FIRST", "s")
    other = SWISH.replace("SECOND", "z").replace("FIRST", "s")
    assert composites(same, target) == {"swish_0": ["sig", "mul"]}
    assert composites(other, target) == {}


def test_commutative_tries_both_input_orders(make_target):
    x = any_input("x")
    plain = make_target("acc", [])
    plain.pattern("swish", op("Mul", x, op("Sigmoid", x)))
    swapped = SWISH.replace("SECOND", "s").replace("FIRST", "x")
    assert composites(swapped, plain) == {}
    commutative = make_target("acc", [])
    commutative.pattern("swish", op("Mul", x, op("Sigmoid", x), commutative=True))
    assert composites(swapped, commutative) == {"swish_0": ["sig", "mul"]}


USED_OUTSIDE = """
    g (float[2,4] x) => (float[2,4] y, float[2,4] t) {
      [a] t = Relu(x)
      [b] y = Tanh(t)
    }"""


def test_a_match_whose_inner_value_is_used_outside_is_rejected(make_target):
    target = make_target("acc", [])
    target.pattern("relu_tanh", op("Tanh", op("Relu", any_input())))
    assert composites(USED_OUTSIDE, target) == {}


def test_allow_external_uses_exports_the_inner_value(make_target):
    target = make_target("acc", [])
    target.pattern("relu_tanh", op("Tanh", op("Relu", any_input(), allow_external_uses=True)))
    model = ir.from_proto(onnx_text(USED_OUTSIDE))
    MergeCompositePass([target])(model)
    (call,) = list(model.graph)
    assert [v.name for v in call.outputs] == ["t", "y"]


def test_allow_external_uses_still_refuses_a_cycle(make_target):
    # r feeds u outside the match, and u feeds the match's root: fusing would be a cycle.
    text = """
        g (float[2,4] x) => (float[2,4] y) {
          [r] t = Relu(x)
          [u] s = Softmax(t)
          [add] y = Add(t, s)
        }"""
    target = make_target("acc", [])
    target.pattern("relu_add", op("Add", op("Relu", any_input(), allow_external_uses=True),
                                  any_input()))
    assert composites(text, target) == {}


def test_larger_patterns_win_over_smaller_ones(make_target):
    target = make_target("acc", [])
    target.pattern("relu", op("Relu", any_input()))
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const())))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}


def test_a_declining_pattern_check_leaves_the_nodes_alone(make_target):
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const(), name="conv")),
                   check=lambda m: "no" if m.node("conv").op_type == "Conv" else True)
    assert composites(CONV, target) == {}


def test_higher_priority_targets_match_first(make_target):
    low = make_target("low", [], priority=1)
    low.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const())))
    high = make_target("high", [], priority=9)
    high.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const())))
    model = ir.from_proto(onnx_text(CONV))
    MergeCompositePass([high, low])(model)
    (call,) = list(model.graph)
    assert call.domain == "byoc.high.composite"
    assert call.metadata_props["byoc.pattern"] == "conv_relu"


def test_malformed_patterns_are_refused():
    with pytest.raises(PatternError):
        op("")
    with pytest.raises(PatternError):
        op("Add", any_input(), commutative=True)
    with pytest.raises(PatternError):
        op("Relu", "x")


def test_patterns_render_in_one_line():
    pattern = op("Relu", op("Conv", any_input(), const("w"), optional(const())))
    assert describe_pattern(pattern) == "Relu(Conv(*, w, const?))"


def test_a_node_reached_twice_must_fit_both_pattern_elements(make_target):
    # Add(Relu(*), Sigmoid(*)) must not match Add(t, t) with t = Relu(x): the second
    # branch would claim a Sigmoid the graph does not have.
    text = """
        g (float[2,4] x) => (float[2,4] y) {
          [relu] t = Relu(x)
          [add] y = Add(t, t)
        }"""
    target = make_target("acc", [])
    target.pattern("relu_sig_add", op("Add", op("Relu", any_input()), op("Sigmoid", any_input())))
    assert composites(text, target) == {}
    same = make_target("acc", [])
    relu = op("Relu", any_input())
    same.pattern("relu_twice_add", op("Add", relu, relu))
    assert composites(text, same) == {"relu_twice_add_0": ["relu", "add"]}


def test_attrs_compare_with_the_schema_default_when_the_node_leaves_one_out(make_target):
    # CONV leaves `group` unset: ONNX's default is 1.
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const(),
                                             attrs={"group": 1})))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}
    other = make_target("acc", [])
    other.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const(),
                                            attrs={"group": 2})))
    assert composites(CONV, other) == {}


def mm_add_then(activation: str) -> str:
    """MatMul by a constant, Add of a constant row, then ``activation`` (node names mm, add
    and the activation's in lower case)."""
    return f"""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {{1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}}, float[4] b = {{1, 2, 3, 4}}> {{
          [mm] m = MatMul(x, w)
          [add] a = Add(m, b)
          [{activation.lower()}] y = {activation}(a)
        }}"""


def test_a_higher_priority_target_wins_even_when_a_lower_ones_pattern_roots_further_down(
    make_target,
):
    # Visiting roots from the end, the low target's Gelu-rooted pattern comes first; the
    # high target's MatMul+Add must still take those two nodes.
    text = mm_add_then("Gelu")
    low = make_target("low", [], priority=1)
    low.pattern("mm_add_gelu", op("Gelu", op("Add", op("MatMul", any_input(), const()), const())))
    high = make_target("high", [], priority=5)
    high.pattern("mm_add", op("Add", op("MatMul", any_input(), const()), const()))
    model = ir.from_proto(onnx_text(text))
    MergeCompositePass([high, low])(model)
    calls = {n.name: n.domain for n in model.graph if composite_of(n) is not None}
    assert calls == {"mm_add_0": "byoc.high.composite"}


MM_ADD_TANH = mm_add_then("Tanh")


def fallback_with_pattern(make_target):
    low = make_target("cpu_like", ["MatMul", "Add", "Tanh"], priority=0)
    low.pattern("mm_add_tanh", op("Tanh", op("Add", op("MatMul", any_input(), const()),
                                             const())))
    return low


def test_a_lower_targets_pattern_leaves_alone_what_a_higher_target_runs_op_by_op(make_target):
    # The vendor declares no patterns; a cpu-like fallback's pattern must not take the
    # model from it by fusing first.
    vendor = make_target("vendor", ["MatMul", "Add", "Tanh"], priority=10)
    result = partition_model(ir.from_proto(onnx_text(MM_ADD_TANH)),
                             [vendor, fallback_with_pattern(make_target)],
                             policy=RegionPolicy.keep_all())
    placed = {n.name: (n.target, n.composite) for n in result.report.nodes}
    assert placed == {"mm": ("vendor", None), "add": ("vendor", None),
                      "tanh": ("vendor", None)}


def test_a_lower_targets_pattern_still_fuses_what_no_higher_target_accepts(make_target):
    vendor = make_target("vendor", ["Relu"], priority=10)
    assert composites_for(MM_ADD_TANH, [vendor, fallback_with_pattern(make_target)]) == {
        "mm_add_tanh_0": ["mm", "add", "tanh"]}
    # ...but not a match holding one node the vendor accepts.
    vendor = make_target("vendor", ["Tanh"], priority=10)
    assert composites_for(MM_ADD_TANH, [vendor, fallback_with_pattern(make_target)]) == {}


def test_string_attrs_compare_with_the_schema_default_too(make_target):
    # CONV leaves auto_pad out: its default is the string "NOTSET".
    target = make_target("acc", [])
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), const(),
                                             attrs={"auto_pad": "NOTSET"})))
    assert composites(CONV, target) == {"conv_relu_0": ["conv", "relu"]}
