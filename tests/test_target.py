"""Specification of ``Target`` (what a vendor declares) and ``NodeInfo`` (what checks see)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from byoc_sdk.errors import TargetError
from byoc_sdk.node_info import NodeInfo, TensorInfo
from byoc_sdk.patterns import any_input, const, op, optional
from byoc_sdk.target import CompositePattern, OpSupport, Target, describe_pattern
from byoc_sdk.testing import onnx_text
from partition.policy import RegionPolicy


def node_infos(text: str, opset: int = 21) -> dict[str, NodeInfo]:
    """The nodes of an ONNX text-format model, shape-inferred, by name."""
    proto = onnx.shape_inference.infer_shapes(onnx_text(text))
    model = ir.from_proto(proto)
    return {node.name: NodeInfo(node, opset) for node in model.graph}


def one_node(text: str, opset: int = 21) -> NodeInfo:
    (node,) = node_infos(text, opset).values()
    return node


RELU_F32 = one_node("agraph (float[2,3] x) => (float[2,3] y) { [relu] y = Relu(x) }")
RELU_I64 = one_node("agraph (int64[2,3] x) => (int64[2,3] y) { [relu] y = Relu(x) }")
RELU_SYMBOLIC = one_node("agraph (float[N,3] x) => (float[N,3] y) { [relu] y = Relu(x) }")

CONV_TEMPLATE = """
agraph (float[1,2,4,4] x{extra_input}) => (float[1,2,4,4] y)
<float[2,2,1,1] w = {{1, 0, 0, 1}}>
{{
  [conv] y = Conv<kernel_shape=[1,1]>(x, {weight})
}}
"""
CONV_CONST_WEIGHT = one_node(CONV_TEMPLATE.format(extra_input="", weight="w"))
CONV_INPUT_WEIGHT = one_node(CONV_TEMPLATE.format(extra_input=", float[2,2,1,1] v", weight="v"))
# An initializer that is also a graph input: a default the caller may override.
CONV_OVERRIDABLE_WEIGHT = one_node(
    CONV_TEMPLATE.format(extra_input=", float[2,2,1,1] w", weight="w")
)


def declined(target: Target, node: NodeInfo) -> str:
    reason = target.check(node)
    assert reason is not None, f"{target.name} unexpectedly accepts {node}"
    return reason


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["myaccel", "npu2", "my_accel_v2", "x"])
def test_target_accepts_lowercase_identifier_names(name):
    assert Target(name).name == name


@pytest.mark.parametrize("name", ["", "MyAccel", "2npu", "my-accel", "my accel", "_accel", "npü"])
def test_target_rejects_names_that_are_not_lowercase_identifiers(name):
    with pytest.raises(TargetError, match="lowercase letters"):
        Target(name)


def test_target_rejects_unknown_merge_style_naming_the_target():
    with pytest.raises(TargetError) as caught:
        Target("myaccel", merge_style="fused")

    assert "merge_style" in str(caught.value)
    assert "'fused'" in str(caught.value)
    assert caught.value.context.target == "myaccel"


def test_target_rejects_unknown_constants_mode_naming_the_target():
    with pytest.raises(TargetError) as caught:
        Target("myaccel", constants="copy")

    assert "constants" in str(caught.value)
    assert "'copy'" in str(caught.value)
    assert caught.value.context.target == "myaccel"


@pytest.mark.parametrize("merge_style", ["regions", "per-op"])
@pytest.mark.parametrize("constants", ["bind", "inputs"])
def test_target_accepts_every_documented_merge_style_and_constants_mode(merge_style, constants):
    target = Target("myaccel", merge_style=merge_style, constants=constants)

    assert (target.merge_style, target.constants) == (merge_style, constants)


def test_target_domains_derive_from_its_name():
    target = Target("myaccel")

    assert target.domain == "byoc.myaccel"
    assert target.composite_domain == "byoc.myaccel.composite"


def test_effective_policy_prefers_override_then_target_policy_then_default():
    own = RegionPolicy(min_nodes=5)
    override = RegionPolicy(min_nodes=9)

    assert Target("a", policy=own).effective_policy(override) is override
    assert Target("a", policy=own).effective_policy(None) is own
    assert Target("a").effective_policy(None) == RegionPolicy()


# --- support(): declaring ops ---------------------------------------------------------------


def test_support_as_a_call_declares_every_op_given():
    target = Target("myaccel")

    target.support("Relu", "Add", dtypes={"float32"})

    assert set(target.ops) == {("", "Relu"), ("", "Add")}
    (rule,) = target.ops[("", "Relu")]
    assert isinstance(rule, OpSupport)
    assert rule.dtypes == frozenset({"float32"})
    assert rule.check is None


def test_support_without_op_types_is_an_error():
    with pytest.raises(TargetError, match="at least one op type"):
        Target("myaccel").support()


def test_support_as_a_decorator_attaches_the_check_to_every_op():
    target = Target("myaccel")

    @target.support("Relu", "Sigmoid")
    def check(node):
        return True

    assert target.ops[("", "Relu")][0].check is check
    assert target.ops[("", "Sigmoid")][0].check is check


def test_support_decorator_returns_the_function_unchanged():
    target = Target("myaccel")

    def check(node):
        return True

    assert target.support("Relu")(check) is check


def test_supported_op_is_accepted():
    target = Target("myaccel")
    target.support("Relu")

    assert target.check(RELU_F32) is None


def test_undeclared_op_is_declined_naming_op_and_target():
    target = Target("myaccel")
    target.support("Add")

    assert declined(target, RELU_F32) == "Relu is not supported by myaccel"


def test_op_in_another_domain_is_not_the_default_domain_op():
    target = Target("myaccel")
    target.support("Relu", domain="com.vendor")

    assert target.check(RELU_F32) is not None
    assert target.rule_for("com.vendor", "Relu", 1) is not None


# --- opset ranges ---------------------------------------------------------------------------


def test_rule_for_picks_the_rule_covering_the_opset():
    target = Target("myaccel")
    target.support("Relu", opsets=(13, 17), note="old")
    target.support("Relu", opsets=(18, None), note="new")

    assert target.rule_for("", "Relu", 13).note == "old"
    assert target.rule_for("", "Relu", 17).note == "old"
    assert target.rule_for("", "Relu", 18).note == "new"
    assert target.rule_for("", "Relu", 21).note == "new"
    assert target.rule_for("", "Relu", 12) is None


def test_rule_for_an_unknown_opset_takes_the_first_rule():
    target = Target("myaccel")
    target.support("Relu", opsets=(13, 17), note="old")

    assert target.rule_for("", "Relu", None).note == "old"


def test_rule_for_an_undeclared_op_is_none():
    assert Target("myaccel").rule_for("", "Relu", 21) is None


def test_op_declared_for_other_opsets_is_declined_naming_the_opsets():
    target = Target("myaccel")
    target.support("Relu", opsets=(13, 17))

    reason = declined(target, RELU_F32)  # an opset-21 node

    assert reason == "myaccel supports Relu only at opsets 13-17"


def test_op_declared_for_several_ranges_names_them_all_when_declined():
    target = Target("myaccel")
    target.support("Relu", opsets=(None, 12))
    target.support("Relu", opsets=(14, 17))
    node = NodeInfo(RELU_F32.node, 13)

    assert declined(target, node) == "myaccel supports Relu only at opsets 1-12, 14-17"


def test_open_ended_opset_range_covers_newer_opsets():
    target = Target("myaccel")
    target.support("Relu", opsets=(14, None))

    assert target.check(RELU_F32) is None
    assert target.check(NodeInfo(RELU_F32.node, 13)) is not None


# --- built-in conditions --------------------------------------------------------------------


def test_dtype_outside_the_declared_set_is_declined_naming_allowed_types():
    target = Target("myaccel")
    target.support("Relu", dtypes={"float32", "float16"})

    reason = declined(target, RELU_I64)

    assert reason == "myaccel runs Relu on float16, float32, not int64"


def test_dtype_inside_the_declared_set_is_accepted():
    target = Target("myaccel")
    target.support("Relu", dtypes={"float32"})

    assert target.check(RELU_F32) is None


def test_const_input_that_is_a_graph_input_is_declined():
    target = Target("myaccel")
    target.support("Conv", const_inputs=(1, 2))

    assert declined(target, CONV_INPUT_WEIGHT) == (
        "myaccel needs input 1 of Conv to be a constant"
    )


def test_const_input_that_is_an_overridable_initializer_is_declined():
    target = Target("myaccel")
    target.support("Conv", const_inputs=(1,))

    assert "needs input 1 of Conv to be a constant" in declined(target, CONV_OVERRIDABLE_WEIGHT)


def test_const_input_that_is_an_initializer_is_accepted_and_omitted_ones_are_ignored():
    target = Target("myaccel")
    target.support("Conv", const_inputs=(1, 2))  # the bias, input 2, is omitted

    assert target.check(CONV_CONST_WEIGHT) is None


def test_static_shapes_declines_a_symbolic_dim_naming_the_input_not_the_tensor():
    # Reports group host nodes by reason: a tensor name would make every reason unique.
    target = Target("myaccel")
    target.support("Relu", static_shapes=True)

    reason = declined(target, RELU_SYMBOLIC)

    assert reason == "myaccel needs static shapes (input 0 of Relu is dynamic)"


def test_dtypes_given_as_one_string_is_refused():
    with pytest.raises(TargetError, match="not the string 'float32'"):
        Target("myaccel").support("Relu", dtypes="float32")


def test_a_check_can_be_given_as_a_keyword():
    target = Target("myaccel")
    target.support("Relu", check=lambda node: "never")

    assert declined(target, RELU_SYMBOLIC) == "never"


def test_the_decorator_attaches_to_its_own_rule_even_when_rules_are_equal():
    target = Target("myaccel")
    target.support("Relu", opsets=(None, 13))
    target.support("Relu", opsets=(None, 13))(lambda node: "second")

    first, second = target.ops[("", "Relu")]
    assert first.check is None and second.check is not None


def test_static_shapes_accepts_fully_known_shapes():
    target = Target("myaccel")
    target.support("Relu", static_shapes=True)

    assert target.check(RELU_F32) is None


def test_built_in_conditions_are_checked_before_the_check_function():
    target = Target("myaccel")
    calls = []

    @target.support("Relu", dtypes={"float32"})
    def check(node):
        calls.append(node)
        return True

    assert target.check(RELU_I64) is not None
    assert calls == []


# --- check functions ------------------------------------------------------------------------


def _target_with_check(result) -> Target:
    target = Target("myaccel")
    target.support("Relu")(lambda node: result)
    return target


@pytest.mark.parametrize("result", [True, None])
def test_check_returning_true_or_none_accepts(result):
    assert _target_with_check(result).check(RELU_F32) is None


def test_check_returning_a_string_declines_with_that_reason():
    target = _target_with_check("rank 2 is not supported")

    assert declined(target, RELU_F32) == "rank 2 is not supported"


def test_check_returning_false_declines_with_a_generic_reason():
    assert declined(_target_with_check(False), RELU_F32) == "Relu check declined"


@pytest.mark.parametrize("result", [3, 0, [], "", object()])
def test_check_returning_anything_else_is_a_target_error(result):
    with pytest.raises(TargetError, match="Relu check returned"):
        _target_with_check(result).check(RELU_F32)


def test_check_function_sees_the_node_info():
    target = Target("myaccel")
    seen = []

    @target.support("LeakyRelu")
    def check(node):
        seen.append(node)
        return None if node.attr("alpha") == 0.25 else "alpha must be 0.25"

    node = one_node(
        "agraph (float[2] x) => (float[2] y) { [leaky] y = LeakyRelu<alpha=0.25>(x) }"
    )

    assert target.check(node) is None
    assert seen == [node]


# --- patterns -------------------------------------------------------------------------------


def test_pattern_declares_a_composite():
    target = Target("myaccel")
    shape = op("Relu", op("Conv", any_input(), const()))

    composite = target.pattern("conv_relu", shape, note="fused")

    assert isinstance(composite, CompositePattern)
    assert target.patterns == [composite]
    assert composite.pattern is shape


def test_pattern_with_a_duplicate_name_is_rejected():
    target = Target("myaccel")
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const())))

    with pytest.raises(TargetError, match="declared twice"):
        target.pattern("conv_relu", op("Relu", any_input()))


@pytest.mark.parametrize("root", [any_input(), const(), optional(op("Relu", any_input()))])
def test_pattern_not_rooted_at_an_op_is_rejected(root):
    with pytest.raises(TargetError, match=r"must be rooted at op\(...\)"):
        Target("myaccel").pattern("bad", root)


@pytest.mark.parametrize("name", ["ConvRelu", "conv-relu", "1conv"])
def test_pattern_with_a_non_identifier_name_is_rejected(name):
    with pytest.raises(TargetError, match="must be lowercase letters, digits and"):
        Target("myaccel").pattern(name, op("Relu", any_input()))


def test_larger_patterns_are_kept_first_then_in_declaration_order():
    target = Target("myaccel")
    target.pattern("small_a", op("Relu", op("Conv", any_input(), const())))
    target.pattern("large", op("Relu", op("Add", op("Conv", any_input(), const()), const())))
    target.pattern("small_b", op("Sigmoid", op("MatMul", any_input(), const())))
    target.pattern("single", op("Gelu", any_input()))

    assert [p.name for p in target.patterns] == ["large", "small_a", "small_b", "single"]


@pytest.mark.parametrize(
    ("result", "expected"),
    [(True, None), (None, None), ("no", "no"), (False, "pattern fused check declined")],
)
def test_pattern_check_verdicts(result, expected):
    composite = Target("myaccel").pattern(
        "fused", op("Relu", any_input()), check=lambda match: result
    )

    assert composite.evaluate(object()) == expected


def test_pattern_check_returning_a_non_bool_non_str_is_a_target_error():
    composite = Target("myaccel").pattern("fused", op("Relu", any_input()), check=lambda m: 3)

    with pytest.raises(TargetError, match="pattern fused check returned 3"):
        composite.evaluate(object())


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (op("Relu", op("Conv", any_input(), const(), optional(const()))),
         "Relu(Conv(*, const, const?))"),
        (op(["Relu", "Clip"], op("MatMul", any_input("x"), const("w"))),
         "Relu|Clip(MatMul(x, w))"),
        (op("Shape"), "Shape()"),
    ],
)
def test_describe_pattern_renders_one_line(pattern, text):
    assert describe_pattern(pattern) == text


# --- support_table() ------------------------------------------------------------------------


def test_support_table_has_one_row_per_rule_sorted_by_domain_and_op():
    target = Target("myaccel")
    target.support("Relu")
    target.support("Conv", dtypes={"float32", "int8"}, const_inputs=(1, 2), static_shapes=True)
    target.support("Gelu", domain="com.vendor", opsets=(1, None))

    rows = target.support_table()

    assert rows == [
        {
            "kind": "op", "name": "Conv", "opsets": "all", "dtypes": "float32, int8",
            "conditions": "constant input 1, 2; static shapes",
        },
        {"kind": "op", "name": "Relu", "opsets": "all", "dtypes": "any", "conditions": ""},
        {
            "kind": "op", "name": "com.vendor::Gelu", "opsets": "1-", "dtypes": "any",
            "conditions": "",
        },
    ]


@pytest.mark.parametrize(
    ("opsets", "text"),
    [((None, None), "all"), ((13, 17), "13-17"), ((18, None), "18-"), ((None, 12), "1-12")],
)
def test_support_table_renders_opset_ranges(opsets, text):
    target = Target("myaccel")
    target.support("Relu", opsets=opsets)

    assert target.support_table()[0]["opsets"] == text


def test_support_table_shows_a_checked_rule_by_its_note_or_as_checked():
    target = Target("myaccel")
    target.support("Relu", note="rank <= 4")(lambda node: True)
    target.support("Sigmoid")(lambda node: True)
    target.support("Tanh", note="fast path")

    conditions = {row["name"]: row["conditions"] for row in target.support_table()}

    assert conditions == {"Relu": "rank <= 4", "Sigmoid": "checked", "Tanh": "fast path"}


def test_support_table_lists_patterns_after_ops_by_note_or_description():
    target = Target("myaccel")
    target.support("Relu")
    target.pattern("conv_relu", op("Relu", op("Conv", any_input(), const())))
    target.pattern("dense", op("Add", op("MatMul", any_input(), const()), const()),
                   note="MatMul + bias")

    rows = target.support_table()

    assert [row["kind"] for row in rows] == ["op", "pattern", "pattern"]
    assert rows[1] == {
        "kind": "pattern", "name": "conv_relu", "opsets": "", "dtypes": "",
        "conditions": "Relu(Conv(*, const))",
    }
    assert rows[2]["conditions"] == "MatMul + bias"


# --- NodeInfo and TensorInfo ----------------------------------------------------------------


NODES = node_infos(
    """
    agraph (float[N,4] x, float[4,?] dyn, float[4] bias, float[1,4,2,2] image)
        => (float[N,4] y, float[N,4] z, float[1] k, float[1,4,2,2] c, float[4,4] p,
            float[N,4] a)
    <float hi = {6.0}, float[4] bias = {1, 2, 3, 4},
     float[4,4,1,1] w1 = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1},
     float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}>
    {
      [clip] y = Clip(x, , hi)
      [leaky] z = LeakyRelu<alpha=0.25>(x)
      [const] k = Constant<value=float[1] {1.5}>()
      [conv] c = Conv<kernel_shape=[1,1], pads=[0,0,0,0], auto_pad="NOTSET">(image, w1)
      [transpose] t = Transpose<perm=[1,0]>(dyn)
      [squeeze] s = Squeeze(dyn)
      [matmul] p = MatMul(w, w)
      [add] a = Add(x, bias)
    }
    """,
    opset=21,
)


def test_node_info_exposes_name_op_type_domain_and_opset():
    node = NODES["leaky"]

    assert (node.name, node.op_type, node.domain, node.opset) == ("leaky", "LeakyRelu", "", 21)
    assert repr(node) == "NodeInfo(LeakyRelu 'leaky', opset 21)"


def test_node_info_attributes_are_python_values():
    conv = NODES["conv"]

    assert conv.attributes == {
        "kernel_shape": (1, 1), "pads": (0, 0, 0, 0), "auto_pad": "NOTSET",
    }
    assert NODES["leaky"].attributes == {"alpha": 0.25}


def test_node_info_tensor_attributes_are_numpy_arrays():
    value = NODES["const"].attr("value")

    assert isinstance(value, np.ndarray)
    np.testing.assert_array_equal(value, np.array([1.5], dtype=np.float32))


def test_node_info_attr_returns_the_default_for_an_unset_attribute():
    conv = NODES["conv"]

    assert conv.attr("group") is None
    assert conv.attr("group", 1) == 1
    assert conv.attr("auto_pad", "VALID") == "NOTSET"


def test_node_info_omitted_optional_input_is_none():
    clip = NODES["clip"]

    assert len(clip.inputs) == 3
    assert clip.input(1) is None
    assert clip.inputs[1] is None
    assert clip.input(2).name == "hi"


def test_node_info_input_beyond_the_nodes_inputs_is_none():
    assert NODES["leaky"].input(5) is None


def test_tensor_info_shape_keeps_symbolic_dims_as_names():
    x = NODES["leaky"].input(0)

    assert isinstance(x, TensorInfo)
    assert x.shape == ("N", 4)
    assert x.rank == 2
    assert not x.is_static


def test_tensor_info_unknown_dim_is_none():
    dyn = NODES["transpose"].input(0)

    assert dyn.shape == (4, None)
    assert not dyn.is_static


def test_tensor_info_shape_is_none_when_even_the_rank_is_unknown():
    out = NODES["squeeze"].outputs[0]

    assert out.shape is None
    assert out.rank is None
    assert not out.is_static


def test_tensor_info_static_shape_and_dtype():
    out = NODES["matmul"].outputs[0]

    assert out.shape == (4, 4)
    assert out.is_static
    assert out.dtype == "float32"


def test_tensor_info_scalar_shape_is_empty_and_static():
    hi = NODES["clip"].input(2)

    assert hi.shape == ()
    assert hi.is_static


def test_initializer_is_constant_and_gives_its_numpy_value():
    w = NODES["matmul"].input(0)

    assert w.is_constant
    np.testing.assert_array_equal(w.numpy(), np.eye(4, dtype=np.float32))


def test_graph_input_is_not_constant_and_has_no_numpy_value():
    x = NODES["leaky"].input(0)

    assert not x.is_constant
    assert x.numpy() is None


def test_initializer_that_is_also_a_graph_input_is_not_constant():
    bias = NODES["add"].input(1)

    assert bias.name == "bias"
    assert not bias.is_constant
    assert bias.numpy() is None


def test_node_output_is_not_constant():
    assert not NODES["leaky"].outputs[0].is_constant
