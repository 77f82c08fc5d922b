"""simaccel bugs found by differential fuzzing against onnxruntime, one test each."""

from __future__ import annotations

import numpy as np

from byoc_sdk.testing import random_feeds, run_onnxruntime
from reference_backends.simaccel.testing import GraphBuilder, build_for, check


def test_clip_without_a_bound_clamps_infinities_to_the_float32_range():
    """An omitted Clip bound is float32's lowest / max (the ONNX spec, onnxruntime), so
    Clip(+inf) with no max is 3.4028235e38, not +inf: alone, and fused into a Conv."""
    g = GraphBuilder()
    x = g.input("x", (1, 1, 2, 4))
    low = g.node("Clip", [x, g.const("lo", -0.5)], "low")  # min only
    high = g.node("Clip", [x, "", g.const("hi", 0.5)], "high")  # max only
    none = g.node("Clip", [x], "none")  # neither
    conv = g.node("Conv", [x, g.const("w", np.ones((1, 1, 1, 1)))], "conv")
    fused = g.node("Clip", [conv, g.const("zero", 0.0)], "fused")
    model = g.model(low, high, none, fused)
    values = np.array([np.inf, -np.inf, 1.0, -1.0, 3e38, -3e38, 0.25, np.nan], np.float32)
    compiled = check(model, feeds={"x": values.reshape(1, 1, 2, 4)})
    out = compiled.run({"x": values.reshape(1, 1, 2, 4)})
    assert out["none"].reshape(-1)[0] == np.finfo(np.float32).max
    assert out["none"].reshape(-1)[1] == np.finfo(np.float32).min


def test_one_tensor_under_two_shapes_in_one_elementwise_op():
    """``x + Reshape(x)`` broadcasts a column against a row of the same data: after
    aliases are resolved both operands are one tensor, read with different strides."""
    g = GraphBuilder()
    x = g.input("x", (3, 1))
    row = g.node("Reshape", [x, g.const("row", [1, 3], np.int64)], "as_row")
    y = g.node("Add", [x, row], "y")
    r = g.node("Relu", [x], "r")
    col = g.node("Reshape", [r, g.const("col", [1, 3], np.int64)], "r_row")
    z = g.node("Mul", [col, r], "z")
    check(g.model(y, z), feeds={"x": np.array([[1.0], [-2.0], [3.0]], np.float32)})


def test_empty_tensors_stay_on_the_host():
    """A zero dimension: the compiler's tile loops divided by zero or stepped by zero
    (a crash in the codegen instead of a declined op); simaccel now declines it."""
    g = GraphBuilder()
    conv = g.conv(g.input("x", (0, 3, 5, 5)), 3, 4, 3)
    matmul = g.node("MatMul", [g.input("a", (3, 0)), g.const("w", np.zeros((0, 4)))])
    norm = g.batchnorm(g.input("b", (0, 3)), 3)
    model = g.model(conv, matmul, norm)
    compiled = build_for(model, strict=True)  # every region simaccel claims compiles
    assert all(step.target != "simaccel" for step in compiled.steps)
    feeds = random_feeds(model, seed=1)
    expected = run_onnxruntime(model, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_array_equal(actual[name], want, err_msg=name)
