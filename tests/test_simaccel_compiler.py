"""simaccel's compiler: every supported op and composite, over several shapes and on
machines small enough to force every tiling path, equal to onnxruntime; fusion; and
programs that do not fit are never emitted."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc_sdk as byoc
from byoc_sdk.build import build
from byoc_sdk.model_zoo import IR_VERSION, OPSET
from partition.policy import RegionPolicy
from reference_backends.simaccel import LIMITS
from reference_backends.simaccel.testing import GraphBuilder, build_for, check, simaccel_stats

#: A chip with 4 KiB per SRAM partition: nearly every layer needs many small tiles,
#: k-tiles, n-tiles, narrow tiles, and weights that do not stay resident.
TINY = {"input_kib": 4, "weight_kib": 4, "accumulator_kib": 4}
#: A chip with an 8 x 4 array and 8 lanes: partial blocks everywhere.
ODD = {"array_rows": 8, "array_cols": 4, "vector_lanes": 8, "input_kib": 16, "weight_kib": 8,
       "accumulator_kib": 8}
MACHINES = [None, TINY, ODD]
MACHINE_IDS = ["default", "tiny", "odd"]


# --- convolution --------------------------------------------------------------------

CONVS = [  # (batch, c_in, size, c_out, kernel, stride, pads)
    (1, 16, 12, 16, 3, 1, None),
    (2, 5, 9, 7, 3, 2, None),
    (1, 3, 17, 24, 7, 2, (3, 3, 3, 3)),
    (1, 40, 6, 36, 1, 1, (0, 0, 0, 0)),
    (1, 24, 11, 20, 1, 2, (0, 0, 0, 0)),
    (1, 8, 10, 12, 5, 1, (1, 2, 3, 0)),
    (1, 33, 7, 17, 2, 3, (1, 0, 0, 1)),
    (1, 20, 5, 8, 4, 1, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("spec", CONVS, ids=lambda s: "x".join(map(str, s[:6])))
def test_conv(spec, machine):
    batch, c_in, size, c_out, k, stride, pads = spec
    g = GraphBuilder()
    x = g.input("x", (batch, c_in, size, size))
    check(g.model(g.conv(x, c_in, c_out, k, stride=stride, pad=pads)), machine)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad_without_bias(auto_pad):
    g = GraphBuilder()
    x = g.input("x", (1, 6, 10, 9))
    check(g.model(g.conv(x, 6, 10, 4, stride=2, bias=False, auto_pad=auto_pad)))


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("spec", [(1, 16, 14, 3, 1), (2, 24, 9, 3, 2), (1, 8, 12, 5, 1),
                                  (1, 40, 5, 3, 2)], ids=str)
def test_depthwise_conv_bn_relu6(spec, machine):
    batch, channels, size, k, stride = spec
    g = GraphBuilder()
    x = g.input("x", (batch, channels, size, size))
    y = g.batchnorm(g.conv(x, channels, channels, k, stride=stride, group=channels,
                          bias=False), channels)
    y = g.node("Clip", [y, g.const("lo", 0.0), g.const("hi", 6.0)])
    check(g.model(y), machine)


# --- matrix products ----------------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("spec", [(1, 64, 10, 0), (7, 33, 50, 1), (40, 130, 24, 1),
                                  (3, 16, 16, 0)], ids=str)
def test_gemm(spec, machine):
    m, k, n, trans_b = spec
    g = GraphBuilder()
    x = g.input("x", (m, k))
    w = g.weight("w", (n, k) if trans_b else (k, n))
    check(g.model(g.node("Gemm", [x, w, g.weight("c", (n,))], transB=trans_b)), machine)


@pytest.mark.parametrize("c_shape", [(1, 6), (), (5, 6), (5, 1)], ids=str)
def test_gemm_bias_shapes(c_shape):
    g = GraphBuilder()
    x = g.input("x", (5, 9))
    check(g.model(g.node("Gemm", [x, g.weight("w", (9, 6)), g.weight("c", c_shape)])))


def test_gemm_bias_at_run_time():
    g = GraphBuilder()
    x, c = g.input("x", (4, 9)), g.input("c", (4, 6))
    check(g.model(g.node("Relu", [g.node("Gemm", [x, g.weight("w", (9, 6)), c])])))


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("shapes", [((8, 20), (20, 12)), ((2, 5, 20), (20, 9)),
                                    ((2, 3, 4, 6), (6, 5)), ((3, 4, 6), (3, 6, 5)),
                                    ((4, 6), (2, 6, 5)), ((2, 1, 4, 6), (3, 6, 5))], ids=str)
def test_matmul(shapes, machine):
    x_shape, w_shape = shapes
    g = GraphBuilder()
    x = g.input("x", x_shape)
    check(g.model(g.node("MatMul", [x, g.weight("w", w_shape)])), machine)


# --- the vector unit ----------------------------------------------------------------

BROADCASTS = [((2, 8, 5, 5), (2, 8, 5, 5)), ((2, 8, 5, 5), (1, 8, 1, 1)),
              ((2, 8, 5, 5), (5,)), ((3, 7), (3, 1)), ((2, 3, 4), ()),
              ((4, 1, 6), (1, 5, 1)), ((6,), (6,))]


@pytest.mark.parametrize("machine", [None, TINY], ids=["default", "tiny"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_binary(op, shapes, machine):
    g = GraphBuilder()
    a, b = g.input("a", shapes[0]), g.input("b", shapes[1])
    check(g.model(g.node(op, [a, b]), g.node(op, [b, g.weight("k", shapes[0])])), machine)


ACTIVATIONS = [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {}),
               ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {})]


@pytest.mark.parametrize(("op", "attrs"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (130,), (1, 1)], ids=str)
def test_activation(op, attrs, shape):
    g = GraphBuilder()
    x = g.input("x", shape)
    check(g.model(g.node(op, [x], **attrs)))


@pytest.mark.parametrize("bounds", [(-0.5, 0.5), (None, 0.25), (0.0, None)], ids=str)
def test_clip(bounds):
    g = GraphBuilder()
    x = g.input("x", (3, 17))
    inputs = [x, g.const("lo", bounds[0]) if bounds[0] is not None else "",
              g.const("hi", bounds[1]) if bounds[1] is not None else ""]
    check(g.model(g.node("Clip", inputs)))


POOLS = [("MaxPool", 2, 2, (0, 0, 0, 0), 12), ("MaxPool", 3, 2, (1, 1, 1, 1), 15),
         ("MaxPool", 3, 1, (1, 0, 2, 1), 9), ("AveragePool", 3, 2, (1, 1, 1, 1), 13),
         ("AveragePool", 2, 1, (0, 1, 1, 0), 8), ("MaxPool", 7, 3, (3, 3, 3, 3), 16)]


@pytest.mark.parametrize("machine", [None, TINY], ids=["default", "tiny"])
@pytest.mark.parametrize("spec", POOLS, ids=str)
def test_pool(spec, machine):
    op, k, stride, pads, size = spec
    g = GraphBuilder()
    x = g.input("x", (2, 6, size, size + 1))
    check(g.model(g.node(op, [x], kernel_shape=[k, k], strides=[stride, stride],
                         pads=list(pads))), machine)


def test_maxpool_with_unused_indices():
    g = GraphBuilder()
    x = g.input("x", (1, 3, 6, 6))
    g.nodes.append(helper.make_node("MaxPool", [x], ["y", "indices"], kernel_shape=[2, 2],
                                    strides=[2, 2]))
    check(g.model(g.node("Relu", ["y"])))


@pytest.mark.parametrize("machine", [None, TINY], ids=["default", "tiny"])
def test_global_average_pool_flatten_gemm(machine):
    g = GraphBuilder()
    x = g.input("x", (2, 24, 7, 6))
    y = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    check(g.model(g.node("Gemm", [y, g.weight("w", (10, 24)), g.weight("b", (10,))],
                         transB=1)), machine)


def test_standalone_batchnorm_and_reshape():
    g = GraphBuilder()
    x = g.input("x", (2, 5, 4, 3))
    y = g.node("Relu", [g.batchnorm(x, 5)])
    g.inits.append(numpy_helper.from_array(np.array([2, 60], dtype=np.int64), "shape"))
    check(g.model(g.node("Reshape", [y, "shape"])))


def test_passthrough_and_alias_outputs():
    """Outputs that are an input, or a reshaped intermediate, get copies where needed."""
    g = GraphBuilder()
    x = g.input("x", (2, 3, 4, 4))
    y = g.node("Relu", [x])
    flat = g.node("Flatten", [y], axis=1)
    check(g.model(flat, y))


def test_outputs_that_repeat_or_pass_an_input_through_get_copies():
    """Regions from the partitioner do not do this, but a function may: y, x, y."""
    from byoc_sdk import _native
    from reference_backends.simaccel.compiler import compile_layers
    from reference_backends.simaccel.frontend import ElementwiseLayer, LoweredRegion
    from reference_backends.simaccel.isa import VecOp

    lowered = LoweredRegion([ElementwiseLayer(VecOp.ADD, ["x", "x"], "y")],
                            {"x": (2, 3), "y": (2, 3)}, {"x": "float32", "y": "float32"}, {}, {},
                            ["x"], ["y", "x", "y"])
    data, constants = compile_layers(lowered, LIMITS)
    x = np.arange(6, dtype=np.float32)
    y, passed, again = _native.simaccel.Simulator(data, constants).run([x])
    np.testing.assert_array_equal(y, 2 * x)
    np.testing.assert_array_equal(passed, x)
    np.testing.assert_array_equal(again, 2 * x)


# --- composites and fusion ----------------------------------------------------------


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_conv_bn_act_and_conv_act(machine):
    g = GraphBuilder()
    x = g.input("x", (1, 3, 16, 16))
    y = g.node("Relu", [g.batchnorm(g.conv(x, 3, 16, 3), 16)])
    y = g.node("LeakyRelu", [g.conv(y, 16, 20, 3, stride=2)], alpha=0.1)
    y = g.node("HardSwish", [g.conv(y, 20, 8, 1, pad=(0, 0, 0, 0))])
    check(g.model(y), machine)


def test_conv_add_bias_act():
    g = GraphBuilder()
    x = g.input("x", (1, 8, 9, 9))
    y = g.node("Add", [g.weight("bias", (8, 1, 1)), g.conv(x, 8, 8, 3, bias=False)])
    check(g.model(g.node("Sigmoid", [y])))


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_residual_block(machine):
    """Conv -> Add(skip) -> Relu: the skip tensor is added as the accumulator drains."""
    g = GraphBuilder()
    x = g.input("x", (2, 16, 10, 10))
    y = g.node("Relu", [g.conv(x, 16, 16, 3)])
    y = g.node("Relu", [g.node("Add", [g.conv(y, 16, 16, 3), x])])
    z = g.node("Add", [x, g.conv(y, 16, 16, 3, group=16)])
    check(g.model(g.node("Relu", [z])), machine)


def test_two_conv_chains_meeting_at_an_add():
    """A ResNet downsampling block: conv-BN on both paths, one Add. Only the first chain
    takes the Add into its drain; the other stays a tensor it reads."""
    g = GraphBuilder()
    x = g.input("x", (1, 8, 8, 8))
    y = g.node("Relu", [g.batchnorm(g.conv(x, 8, 16, 3, stride=2, bias=False), 16)])
    y = g.batchnorm(g.conv(y, 16, 16, 3, bias=False), 16)
    skip = g.batchnorm(g.conv(x, 8, 16, 1, stride=2, pad=[0] * 4, bias=False), 16)
    check(g.model(g.node("Relu", [g.node("Add", [y, skip])])))


def test_matmul_add_act_and_gemm_act():
    g = GraphBuilder()
    x = g.input("x", (6, 20))
    y = g.node("Add", [g.node("MatMul", [x, g.weight("w1", (20, 30))]), g.weight("b1", (30,))])
    y = g.node("Tanh", [y])
    y = g.node("MatMul", [y, g.weight("w2", (30, 12))])
    y = g.node("Add", [g.weight("b2", (1, 12)), y])
    y = g.node("Clip", [g.node("Gemm", [y, g.weight("w3", (12, 5)), g.weight("b3", (5,))]),
                        g.const("lo", -0.1), g.const("hi", 0.2)])
    check(g.model(y))


def test_fusion_folds_into_the_drain():
    """conv_bn_act is one layer; BN and bias fold into scale and shift at compile time."""
    from reference_backends.simaccel.frontend import ConvLayer

    g = GraphBuilder()
    x = g.input("x", (1, 4, 6, 6))
    y = g.node("Relu", [g.node("Add", [g.batchnorm(g.conv(x, 4, 8, 3), 8),
                                       g.input("skip", (1, 8, 6, 6))])])
    compiled = check(g.model(y))
    layers = _layers(g.model(y))
    assert len(layers) == 1 and isinstance(layers[0], ConvLayer)
    epilogue = layers[0].epilogue
    assert epilogue.scale is not None and epilogue.shift is not None
    assert epilogue.residual == "skip" and epilogue.act.kind.name == "RELU"
    (stats,) = simaccel_stats(compiled)
    assert stats["instructions"] > 0


def _layers(model: onnx.ModelProto):
    """The layers the compiler makes of the model's one simaccel region."""
    from reference_backends.simaccel.frontend import lower_region
    from reference_backends.simaccel.target import target

    seen = []
    original = target.codegen

    def spy(region):
        seen.append(lower_region(region).layers)
        return original(region)

    target.codegen = spy
    try:
        build(model, ["simaccel"], strict=True)
    finally:
        target.codegen = original
    (layers,) = seen
    return layers


# --- what must not be emitted -------------------------------------------------------


def test_a_layer_that_cannot_fit_falls_back_with_the_reason():
    """Global pooling needs a whole plane per tile: 32 x 32 floats are 4 KiB."""
    g = GraphBuilder()
    x = g.input("x", (1, 4, 32, 32))
    model = g.model(g.node("GlobalAveragePool", [g.node("Relu", [g.conv(x, 4, 4, 3)])]))
    machine = {"input_kib": 4, "weight_kib": 1, "accumulator_kib": 1}
    compiled = build_for(model, machine, strict=False)
    (region,) = compiled.package.regions
    assert region.status == "fallback"
    assert "does not fit simaccel's SRAM" in region.reason
    feeds = {"x": np.ones((1, 4, 32, 32), np.float32)}
    assert compiled.run(feeds)[model.graph.output[0].name].shape == (1, 4, 1, 1)


def _huge_matmul(rows: int = 100_000) -> onnx.ModelProto:
    """x [rows, 8] @ w [8, rows]: 3 MB in, a [rows, rows] float32 out (40 GB by default)."""
    g = GraphBuilder()
    x = g.input("x", (rows, 8))
    return g.model(g.node("MatMul", [x, g.weight("w", (8, rows))], "y"))


def test_a_node_whose_tensors_do_not_fit_dram_stays_on_the_host():
    """Before, simaccel claimed it, and its compiler tiled 40 GB for minutes and gigabytes
    of host memory before failing on a 32-bit field; onnxruntime then tried to allocate
    the output. Now the support check declines it, naming the sizes."""
    result = byoc.partition_model(_huge_matmul(), ["simaccel"], policy=RegionPolicy.keep_all())
    (record,) = result.report.nodes
    assert record.target == "host"
    assert record.reason == "its tensors take 37.3 GiB, more than simaccel's 1 GiB of DRAM"
    assert LIMITS.dram_bytes == 1 << 30


def test_a_region_that_does_not_fit_dram_falls_back_in_one_line():
    """Each Relu fits (2 MiB of tensors), but the region's three tensors, 3 MiB, do not fit
    a chip with 2 MiB of DRAM: the compiler refuses it at once, before tiling anything."""
    g = GraphBuilder()
    x = g.input("x", (1, 256, 1024))
    model = g.model(g.node("Relu", [g.node("Relu", [x], "r1")], "r2"))
    compiled = build_for(model, {"dram_mib": 2}, strict=False)
    (region,) = compiled.package.regions
    assert region.status == "fallback"
    assert region.reason == ("codegen raised CompileError: the region's tensors take more "
                             "than simaccel's 2 MiB of DRAM (3 MiB once 'r1' is placed)")
    with pytest.raises(byoc.ByocError) as raised:
        build_for(model, {"dram_mib": 2})
    assert "target simaccel, region simaccel_0" in str(raised.value)
    assert "2 MiB of DRAM" in str(raised.value) and len(str(raised.value).splitlines()) == 1
    feeds = {"x": np.full((1, 256, 1024), -1, np.float32)}
    assert not compiled.run(feeds)["r2"].any()


@pytest.mark.parametrize("seed", range(6))
def test_random_convs_on_random_machines_fit_or_fall_back(seed):
    """Whatever the shapes and the chip, a program is either valid, within SRAM and
    right, or not emitted at all."""
    rng = np.random.default_rng(seed)
    machine = {"array_rows": int(rng.choice([4, 8, 16])), "array_cols": int(rng.choice([4, 16])),
               "vector_lanes": int(rng.choice([4, 64])), "input_kib": int(rng.integers(1, 9)),
               "weight_kib": int(rng.integers(1, 9)), "accumulator_kib": int(rng.integers(1, 5))}
    c_in, c_out = (int(v) for v in rng.integers(1, 40, 2))
    k, stride = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    size = int(rng.integers(k, 14))
    g = GraphBuilder(seed)
    x = g.input("x", (1, c_in, size, size))
    y = g.node("Relu", [g.conv(x, c_in, c_out, k, stride=stride, pad=[k // 2] * 4)])
    model = g.model(g.node("MaxPool", [y], kernel_shape=[2, 2], pads=[0, 0, 1, 1]))
    compiled = build_for(model, machine, strict=False)
    (region,) = compiled.package.regions
    if region.status != "compiled":  # the only acceptable reason
        assert "does not fit" in region.reason
        return
    check(model, machine)
    sram = sum(machine[p] for p in ("input_kib", "weight_kib", "accumulator_kib")) * 1024
    compiled.run({"x": np.zeros((1, c_in, size, size), np.float32)})
    assert simaccel_stats(compiled)[0]["sram_peak_bytes"] <= sram


def test_int8_stays_on_the_host_with_a_reason():
    """The chip has int8 units, but the compiler does float32 only, so the target does not
    claim int8 ops: they stay on the host, and the report says why."""
    x = helper.make_tensor_value_info("x", TensorProto.INT8, [4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [4, 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    compiled = build_for(model, strict=False)
    assert compiled.package.regions == []
    (record,) = compiled.report.partition.nodes
    assert record.target == "host" and "float32, not int8" in record.reason
    feeds = {"x": np.arange(-8, 8, dtype=np.int8).reshape(4, 4)}
    np.testing.assert_array_equal(compiled.run(feeds)["y"], np.maximum(feeds["x"], 0))


def test_a_bad_machine_option_is_a_build_failure_not_a_crash():
    g = GraphBuilder()
    x = g.input("x", (1, 4, 6, 6))
    model = g.model(g.node("Relu", [g.conv(x, 4, 4, 3)]))
    compiled = build_for(model, {"array_rows": 0}, strict=False)
    (region,) = compiled.package.regions
    assert region.status == "fallback" and "bad machine option" in region.reason
    compiled = build_for(model, {"flux_capacitors": 3}, strict=False)
    assert "unknown simaccel machine parameters" in compiled.package.regions[0].reason


def test_the_default_machine_is_the_declared_one():
    assert LIMITS.input_kib + LIMITS.weight_kib + LIMITS.accumulator_kib == LIMITS.sram_kib
    with pytest.raises(ValueError, match="add up"):
        LIMITS.__class__(input_kib=1)
    assert LIMITS.replace(input_kib=8).sram_kib == 8 + LIMITS.weight_kib + LIMITS.accumulator_kib
