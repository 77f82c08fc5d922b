"""Checking simaccel builds against onnxruntime, and the models tests and benchmarks use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from byoc_sdk.model_zoo import IR_VERSION, OPSET
from byoc_sdk.runtime import CompiledModel
from byoc_sdk.testing import random_feeds, run_onnxruntime
from partition.policy import RegionPolicy
from reference_backends.simaccel.compiler import options_for
from reference_backends.simaccel.limits import SimAccelLimits

Machine = SimAccelLimits | Mapping[str, Any] | None


def build_for(model: onnx.ModelProto, machine: Machine = None, *, strict: bool = True,
              policy: RegionPolicy | None = None) -> CompiledModel:
    """Build ``model`` for simaccel (on ``machine``, default the bundled chip); with
    ``strict`` every region must compile. ``policy`` defaults to offloading every region
    simaccel claims, however small, so single ops are tested on the chip."""
    from byoc_sdk.build import build

    options = {"simaccel": options_for(machine)} if machine is not None else None
    return build(model, ["simaccel"], strict=strict, options=options,
                 policy=policy or RegionPolicy.keep_all())


def check(model: onnx.ModelProto, machine: Machine = None,
          feeds: Mapping[str, np.ndarray] | None = None, *, rtol: float = 1e-4,
          atol: float = 1e-5, policy: RegionPolicy | None = None) -> CompiledModel:
    """Build ``model`` for simaccel (every region must compile, and there must be one),
    run it, and assert its outputs equal onnxruntime's on the original model."""
    compiled = build_for(model, machine, policy=policy)
    if not any(step.target == "simaccel" for step in compiled.steps):
        raise AssertionError("nothing of the model runs on simaccel")
    feeds = dict(feeds) if feeds is not None else random_feeds(model, seed=1)
    expected = run_onnxruntime(model, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=rtol, atol=atol, err_msg=name)
    return compiled


def simaccel_stats(compiled: CompiledModel) -> list[Mapping[str, Any]]:
    """The simulator's statistics of each simaccel step of the last run."""
    return [step.stats() for step in compiled.steps
            if step.target == "simaccel" and step.stats is not None]


# --- building models ----------------------------------------------------------------


class GraphBuilder:
    """A float32 ONNX graph under construction, with seeded random weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.inputs: list[onnx.ValueInfoProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []

    def input(self, name: str, shape: Sequence[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def const(self, name: str, array: Any, dtype: Any = np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def weight(self, name: str, shape: Sequence[int], scale: float = 0.3) -> str:
        return self.const(name, self.rng.standard_normal(shape) * scale)

    def node(self, op: str, inputs: Sequence[str], name: str | None = None, **attrs: Any) -> str:
        """Add a node; its one output is named after it."""
        out = name or f"node{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, k: int, *, stride: int = 1,
             pad: Sequence[int] | None = None, group: int = 1, bias: bool = True,
             auto_pad: str | None = None) -> str:
        """A Conv with random weights; ``pad`` defaults to "same" for odd kernels."""
        scale = (2.0 / (c_in // group * k * k)) ** 0.5  # keeps activations near unit scale
        inputs = [x, self.weight(f"w{len(self.inits)}", (c_out, c_in // group, k, k), scale)]
        if bias:
            inputs.append(self.weight(f"b{len(self.inits)}", (c_out,)))
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [stride, stride],
                                 "group": group}
        if auto_pad:
            attrs["auto_pad"] = auto_pad
        else:
            attrs["pads"] = list(pad) if pad is not None else [k // 2] * 4
        return self.node("Conv", inputs, **attrs)

    def batchnorm(self, x: str, channels: int) -> str:
        n = len(self.inits)
        return self.node("BatchNormalization", [
            x, self.const(f"bn_scale{n}", 1 + 0.2 * self.rng.standard_normal(channels)),
            self.weight(f"bn_bias{n}", (channels,)), self.weight(f"bn_mean{n}", (channels,)),
            self.const(f"bn_var{n}", self.rng.uniform(0.5, 1.5, channels))], epsilon=1e-5)

    def model(self, *outputs: str, opset: int = OPSET) -> onnx.ModelProto:
        """The model with ``outputs`` in ``opset``, shapes inferred and checked."""
        graph = helper.make_graph(self.nodes, "g", self.inputs,
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                   for o in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  ir_version=IR_VERSION)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
        return model


def resnet_like(batch: int = 1, size: int = 64, widths: Sequence[int] = (16, 32, 64, 128),
                blocks: int = 2, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """A ResNet-18-shaped CNN: 7x7/2 stem with BN, ReLU and 3x3/2 max pooling; stages of
    basic blocks (3x3 conv-BN-ReLU, 3x3 conv-BN, skip connection, ReLU; the first block
    of a stage strides 2 with a 1x1 conv-BN shortcut); global pooling, a Gemm, Softmax.
    With the defaults, 224 x 224 and widths (64, 128, 256, 512) it is ResNet-18."""
    g = GraphBuilder(seed)
    x = g.input("input", (batch, 3, size, size))
    x = g.node("Relu", [g.batchnorm(g.conv(x, 3, widths[0], 7, stride=2, bias=False),
                                    widths[0])])
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = widths[0]
    for stage, width in enumerate(widths):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            y = g.node("Relu", [g.batchnorm(g.conv(x, channels, width, 3, stride=stride,
                                                   bias=False), width)])
            y = g.batchnorm(g.conv(y, width, width, 3, bias=False), width)
            skip = x
            if stride != 1 or channels != width:
                skip = g.batchnorm(g.conv(x, channels, width, 1, stride=stride, pad=[0] * 4,
                                          bias=False), width)
            x = g.node("Relu", [g.node("Add", [y, skip])])
            channels = width
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    x = g.node("Gemm", [x, g.weight("fc.w", (classes, channels), 0.1),
                        g.weight("fc.b", (classes,))], transB=1)
    return g.model(g.node("Softmax", [x], "probs", axis=-1))


def mobilenet_like(batch: int = 1, size: int = 64,
                   layers: Sequence[tuple[int, int]] = ((32, 1), (64, 2), (64, 1), (128, 2),
                                                        (128, 1), (256, 2)),
                   classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """A MobileNet-v1-shaped CNN: 3x3/2 stem, then depthwise 3x3 + pointwise 1x1 pairs
    (each conv with BN and ReLU6 as Clip), global pooling and a Gemm."""
    g = GraphBuilder(seed)
    lo, hi = g.const("relu6.lo", 0.0), g.const("relu6.hi", 6.0)

    def conv_bn_relu6(x: str, c_in: int, c_out: int, k: int, stride: int, group: int) -> str:
        y = g.batchnorm(g.conv(x, c_in, c_out, k, stride=stride, group=group, bias=False),
                        c_out)
        return g.node("Clip", [y, lo, hi])

    x = g.input("input", (batch, 3, size, size))
    channels = layers[0][0] // 2
    x = conv_bn_relu6(x, 3, channels, 3, 2, 1)
    for width, stride in layers:
        x = conv_bn_relu6(x, channels, channels, 3, stride, channels)
        x = conv_bn_relu6(x, channels, width, 1, 1, 1)
        channels = width
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    return g.model(g.node("Gemm", [x, g.weight("fc.w", (classes, channels), 0.1),
                                   g.weight("fc.b", (classes,))], "logits", transB=1))
