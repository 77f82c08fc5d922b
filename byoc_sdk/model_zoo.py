"""Small, deterministic ONNX models for tests, examples, benchmarks and the conformance suite.

Every builder returns an ``onnx.ModelProto`` that passes ``onnx.checker.check_model(m,
full_check=True)`` and runs in onnxruntime. Models are pinned to :data:`OPSET` and
:data:`IR_VERSION` so they do not drift with the installed onnx version, inputs and outputs have
static shapes, and weights come from a seeded generator so every run sees the same model.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from byoc_sdk.testing import random_array

__all__ = [
    "IR_VERSION",
    "OPSET",
    "all_models",
    "block_chain",
    "depthwise_cnn",
    "mlp",
    "random_dag",
    "random_inputs",
    "small_cnn",
    "transformer_block",
    "with_control_flow",
]

# Pinned rather than taken from onnx.defs so that a newer onnx package cannot silently produce
# models the supported onnxruntime (IR <= 13, opset <= 26) refuses.
OPSET = 21
IR_VERSION = 10

_FLOAT = TensorProto.FLOAT
_PRODUCER = "byoc_sdk.model_zoo"


class _GraphBuilder:
    """Collects the nodes, initializers, inputs and outputs of one graph.

    Node names and value names are checked for uniqueness here because a duplicate is a bug in a
    builder that would otherwise surface much later as a confusing checker or partitioner error.
    A node's (first) output value is named after the node, which keeps graphs easy to read.
    """

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._node_names: set[str] = set()
        self._value_names: set[str] = set()

    def _claim_value(self, name: str) -> str:
        if name in self._value_names:
            raise ValueError(f"duplicate value name {name!r}")
        self._value_names.add(name)
        return name

    def input(self, name: str, shape: Sequence[int], elem_type: int = _FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(self._claim_value(name), elem_type, shape))
        return name

    def output(self, name: str, shape: Sequence[int], elem_type: int = _FLOAT) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def const(self, name: str, array: np.ndarray, *, as_input: bool = False) -> str:
        """Add an initializer; ``as_input`` also lists it as a graph input (an unbound param)."""
        self.initializers.append(numpy_helper.from_array(array, self._claim_value(name)))
        if as_input:
            elem_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            self.inputs.append(helper.make_tensor_value_info(name, elem_type, array.shape))
        return name

    def weight(self, name: str, shape: Sequence[int], scale: float = 0.1) -> str:
        # Small values keep activations finite through deep chains of layers.
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(
        self, op_type: str, inputs: Sequence[str], name: str, *, output: str | None = None, **attrs
    ) -> str:
        """Add a single-output node named ``name``; its output is ``output`` or ``name``."""
        (out,) = self.op_multi(op_type, inputs, name, [output or name], **attrs)
        return out

    def op_multi(
        self, op_type: str, inputs: Sequence[str], name: str, outputs: Sequence[str], **attrs
    ) -> list[str]:
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name!r}")
        self._node_names.add(name)
        for out in outputs:
            self._claim_value(out)
        self.nodes.append(
            helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs)
        )
        return list(outputs)

    def graph(self, name: str) -> onnx.GraphProto:
        return helper.make_graph(
            self.nodes, name, self.inputs, self.outputs, initializer=self.initializers
        )

    def model(self, name: str, doc: str) -> onnx.ModelProto:
        model = helper.make_model(
            self.graph(name),
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=_PRODUCER,
            doc_string=inspect.cleandoc(doc),
        )
        return model


# --------------------------------------------------------------------------------------------
# Layer helpers shared by the CNN builders.


def _conv(
    b: _GraphBuilder,
    x: str,
    name: str,
    c_in: int,
    c_out: int,
    *,
    kernel: int = 3,
    stride: int = 1,
    group: int = 1,
    bias: bool = True,
) -> str:
    pad = kernel // 2
    inputs = [x, b.weight(f"{name}.weight", (c_out, c_in // group, kernel, kernel))]
    if bias:
        inputs.append(b.weight(f"{name}.bias", (c_out,)))
    return b.op(
        "Conv",
        inputs,
        name,
        kernel_shape=[kernel, kernel],
        pads=[pad] * 4,
        strides=[stride, stride],
        group=group,
    )


def _batch_norm(b: _GraphBuilder, x: str, name: str, channels: int) -> str:
    rng = b.rng
    scale = b.const(f"{name}.scale", (1 + 0.1 * rng.standard_normal(channels)).astype(np.float32))
    shift = b.weight(f"{name}.bias", (channels,))
    mean = b.weight(f"{name}.mean", (channels,))
    # Variance must be positive; keep it near 1 so BN neither explodes nor kills activations.
    var = b.const(f"{name}.var", rng.uniform(0.5, 1.5, channels).astype(np.float32))
    return b.op("BatchNormalization", [x, scale, shift, mean, var], name, epsilon=1e-5)


def _classifier_head(
    b: _GraphBuilder, x: str, channels: int, classes: int, output: str | None = None
) -> str:
    pooled = b.op("GlobalAveragePool", [x], "head/gap")
    flat = b.op("Flatten", [pooled], "head/flatten", axis=1)
    w = b.weight("head/fc.weight", (classes, channels))
    bias = b.weight("head/fc.bias", (classes,))
    return b.op("Gemm", [flat, w, bias], "head/fc", output=output, transB=1)


def _conv_out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


# --------------------------------------------------------------------------------------------
# Public builders.


def small_cnn(batch: int = 1, channels: int = 3, size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """ResNet-like CNN: the everyday "accelerator-friendly" conv model.

    Conv+BN+Relu stem, two residual blocks with a MaxPool between them, global pooling and a
    Gemm classifier with Softmax. Input ``input`` (batch, channels, size, size), output
    ``probs`` (batch, 10).
    """
    if size < 2:
        raise ValueError("size must be >= 2 for the 2x2 max pool")
    width, classes = 16, 10
    b = _GraphBuilder(np.random.default_rng(seed))
    x = b.input("input", (batch, channels, size, size))

    x = _conv(b, x, "stem/conv", channels, width)
    x = _batch_norm(b, x, "stem/bn", width)
    x = b.op("Relu", [x], "stem/relu")

    def residual_block(x: str, name: str) -> str:
        y = _conv(b, x, f"{name}/conv1", width, width)
        y = b.op("Relu", [y], f"{name}/relu1")
        y = _conv(b, y, f"{name}/conv2", width, width)
        y = b.op("Add", [y, x], f"{name}/add")
        return b.op("Relu", [y], f"{name}/relu2")

    x = residual_block(x, "block1")
    x = b.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    x = residual_block(x, "block2")

    logits = _classifier_head(b, x, width, classes)
    b.op("Softmax", [logits], "softmax", output="probs", axis=-1)
    b.output("probs", (batch, classes))
    return b.model("small_cnn", small_cnn.__doc__ or "")


def depthwise_cnn(batch: int = 1, size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """MobileNet-like CNN: grouped (depthwise) convs and Relu6 as Clip(0, 6).

    Exercises group-conv and Clip-with-input-bounds support. Input ``input`` (batch, 3, size,
    size), output ``logits`` (batch, 10).
    """
    channels, classes = 3, 10
    b = _GraphBuilder(np.random.default_rng(seed))
    x = b.input("input", (batch, channels, size, size))
    # Opset >= 11 Clip takes its bounds as inputs; one pair of scalars serves every Relu6.
    lo = b.const("relu6.min", np.array(0.0, dtype=np.float32))
    hi = b.const("relu6.max", np.array(6.0, dtype=np.float32))

    def conv_bn_relu6(x: str, name: str, c_in: int, c_out: int, **conv_args) -> str:
        x = _conv(b, x, f"{name}/conv", c_in, c_out, bias=False, **conv_args)
        x = _batch_norm(b, x, f"{name}/bn", c_out)
        return b.op("Clip", [x, lo, hi], f"{name}/relu6")

    width = 16
    x = conv_bn_relu6(x, "stem", channels, width)
    for i, (c_out, stride) in enumerate([(32, 1), (64, 2), (64, 1)], start=1):
        x = conv_bn_relu6(x, f"block{i}/dw", width, width, stride=stride, group=width)
        x = conv_bn_relu6(x, f"block{i}/pw", width, c_out, kernel=1)
        width = c_out

    _classifier_head(b, x, width, classes, output="logits")
    b.output("logits", (batch, classes))
    return b.model("depthwise_cnn", depthwise_cnn.__doc__ or "")


def mlp(
    batch: int = 4,
    features: int = 64,
    hidden: Sequence[int] = (128, 64),
    classes: int = 10,
    seed: int = 0,
) -> onnx.ModelProto:
    """Multi-layer perceptron: MatMul+Add+Relu layers, a Gemm and Softmax.

    The unfused MatMul+Add pattern is what accelerators usually pattern-match into a dense
    layer. Input ``input`` (batch, features), output ``probs`` (batch, classes).
    """
    b = _GraphBuilder(np.random.default_rng(seed))
    x = b.input("input", (batch, features))
    width = features
    for i, h in enumerate(hidden, start=1):
        x = b.op("MatMul", [x, b.weight(f"fc{i}.weight", (width, h))], f"fc{i}/matmul")
        x = b.op("Add", [x, b.weight(f"fc{i}.bias", (h,))], f"fc{i}/add")
        x = b.op("Relu", [x], f"fc{i}/relu")
        width = h
    w = b.weight("out.weight", (width, classes))
    x = b.op("Gemm", [x, w, b.weight("out.bias", (classes,))], "out/gemm")
    b.op("Softmax", [x], "out/softmax", output="probs", axis=-1)
    b.output("probs", (batch, classes))
    return b.model("mlp", mlp.__doc__ or "")


def transformer_block(
    batch: int = 1, seq: int = 16, dim: int = 64, heads: int = 4, seed: int = 0
) -> onnx.ModelProto:
    """Pre-norm transformer encoder block built from primitive ops (no fused attention).

    Covers LayerNormalization, Reshape/Transpose head splitting, batched MatMul, Softmax and
    Gelu. Input ``input`` (batch, seq, dim), output ``output`` of the same shape.
    """
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
    head_dim = dim // heads
    b = _GraphBuilder(np.random.default_rng(seed))
    x = b.input("input", (batch, seq, dim))

    def layer_norm(x: str, name: str) -> str:
        scale = b.const(f"{name}.scale", np.ones(dim, dtype=np.float32))
        return b.op(
            "LayerNormalization",
            [x, scale, b.weight(f"{name}.bias", (dim,))],
            name,
            axis=-1,
            epsilon=1e-5,
        )

    def linear(x: str, name: str, d_in: int, d_out: int) -> str:
        y = b.op("MatMul", [x, b.weight(f"{name}.weight", (d_in, d_out))], f"{name}/matmul")
        return b.op("Add", [y, b.weight(f"{name}.bias", (d_out,))], f"{name}/add")

    split_shape = b.const(
        "attn/split_heads.shape", np.array([batch, seq, heads, head_dim], dtype=np.int64)
    )
    merge_shape = b.const("attn/merge_heads.shape", np.array([batch, seq, dim], dtype=np.int64))
    scale = b.const("attn/scale", np.array(1 / math.sqrt(head_dim), dtype=np.float32))

    h = layer_norm(x, "ln1")
    heads_of: dict[str, str] = {}
    for proj, perm in [("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])]:
        # K is transposed straight to (b, h, d, s) so scores are a plain batched MatMul.
        y = linear(h, f"attn/{proj}", dim, dim)
        y = b.op("Reshape", [y, split_shape], f"attn/{proj}/reshape")
        heads_of[proj] = b.op("Transpose", [y], f"attn/{proj}/transpose", perm=perm)
    scores = b.op("MatMul", [heads_of["q"], heads_of["k"]], "attn/scores")
    scores = b.op("Mul", [scores, scale], "attn/scale_mul")
    probs = b.op("Softmax", [scores], "attn/softmax", axis=-1)
    ctx = b.op("MatMul", [probs, heads_of["v"]], "attn/context")
    ctx = b.op("Transpose", [ctx], "attn/merge/transpose", perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, merge_shape], "attn/merge/reshape")
    attn = linear(ctx, "attn/out", dim, dim)
    x = b.op("Add", [x, attn], "attn/residual")

    h = layer_norm(x, "ln2")
    h = linear(h, "mlp/fc1", dim, 4 * dim)
    h = b.op("Gelu", [h], "mlp/gelu")
    h = linear(h, "mlp/fc2", 4 * dim, dim)
    b.op("Add", [x, h], "mlp/residual", output="output")
    b.output("output", (batch, seq, dim))
    return b.model("transformer_block", transformer_block.__doc__ or "")


_CHAIN_BLOCK_NODES = 5  # Conv, Relu, MatMul, Add(bias), Add(residual)
_CHAIN_DIAMOND_NODES = 2  # Softmax, Mul


def _has_diamond(block: int) -> bool:
    return block % 3 == 2  # the 3rd, 6th, 9th ... block


def block_chain(
    n_nodes: int, channels: int = 8, size: int = 8, seed: int = 0, bind_weights: bool = True
) -> onnx.ModelProto:
    """Chain of conv/matmul blocks: the model of the partition scaling benchmark.

    Each block ``i`` (names ``block{i}/...``) is Conv(3x3, bias) -> Relu -> MatMul over the last
    axis -> Add(bias) -> Add(block input). Every third block also routes the Relu output through
    a Softmax and multiplies it back in (``Mul(r, Softmax(r))``): a diamond around an op most
    accelerators reject, which a partitioner must not merge across. Whole blocks are added until
    there are at least ``n_nodes`` nodes. With ``bind_weights=False`` every weight is also a graph
    input (unbound parameters). Input ``input`` and output ``output``, both
    (1, channels, size, size).
    """
    if n_nodes < 1:
        raise ValueError("n_nodes must be >= 1")
    n_blocks, count = 0, 0
    while count < n_nodes:
        count += _CHAIN_BLOCK_NODES + (_CHAIN_DIAMOND_NODES if _has_diamond(n_blocks) else 0)
        n_blocks += 1

    # Drawing all weights in a few bulk calls keeps 100k-node models fast to build.
    rng = np.random.default_rng(seed)
    conv_w = (rng.standard_normal((n_blocks, channels, channels, 3, 3)) * 0.1).astype(np.float32)
    conv_b = (rng.standard_normal((n_blocks, channels)) * 0.1).astype(np.float32)
    # x + f(x) grows geometrically along the chain; shrinking the residual branch with the
    # number of blocks keeps even a 20k-block chain finite when executed.
    branch_scale = 0.1 / math.sqrt(n_blocks)
    mm_w = (rng.standard_normal((n_blocks, size, size)) * branch_scale).astype(np.float32)
    mm_b = (rng.standard_normal((n_blocks, size)) * branch_scale).astype(np.float32)

    b = _GraphBuilder(rng)
    unbound = not bind_weights
    x = b.input("input", (1, channels, size, size))
    for i in range(n_blocks):
        p = f"block{i}"
        w = b.const(f"{p}/conv.weight", conv_w[i], as_input=unbound)
        bias = b.const(f"{p}/conv.bias", conv_b[i], as_input=unbound)
        y = b.op("Conv", [x, w, bias], f"{p}/conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        y = b.op("Relu", [y], f"{p}/relu")
        if _has_diamond(i):
            s = b.op("Softmax", [y], f"{p}/softmax", axis=-1)
            y = b.op("Mul", [y, s], f"{p}/mul")
        y = b.op(
            "MatMul", [y, b.const(f"{p}/matmul.weight", mm_w[i], as_input=unbound)], f"{p}/matmul"
        )
        y = b.op("Add", [y, b.const(f"{p}/add.bias", mm_b[i], as_input=unbound)], f"{p}/add")
        last = i == n_blocks - 1
        x = b.op("Add", [y, x], f"{p}/residual", output="output" if last else None)
    b.output("output", (1, channels, size, size))
    return b.model("block_chain", block_chain.__doc__ or "")


_DAG_UNARY = ("Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Softmax")
_DAG_BINARY = ("Add", "Mul", "Sub", "Max")
_DAG_BOUNDED = {"Sigmoid": 1.0, "Tanh": 1.0, "Softmax": 1.0}
# Assumed |x| bound of a graph input; standard-normal feeds essentially never exceed it.
_DAG_INPUT_BOUND = 10.0
# Worst-case |value| a node may reach before it is swapped for a Tanh; far below float32 max,
# so outputs stay finite and numerically comparable between backends.
_DAG_BOUND_LIMIT = 1e6


def random_dag(seed: int, n_nodes: int, n_inputs: int = 2, width: int = 8) -> onnx.ModelProto:
    """Random DAG of mixed ops for property-based partitioner tests.

    Every value is (1, width) float32, so each node reads values chosen uniformly among all
    earlier ones, which yields diamonds, fan-out and several sinks. Ops: unary Relu, Sigmoid,
    Tanh, Abs, Neg, Softmax; binary Add, Mul, Sub, Max; MatMul with a weight; and (for even
    widths) a Split into two halves followed by a Concat in random order, i.e. a two-output
    node. Exactly ``n_nodes`` nodes. Outputs are all sinks plus a random subset of the interior
    values. Deterministic for a given seed; values stay finite for standard-normal inputs.
    """
    if n_nodes < 1:
        raise ValueError("n_nodes must be >= 1")
    if n_inputs < 1 or width < 1:
        raise ValueError("n_inputs and width must be >= 1")
    rng = np.random.default_rng(seed)
    b = _GraphBuilder(rng)
    values = [b.input(f"input{i}", (1, width)) for i in range(n_inputs)]
    # Worst-case bound on |value| per value, to keep Mul/Add/MatMul chains from overflowing.
    bound = dict.fromkeys(values, _DAG_INPUT_BOUND)
    consumed: set[str] = set()
    # Split sizes, created on first use: an unused initializer would make onnxruntime warn.
    halves: str | None = None

    def pick() -> str:
        return values[int(rng.integers(len(values)))]

    index = 0
    while index < n_nodes:
        kind = rng.random()
        # Odd widths cannot be halved; a Split+Concat pair needs room for two nodes.
        can_split = width % 2 == 0 and n_nodes - index >= 2
        if kind < 0.1 and can_split:
            if halves is None:
                halves = b.const("split.sizes", np.array([width // 2] * 2, dtype=np.int64))
            x = pick()
            split = f"split_{index}"
            parts = b.op_multi("Split", [x, halves], split, [f"{split}:0", f"{split}:1"], axis=-1)
            if rng.random() < 0.5:
                parts.reverse()
            out = b.op("Concat", parts, f"concat_{index + 1}", axis=-1)
            consumed.add(x)
            bound[out] = bound[x]
            values.append(out)
            index += 2
            continue

        if kind < 0.5:
            op, args = str(rng.choice(_DAG_UNARY)), [pick()]
            new_bound = _DAG_BOUNDED.get(op, bound[args[0]])
        elif kind < 0.85:
            op, args = str(rng.choice(_DAG_BINARY)), [pick(), pick()]
            lhs, rhs = bound[args[0]], bound[args[1]]
            new_bound = {"Mul": lhs * rhs, "Max": max(lhs, rhs)}.get(op, lhs + rhs)
        else:
            op, args = "MatMul", [pick()]
            w = (rng.standard_normal((width, width)) / math.sqrt(width)).astype(np.float32)
            new_bound = bound[args[0]] * float(np.abs(w).sum(axis=0).max())
            if new_bound <= _DAG_BOUND_LIMIT:
                args.append(b.const(f"matmul_{index}.weight", w))
        if new_bound > _DAG_BOUND_LIMIT:
            op, args, new_bound = "Tanh", args[:1], 1.0
        attrs = {"axis": -1} if op == "Softmax" else {}
        out = b.op(op, args, f"{op.lower()}_{index}", **attrs)
        consumed.update(args)
        bound[out] = new_bound
        values.append(out)
        index += 1

    node_values = values[n_inputs:]
    for v in node_values:
        if v not in consumed or rng.random() < 0.25:
            b.output(v, (1, width))
    return b.model(f"random_dag_{seed}_{n_nodes}", random_dag.__doc__ or "")


def with_control_flow(seed: int = 0) -> onnx.ModelProto:
    """Model with an ``If`` whose branches capture outer-scope values.

    Both branches read ``hidden`` (a main-graph node output) and the else branch also reads a
    main-graph initializer, so a partitioner must leave the If on the host without cutting
    those captures. Inputs ``input`` (1, 16) and bool scalar ``cond``; output ``output`` (1, 4).
    """
    dim, out_dim = 16, 4
    b = _GraphBuilder(np.random.default_rng(seed))
    x = b.input("input", (1, dim))
    cond = b.input("cond", (), TensorProto.BOOL)

    h = b.op("MatMul", [x, b.weight("fc1.weight", (dim, dim), scale=0.3)], "fc1/matmul")
    h = b.op("Add", [h, b.weight("fc1.bias", (dim,))], "fc1/add")
    hidden = b.op("Relu", [h], "fc1/relu", output="hidden")
    else_bias = b.weight("else.bias", (dim,))

    then_b = _GraphBuilder()
    gate = then_b.op("Sigmoid", [hidden], "then/sigmoid")
    then_b.op("Mul", [hidden, gate], "then/mul", output="then_out")
    then_b.output("then_out", (1, dim))

    else_b = _GraphBuilder()
    t = else_b.op("Tanh", [hidden], "else/tanh")
    else_b.op("Add", [t, else_bias], "else/add", output="else_out")
    else_b.output("else_out", (1, dim))

    branch = b.op(
        "If",
        [cond],
        "if",
        then_branch=then_b.graph("then_branch"),
        else_branch=else_b.graph("else_branch"),
    )
    y = b.op("Add", [branch, hidden], "post/residual")
    y = b.op("MatMul", [y, b.weight("fc2.weight", (dim, out_dim), scale=0.3)], "fc2/matmul")
    y = b.op("Add", [y, b.weight("fc2.bias", (out_dim,))], "fc2/add")
    b.op("Relu", [y], "fc2/relu", output="output")
    b.output("output", (1, out_dim))
    return b.model("with_control_flow", with_control_flow.__doc__ or "")


def all_models() -> dict[str, onnx.ModelProto]:
    """Every zoo model with default arguments, keyed by name (for conformance sweeps)."""
    return {
        "small_cnn": small_cnn(),
        "depthwise_cnn": depthwise_cnn(),
        "mlp": mlp(),
        "transformer_block": transformer_block(),
        "block_chain_200": block_chain(200),
        "random_dag_0": random_dag(0, 30),
        "with_control_flow": with_control_flow(),
    }


def random_inputs(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds for the model's non-initializer graph inputs, built from their static shapes.

    Floating-point inputs are standard normal, bool inputs are random and integer inputs are
    zeros (a safe value for indices and shapes).
    """
    rng = np.random.default_rng(seed)
    bound = {init.name for init in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        if value.name in bound:
            continue
        tensor_type = value.type.tensor_type
        if not all(d.HasField("dim_value") for d in tensor_type.shape.dim):
            raise ValueError(f"input {value.name!r} does not have a static shape")
        shape = tuple(d.dim_value for d in tensor_type.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        feeds[value.name] = random_array(rng, dtype, shape, integers=None)
    return feeds
