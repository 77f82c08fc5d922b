"""FoldConstants: what a graph computes from constants alone becomes a constant.

Each case is a small graph before and the graph after: which nodes are gone, what the
folded values hold, and that the model still computes what it did.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from byoc_sdk import build, load_model, partition_model
from byoc_sdk.testing import assert_equivalent, onnx_text, run_onnxruntime
from partition.fold_constants import FOLDED_KEY, GROWTH_LIMIT, FoldConstantsPass

# What torch.onnx.export writes for x.view(x.size(0), -1): every shape is static, yet the
# Reshape's shape is computed at run time.
WEIGHTS = ", ".join(str(v / 100) for v in range(48 * 8))
VIEW = """
    g (float[2,3,4,4] x) => (float[2,8] y)
    <float[48,8] w = {WEIGHTS}, int64[1] first = {0}, int64[1] rest = {-1}> {
      [relu] r = Relu(x)
      [shape] s = Shape(r)
      [gather] b = Gather<axis=0>(s, first)
      [concat] new_shape = Concat<axis=0>(b, rest)
      [view] flat = Reshape(r, new_shape)
      [fc] y = MatMul(flat, w)
    }""".replace("WEIGHTS", WEIGHTS)


def fold(text: str):
    """The model of ``text``, loaded and folded; its remaining node names."""
    model = load_model(onnx_text(text))
    FoldConstantsPass()(model)
    return model, [node.name for node in model.graph]


def test_a_shape_computed_from_static_shapes_becomes_a_constant():
    model, names = fold(VIEW)

    assert names == ["relu", "view", "fc"]
    assert [(f.name, f.op_type) for f in model.meta[FOLDED_KEY]] == [
        ("shape", "Shape"), ("gather", "Gather"), ("concat", "Concat")]
    new_shape = model.graph.node("view").inputs[1]
    assert new_shape.is_initializer() and new_shape.name == "new_shape"
    np.testing.assert_array_equal(new_shape.const_value.numpy(), [2, -1])
    assert "first" not in model.graph.initializers  # read by the folded nodes only
    assert "rest" not in model.graph.initializers
    assert_equivalent(onnx_text(VIEW), model)


def test_the_folded_reshape_goes_to_a_target_that_needs_a_constant_shape():
    """Before folding every target said 'needs input 1 of Reshape to be a constant', and
    the Reshape and the MatMul after it stayed on the host."""
    result = partition_model(onnx_text(VIEW), ["simaccel"])

    assert {n.name: n.target for n in result.report.nodes} == {
        "relu": "simaccel", "view": "simaccel", "fc": "simaccel"}
    assert [f.name for f in result.report.folded] == ["shape", "gather", "concat"]
    text = result.report.render(explain=True)
    assert "note: 3 nodes computed from constants alone were folded into constants: " in text
    assert "  gather (Gather) -> folded: computed from constants alone" in text
    assert result.report.to_dict()["folded"][0] == {"name": "shape", "op_type": "Shape"}

    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    got = build(onnx_text(VIEW), ["simaccel"], strict=True).run({"x": x})["y"]
    np.testing.assert_allclose(got, run_onnxruntime(onnx_text(VIEW), {"x": x})["y"],
                               rtol=1e-5, atol=1e-5)


def test_an_identity_of_a_weight_reads_the_weight_itself():
    """torch's exporter writes a parameter equal to another as Identity(first); a target
    needing constant BatchNormalization statistics then declined the layer."""
    text = """
        g (float[1,2,3,3] x) => (float[1,2,3,3] y)
        <float[2] ones = {1, 1}, float[2] zeros = {0, 0}> {
          [same] also_ones = Identity(ones)
          [bn] y = BatchNormalization(x, ones, zeros, zeros, also_ones)
        }"""
    model, names = fold(text)

    assert names == ["bn"]
    assert model.graph.node("bn").inputs[4] is model.graph.initializers["ones"]
    assert_equivalent(onnx_text(text), model)


def test_shape_start_and_end_and_size():
    text = """
        <ir_version: 10, opset_import: ["" : 21]>
        g (float[2,3,5] x) => (int64[2] tail, int64[1] last, int64 n)
        <int64[2] zero2 = {0, 0}, int64[1] zero1 = {0}, int64 zero = {0}> {
          [tail_shape] t = Shape<start=-2>(x)
          [last_shape] l = Shape<start=1, end=-1>(x)
          [size] s = Size(x)
          [a] tail = Add(t, zero2)
          [b] last = Add(l, zero1)
          [c] n = Add(s, zero)
        }"""
    model, names = fold(text)

    # The Adds write graph outputs: they stay, reading the folded values.
    assert names == ["a", "b", "c"]
    values = [model.graph.node(n).inputs[0].const_value.numpy().tolist() for n in names]
    assert values == [[3, 5], [3], 30]


def test_folding_goes_on_while_shapes_become_static():
    """The second Reshape's input shape is only known once the first Reshape's shape is
    folded and shapes are inferred again."""
    text = """
        g (float[2,6] x) => (float[12] y)
        <int64[1] minus_one = {-1}> {
          [s1] s = Shape(x)
          [r1] half = Div(s, s)
          [view1] v = Reshape(x, s)
          [s2] s_again = Shape(v)
          [count] n = ReduceProd<keepdims=1>(s_again)
          [view2] y = Reshape(v, n)
        }"""
    model, names = fold(text)

    assert names == ["view1", "view2"]
    np.testing.assert_array_equal(model.graph.node("view2").inputs[1].const_value.numpy(), [12])
    assert_equivalent(onnx_text(text), model)


@pytest.mark.parametrize("case, text", [
    ("graph output", """
        g (float[2] x) => (float[2] y, float[2] c)
        <float[2] a = {1, 2}> {
          [neg] c = Neg(a)
          [add] y = Add(x, c)
        }"""),
    ("random", """
        g (float[2] x) => (float[2] y) {
          [draw] r = RandomNormal<shape=[2]>()
          [add] y = Add(x, r)
        }"""),
    ("quantized weight", """
        g (float[2] x) => (float[2] y)
        <int8[2] q = {1, 2}, float scale = {0.5}, int8 zero = {0}> {
          [dq] w = DequantizeLinear(q, scale, zero)
          [add] y = Add(x, w)
        }"""),
    ("dynamic shape", """
        g (float[N,2] x) => (float[M] y) <int64[1] flat = {-1}> {
          [shape] s = Shape(x)
          [cast] z = Cast<to=1>(s)
          [view] y = Reshape(x, flat)
        }"""),
])
def test_what_is_not_folded(case, text):
    model, names = fold(text)
    assert names == [node.name for node in onnx_text(text).graph.node]
    assert model.meta[FOLDED_KEY] == []


def test_a_result_much_bigger_than_its_inputs_is_made_at_run_time():
    """A ConstantOfShape mask costs nothing to make at run time; folded, every copy of the
    model would carry it."""
    side = int((GROWTH_LIMIT // 4) ** 0.5) + 1
    text = f"""
        g (float[{side},{side}] x) => (float[{side},{side}] y)
        <int64[2] shape = {{{side}, {side}}}> {{
          [mask] m = ConstantOfShape<value=float[1] {{1}}>(shape)
          [mul] y = Mul(x, m)
        }}"""
    _, names = fold(text)
    assert names == ["mask", "mul"]


def test_a_subgraph_reading_a_folded_value_reads_the_constant():
    text = """
        g (float[2] x, bool c) => (float[2] y)
        <float[2] a = {1, 2}> {
          [neg] n = Neg(a)
          [branch] y = If(c) <
            then_branch = t () => (float[2] out) { [inner_add] out = Add(x, n) },
            else_branch = e () => (float[2] out) { [inner_sub] out = Sub(x, n) }
          >
        }"""
    model, names = fold(text)

    assert names == ["branch"]
    for c in (True, False):
        feeds = {"x": np.array([3, 4], np.float32), "c": np.array(c)}
        assert_equivalent(onnx_text(text), model, feeds)


def test_onnx_checker_accepts_the_folded_partition():
    proto = partition_model(onnx_text(VIEW), ["cpu"]).to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert not [n for n in proto.graph.node if n.op_type in ("Shape", "Gather", "Concat")]


def test_a_computed_constant_nobody_reads_is_folded_away():
    """Nothing the folded node makes is read elsewhere: onnxruntime has nothing to
    compute (a model without outputs, which it refuses, stopped all folding before)."""
    text = """
        g (float[2,3] x) => (float[2,3] y)
        <float[2] a = {1, 2}> {
          [dead] unread = Neg(a)
          [shape] s = Shape(x)
          [view] y = Reshape(x, s)
        }"""
    model, names = fold(text)
    assert names == ["view"]
    assert_equivalent(onnx_text(text), model)
