"""The cpu generator's ``layout`` option: NHWC activations inside a region.

Every model here is built with ``options={"cpu": {"layout": "NHWC"}}``, strictly (the
whole model on cpu), and compared with onnxruntime on the original model. A region's
inputs and outputs are NCHW, so an op under test reads an NHWC tensor only when another
kernel made one: each case puts a 1x1 MaxPool (an identity that writes NHWC) in front
of it, and the test checks in the generated source that the kernel really read NHWC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import onnx
import pytest

import byoc_sdk as byoc
from byoc_sdk import model_zoo
from byoc_sdk.testing import CONV_CASES, POOL_CASES, ModelBuilder, run_onnxruntime
from reference_backends.cpu.lower import plan

RTOL, ATOL = 1e-4, 1e-5
NHWC = {"cpu": {"layout": "NHWC"}}


def channels_last(net: ModelBuilder, shape: Sequence[int]) -> str:
    """An input passed through a 1x1 MaxPool: the same values, stored NHWC."""
    return net.op("MaxPool", [net.input(shape)], kernel_shape=[1, 1])


def check(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
          options: dict | None = None) -> byoc.CompiledModel:
    """Build strictly in NHWC, compare with onnxruntime, return the compiled model."""
    compiled = byoc.build(model, ["cpu"], strict=True, options=options or NHWC)
    expected = run_onnxruntime(model, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=RTOL, atol=ATOL, err_msg=name)
    return compiled


def kernel_lines(compiled: byoc.CompiledModel) -> list[str]:
    """The kernel list of the header comment of every cpu region's source."""
    lines = []
    for region in compiled.package.regions:
        if region.target == "cpu":
            source = next(iter(region.artifact.sources.values()))
            lines += [line for line in source.splitlines() if line.startswith("/*   k")]
    return lines


def read_channels_last(compiled: byoc.CompiledModel, op_type: str) -> list[str]:
    """The names of the ``op_type`` nodes whose kernels read an NHWC input."""
    found = []
    for line in kernel_lines(compiled):
        match = re.search(rf": {op_type} '([^']+)'.*layout=NHWC", line)
        if match:
            found.append(match.group(1))
    return found


# --- convolution -------------------------------------------------------------------




def _conv_net(depthwise: bool = True) -> ModelBuilder:
    """Every case of CONV_CASES reading NHWC (``depthwise=False``: those with more than one
    input channel per group, which any product schedule can run)."""
    net = ModelBuilder()
    for index, (shape, (out, kh, kw), attrs) in enumerate(CONV_CASES):
        group = attrs.get("group", 1)
        if not depthwise and group == shape[1]:
            continue
        inputs = [channels_last(net, shape), net.weight((out, shape[1] // group, kh, kw))]
        if index % 2 == 0:
            inputs.append(net.weight((out,), fan_in=1))
        net.op("Conv", inputs, output=True, **attrs)
    return net


def test_every_conv_variant_reads_nhwc() -> None:
    net = _conv_net()
    compiled = check(net.model(), net.feeds)
    assert read_channels_last(compiled, "Conv") == net.outputs


@pytest.mark.parametrize("schedule", [
    {"algorithm": "gemm", "tile_rows": 1, "mr": 3, "nv": 1},
    {"algorithm": "gemm", "tile_rows": 3, "mr": 8, "nv": 2, "unroll": 1},
])
def test_conv_schedules_in_nhwc(schedule: dict) -> None:
    """The im2col path at stride 1 too, and register tiles with ragged edges."""
    net = _conv_net(depthwise=False)
    options = {"cpu": {"layout": "NHWC", "ops": {"Conv": schedule}}}
    compiled = check(net.model(), net.feeds, options)
    assert read_channels_last(compiled, "Conv") == net.outputs
    conv_lines = [line for line in kernel_lines(compiled) if ": Conv " in line]
    assert all("algorithm=gemm" in line for line in conv_lines)


def test_channels_orientation_is_refused_in_nhwc() -> None:
    net = ModelBuilder()
    net.op("Conv", [channels_last(net, (1, 4, 6, 6)), net.weight((8, 4, 3, 3))], output=True)
    options = {"cpu": {"layout": "NHWC", "ops": {"Conv": {"orientation": "channels"}}}}
    with pytest.raises(Exception, match="orientation 'channels' needs an NCHW"):
        byoc.build(net.model(), ["cpu"], strict=True, options=options)


@pytest.mark.parametrize("activation", ["Relu", "Clip", "Sigmoid", "HardSwish"])
def test_conv_bias_bn_activation_composites(activation: str) -> None:
    """Folded BN, bias and activation in the epilogue of NHWC convolutions (dense,
    strided, depthwise, 1x1 with a (C, 1, 1) bias), chained so each reads NHWC."""
    net = ModelBuilder()

    def act(x: str) -> str:
        if activation == "Clip":
            return net.op("Clip", [x, net.const(np.float32(0)), net.const(np.float32(6))])
        return net.op(activation, [x])

    def bn(x: str, channels: int) -> str:
        var = np.abs(net.rng.standard_normal(channels)).astype(np.float32) + 0.5
        return net.op("BatchNormalization", [x, net.weight((channels,), 1),
                                             net.weight((channels,), 1),
                                             net.weight((channels,), 1), net.const(var)],
                      epsilon=1e-3)

    x = net.input((2, 3, 10, 10))
    x = act(bn(net.op("Conv", [x, net.weight((8, 3, 3, 3)), net.weight((8,), 1)],
                      pads=[1] * 4), 8))
    x = act(bn(net.op("Conv", [x, net.weight((16, 8, 3, 3))], strides=[2, 2], pads=[1] * 4),
               16))
    x = act(net.op("Conv", [x, net.weight((16, 1, 3, 3)), net.weight((16,), 1)], group=16,
                   pads=[1] * 4))
    bare = net.op("Conv", [x, net.weight((5, 16, 1, 1))])
    bias = net.const(net.rng.standard_normal((5, 1, 1)).astype(np.float32))
    net.op("Add", [act(net.op("Add", [bare, bias])), net.input((2, 5, 5, 5))], output=True)
    compiled = check(net.model(), net.feeds)
    assert len(read_channels_last(compiled, "Conv")) == 3
    assert sum("folded" in line for line in kernel_lines(compiled)) == 2


def test_residual_add_stays_nhwc() -> None:
    """x -> conv -> relu -> conv -> Add(first conv) -> relu: both convolutions and the
    residual in NHWC, no conversion kernel (the input is too shallow to be copied to NHWC
    on entry: the first convolution reads it NCHW)."""
    net = ModelBuilder()
    first = net.op("Relu", [net.op("Conv", [net.input((1, 4, 12, 12)),
                                            net.weight((16, 4, 3, 3))], pads=[1] * 4)])
    second = net.op("Conv", [first, net.weight((16, 16, 3, 3)), net.weight((16,), 1)],
                    pads=[1] * 4)
    net.op("Relu", [net.op("Add", [second, first])], output=True)
    net.op("MaxPool", [first], output=True, kernel_shape=[2, 2], strides=[2, 2])
    compiled = check(net.model(), net.feeds)
    lines = kernel_lines(compiled)
    assert not any("Relayout" in line for line in lines)
    assert any("Add" in line and "layout=NHWC->NCHW" in line for line in lines)


# --- pooling -----------------------------------------------------------------------




@pytest.mark.parametrize("op_type", ["MaxPool", "AveragePool"])
def test_pooling(op_type: str) -> None:
    net = ModelBuilder(opset=19)
    for shape, attrs in POOL_CASES:
        net.op(op_type, [channels_last(net, shape)], output=True, **attrs)
    if op_type == "AveragePool":
        for shape, attrs in POOL_CASES[1:4]:
            net.op(op_type, [channels_last(net, shape)], output=True, count_include_pad=1,
                   **attrs)
    else:
        net.op(op_type, [channels_last(net, (1, 2, 12, 12))], output=True, kernel_shape=[3, 3],
               dilations=[2, 2], pads=[2, 2, 2, 2])
    compiled = check(net.model(), net.feeds)
    assert set(net.outputs) <= set(read_channels_last(compiled, op_type))


def test_global_average_pool() -> None:
    net = ModelBuilder()
    net.op("GlobalAveragePool", [channels_last(net, (2, 3, 5, 7))], output=True)
    pooled = net.op("GlobalAveragePool", [channels_last(net, (1, 80, 4, 4))])
    net.op("Relu", [pooled], output=True)
    compiled = check(net.model(), net.feeds)
    # GlobalAveragePool becomes a ReduceMean kernel.
    assert len(read_channels_last(compiled, "ReduceMean")) == 2


# --- conversions -----------------------------------------------------------------------


def test_layout_sensitive_consumers_read_nchw() -> None:
    """An NHWC tensor read by Flatten, Softmax, Concat and a Transpose is converted back
    once; the conv also feeds an NHWC pool, and an Add that broadcasts it to rank 5
    reads it in place."""
    net = ModelBuilder(opset=13)
    conv = net.op("Conv", [net.input((1, 4, 6, 6)), net.weight((8, 4, 3, 3))], pads=[1] * 4)
    net.op("MaxPool", [conv], output=True, kernel_shape=[2, 2], strides=[2, 2])
    net.op("Flatten", [conv], output=True)
    net.op("Softmax", [conv], output=True, axis=1)
    net.op("Concat", [conv, net.input((1, 2, 6, 6))], output=True, axis=1)
    net.op("Transpose", [conv], output=True, perm=[0, 2, 3, 1])
    net.op("Add", [conv, net.input((2, 1, 8, 6, 6))], output=True)
    compiled = check(net.model(), net.feeds)
    lines = kernel_lines(compiled)
    assert sum("byoc.Relayout" in line for line in lines) == 1
    assert read_channels_last(compiled, "MaxPool")


def test_deep_region_inputs_are_converted_once_on_entry() -> None:
    """An input of 16 channels read by a Conv and a pool: one relayout kernel, both read
    NHWC; its elementwise reader reads the NHWC copy too."""
    net = ModelBuilder()
    x = net.input((1, 16, 8, 8))
    conv = net.op("Conv", [x, net.weight((16, 16, 3, 3))], pads=[1] * 4)
    net.op("Add", [conv, x], output=True)
    net.op("AveragePool", [x], output=True, kernel_shape=[2, 2])
    compiled = check(net.model(), net.feeds)
    lines = kernel_lines(compiled)
    assert sum("byoc.Relayout" in line and "layout=NCHW->NHWC" in line for line in lines) == 1
    assert read_channels_last(compiled, "Conv") and read_channels_last(compiled, "AveragePool")


# --- whole models ----------------------------------------------------------------------


@pytest.mark.parametrize("make", [model_zoo.small_cnn, model_zoo.depthwise_cnn])
def test_zoo_models(make) -> None:
    model = make(batch=2)
    feeds = model_zoo.random_inputs(model)
    compiled = check(model, feeds)
    assert read_channels_last(compiled, "Conv")


# --- parameters ------------------------------------------------------------------------


def test_kernel_params_name_the_layout_and_round_trip(captured_regions) -> None:
    """``kernel_params()`` records carry the layout; fed back, they rebuild the source."""
    model = model_zoo.small_cnn()
    first = byoc.build(model, ["cpu"], strict=True, options=NHWC)
    (region,) = captured_regions
    records = plan(region).kernel_params()
    assert records and all(r["layout"] == "NHWC" for r in records.values())
    again = byoc.build(model, ["cpu"], strict=True, tuning={"cpu_0": {"kernels": records}},
                       options=NHWC)
    assert kernel_lines(again) == kernel_lines(first)
    name = next(iter(records))
    wrong = {"cpu_0": {"kernels": {name: {"layout": "NCHW"}}}}
    compiled = byoc.build(model, ["cpu"], tuning=wrong, options=NHWC)
    (report,) = compiled.report.regions
    assert report.status == "fallback" and "layouts are chosen per region" in report.reason


def test_nchw_blocked_layout_still_falls_back_with_its_reason() -> None:
    model = model_zoo.small_cnn()
    compiled = byoc.build(model, ["cpu"], options={"cpu": {"layout": "NCHW8c"}})
    (report,) = compiled.report.regions
    assert report.status == "fallback"
    assert "layout NCHW8c is not implemented" in report.reason
    with pytest.raises(byoc.BuildError, match="could not be compiled"):
        byoc.build(model, ["cpu"], strict=True, options={"cpu": {"layout": "NCHW8c"}})
