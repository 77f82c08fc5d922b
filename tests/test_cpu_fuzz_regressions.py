"""Regressions found by differential fuzzing of the cpu target against onnxruntime.

Each test is one minimised reproducer: the model must build strictly for cpu (every
node on cpu) and match onnxruntime on the original model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import byoc_sdk as byoc
from byoc_sdk.testing import EMPTY_PRODUCTS, empty_product, random_feeds, run_onnxruntime
from byoc_sdk.testing import float_model as model

RTOL, ATOL = 1e-4, 1e-5
FLOAT = TensorProto.FLOAT


def check(proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
          options: dict | None = None) -> None:
    """Strict cpu build, nothing on the host, same outputs as onnxruntime (NaN = NaN)."""
    compiled = byoc.build(proto, ["cpu"], strict=True, options=options)
    host = [n.name for n in compiled.report.partition.nodes if n.target == "host"]
    assert not host, f"left on the host: {host}"
    expected = run_onnxruntime(proto, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_views_of_constants_read_the_constant() -> None:
    """A Reshape/Unsqueeze/Flatten of a constant is a constant the kernels read (a conv
    bias reshaped to (C, 1, 1), a weight unsqueezed for a batched MatMul) or a region
    output; the codegen used to register the view itself as a region constant and fail
    with ``KeyError`` (the region fell back to onnxruntime; a strict build failed)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Reshape", ["bias", "bias_shape"], ["bias_view"]),
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["conv", "bias_view"], ["y"]),
        helper.make_node("Unsqueeze", ["m", "zero"], ["m3"]),
        helper.make_node("MatMul", ["y", "m3"], ["z"]),
        helper.make_node("Flatten", ["m"], ["m_flat"], axis=0),
    ]
    constants = {
        "bias": rng.standard_normal(4).astype(np.float32),
        "bias_shape": np.array([4, 1, 1], np.int64),
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "m": rng.standard_normal((5, 3)).astype(np.float32),
        "zero": np.array([0], np.int64),
    }
    proto = model(nodes, {"x": (1, 3, 5, 5)}, ["z", "m_flat"], constants)
    check(proto, {"x": rng.standard_normal((1, 3, 5, 5)).astype(np.float32)})


def test_clip_without_bounds_clamps_infinities() -> None:
    """An omitted Clip bound is the float range (the ONNX default, as onnxruntime runs
    it): Clip(-inf) without min is -FLT_MAX, Clip(inf) without max is FLT_MAX, and NaN
    stays NaN. The generator used to drop the omitted bound and pass infinities."""
    nodes = [
        helper.make_node("Clip", ["x", "", "hi"], ["no_min"]),
        helper.make_node("Clip", ["x", "lo"], ["no_max"]),
        helper.make_node("Clip", ["x"], ["neither"]),
    ]
    constants = {"lo": np.array(-1.0, np.float32), "hi": np.array(1.0, np.float32)}
    proto = model(nodes, {"x": (2, 4)}, ["no_min", "no_max", "neither"], constants)
    x = np.array([[-np.inf, np.inf, np.nan, -3.0], [0.5, -0.0, 3e38, -3e38]], np.float32)
    check(proto, {"x": x})


def test_pow_one_half_at_minus_infinity_and_minus_zero() -> None:
    """Pow(x, 0.5) with a constant exponent was computed as sqrtf(x), which gives NaN
    for -inf (pow and onnxruntime: +inf) and -0 for -0 (pow: +0)."""
    nodes = [helper.make_node("Pow", ["x", "half"], ["y"])]
    proto = model(nodes, {"x": (6,)}, ["y"], {"half": np.array(0.5, np.float32)})
    x = np.array([-np.inf, np.inf, -0.0, 0.0, -4.0, 2.25], np.float32)
    check(proto, {"x": x})
    compiled = byoc.build(proto, ["cpu"], strict=True)
    y = compiled.run({"x": x})["y"]
    assert not np.signbit(y[2]), "pow(-0, 0.5) is +0"


@pytest.mark.parametrize("case", EMPTY_PRODUCTS)
def test_empty_products_build_and_give_onnxruntimes_result(case: str) -> None:
    """A batch of 0 (x float[0,4] -> MatMul(w) -> Relu): the GEMM schedule took a register
    tile of min(12, M) = 0 rows and divided by it, so the codegen raised
    ZeroDivisionError (the region fell back; a strict build failed). An empty output
    needs no kernel; an empty reduction still writes its zeros."""
    proto = empty_product(case)
    check(proto, random_feeds(proto))
