"""Regressions of host steps found by an attack on real models: overloaded model-local
functions, values of ops nobody knows crossing between host steps, host steps that
onnxruntime optimised into something less exact than the whole model, and the host
threads of ``byoc run``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc_sdk.runtime
from byoc_sdk import RegionPolicy, build
from byoc_sdk.cli import main
from byoc_sdk.errors import OnnxRuntimeError
from byoc_sdk.testing import random_feeds, run_onnxruntime

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _weight(name: str, *shape: int, seed: int = 0) -> onnx.TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3
    return numpy_helper.from_array(values, name)


def _act(overload: str, x: str, y: str, name: str) -> onnx.NodeProto:
    node = helper.make_node("act", [x], [y], domain="ov", name=name)
    node.overload = overload
    return node


def _overloaded_model() -> onnx.ModelProto:
    """Two overloads of ov:act (Relu, Sigmoid), both called in each of the host steps on
    either side of a MatMul: host steps whose models must carry both bodies. The bodies
    import opset 18, not the model's 21, so the partitioner cannot inline them."""
    functions = []
    for overload, op in (("relu", "Relu"), ("sig", "Sigmoid")):
        function = helper.make_function("ov", "act", ["x"], ["y"],
                                        [helper.make_node(op, ["x"], ["y"])],
                                        [helper.make_opsetid("", 18)])
        function.overload = overload
        functions.append(function)
    nodes = [
        _act("relu", "x", "a1", "act_relu_0"),
        _act("sig", "a1", "a2", "act_sig_0"),
        helper.make_node("MatMul", ["a2", "w"], ["m"], name="mm"),
        _act("sig", "m", "a3", "act_sig_1"),
        _act("relu", "a3", "y", "act_relu_1"),
    ]
    graph = helper.make_graph(nodes, "overloads", [_info("x", [2, 8])], [_info("y", [2, 4])],
                              [_weight("w", 8, 4)])
    return helper.make_model(graph, functions=functions, ir_version=10, opset_imports=[
        helper.make_opsetid("", 21), helper.make_opsetid("ov", 1)])


@pytest.mark.parametrize("target", ["cpu", "simaccel"])
def test_overloaded_functions_run_in_host_steps(target):
    model = _overloaded_model()
    compiled = build(model, [target], policy=RegionPolicy.keep_all())
    kinds = [step.kind for step in compiled.steps]
    assert kinds == ["host", "external", "host"]
    feeds = random_feeds(model)
    got = compiled.run(feeds)
    np.testing.assert_allclose(got["y"], run_onnxruntime(model, feeds)["y"],
                               rtol=1e-5, atol=1e-6)


def _unknown_op_model() -> onnx.ModelProto:
    """mycorp:Foo (known to neither onnx nor onnxruntime) makes g in one host step; a host
    node after an offloaded MatMul reads it in another."""
    nodes = [
        helper.make_node("Foo", ["x"], ["g"], domain="mycorp", name="foo"),
        helper.make_node("Abs", ["x"], ["a"], name="abs"),
        helper.make_node("MatMul", ["a", "w"], ["m"], name="mm"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("Sum", ["g", "r"], ["y"], name="sum"),
    ]
    graph = helper.make_graph(nodes, "custom", [_info("x", [2, 8])], [_info("y", [2, 8])],
                              [_weight("w", 8, 8)])
    return helper.make_model(graph, ir_version=9, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("mycorp", 1)])


def test_untyped_value_between_host_steps_is_one_error_line(capsys, tmp_path):
    path = tmp_path / "custom.onnx"
    onnx.save(_unknown_op_model(), path)
    code = main(["build", str(path), "-t", "cpu", "-o", str(tmp_path / "custom.byoc")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "internal error" not in err
    assert "node foo (mycorp:Foo)" in err and "'g'" in err
    assert "target host" in err and re.search(r"region host_\d", err)


def test_untyped_value_between_host_steps_is_an_onnxruntime_error():
    with pytest.raises(OnnxRuntimeError, match=r"node foo \(mycorp:Foo\).*'g' has no type"):
        build(_unknown_op_model(), ["cpu"])


def test_dequantized_matmul_host_step_is_as_exact_as_the_whole_model():
    """DequantizeLinear(int8 weight) -> MatMul in a host step before a simaccel Conv:
    onnxruntime fuses the pair, cut out, into MatMulNBits, which quantized the activations
    too (~1e-2 off), where on the whole model it keeps the exact MatMul."""
    rng = np.random.default_rng(0)
    weight = rng.integers(-8, 8, (8, 16)).astype(np.int8)
    initializers = [
        numpy_helper.from_array(np.float32(0.1), "scale"),
        numpy_helper.from_array(np.array([2, 1, 4, 4], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(weight, "wq"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "scale"], ["wf"], name="dq"),
        helper.make_node("MatMul", ["x", "wf"], ["m"], name="mm"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["r4"], name="reshape"),
        helper.make_node("Conv", ["r4", "cw"], ["c"], pads=[1, 1, 1, 1], name="conv"),
    ]
    graph = helper.make_graph(nodes, "dq", [_info("x", [2, 8])],
                              [_info("c", [2, 4, 4, 4]), _info("m", [2, 16])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=10)
    feeds = random_feeds(model)
    exact = feeds["x"].astype(np.float64) @ (weight * 0.1)
    compiled = build(model, ["simaccel"])
    assert "host" in [step.kind for step in compiled.steps]
    got = compiled.run(feeds)
    reference = run_onnxruntime(model, feeds)
    assert np.abs(reference["m"] - exact).max() < 1e-5
    assert np.abs(got["m"] - exact).max() < 1e-5


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("threads")
    path = folder / "overloads.byoc"
    onnx.save(_overloaded_model(), folder / "overloads.onnx")
    assert main(["build", str(folder / "overloads.onnx"), "-t", "cpu", "-o", str(path)]) == 0
    return path


def test_run_host_threads_reaches_the_loader(capsys, monkeypatch, package):
    seen = []
    load = byoc_sdk.runtime.CompiledModel.load

    def spy(path, *, host_threads=0):
        seen.append(host_threads)
        return load(path, host_threads=host_threads)

    monkeypatch.setattr(byoc_sdk.runtime.CompiledModel, "load", spy)
    assert main(["run", str(package), "--random-inputs", "--host-threads", "3", "--check"]) == 0
    assert main(["run", str(package), "--random-inputs"]) == 0
    assert seen == [3, 0]
    capsys.readouterr()


@pytest.mark.parametrize("value", ["-1", "1.5", "two"])
def test_run_host_threads_usage_errors(capsys, package, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(package), "--random-inputs", "--host-threads", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --host-threads" in err and "Traceback" not in err


def test_run_help_in_the_docs_is_the_real_one(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--host-threads N" in shown
    assert f"$ byoc run --help\n{shown}```" in (DOCS / "cli.md").read_text()
