"""Global average pooling as PyTorch's exporter writes it: ReduceMean over the spatial
axes. simaccel runs it as the GlobalAveragePool it is (axes as an input or an attribute,
keepdims either way) and declines every other ReduceMean with the reason; and cpu and cuda
leave pooling over zero channels, which onnxruntime refuses, on the host."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import byoc_sdk as byoc
from byoc_sdk.build import build
from byoc_sdk.errors import OnnxRuntimeError
from byoc_sdk.model_zoo import IR_VERSION
from byoc_sdk.report import NodeRecord
from byoc_sdk.runtime import StepError
from partition.policy import RegionPolicy
from reference_backends.simaccel.testing import GraphBuilder, check

#: A chip with 4 KiB per SRAM partition: the pooling needs several channel tiles.
TINY = {"input_kib": 4, "weight_kib": 4, "accumulator_kib": 4}


def reduce_mean(g: GraphBuilder, x: str, opset: int, axes: Sequence[int] | None,
                name: str = "mean", **attrs: object) -> str:
    """ReduceMean over ``axes`` (``None``: no axes given) in ``opset``'s spelling."""
    if axes is None:
        return g.node("ReduceMean", [x], name, **attrs)
    if opset >= 18:
        return g.node("ReduceMean", [x, g.const(f"{name}.axes", axes, np.int64)], name,
                      **attrs)
    return g.node("ReduceMean", [x], name, axes=list(axes), **attrs)


def target_of(records: Sequence[NodeRecord], name: str) -> tuple[str, str]:
    """Where the original node ``name`` went, and why."""
    (record,) = [n for n in records if n.name == name]
    return record.target, record.reason


def classifier(opset: int, axes: Sequence[int], keepdims: int, *, batch: int = 2,
               channels: int = 24, size: tuple[int, int] = (7, 6)) -> onnx.ModelProto:
    """Conv -> ReduceMean over the spatial axes -> (Flatten if keepdims) -> Gemm, the
    head of an exported CNN."""
    g = GraphBuilder()
    x = g.input("x", (batch, 3, *size))
    y = reduce_mean(g, g.node("Relu", [g.conv(x, 3, channels, 3)]), opset, axes,
                    keepdims=keepdims)
    if keepdims:
        y = g.node("Flatten", [y], axis=1)
    logits = g.node("Gemm", [y, g.weight("w", (10, channels)), g.weight("b", (10,))],
                    "logits", transB=1)
    return g.model(logits, opset=opset)


# --- what runs on the chip, equal to onnxruntime ------------------------------------


@pytest.mark.parametrize("machine", [None, TINY], ids=["default", "tiny"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize(("opset", "axes"), [(21, [2, 3]), (21, [-1, -2]), (18, [3, -2]),
                                             (17, [2, 3]), (13, [-2, -1])],
                         ids=["input", "input-negative", "input-mixed", "attribute",
                              "attribute-negative"])
def test_spatial_reduce_mean_runs_as_global_pooling(opset, axes, keepdims, machine):
    compiled = check(classifier(opset, axes, keepdims), machine)
    assert target_of(compiled.report.partition.nodes, "mean")[0] == "simaccel"
    assert len(compiled.package.regions) == 1


@pytest.mark.parametrize("keepdims", [0, 1])
def test_spatial_mean_as_a_region_output_and_read_again(keepdims):
    """The pooled value leaves the region and feeds the Gemm: with keepdims=0 it is the
    (N, C) alias of the pooled (N, C, 1, 1) data, written straight into the output."""
    g = GraphBuilder()
    x = g.input("x", (3, 5, 4, 9))
    mean = reduce_mean(g, g.node("Relu", [x]), 21, [2, 3], keepdims=keepdims)
    flat = g.node("Flatten", [mean], axis=1)
    logits = g.node("Gemm", [flat, g.weight("w", (4, 5)), g.weight("b", (4,))], transB=1)
    compiled = check(g.model(mean, logits, opset=21))
    assert target_of(compiled.report.partition.nodes, "mean")[0] == "simaccel"


def test_noop_with_empty_axes_does_not_matter_when_axes_are_given():
    """noop_with_empty_axes=1 only makes an axis-less ReduceMean the identity: over axes
    2 and 3 it still pools."""
    g = GraphBuilder()
    x = g.input("x", (1, 6, 5, 5))
    model = g.model(reduce_mean(g, x, 21, [2, 3], keepdims=0, noop_with_empty_axes=1), opset=21)
    compiled = check(model)
    assert target_of(compiled.report.partition.nodes, "mean")[0] == "simaccel"


def test_an_exported_cnn_head_stays_in_one_region_with_its_classifier():
    """Before, the ReduceMean stayed on the host and the Gemm after it, alone in its
    region, was dropped by the default policy (min_nodes=2): three steps, not one."""
    g = GraphBuilder()
    x = g.input("x", (1, 3, 16, 16))
    y = g.node("Relu", [g.conv(g.node("Relu", [g.conv(x, 3, 8, 3)]), 8, 16, 3, stride=2)])
    y = reduce_mean(g, y, 21, [2, 3], keepdims=0)
    model = g.model(g.node("Gemm", [y, g.weight("w", (10, 16)), g.weight("b", (10,))],
                           "logits", transB=1), opset=21)
    result = byoc.partition_model(model, ["simaccel"])
    assert {n.target for n in result.report.nodes} == {"simaccel"}
    assert len(result.report.regions) == 1
    compiled = check(model, policy=RegionPolicy())
    assert [step.target for step in compiled.steps] == ["simaccel"]


# --- what stays on the host, and why -------------------------------------------------


def _declined(model: onnx.ModelProto, *fragments: str) -> None:
    result = byoc.partition_model(model, ["simaccel"], policy=RegionPolicy.keep_all())
    target, reason = target_of(result.report.nodes, "mean")
    assert target == "host", reason
    for fragment in fragments:
        assert fragment in reason, reason


def _one_reduce_mean(shape: Sequence[int], axes: Sequence[int] | None, opset: int = 21,
                     **attrs: object) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", shape)
    return g.model(reduce_mean(g, g.node("Relu", [x]), opset, axes, **attrs), opset=opset)


@pytest.mark.parametrize(
    ("shape", "axes", "opset", "attrs", "fragments"),
    [
        ((2, 8, 4, 4), [1], 21, {}, ("over axes [1] is not supported", "axes 2 and 3")),
        ((2, 8, 4, 4), [3], 21, {}, ("over axes [3] is not supported",)),
        ((2, 8, 4, 4), [1, 2, 3], 21, {}, ("over axes [1, 2, 3]",)),
        ((2, 8, 4, 4), [1, -1], 17, {}, ("over axes [1, -1]",)),
        ((2, 8, 4), [1, 2], 21, {}, ("rank-3",)),
        ((2, 8, 4, 4, 4), [3, 4], 21, {}, ("rank-5",)),
        ((2, 8, 4, 4), None, 21, {}, ("over every axis",)),
        ((2, 8, 4, 4), None, 17, {}, ("over every axis",)),
        ((2, 8, 4, 4), None, 21, {"noop_with_empty_axes": 1}, ("the identity",)),
        ((2, 8, 4, 4), [], 21, {"noop_with_empty_axes": 1}, ("the identity",)),
        ((2, 8, 4, 4), [], 21, {}, ("over every axis",)),
        ((1, 0, 4, 4), [2, 3], 21, {}, ("empty tensors",)),
    ],
    ids=["channels", "width", "chw", "attribute-c-and-w", "rank3", "rank5", "no-axes",
         "no-axes-attribute", "noop", "noop-empty-axes-input", "empty-axes-input",
         "empty-tensor"],
)
def test_other_reduce_means_stay_on_the_host(shape, axes, opset, attrs, fragments):
    _declined(_one_reduce_mean(shape, axes, opset, **attrs), *fragments)


def test_axes_fed_at_run_time_stay_on_the_host():
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["mean"], "mean")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 4, 4]),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [2])],
        # Shape inference cannot tell which axes: the output's shape is declared.
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, [2, 8, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                              ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    _declined(model, "input 1 of ReduceMean to be a constant")


def test_the_support_table_says_which_reduce_mean():
    from reference_backends.simaccel.target import target

    (row,) = [r for r in target.support_table() if r["name"] == "ReduceMean"]
    assert "axes 2, 3 of 4-D data" in row["conditions"]


# --- cpu and cuda: pooling over zero channels ----------------------------------------


def _pool_model(op: str, shape: Sequence[int], **attrs: object) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", shape)
    return g.model(g.node(op, [x], "pool", **attrs), opset=21)


POOLS = [("GlobalAveragePool", {}), ("MaxPool", {"kernel_shape": [2, 2]}),
         ("AveragePool", {"kernel_shape": [2, 2]})]


@pytest.mark.parametrize("target", ["cpu", "cuda"])
@pytest.mark.parametrize(("op", "attrs"), POOLS, ids=[op for op, _ in POOLS])
def test_pooling_over_zero_channels_stays_on_the_host(target, op, attrs):
    """onnxruntime refuses a pooling input with no elements unless N is 0 ("Only N can be
    zero"); before, cpu and cuda claimed 0 channels and returned an empty result."""
    result = byoc.partition_model(_pool_model(op, (1, 0, 4, 4), **attrs), [target],
                                  policy=RegionPolicy.keep_all())
    where, reason = target_of(result.report.nodes, "pool")
    assert where == "host"
    assert "0 channels" in reason and "onnxruntime" in reason, reason
    # No images: onnxruntime computes an empty result, and so may the target.
    result = byoc.partition_model(_pool_model(op, (0, 2, 4, 4), **attrs), [target],
                                  policy=RegionPolicy.keep_all())
    assert target_of(result.report.nodes, "pool")[0] == target


def test_pooling_over_zero_channels_fails_in_onnxruntimes_words():
    """Left on the host, the model fails as in onnxruntime alone: its kernel refuses the
    input when it runs, or (with all graph optimizations, as the host step has them) its
    NCHWc layout pass already refuses the session."""
    with pytest.raises((OnnxRuntimeError, StepError),
                       match=r"Only N can be zero|invalid channel count"):
        compiled = build(_pool_model("GlobalAveragePool", (1, 0, 4, 4)), ["cpu", "cuda"])
        compiled.run({"x": np.zeros((1, 0, 4, 4), np.float32)})
