"""Every op and composite the cpu target claims, built for cpu and run against onnxruntime.

Each test builds one model holding several instances of an op family (different shapes
and attribute values, each on its own inputs) so that one compiled module covers them;
the model must go to cpu entirely (nothing left on the host), build strictly, and
match onnxruntime on the original model within rtol 1e-4.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from onnx import TensorProto

import byoc_sdk as byoc
from byoc_sdk.testing import CONV_CASES, POOL_CASES, ModelBuilder, run_onnxruntime

RTOL, ATOL = 1e-4, 1e-5


def check(net: ModelBuilder, *, rtol: float = RTOL, atol: float = ATOL,
          tuning: dict | None = None) -> byoc.CompiledModel:
    """Build ``net`` for cpu (every node on cpu, no fallback) and compare with onnxruntime."""
    model = net.model()
    compiled = byoc.build(model, ["cpu"], strict=True, tuning=tuning)
    host = [n for n in compiled.report.partition.nodes if n.target == "host"]
    assert not host, f"left on the host: {[(n.name, n.reason) for n in host]}"
    expected = run_onnxruntime(model, net.feeds)
    actual = compiled.run(net.feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=rtol, atol=atol, err_msg=name)
    return compiled


def composites(compiled: byoc.CompiledModel) -> set[str]:
    """The patterns of the composites formed (instances are named ``<pattern>_<n>``)."""
    return {n.composite.rsplit("_", 1)[0] for n in compiled.report.partition.nodes
            if n.composite}


def source_of(compiled: byoc.CompiledModel) -> str:
    """The generated C of a model built into one cpu region."""
    (region,) = [r for r in compiled.package.regions if r.target == "cpu"]
    return next(iter(region.artifact.sources.values()))


# --- convolution -------------------------------------------------------------------


def test_conv_shapes_and_attributes() -> None:
    net = ModelBuilder()
    for index, (shape, (out, kh, kw), attrs) in enumerate(CONV_CASES):
        group = attrs.get("group", 1)
        weight = net.weight((out, shape[1] // group, kh, kw))
        inputs = [net.input(shape), weight]
        if index % 2 == 0:
            inputs.append(net.weight((out,), fan_in=1))
        net.op("Conv", inputs, output=True, **attrs)
    check(net)


@pytest.mark.parametrize("schedule", [
    {"algorithm": "gemm", "orientation": "pixels"},
    {"algorithm": "gemm", "orientation": "channels", "copy_panels": True},
    {"algorithm": "implicit", "orientation": "pixels", "mr": 5, "tile_rows": 1},
    {"algorithm": "implicit", "orientation": "channels", "nv": 1},
    {"algorithm": "implicit", "orientation": "channels", "mr": 2, "nv": 2},
    {"algorithm": "gemm", "orientation": "channels", "mr": 3, "tile_rows": 2, "unroll": 1},
])
def test_conv_schedules(schedule: dict) -> None:
    """Every way the generator can run a convolution gives the same result: register
    tiles of pixels or of channels, input columns in place, from im2col tiles or from
    shifted windows of a padded copy; constant (packed, BN-folded) or computed weights."""
    net = ModelBuilder()
    for shape, (out, kh, kw), attrs in [
        ((2, 8, 9, 10), (20, 3, 3), {"pads": [1, 1, 1, 1]}),
        ((1, 6, 7, 7), (6, 3, 3), {"pads": [2, 1, 0, 1], "dilations": [2, 1], "group": 2}),
        ((1, 80, 5, 6), (36, 1, 1), {}),
        ((1, 16, 8, 8), (40, 2, 2), {}),
    ]:
        weight = net.weight((out, shape[1] // attrs.get("group", 1), kh, kw))
        net.op("Relu", [net.op("Conv", [net.input(shape), weight, net.weight((out,), 1)],
                               **attrs)], output=True)
    if schedule["algorithm"] == "gemm":
        net.op("Conv", [net.input((1, 8, 11, 9)), net.weight((12, 8, 3, 3))], output=True,
               strides=[2, 2], pads=[1, 1, 1, 1])
    conv = net.op("Conv", [net.input((1, 24, 6, 6)), net.weight((16, 24, 3, 3))],
                  pads=[1] * 4)
    var = net.const(np.full(16, 0.5, np.float32))
    net.op("BatchNormalization", [conv, net.weight((16,), 1), net.weight((16,), 1),
                                  net.weight((16,), 1), var], output=True)
    net.op("Conv", [net.input((1, 4, 6, 7)), net.input((24, 4, 3, 3))], output=True,
           pads=[1] * 4)
    check(net, tuning={"cpu_0": {"ops": {"Conv": schedule}}})


@pytest.mark.parametrize("schedule", [
    {"mr": 3, "nv": 1, "mc": 6, "nc": 16, "unroll": 1},
    {"mr": 5, "nv": 3, "mc": 7, "nc": 200},
    {"mr": 1, "nv": 2, "parallel_min": 1},
])
def test_matmul_schedules(schedule: dict) -> None:
    net = ModelBuilder()
    net.op("MatMul", [net.input((13, 37)), net.weight((37, 70))], output=True)
    net.op("MatMul", [net.input((2, 9, 20)), net.input((2, 20, 33))], output=True)
    net.op("Gemm", [net.input((20, 11)), net.input((50, 11)), net.weight((50,), 1)],
           output=True, transB=1)
    check(net, tuning={"cpu_0": {"ops": {"MatMul": schedule, "Gemm": schedule}}})


def test_conv_with_computed_weights_and_bias() -> None:
    """Weights and bias as graph inputs: packed per call, no BN folding."""
    net = ModelBuilder()
    net.op("Conv", [net.input((1, 4, 8, 8)), net.input((6, 4, 3, 3)), net.input((6,))],
           output=True, pads=[1, 1, 1, 1])
    net.op("Conv", [net.input((1, 4, 8, 8)), net.input((4, 1, 3, 3))], output=True,
           group=4, pads=[1, 1, 1, 1])
    conv = net.op("Conv", [net.input((1, 3, 6, 6)), net.input((5, 3, 3, 3))])
    net.op("BatchNormalization", [conv, *(net.weight((5,), 1) for _ in range(3)),
                                  net.input((5,), positive=True)], output=True)
    check(net)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh",
                                        "HardSwish"])
def test_conv_bias_bn_activation_composites(activation: str) -> None:
    """conv_bn_act (BN folded into the packed weights), conv_act, and Conv+Add(bias)."""
    net = ModelBuilder()

    def act(x: str) -> str:
        if activation == "Clip":
            return net.op("Clip", [x, net.const(np.float32(0)), net.const(np.float32(6))],
                          output=True)
        return net.op(activation, [x], output=True)

    x = net.input((2, 3, 10, 10))
    conv = net.op("Conv", [x, net.weight((8, 3, 3, 3)), net.weight((8,), 1)], pads=[1] * 4)
    scale, shift = net.weight((8,), 1), net.weight((8,), 1)
    mean = net.weight((8,), 1)
    var = net.const(np.abs(net.rng.standard_normal(8)).astype(np.float32) + 0.5)
    act(net.op("BatchNormalization", [conv, scale, shift, mean, var], epsilon=1e-3))
    conv = net.op("Conv", [net.input((1, 4, 7, 7)), net.weight((6, 4, 3, 3))],
                  strides=[2, 2], pads=[1] * 4)
    act(net.op("BatchNormalization", [conv, net.weight((6,), 1),
                                      net.weight((6,), 1), net.weight((6,), 1),
                                      net.const(np.full(6, 0.7, np.float32))]))
    act(net.op("Conv", [net.input((1, 4, 6, 6)), net.weight((4, 1, 3, 3)),
                        net.weight((4,), 1)], group=4, pads=[1] * 4))
    bare = net.op("Conv", [net.input((1, 3, 6, 6)), net.weight((5, 3, 1, 1))])
    act(net.op("Add", [bare, net.const(net.rng.standard_normal((5, 1, 1)).astype(np.float32))]))
    compiled = check(net)
    patterns = composites(compiled)
    assert {"conv_bn_act", "conv_act"} <= patterns
    source = source_of(compiled)
    assert source.count("folded") >= 2 and "bn_scale" in source


def test_standalone_batchnorm() -> None:
    net = ModelBuilder()
    for shape in [(2, 3, 4, 5), (3, 4), (1, 2, 7)]:
        channels = shape[1]
        var = net.const(np.abs(net.rng.standard_normal(channels)).astype(np.float32) + 0.1)
        net.op("BatchNormalization", [net.input(shape), net.weight((channels,), 1),
                                      net.weight((channels,), 1), net.weight((channels,), 1),
                                      var], output=True, epsilon=1e-4)
    check(net)


CONV_TRANSPOSES = [
    ((1, 4, 5, 5), (4, 3, 3, 3), {}),
    ((2, 3, 4, 6), (3, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 5, 4), (2, 3, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                  "output_padding": [1, 1]}),
    ((1, 5, 3, 3), (5, 2, 2, 3), {"strides": [3, 2], "pads": [0, 1, 0, 0]}),
]


def test_conv_transpose() -> None:
    net = ModelBuilder()
    for index, (shape, wshape, attrs) in enumerate(CONV_TRANSPOSES):
        inputs = [net.input(shape), net.weight(wshape, fan_in=wshape[0] * 4)]
        if index % 2:
            inputs.append(net.weight((wshape[1],), 1))
        net.op("ConvTranspose", inputs, output=True, **attrs)
    net.op("ConvTranspose", [net.input((1, 3, 4, 4)), net.input((3, 2, 3, 3))], output=True,
           strides=[2, 2])
    check(net)


# --- matrix products ---------------------------------------------------------------


def test_gemm_variants() -> None:
    net = ModelBuilder()
    net.op("Gemm", [net.input((7, 13)), net.weight((13, 9)), net.weight((9,), 1)], output=True)
    net.op("Gemm", [net.input((13, 7)), net.weight((40, 13)), net.weight((7, 1), 1)],
           output=True, transA=1, transB=1, alpha=0.5, beta=2.0)
    net.op("Gemm", [net.input((3, 5)), net.input((5, 33)), net.const(np.float32(0.25))],
           output=True, alpha=1.5)
    net.op("Gemm", [net.input((20, 6)), net.input((35, 6)), net.input((20, 35))], output=True,
           transB=1, beta=-1.0)
    net.op("Gemm", [net.input((1, 64)), net.weight((64, 100))], output=True)
    check(net)


def test_matmul_variants() -> None:
    net = ModelBuilder()
    net.op("MatMul", [net.input((17, 24)), net.weight((24, 50))], output=True)
    net.op("MatMul", [net.input((2, 3, 5, 8)), net.weight((8, 6))], output=True)
    net.op("MatMul", [net.input((2, 1, 4, 8)), net.input((3, 8, 5))], output=True)
    net.op("MatMul", [net.input((8,)), net.weight((8, 20))], output=True)
    net.op("MatMul", [net.input((4, 3, 8)), net.input((8,))], output=True)
    net.op("MatMul", [net.input((6, 9)), net.input((3, 9, 70))], output=True)
    net.op("MatMul", [net.weight((5, 7)), net.input((2, 7, 3))], output=True)
    check(net)


@pytest.mark.parametrize("activation", ["Relu", "Gelu", "Sigmoid"])
def test_gemm_and_matmul_composites(activation: str) -> None:
    """gemm_act and matmul_add_act, the bias and activation fused into the product."""
    net = ModelBuilder(opset=20)
    x = net.op("Gemm", [net.input((5, 16)), net.weight((16, 24)), net.weight((24,), 1)])
    net.op(activation, [x], output=True)
    y = net.op("MatMul", [net.input((2, 6, 16)), net.weight((16, 40))])
    y = net.op("Add", [net.weight((40,), 1), y])
    net.op(activation, [y], output=True)
    compiled = check(net)
    patterns = composites(compiled)
    assert {"gemm_act", "matmul_add_act"} <= patterns
    assert source_of(compiled).count("static int32_t k") == 2  # one kernel each


# --- elementwise -------------------------------------------------------------------


BROADCASTS = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (3, 1, 1)),
    ((2, 3, 4, 5), (5,)),
    ((2, 3, 4, 5), ()),
    ((3, 1, 5), (2, 1, 4, 1)),
    ((1, 4), (3, 1)),
]


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"])
def test_binary_broadcasting(op_type: str) -> None:
    net = ModelBuilder()
    positive = op_type in ("Pow", "Div")
    for left, right in BROADCASTS:
        net.op(op_type, [net.input(left, positive=op_type == "Pow"),
                         net.input(right, positive=positive)], output=True)
    net.op(op_type, [net.input((4, 6), positive=positive),
                     net.const(np.float32(2.0))], output=True)
    net.op(op_type, [net.const(np.full((1, 6), 1.5, np.float32)),
                     net.input((4, 6), positive=positive)], output=True)
    if op_type in ("Max", "Min"):
        net.op(op_type, [net.input((3, 4)), net.input((4,)), net.input((3, 1))], output=True)
        net.op(op_type, [net.input((3, 4))], output=True)
    check(net)


def test_pow_exponents() -> None:
    net = ModelBuilder()
    for exponent in (2.0, 3.0, 0.5, -1.0, 1.7):
        net.op("Pow", [net.input((3, 8), positive=True), net.const(np.float32(exponent))],
               output=True)
    net.op("Pow", [net.input((3, 8)), net.const(np.array([2, 3], np.int64)[:1])], output=True)
    check(net)


UNARY = [
    ("Relu", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}), ("Sigmoid", {}),
    ("Tanh", {}), ("Erf", {}), ("Exp", {}), ("Log", {}), ("Sqrt", {}), ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}), ("Gelu", {}),
    ("Gelu", {"approximate": "tanh"}),
]


def test_unary_ops() -> None:
    net = ModelBuilder(opset=20)
    for op_type, attrs in UNARY:
        shape = (2, 3, 17)
        x = net.input(shape, positive=op_type in ("Log", "Sqrt"))
        net.op(op_type, [x], output=True, **attrs)
    lo, hi = net.const(np.float32(-0.5)), net.const(np.float32(0.7))
    net.op("Clip", [net.input((4, 9)), lo, hi], output=True)
    net.op("Clip", [net.input((4, 9)), lo], output=True)
    net.op("Clip", [net.input((4, 9)), "", hi], output=True)
    net.op("Clip", [net.input((4, 9))], output=True)
    net.op("Clip", [net.input((4, 9)), net.input(()), net.input((), positive=True)],
           output=True)
    check(net)


def test_transcendentals_over_their_whole_range() -> None:
    """The vectorized exp, erf, tanh and sigmoid agree with onnxruntime far into
    overflow and underflow, and on the small values where relative error is hardest."""
    net = ModelBuilder(opset=20)
    wide = np.concatenate([np.linspace(-120, 120, 961), np.linspace(-1, 1, 801),
                           [1e-6, -1e-6, 1e-30, 0.0, 88.7, 88.8, -87.4, -104.0]])
    for op_type, attrs in [("Exp", {}), ("Erf", {}), ("Tanh", {}), ("Sigmoid", {}),
                           ("Gelu", {}), ("Gelu", {"approximate": "tanh"})]:
        net.op(op_type, [net.input(wide.shape, array=wide.astype(np.float32))], output=True,
               **attrs)
    net.op("Softmax", [net.input((4, 50), array=np.linspace(-90, 90, 200, dtype=np.float32)
                                 .reshape(4, 50))], output=True)
    check(net)


def test_elementwise_chains_fuse() -> None:
    """A chain after a kernel is applied in its store; a chain on inputs is one map."""
    net = ModelBuilder()
    x = net.input((2, 4, 6, 6))
    conv = net.op("Conv", [x, net.weight((4, 4, 3, 3))], pads=[1] * 4)
    y = net.op("Add", [conv, x])
    y = net.op("Mul", [y, net.const(np.float32(0.5))])
    net.op("Sigmoid", [y], output=True)
    a = net.op("Add", [net.input((3, 5)), net.input((3, 5))])
    net.op("Tanh", [net.op("Sub", [net.input((5,)), a])], output=True)
    compiled = check(net)
    assert source_of(compiled).count("static int32_t k") == 2


def test_epilogues_after_every_kernel_family() -> None:
    """Each kind of kernel stores through fused elementwise ops (a broadcast operand on
    either side, then a unary op) whatever expression its own result is."""
    net = ModelBuilder()

    def tail(x: str, shape: Sequence[int]) -> None:
        y = net.op("Mul", [x, net.const(net.rng.standard_normal(shape[-1:]).astype(np.float32))])
        y = net.op("Sub", [net.input(shape), y])
        net.op("Tanh", [y], output=True)

    tail(net.op("LayerNormalization", [net.input((3, 8)), net.weight((8,), 1),
                                       net.weight((8,), 1)]), (3, 8))
    tail(net.op("Softmax", [net.input((3, 8))]), (3, 8))
    tail(net.op("Softmax", [net.input((3, 4, 2))], axis=1), (3, 4, 2))
    tail(net.op("ReduceMean", [net.input((3, 5, 8))], axes=[1], keepdims=0), (3, 8))
    tail(net.op("ReduceSum", [net.input((3, 8, 5)), net.const(np.array([2], np.int64))],
                keepdims=0), (3, 8))
    tail(net.op("AveragePool", [net.input((1, 2, 6, 6))], kernel_shape=[3, 3], pads=[1] * 4),
         (1, 2, 6, 6))
    tail(net.op("MaxPool", [net.input((1, 2, 6, 6))], kernel_shape=[2, 2]), (1, 2, 5, 5))
    tail(net.op("Transpose", [net.input((4, 3))]), (3, 4))
    tail(net.op("Concat", [net.input((2, 3)), net.input((2, 5))], axis=1), (2, 8))
    tail(net.op("Gather", [net.input((5, 4)), net.const(np.array([3, 1], np.int64))]), (2, 4))
    tail(net.op("Cast", [net.input((2, 4), array=np.arange(8, dtype=np.int64).reshape(2, 4))],
                to=TensorProto.FLOAT), (2, 4))
    tail(net.op("ConvTranspose", [net.input((1, 2, 3, 3)), net.weight((2, 3, 2, 2))]),
         (1, 3, 4, 4))
    tail(net.op("Gemm", [net.input((3, 6)), net.weight((6, 5))], alpha=0.5), (3, 5))
    tail(net.op("Add", [net.input((3, 7)), net.input((7,))]), (3, 7))
    compiled = check(net)
    assert source_of(compiled).count("static int32_t k") == 14  # every tail fused


# --- pooling -----------------------------------------------------------------------




@pytest.mark.parametrize("op_type", ["MaxPool", "AveragePool"])
def test_pooling(op_type: str) -> None:
    net = ModelBuilder(opset=19)
    for shape, attrs in POOL_CASES:
        net.op(op_type, [net.input(shape)], output=True, **attrs)
    if op_type == "AveragePool":
        for shape, attrs in POOL_CASES[1:4]:
            net.op(op_type, [net.input(shape)], output=True, count_include_pad=1, **attrs)
    else:
        net.op(op_type, [net.input((1, 2, 12, 12))], output=True, kernel_shape=[3, 3],
               dilations=[2, 2], pads=[2, 2, 2, 2])
    net.op("GlobalAveragePool", [net.input((2, 3, 5, 7))], output=True)
    check(net)


# --- reductions and normalizations -------------------------------------------------


REDUCE_AXES = [(-1,), (0,), (1,), (0, 2), (1, 2, 3), None]


@pytest.mark.parametrize("op_type", ["ReduceMean", "ReduceSum", "ReduceMax"])
def test_reductions(op_type: str) -> None:
    net = ModelBuilder(opset=18)
    for keepdims in (0, 1):
        for axes in REDUCE_AXES:
            inputs = [net.input((2, 3, 4, 33))]
            if axes is not None:
                inputs.append(net.const(np.array(axes, np.int64)))
            net.op(op_type, inputs, output=True, keepdims=keepdims)
    net.op(op_type, [net.input((3, 4)), net.const(np.array([], np.int64))], output=True,
           noop_with_empty_axes=1)
    check(net)


def test_reductions_with_axes_attribute() -> None:
    net = ModelBuilder(opset=13)
    net.op("ReduceMean", [net.input((2, 5, 6))], output=True, axes=[1])
    net.op("ReduceMax", [net.input((2, 5, 6))], output=True, axes=[0, -1], keepdims=0)
    net.op("ReduceSum", [net.input((2, 5, 6)), net.const(np.array([2], np.int64))],
           output=True)
    check(net)


def test_softmax_axes() -> None:
    net = ModelBuilder()
    for shape, axis in [((4, 10), -1), ((2, 3, 5), 1), ((3, 4, 2), 0), ((2, 300), 1),
                        ((2, 3, 4, 1), 2)]:
        net.op("Softmax", [net.input(shape)], output=True, axis=axis)
    check(net)


def test_layer_normalization() -> None:
    net = ModelBuilder()
    net.op("LayerNormalization", [net.input((2, 5, 16)), net.weight((16,), 1),
                                  net.weight((16,), 1)], output=True)
    net.op("LayerNormalization", [net.input((3, 4, 6)), net.weight((4, 6), 1)], output=True,
           axis=-2, epsilon=1e-3)
    net.op("LayerNormalization", [net.input((4, 10)), net.weight((10,), 1),
                                  net.weight((10,), 1)], output=True, axis=1)
    net.op("LayerNormalization", [net.input((2, 3, 8)), net.input((8,)), net.input((8,))],
           output=True)
    check(net)


def test_old_opset_forms() -> None:
    """Attributes that later opsets turned into inputs, and Softmax's old 2-D coercion."""
    net = ModelBuilder(opset=10)
    net.op("Clip", [net.input((3, 6))], output=True, min=-0.3, max=0.4)
    net.op("Softmax", [net.input((2, 3, 4))], output=True, axis=1)
    net.op("ReduceMean", [net.input((2, 3, 4))], output=True, axes=[1, 2])
    net.op("Squeeze", [net.input((2, 1, 3))], output=True, axes=[1])
    net.op("Unsqueeze", [net.input((2, 3))], output=True, axes=[0, 3])
    net.op("Slice", [net.input((5, 6)), net.const(np.array([1, -4], np.int64)),
                     net.const(np.array([4, 100], np.int64))], output=True)
    check(net)


# --- data movement -----------------------------------------------------------------


def test_views() -> None:
    """Reshape, Flatten, Squeeze and Unsqueeze share memory; each feeds a computation."""
    net = ModelBuilder()
    x = net.input((2, 3, 4))
    r = net.op("Reshape", [x, net.const(np.array([0, -1], np.int64))])
    net.op("Relu", [r], output=True)
    f = net.op("Flatten", [net.op("Exp", [net.input((2, 3, 4, 5))])], axis=2)
    net.op("Mul", [f, net.input((20,))], output=True)
    s = net.op("Squeeze", [net.input((1, 3, 1, 4)), net.const(np.array([0, 2], np.int64))])
    net.op("Add", [s, net.input((3, 4))], output=True)
    u = net.op("Unsqueeze", [net.input((3, 4)), net.const(np.array([1], np.int64))])
    net.op("Sub", [u, net.input((3, 2, 4))], output=True)
    net.op("Reshape", [net.input((4, 6)), net.const(np.array([3, 8], np.int64))], output=True)
    check(net)


def test_transpose_concat_slice() -> None:
    net = ModelBuilder()
    for shape, perm in [((3, 4), None), ((2, 3, 4, 5), (0, 2, 3, 1)),
                        ((2, 3, 4, 5), (3, 1, 0, 2)), ((2, 3, 4), (0, 2, 1)),
                        ((1, 6, 1, 7), (2, 0, 3, 1))]:
        attrs = {} if perm is None else {"perm": list(perm)}
        net.op("Transpose", [net.input(shape)], output=True, **attrs)
    for axis in (0, 1, -1):
        parts = [net.input((2, 3, 4)), net.const(np.ones((2, 3, 4), np.float32))]
        bigger = [2, 3, 4]
        bigger[axis] = 5
        parts.append(net.input(bigger))
        net.op("Concat", parts, output=True, axis=axis)
    for starts, ends, axes, steps in [([1], [3], [0], [1]), ([0, 1], [5, 9], [1, 2], [2, 3]),
                                      ([-1], [-100], [2], [-1]), ([4, 2], [1, 0], [0, 1],
                                                                  [-2, -1])]:
        net.op("Slice", [net.input((5, 6, 10)), *(net.const(np.array(v, np.int64))
                                                  for v in (starts, ends, axes, steps))],
               output=True)
    check(net)


def test_gather() -> None:
    net = ModelBuilder()
    indices = net.input((3, 2), array=np.array([[0, 2], [-1, 1], [4, -5]], np.int64))
    net.op("Gather", [net.input((5, 4)), indices], output=True)
    net.op("Gather", [net.input((2, 5, 3)), net.const(np.array([4, 0, -2], np.int64))],
           output=True, axis=1)
    net.op("Gather", [net.input((3, 4, 6)), net.const(np.array(-1, np.int64))], output=True,
           axis=2)
    net.op("Gather", [net.input((7,)), net.input((4,), array=np.array([6, 0, 3, 3], np.int32))],
           output=True)
    check(net)


def test_gather_index_out_of_range_fails_cleanly() -> None:
    net = ModelBuilder()
    indices = net.input((2,), array=np.array([0, 1], np.int64))
    net.op("Gather", [net.input((3, 4)), indices], output=True)
    compiled = check(net)
    feeds = dict(net.feeds)
    feeds[indices] = np.array([0, 3], np.int64)
    with pytest.raises(byoc.StepError, match="index out of range"):
        compiled.run(feeds)
    compiled.run(net.feeds)  # and the model still runs afterwards


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.float16,
                                   np.float64, np.uint16])
def test_cast_to_float32(dtype: type) -> None:
    net = ModelBuilder()
    array = (net.rng.standard_normal((3, 7)) * 50).astype(dtype)
    x = net.input(array.shape, array=array)
    net.op("Cast", [x], output=True, to=TensorProto.FLOAT)
    net.op("Cast", [net.op("Relu", [net.input((4,))])], output=True, to=TensorProto.FLOAT)
    check(net)


# --- what cpu declines -------------------------------------------------------------


def test_declined_nodes_stay_on_the_host_with_reasons() -> None:
    net = ModelBuilder()
    x = net.input((1, 4, 6, 6))
    net.op("ConvTranspose", [x, net.weight((4, 2, 3, 3))], output=True, group=2)
    net.op("Cast", [net.input((3,))], output=True, to=TensorProto.INT64)
    net.op("Conv", [net.input((1, 2, 9)), net.weight((3, 2, 3))], output=True)
    net.op("Relu", [net.input((3,), array=np.arange(3, dtype=np.int32))], output=True)
    model = net.model()
    compiled = byoc.build(model, ["cpu"], strict=True)
    host = {n.op_type: n.reason for n in compiled.report.partition.nodes if n.target == "host"}
    assert set(host) == {"ConvTranspose", "Cast", "Conv", "Relu"}
    assert "grouped ConvTranspose" in host["ConvTranspose"]
    assert "only to float32" in host["Cast"]
    assert "1-D convolution" in host["Conv"]
    assert "int32" in host["Relu"]
    expected = run_onnxruntime(model, net.feeds)
    for name, value in compiled.run(net.feeds).items():
        np.testing.assert_allclose(value, expected[name], rtol=RTOL, atol=ATOL)
