"""NaN and infinities through the compiled backends.

A NaN that a compiled region turns into a number hides a bug upstream of it, so the
backends must let NaN through as onnxruntime does: ``Relu``, ``Clip``, ``Max`` and
``Min`` give NaN for a NaN operand (a plain ``a > b ? a : b`` gives 0, or the other
operand, instead). Max pooling and ``ReduceMax`` follow numpy (a window or row holding a
NaN gives NaN): onnxruntime's own answer there depends on where the NaN sits in the
window, so it is no reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import byoc_sdk as byoc
from byoc_sdk.testing import onnx_text, run_onnxruntime
from partition.policy import RegionPolicy

EVERY_REGION = RegionPolicy(min_nodes=1, require_compute=False)
OPTIONS = {"cuda": {"emulate": True}}

#: Elementwise ops (one output each) that onnxruntime answers consistently for NaN and
#: infinities, per target that compiles them.
ELEMENTWISE = {
    "relu": "Relu(x)",
    "clip": "Clip(x, lo, hi)",
    "max": "Max(x, x2)",
    "min": "Min(x, x2)",
    "leaky": "LeakyRelu<alpha=0.1>(x)",
    "hardsigmoid": "HardSigmoid(x)",
    "hardswish": "HardSwish(x)",
    "sigmoid": "Sigmoid(x)",
    "tanh": "Tanh(x)",
    "exp": "Exp(x)",
}
TARGET_OPS = {
    "cpu": list(ELEMENTWISE),
    "cuda": list(ELEMENTWISE),
    "simaccel": ["relu", "clip", "leaky", "hardsigmoid", "hardswish", "sigmoid", "tanh"],
}


def special_inputs() -> dict[str, np.ndarray]:
    """Ordinary values with NaN and both infinities in ``x``, and NaN elsewhere in ``x2``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16)).astype(np.float32)
    x[0, 0] = x[1, 5] = np.nan
    x[0, 3], x[1, 7] = np.inf, -np.inf
    x2 = rng.standard_normal((2, 16)).astype(np.float32)
    x2[0, 1] = x2[1, 5] = np.nan
    return {"x": x, "x2": x2}


def elementwise_model(names: list[str]):
    outputs = ", ".join(f"float[2,16] {n}" for n in names)
    body = "\n".join(f"  {n} = {ELEMENTWISE[n]}" for n in names)
    return onnx_text(f"""<ir_version: 8, opset_import: ["" : 18]>
g (float[2,16] x, float[2,16] x2) => ({outputs}) {{
  lo = Constant<value=float {{-1.0}}>()
  hi = Constant<value=float {{1.0}}>()
{body}
}}""")


def compile_all_on(model, target: str) -> byoc.CompiledModel:
    compiled = byoc.build(model, [target], options=OPTIONS, policy=EVERY_REGION,
                          host_threads=1)
    host = [(n.name, n.op_type) for n in compiled.report.partition.nodes
            if n.target == "host" and n.op_type != "Constant"]
    assert not host, f"left on the host by {target}: {host}"
    return compiled


@pytest.mark.parametrize("target", sorted(TARGET_OPS))
def test_nan_and_infinities_match_onnxruntime(target):
    model = elementwise_model(TARGET_OPS[target])
    feeds = special_inputs()
    expected = run_onnxruntime(model, feeds)
    got = compile_all_on(model, target).run(feeds)
    for name, want in expected.items():
        assert np.array_equal(np.isnan(got[name]), np.isnan(want)), (
            f"{target} {name}: NaN at {np.argwhere(np.isnan(got[name])).tolist()}, "
            f"onnxruntime has {np.argwhere(np.isnan(want)).tolist()}")
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("target", ["cpu", "cuda", "simaccel"])
def test_max_pooling_lets_a_nan_through_wherever_it_sits(target):
    model = onnx_text("""<ir_version: 8, opset_import: ["" : 18]>
g (float[1,1,4,4] x) => (float[1,1,2,2] y) {
  y = MaxPool<kernel_shape=[2,2], strides=[2,2]>(x)
}""")
    compiled = compile_all_on(model, target)
    for position in range(4):  # each place in the first window
        x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        x[0, 0, position // 2, position % 2] = np.nan
        y = compiled.run({"x": x})["y"]
        assert np.isnan(y[0, 0, 0, 0]), f"{target}: NaN at {position} was dropped"
        np.testing.assert_array_equal(y[0, 0].ravel()[1:], [7, 13, 15])


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_reduce_max_of_a_row_with_a_nan_is_nan(target):
    model = onnx_text("""<ir_version: 8, opset_import: ["" : 18]>
g (float[4,64] x) => (float[4,1] y) {
  axes = Constant<value=int64[1] {1}>()
  y = ReduceMax<keepdims=1>(x, axes)
}""")
    compiled = compile_all_on(model, target)
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    x[1, 0] = x[2, 37] = x[3, 63] = np.nan
    y = compiled.run({"x": x})["y"]
    np.testing.assert_array_equal(np.isnan(y.ravel()), [False, True, True, True])
    assert y[0, 0] == x[0].max()


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_reductions_over_an_empty_axis_match_onnxruntime(target):
    """A reduced dimension of size 0: onnxruntime gives the sum of nothing (0), the max of
    nothing (-inf) and, for the mean, 0 as well; the mean was 0 / 0 = NaN here."""
    model = onnx_text("""<ir_version: 8, opset_import: ["" : 18]>
g (float[2,0,3] x) => (float[2,1,3] mean, float[2,1,3] sum, float[2,1,3] max, float all) {
  axes = Constant<value=int64[1] {1}>()
  mean = ReduceMean<keepdims=1>(x, axes)
  sum = ReduceSum<keepdims=1>(x, axes)
  max = ReduceMax<keepdims=1>(x, axes)
  all = ReduceMean<keepdims=0>(x)
}""")
    feeds = {"x": np.zeros((2, 0, 3), np.float32)}
    expected = run_onnxruntime(model, feeds)
    got = compile_all_on(model, target).run(feeds)
    for name, want in expected.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


@pytest.mark.parametrize("target", ["cpu", "cuda", "simaccel"])
def test_relu_of_minus_zero_is_minus_zero(target):
    """onnxruntime's Relu keeps -0.0 (max(x, 0) with x first); equal to +0.0, but 1 / x
    tells them apart."""
    model = onnx_text("""<ir_version: 8, opset_import: ["" : 18]>
g (float[2,16] x) => (float[2,16] y) {
  y = Relu(x)
}""")
    feeds = {"x": special_inputs()["x"]}
    feeds["x"][0, 1:4] = -0.0
    feeds["x"][1, 1] = 0.0
    want = run_onnxruntime(model, feeds)["y"]
    assert np.signbit(want[0, 1:4]).all()  # the reference's behaviour, checked
    got = compile_all_on(model, target).run(feeds)["y"]
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(got, want)
