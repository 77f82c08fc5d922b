"""Support declarations of the bundled targets (simaccel, cpu, cuda) on one-node models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from byoc_sdk.node_info import NodeInfo
from byoc_sdk.patterns import Matcher
from byoc_sdk.target import Target
from reference_backends.cpu import target as cpu
from reference_backends.cuda import target as cuda
from reference_backends.simaccel import LIMITS, SimAccelLimits
from reference_backends.simaccel.target import target as simaccel

OPSET = 21
IR_VERSION = 10
TARGETS = [simaccel, cpu, cuda]


@dataclass(frozen=True)
class Runtime:
    """A graph input: a value the caller feeds at run time."""

    shape: tuple[int | str, ...]
    dtype: str = "float32"


def x(*shape: int | str, dtype: str = "float32") -> Runtime:
    return Runtime(shape, dtype)


def w(*shape: int, dtype: str = "float32") -> np.ndarray:
    """A constant initializer of this shape."""
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


Input = Runtime | np.ndarray | None


def _elem_type(dtype: str) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def model_of(nodes: Sequence[tuple[str, Sequence[Input], dict]], outputs: int = 1) -> ir.Model:
    """A model of a chain of nodes: each node's first output feeds the next node's ``None``
    in place of input 0 (the first node's inputs are all given). ``outputs`` of the last
    node become graph outputs; earlier nodes' extra outputs stay unnamed."""
    graph_inputs, initializers, protos = [], [], []
    previous = None
    for index, (op_type, inputs, attrs) in enumerate(nodes):
        names = []
        for position, spec in enumerate(inputs):
            name = f"n{index}_in{position}"
            if isinstance(spec, Runtime):
                graph_inputs.append(
                    helper.make_tensor_value_info(name, _elem_type(spec.dtype), spec.shape))
            elif isinstance(spec, np.ndarray):
                initializers.append(numpy_helper.from_array(spec, name))
            elif position == 0 and previous is not None:
                name = previous
            else:
                name = ""
            names.append(name)
        last = index == len(nodes) - 1
        outs = [f"n{index}_out{i}" for i in range(outputs if last else 1)]
        protos.append(helper.make_node(op_type, names, outs, name=f"{op_type}_{index}", **attrs))
        previous = outs[0]
    graph_outputs = [
        helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)
        for name in protos[-1].output
    ]
    graph = helper.make_graph(protos, "g", graph_inputs, graph_outputs, initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    return ir.from_proto(proto)


def node(op_type: str, *inputs: Input, outputs: int = 1, **attrs: object) -> NodeInfo:
    """The NodeInfo of a one-node model."""
    model = model_of([(op_type, inputs, attrs)], outputs)
    return NodeInfo(next(iter(model.graph)), OPSET)


def conv(
    kernel: int = 3, *, channels: int = 8, out: int = 16, group: int = 1, dtype: str = "float32",
    data: Input = None, weight: Input = None, **attrs: object,
) -> NodeInfo:
    data = data if data is not None else x(1, channels, 16, 16, dtype=dtype)
    if weight is None:
        weight = w(out, channels // group, kernel, kernel, dtype=dtype)
    return node("Conv", data, weight, w(out, dtype=dtype), group=group, **attrs)


def accepts(target: Target, info: NodeInfo) -> None:
    assert target.check(info) is None, target.check(info)


def declines(target: Target, info: NodeInfo, *fragments: str) -> None:
    reason = target.check(info)
    assert reason is not None, f"{target.name} unexpectedly supports {info}"
    for fragment in fragments:
        assert fragment in reason, reason


# --- simaccel ----------------------------------------------------------------------


def test_simaccel_limits_are_shared() -> None:
    assert isinstance(LIMITS, SimAccelLimits)
    assert (LIMITS.array_rows, LIMITS.array_cols, LIMITS.sram_kib) == (16, 16, 512)
    assert LIMITS.max_kernel == 7 and LIMITS.max_channels == 4096
    assert LIMITS.dtypes == {"float32", "int8"}
    assert simaccel.priority == 10


def test_simaccel_accepts_3x3_float_conv() -> None:
    accepts(simaccel, conv(3))
    accepts(simaccel, conv(7, pads=[3, 3, 3, 3], strides=[2, 2]))


def test_simaccel_accepts_depthwise_conv() -> None:
    accepts(simaccel, conv(3, channels=8, out=8, group=8))


@pytest.mark.parametrize(
    ("info", "fragments"),
    [
        (lambda: conv(9), ("9x9", "7x7", "simaccel")),
        (lambda: conv(3, dilations=[2, 2]), ("dilation",)),
        (lambda: conv(3, weight=x(16, 8, 3, 3)), ("input 1", "constant")),
        (lambda: conv(3, data=x("N", 8, 16, 16)), ("static shapes",)),
        (lambda: conv(3, channels=8, out=16, group=2), ("grouped",)),
        (lambda: conv(1, channels=8, out=5000), ("5000 output channels", "4096")),
        (lambda: node("Conv", x(1, 8, 16), w(16, 8, 3), w(16)), ("1-D convolution",)),
        (lambda: node("Softmax", x(2, 10)), ("Softmax is not supported by simaccel",)),
        (lambda: node("LayerNormalization", x(2, 10), w(10)), ("not supported by simaccel",)),
        (lambda: node("Add", x(1, 2, 3, 4, 5), x(5)), ("rank-5", "rank-4")),
        (lambda: node("Add", x(2, 3, dtype="float16"), x(2, 3, dtype="float16")), ("float16",)),
        (lambda: node("Gemm", x(4, 8), w(4, 16), transA=1), ("transA",)),
        (lambda: node("Gemm", x(8, 4), w(4, 16), alpha=2.0), ("alpha",)),
        (lambda: node("MatMul", x(8, 4), x(4, 16)), ("input 1", "constant")),
        (lambda: node("MaxPool", x(1, 8, 16, 16), kernel_shape=[9, 9]), ("9x9", "7x7")),
        (lambda: node("MaxPool", x(1, 8, 16, 16), kernel_shape=[2, 2], ceil_mode=1),
         ("ceil_mode",)),
        (lambda: node("AveragePool", x(1, 8, 16, 16), kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                      count_include_pad=1), ("count_include_pad",)),
        (lambda: node("Clip", x(2, 3), x()), ("input 1", "constant")),
        (lambda: node("BatchNormalization", x(1, 4, 8, 8), w(4), w(4), w(4), w(4),
                      outputs=3, training_mode=1), ("training-mode",)),
    ],
    ids=[
        "kernel9x9", "dilation", "runtime-weight", "dynamic-batch", "grouped", "channels",
        "conv1d", "softmax", "layernorm", "rank5", "float16", "gemm-transA", "gemm-alpha",
        "matmul-runtime-b", "pool9x9", "ceil-mode", "count-include-pad", "clip-runtime-min",
        "bn-training",
    ],
)
def test_simaccel_declines(info, fragments) -> None:
    declines(simaccel, info(), *fragments)


@pytest.mark.parametrize(
    "info",
    [
        lambda: node("Gemm", x(8, 4), w(16, 4), w(16), transB=1),
        lambda: node("MatMul", x(2, 3, 8, 4), w(4, 16)),
        lambda: node("Clip", x(2, 3), np.array(0, np.float32), np.array(6, np.float32)),
        lambda: node("MaxPool", x(1, 8, 16, 16), kernel_shape=[2, 2], strides=[2, 2]),
        lambda: node("GlobalAveragePool", x(1, 8, 7, 7)),
        lambda: node("BatchNormalization", x(1, 4, 8, 8), w(4), w(4), w(4), w(4)),
        lambda: node("Reshape", x(1, 8, 2, 2), np.array([1, 32], np.int64)),
        lambda: node("Flatten", x(1, 8, 2, 2)),
        lambda: node("HardSwish", x(1, 8)),
    ],
    ids=["gemm", "matmul-batched", "clip", "maxpool", "gap", "bn", "reshape", "flatten",
         "hardswish"],
)
def test_simaccel_accepts(info) -> None:
    accepts(simaccel, info())


@pytest.mark.parametrize("op_type", ["Add", "Relu", "MaxPool", "Reshape"])
def test_simaccel_declares_what_its_compiler_compiles_float32_not_the_chips_int8(op_type):
    # The chip runs int8 (LIMITS.dtypes), but the compiler is float32-only so far.
    assert "int8" in LIMITS.dtypes
    rule = simaccel.rule_for("", op_type, 21)
    assert rule.dtypes == frozenset({"float32"})


def test_simaccel_declines_empty_tensors():
    declines(simaccel, node("Flatten", x(0, 8, 2, 2)), "empty tensors")


# --- cpu ---------------------------------------------------------------------------


def test_cpu_accepts_depthwise_dilated_conv() -> None:
    accepts(cpu, conv(3, channels=8, out=8, group=8, dilations=[2, 2], pads=[2, 2, 2, 2]))
    accepts(cpu, conv(9, auto_pad="SAME_UPPER"))
    accepts(cpu, conv(3, channels=8, out=16, group=4))


@pytest.mark.parametrize(
    "info",
    [
        lambda: node("ConvTranspose", x(1, 8, 8, 8), w(8, 4, 3, 3), strides=[2, 2]),
        lambda: node("MatMul", x(2, 3, 8, 4), x(2, 3, 4, 16)),
        lambda: node("Softmax", x(2, 10), axis=-1),
        lambda: node("LayerNormalization", x(2, 10), w(10), w(10)),
        lambda: node("ReduceMean", x(2, 10), np.array([1], np.int64), keepdims=0),
        lambda: node("Gelu", x(2, 10)),
        lambda: node("Pow", x(2, 10), np.array(2, np.int64)),
        lambda: node("Slice", x(4, 10), np.array([1], np.int64), np.array([3], np.int64)),
        lambda: node("Gather", x(10, 4), x(3, dtype="int64")),
        lambda: node("Cast", x(2, 3, dtype="int64"), to=onnx.TensorProto.FLOAT),
        lambda: node("Transpose", x(2, 3, 4), perm=[2, 0, 1]),
        lambda: node("Concat", x(2, 3), x(2, 5), axis=1),
        lambda: node("Unsqueeze", x(2, 3), np.array([0], np.int64)),
    ],
    ids=["convtranspose", "batched-matmul", "softmax", "layernorm", "reducemean", "gelu",
         "pow", "slice", "gather", "cast", "transpose", "concat", "unsqueeze"],
)
def test_cpu_accepts(info) -> None:
    accepts(cpu, info())


@pytest.mark.parametrize(
    ("info", "fragments"),
    [
        (lambda: node("Add", x(2, 3, dtype="float16"), x(2, 3, dtype="float16")),
         ("cpu", "float32", "float16")),
        (lambda: node("Relu", x("N", 3)), ("static shapes",)),
        (lambda: node("Conv", x(1, 8, 16), w(16, 8, 3), w(16)), ("1-D convolution",)),
        (lambda: node("Conv", x(1, 2, 4, 8, 8), w(4, 2, 3, 3, 3)), ("3-D convolution",)),
        (lambda: node("ConvTranspose", x(1, 8, 8, 8), w(8, 2, 3, 3), group=2), ("grouped",)),
        (lambda: node("ConvTranspose", x(1, 8, 8, 8), w(8, 4, 3, 3), dilations=[2, 2]),
         ("dilated",)),
        (lambda: node("ConvTranspose", x(1, 8, 8, 8), w(8, 4, 3, 3), auto_pad="SAME_UPPER",
                      strides=[2, 2]), ("auto_pad",)),
        (lambda: node("Slice", x(4, 10), x(1, dtype="int64"), np.array([3], np.int64)),
         ("input 1", "constant")),
        (lambda: node("Cast", x(2, 3), to=onnx.TensorProto.INT64), ("Cast to int64",)),
        (lambda: node("Cast", x(2, 3, dtype="bool"), to=onnx.TensorProto.FLOAT),
         ("Cast from bool",)),
        (lambda: node("MaxPool", x(1, 8, 16, 16), outputs=2, kernel_shape=[2, 2]),
         ("indices",)),
        (lambda: node("LayerNormalization", x(2, 10), w(10), outputs=3), ("mean/inv-std",)),
        (lambda: node("Einsum", x(2, 3), x(3, 4), equation="ij,jk->ik"),
         ("Einsum is not supported by cpu",)),
    ],
    ids=["float16-add", "dynamic", "conv1d", "conv3d", "convT-group", "convT-dilation",
         "convT-auto-pad", "slice-runtime-starts", "cast-to-int", "cast-from-bool",
         "maxpool-indices", "layernorm-stats", "einsum"],
)
def test_cpu_declines(info, fragments) -> None:
    declines(cpu, info(), *fragments)


def test_cpu_keeps_single_op_regions() -> None:
    policy = cpu.effective_policy(None)
    assert policy.min_nodes == 1 and not policy.require_compute
    assert cpu.priority < cuda.priority < simaccel.priority


# --- cuda --------------------------------------------------------------------------


def test_cuda_accepts_softmax_and_friends() -> None:
    accepts(cuda, node("Softmax", x(2, 10), axis=-1))
    accepts(cuda, node("LayerNormalization", x(2, 10), w(10), w(10)))
    accepts(cuda, conv(3, channels=8, out=8, group=8, dilations=[2, 2]))
    accepts(cuda, node("Squeeze", x(1, 3), np.array([0], np.int64)))


def test_cuda_declines() -> None:
    declines(cuda, node("Gather", x(2, 3), np.array([0], np.int64)),
             "Gather is not supported by cuda")
    declines(cuda, node("Softmax", x(2, 10, dtype="float16")), "float16")
    declines(cuda, node("Reshape", x(2, 3), x(1, dtype="int64")), "input 1", "constant")


@pytest.mark.parametrize("target", [cpu, cuda], ids=["cpu", "cuda"])
def test_global_average_pool_over_an_empty_window_stays_on_the_host(target) -> None:
    # Before: claimed, and its kernel gave 0 where onnxruntime refuses (0 / 0).
    declines(target, node("GlobalAveragePool", x(1, 2, 0, 4)), "empty window (0x4)",
             "onnxruntime refuses it")
    declines(target, node("GlobalAveragePool", x(1, 2, 4, 0)), "empty window (4x0)")
    accepts(target, node("GlobalAveragePool", x(0, 2, 4, 4)))  # no images: nothing to average


def test_global_average_pool_over_an_empty_window_fails_in_onnxruntimes_words() -> None:
    from byoc_sdk import StepError, build

    model = model_of([("GlobalAveragePool", [x(1, 2, 0, 4)], {})])
    compiled = build(model, [cpu, cuda])
    assert {n.target for n in compiled.report.partition.nodes} == {"host"}
    with pytest.raises(StepError, match="Only N can be zero"):
        compiled.run({"n0_in0": np.zeros((1, 2, 0, 4), np.float32)})


# --- patterns ----------------------------------------------------------------------


def fused_by(target: Target, model: ir.Model) -> str | None:
    """The name of the target's pattern that fuses the graph's last node, if any."""
    nodes = list(model.graph)
    matcher = Matcher(model.graph, {n: i for i, n in enumerate(nodes)}, set(), lambda n: OPSET)
    for composite in target.patterns:
        match = matcher.match(composite.pattern, nodes[-1])
        if match is not None and composite.evaluate(match) is None:
            return composite.name
    return None


def conv_relu(kernel: int = 3) -> ir.Model:
    return model_of([
        ("Conv", [x(1, 8, 16, 16), w(16, 8, kernel, kernel), w(16)], {}),
        ("Relu", [None], {}),
    ])


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_patterns_fuse_conv_relu(target: Target) -> None:
    assert fused_by(target, conv_relu()) == "conv_act"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_patterns_fuse_conv_bn_clip(target: Target) -> None:
    model = model_of([
        ("Conv", [x(1, 8, 16, 16), w(16, 8, 3, 3)], {}),
        ("BatchNormalization", [None, w(16), w(16), w(16), np.ones(16, np.float32)], {}),
        ("Clip", [None, np.array(0, np.float32), np.array(6, np.float32)], {}),
    ])
    assert fused_by(target, model) == "conv_bn_act"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_patterns_fuse_matmul_add_act(target: Target) -> None:
    model = model_of([
        ("MatMul", [x(4, 8), w(8, 16)], {}),
        ("Add", [None, w(16)], {}),
        ("Relu", [None], {}),
    ])
    assert fused_by(target, model) == "matmul_add_act"


def test_patterns_respect_op_limits() -> None:
    assert fused_by(simaccel, conv_relu(9)) is None
    assert fused_by(cpu, conv_relu(9)) == "conv_act"


def test_simaccel_bias_patterns() -> None:
    row = model_of([("MatMul", [x(4, 8), w(8, 16)], {}), ("Add", [None, w(1, 16)], {})])
    assert fused_by(simaccel, row) == "matmul_add"
    full = model_of([("MatMul", [x(4, 8), w(8, 16)], {}), ("Add", [None, w(4, 16)], {})])
    assert fused_by(simaccel, full) is None
    channel = model_of([
        ("Conv", [x(1, 8, 16, 16), w(16, 8, 3, 3)], {}),
        ("Add", [None, w(16, 1, 1)], {}),
        ("Relu", [None], {}),
    ])
    assert fused_by(simaccel, channel) == "conv_add_bias_act"


# --- support tables ----------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_support_table(target: Target) -> None:
    rows = target.support_table()
    assert rows
    assert {row["kind"] for row in rows} == {"op", "pattern"}
    for row in rows:
        assert set(row) == {"kind", "name", "opsets", "dtypes", "conditions"}
        assert all(isinstance(value, str) for value in row.values()), row
