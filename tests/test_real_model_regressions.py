"""Regressions found by running models a real user brings (quantized exports, contrib
ops, model-local functions, control flow) through partition, build and run.

Each model is built here with ``onnx.helper``, small enough to run in a second.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

import byoc_sdk as byoc
from byoc_sdk.loader import NOTES_KEY, load_model
from byoc_sdk.testing import assert_outputs_close, random_feeds, run_onnxruntime


def _weight(name: str, *shape: int, seed: int = 0) -> onnx.TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3
    return numpy_helper.from_array(values, name)


def _floats(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _contrib_model() -> onnx.ModelProto:
    """A com.microsoft op, which onnx's shape inference cannot type, whose output is
    read on both sides of a cpu region: host step 0 must hand it to host step 1."""
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft", name="ms_gelu"),
        helper.make_node("Abs", ["x"], ["a"], name="abs"),
        helper.make_node("MatMul", ["a", "w"], ["m"], name="mm"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("Sum", ["g", "r"], ["y"], name="sum"),
    ]
    graph = helper.make_graph(nodes, "contrib", [_floats("x", [2, 8])], [_floats("y", [2, 8])],
                              [_weight("w", 8, 8)])
    return helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_contrib_op_outputs_get_their_types_from_onnxruntime():
    model = load_model(_contrib_model())
    g = model.graph.node(0).outputs[0]
    assert g.dtype == ir.DataType.FLOAT and g.shape == [2, 8]
    assert any("onnxruntime" in note for note in model.meta[NOTES_KEY])


def test_contrib_op_value_crossing_host_steps_builds_and_runs():
    proto = _contrib_model()
    compiled = byoc.build(proto, ["cpu"])
    feeds = random_feeds(proto)
    assert_outputs_close(compiled.run(feeds), run_onnxruntime(proto, feeds))


def test_untyped_value_of_unknown_shape_is_not_made_a_scalar():
    # onnxruntime has no shape inference for ai.onnx.ml's Scaler and reports its output's
    # shape as [], as it reports a scalar's: the MatMul after it must not see a rank-0 input.
    nodes = [
        helper.make_node("Scaler", ["x"], ["s"], domain="ai.onnx.ml", offset=[0.5] * 8,
                         scale=[2.0] * 8, name="scaler"),
        helper.make_node("MatMul", ["s", "w"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(nodes, "ml", [_floats("x", [4, 8])], [_floats("y", [4, 3])],
                              [_weight("w", 8, 3)])
    proto = helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model = load_model(proto)
    scaled = model.graph.node(0).outputs[0]
    assert scaled.dtype == ir.DataType.FLOAT and scaled.shape is None
    feeds = random_feeds(proto)
    assert_outputs_close(byoc.build(proto, ["cpu"]).run(feeds), run_onnxruntime(proto, feeds))


def test_region_function_does_not_replace_a_model_function_of_the_same_name():
    # The model already has a function byoc.simaccel/simaccel_0 (a Neg); the region
    # simaccel forms must get another name, or the user's call runs the region's MatMul.
    user = helper.make_function("byoc.simaccel", "simaccel_0", ["x"], ["y"],
                                [helper.make_node("Neg", ["x"], ["y"])],
                                [helper.make_opsetid("", 17)])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="add1"),
        helper.make_node("simaccel_0", ["a1"], ["n1"], domain="byoc.simaccel", name="user_fn"),
        helper.make_node("Sin", ["n1"], ["y"], name="sin"),
    ]
    graph = helper.make_graph(nodes, "collide", [_floats("x", [2, 8])], [_floats("y", [2, 16])],
                              [_weight("w1", 8, 16), _weight("b1", 16, seed=1)])
    proto = helper.make_model(graph, ir_version=10, functions=[user], opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("byoc.simaccel", 1)])
    feeds = random_feeds(proto)
    expected = run_onnxruntime(proto, feeds)
    result = byoc.partition_model(proto, ["simaccel"])
    regions = [n.op_type for n in result.model.graph if n.domain == "byoc.simaccel"
               and n.name != "user_fn"]
    assert regions and "simaccel_0" not in regions
    assert_outputs_close(run_onnxruntime(result.to_proto(), feeds), expected)
    assert_outputs_close(byoc.build(proto, ["simaccel"]).run(feeds), expected)
