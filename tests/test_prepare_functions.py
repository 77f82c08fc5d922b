"""Prepare inlines calls to a model's own functions; byoc's own functions stay."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import byoc_sdk  # noqa: F401  (imports partition.pipeline in the order it needs)
from byoc_sdk.loader import load_model
from partition.pipeline import partition_model

F = TensorProto.FLOAT


def _leaky() -> onnx.FunctionProto:
    """local::leaky(x) = LeakyRelu(x, alpha=@alpha), alpha 0.1 unless the call says."""
    node = helper.make_node("LeakyRelu", ["x"], ["y"])
    node.attribute.append(helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT))
    function = helper.make_function("local", "leaky", ["x"], ["y"], [node],
                                    [helper.make_opsetid("", 17)])
    function.attribute_proto.append(helper.make_attribute("alpha", 0.1))
    return function


def _dense() -> onnx.FunctionProto:
    """local::dense(x, w) = leaky(x @ w, alpha=@slope): a call inside a function."""
    call = helper.make_node("leaky", ["m"], ["y"], domain="local")
    alpha = helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT)
    alpha.ref_attr_name = "slope"
    call.attribute.append(alpha)
    return helper.make_function(
        "local", "dense", ["x", "w"], ["y"],
        [helper.make_node("MatMul", ["x", "w"], ["m"]), call],
        [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], ["slope"])


def _model(nodes, functions, outputs=("y",)) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, [2, 8])],
        [helper.make_tensor_value_info(name, F, [2, 8]) for name in outputs], [w])
    return helper.make_model(
        graph, functions=functions, ir_version=9,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1),
                       helper.make_opsetid("byoc.cpu", 1)])


def _nested() -> onnx.ModelProto:
    return _model(
        [helper.make_node("dense", ["x", "w"], ["h"], "/l1/dense", domain="local", slope=0.5),
         helper.make_node("leaky", ["h"], ["a"], "/act", domain="local"),
         helper.make_node("MatMul", ["a", "w"], ["y"], "/out/MatMul")],
        [_leaky(), _dense()])


def _run(proto: onnx.ModelProto) -> list[np.ndarray]:
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_calls_to_local_functions_are_inlined_and_offloaded() -> None:
    proto = _nested()
    result = partition_model(load_model(proto), ["cpu"])
    records = {r.name: r for r in result.report.nodes}
    # Names lead back to the call, nested calls nest: <call>/<inner call>/<node>.
    assert set(records) == {"/l1/dense/MatMul", "/l1/dense/leaky/LeakyRelu",
                            "/act/LeakyRelu", "/out/MatMul"}
    assert all(r.target == "cpu" for r in records.values())
    assert not any(d == "local" for d, _, _ in result.model.functions)
    assert any("inlined the model-local functions" in note for note in result.report.notes)
    np.testing.assert_allclose(_run(result.to_proto())[0], _run(proto)[0], rtol=1e-5)


def test_attribute_references_and_defaults_are_resolved() -> None:
    result = partition_model(load_model(_nested()), ["cpu"])
    alphas = {}
    for function in result.model.functions.values():
        for node in function.all_nodes():
            if node.op_type == "LeakyRelu":
                alphas[node.name] = node.attributes["alpha"].as_float()
    assert alphas == pytest.approx({"/l1/dense/leaky/LeakyRelu": 0.5, "/act/LeakyRelu": 0.1})


def test_byoc_functions_stay() -> None:
    region = helper.make_function("byoc.cpu", "cpu_0", ["x"], ["y"],
                                  [helper.make_node("Neg", ["x"], ["y"])],
                                  [helper.make_opsetid("", 17)])
    proto = _model([helper.make_node("leaky", ["x"], ["a"], "act", domain="local"),
                    helper.make_node("MatMul", ["a", "w"], ["m"], "mm"),
                    helper.make_node("cpu_0", ["m"], ["y"], "old", domain="byoc.cpu")],
                   [region, _leaky()])
    result = partition_model(load_model(proto), ["cpu"])
    # The user's own function goes, the region of an earlier partition stays.
    assert ("byoc.cpu", "cpu_0", "") in result.model.functions
    assert ("local", "leaky", "") not in result.model.functions
    assert {r.name: r.target for r in result.report.nodes}["act/LeakyRelu"] == "cpu"
    np.testing.assert_allclose(_run(result.to_proto())[0], _run(proto)[0], rtol=1e-5)


def test_calls_inside_if_bodies_still_run() -> None:
    def branch(name: str, scale: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("leaky", ["h"], [f"{name}_out"], domain="local", alpha=scale)],
            name, [], [helper.make_tensor_value_info(f"{name}_out", F, [2, 8])])

    proto = _model(
        [helper.make_node("dense", ["x", "w"], ["h"], "d1", domain="local", slope=0.2),
         helper.make_node("ReduceSum", ["h"], ["s"], "rs", keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["c"], "gt"),
         helper.make_node("If", ["c"], ["y"], "if0",
                          then_branch=branch("then", 0.3), else_branch=branch("else", 0.7))],
        [_leaky(), _dense()])
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.float32(0), "zero"))
    result = partition_model(load_model(proto), ["cpu"])
    assert not any(d == "local" for d, _, _ in result.model.functions)
    np.testing.assert_allclose(_run(result.to_proto())[0], _run(proto)[0], rtol=1e-5)
