"""Unit tests of the codegen: quick checks to run while changing it."""

import byoc_sdk as byoc
import numpy as np
import onnx
from byoc_sdk.testing import run_onnxruntime
from onnx import TensorProto, helper, numpy_helper

from {{ cookiecutter.package_name }}.about import DENSE_RELU
from {{ cookiecutter.package_name }}.target import target


def dense_layer_model(rows: int = 4, k: int = 8, n: int = 16) -> onnx.ModelProto:
    """Relu(x @ w + b): the composite the target fuses."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Add", ["h", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_dense_layer_is_fused_built_and_right():
    model = dense_layer_model()
    compiled = byoc.build(model, [target], strict=True)
    nodes = compiled.report.partition.nodes
    assert all(n.target == target.name for n in nodes)
    assert {n.composite.rsplit("_", 1)[0] for n in nodes} == {DENSE_RELU}
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    expected = run_onnxruntime(model, {"x": x})["y"]
    np.testing.assert_allclose(compiled.run({"x": x})["y"], expected, rtol=1e-5, atol=1e-5)


def test_package_round_trip(tmp_path):
    compiled = byoc.build(dense_layer_model(), [target], strict=True)
    path = compiled.save(tmp_path / "dense.byoc")
    x = np.ones((4, 8), np.float32)
    loaded = byoc.CompiledModel.load(path)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], compiled.run({"x": x})["y"])
