"""The shortcuts the passes take for speed give what the long way gives.

* MergeComposite reuses the boundary the matcher found for each match, following the
  values that outlining earlier matches replaced, instead of walking the match again;
* a structural pattern check runs once per distinct structure, and its verdict stands for
  every instance of it;
* ``sorted_nodes`` checks the order and indexes the nodes in one walk, sorting only when
  needed;
* Prepare leaves a graph whose nodes all have distinct names as it is.
"""

from __future__ import annotations

import itertools

import onnx
import onnx_ir as ir
import pytest

from byoc_sdk import any_input, const, op
from byoc_sdk.testing import assert_equivalent, onnx_text
from partition.decision import composite_of
from partition.graph_index import sorted_nodes
from partition.merge_composite import MergeCompositePass
from partition.outline import boundary
from partition.prepare import PrepareGraphPass

# Three Relu(Add(MatMul(., w), b)) blocks in a row: each reads the one before.
CHAIN = """
    g (float[2,4] x) => (float[2,4] y) <
      float[4,4] w0 = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b0 = {1, 2, 3, 4},
      float[4,4] w1 = {0,1,0,0, 1,0,0,0, 0,0,0,1, 0,0,1,0}, float[4] b1 = {4, 3, 2, 1},
      float[4,4] w2 = {1,1,0,0, 0,1,1,0, 0,0,1,1, 1,0,0,1}, float[4] b2 = {0, 1, 0, 1}> {
      [mm0] m0 = MatMul(x, w0)
      [add0] a0 = Add(m0, b0)
      [relu0] r0 = Relu(a0)
      [mm1] m1 = MatMul(r0, w1)
      [add1] a1 = Add(b1, m1)
      [relu1] r1 = Relu(a1)
      [mm2] m2 = MatMul(r1, w2)
      [add2] a2 = Add(m2, b2)
      [y_relu] y = Relu(a2)
    }"""

# The first block exports its MatMul output, which the second block reads.
EXPORTS = """
    g (float[2,4] x) => (float[2,4] y, float[2,4] r0) <
      float[4,4] w0 = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b0 = {1, 2, 3, 4},
      float[4,4] w1 = {0,1,0,0, 1,0,0,0, 0,0,0,1, 0,0,1,0}, float[4] b1 = {4, 3, 2, 1}> {
      [mm0] m0 = MatMul(x, w0)
      [add0] a0 = Add(m0, b0)
      [relu0] r0 = Relu(a0)
      [mm1] m1 = MatMul(m0, w1)
      [add1] a1 = Add(m1, b1)
      [y_relu] y = Relu(a1)
    }"""


def _mm_add_relu(make_target, *, export: bool = False):
    target = make_target("acc", [])
    matmul = op("MatMul", any_input(), const(), allow_external_uses=export)
    target.pattern("mm_add_relu", op("Relu", op("Add", matmul, const(), commutative=True)))
    return target


def _calls(model: ir.Model) -> list[ir.Node]:
    return [node for node in model.graph if composite_of(node) is not None]


def _assert_wired_to_the_graph(model: ir.Model) -> None:
    """Every value a main-graph node reads comes from the graph, and no value of the graph
    is still read by a node that left it."""
    graph = model.graph
    produced = {value for node in graph for value in node.outputs}
    outer = {*graph.inputs, *graph.initializers.values()}
    for node in graph:
        for value in node.inputs:
            assert value is None or value in produced or value in outer
    for value in (*produced, *outer):
        assert all(user.graph is graph for user, _ in value.uses())


def test_chained_composites_read_the_calls_before_them(make_target):
    original = onnx.shape_inference.infer_shapes(onnx_text(CHAIN))
    model = ir.from_proto(original)
    MergeCompositePass([_mm_add_relu(make_target)])(model)

    calls = _calls(model)
    assert [c.name for c in calls] == ["mm_add_relu_0", "mm_add_relu_1", "mm_add_relu_2"]
    # Blocks 0 and 2 have one structure; block 1 adds its operands the other way round.
    functions = [c.op_identifier() for c in calls]
    assert functions[0] == functions[2] != functions[1]
    for before, after in itertools.pairwise(calls):
        assert after.inputs[0] is before.outputs[0]
    for call in calls:
        assert list(call.inputs) == boundary([call])[0]
    _assert_wired_to_the_graph(model)
    assert_equivalent(original, model)


def test_a_composite_reads_the_value_an_earlier_one_exports(make_target):
    original = onnx_text(EXPORTS)
    model = ir.from_proto(original)
    MergeCompositePass([_mm_add_relu(make_target, export=True)])(model)

    first, second = _calls(model)
    assert [v.name for v in first.outputs] == ["m0", "r0"]
    assert second.inputs[0] is first.outputs[0]
    _assert_wired_to_the_graph(model)
    assert_equivalent(original, model)


@pytest.mark.parametrize("structural", [False, True])
def test_a_structural_check_runs_once_per_structure_with_the_same_verdicts(
    make_target, structural
):
    seen: list[str] = []

    def check(match):
        seen.append(match.root.name)
        # Declines block 1, whose Add reads its operands the other way round.
        return match.node("add").inputs[0].producer() is match.node("mm") or "swapped"

    target = make_target("acc", [])
    matmul = op("MatMul", any_input(), const(), name="mm")
    add = op("Add", matmul, const(), commutative=True, name="add")
    target.pattern("mm_add_relu", op("Relu", add), check, structural=structural)
    model = ir.from_proto(onnx.shape_inference.infer_shapes(onnx_text(CHAIN)))
    MergeCompositePass([target])(model)

    # Roots are tried from the graph's end backwards.
    assert seen == (["y_relu", "relu1"] if structural else ["y_relu", "relu1", "relu0"])
    fused = [composite_of(call).members for call in _calls(model)]
    assert fused == [("mm0", "add0", "relu0"), ("mm2", "add2", "y_relu")]


_HEADER = '<ir_version: 10, opset_import: ["" : 21]>'
UNSORTED = """
    g (float[2] x) => (float[2] y) {
      [b] y = Relu(t)
      [a] t = Neg(x)
    }"""


def test_sorted_nodes_sorts_an_unsorted_graph_first():
    model = ir.from_proto(onnx.parser.parse_model(_HEADER + UNSORTED))
    nodes, position = sorted_nodes(model.graph)
    assert [n.name for n in nodes] == ["a", "b"] == [n.name for n in model.graph]
    assert position == {node: i for i, node in enumerate(nodes)}


def test_sorted_nodes_keeps_a_sorted_graph_as_it_is():
    model = ir.from_proto(onnx_text(CHAIN))
    before = list(model.graph)
    nodes, position = sorted_nodes(model.graph)
    assert nodes == before == list(model.graph)
    assert [position[n] for n in nodes] == list(range(len(nodes)))


def test_prepare_keeps_distinct_names_and_renames_repeats_and_blanks():
    text = """
        g (float[2] x) => (float[2] y) {
          [a] t = Neg(x)
          [a] u = Relu(t)
          v = Abs(u)
          [Relu_0] y = Tanh(v)
        }"""
    model = ir.from_proto(onnx_text(text))
    PrepareGraphPass()(model)
    assert [n.name for n in model.graph] == ["a", "Relu_1", "Abs_1", "Relu_0"]

    named = ir.from_proto(onnx_text(CHAIN))
    names = [n.name for n in named.graph]
    PrepareGraphPass()(named)
    assert [n.name for n in named.graph] == names
