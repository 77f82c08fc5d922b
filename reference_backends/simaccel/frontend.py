"""From a region's ONNX function to the layers the simaccel compiler tiles.

Composite calls are inlined first, so a fused pattern and the same ops left loose compile
alike; then a fusion pass folds what follows a Conv, Gemm or MatMul into the vector
unit's work on the accumulator drain: BatchNormalization and constant per-channel Add,
Sub and Mul become a per-channel ``scale`` and ``shift`` (computed here, at compile
time), an Add of a same-shaped tensor becomes a ``residual``, and a final activation is
applied as the result leaves the accumulator. Other ops become vector-unit layers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx_ir as ir

from byoc_sdk.codegen import Region
from byoc_sdk.node_info import dtype_name
from reference_backends.common import reduced_axes
from reference_backends.simaccel.isa import Act, PoolKind, VecOp


class CompileError(Exception):
    """The region cannot be compiled for simaccel; the build runs it on the host instead
    and reports this message."""


# --- the layer IR -------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """What the vector unit applies to a result before writing it (see :class:`isa.Act`)."""

    kind: Act = Act.NONE
    alpha: float = 0.0
    beta: float = 0.0

    def fields(self) -> dict[str, Any]:
        """As the keyword arguments of :func:`isa.vec`."""
        return {"act": self.kind, "alpha": self.alpha, "beta": self.beta}


NO_ACTIVATION = Activation()


@dataclass
class Epilogue:
    """What the vector unit does to a matrix op's accumulators as they drain:
    ``act(acc * scale + shift + residual)``, ``scale`` and ``shift`` per output channel."""

    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    residual: str | None = None
    act: Activation = NO_ACTIVATION

    @property
    def is_identity(self) -> bool:
        return (self.scale is None and self.shift is None and self.residual is None
                and self.act == NO_ACTIVATION)


@dataclass
class ConvLayer:
    """A 2-D convolution, dense (group 1) or depthwise, in NCHW."""

    x: str
    weight: str  # a bound constant, (Cout, Cin / group, KH, KW)
    out: str
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    depthwise: bool
    epilogue: Epilogue = field(default_factory=Epilogue)


@dataclass
class MatMulLayer:
    """``out = x @ w`` (Gemm with transA 0, or MatMul) with a constant ``w``."""

    x: str
    weight: str
    out: str
    trans_b: bool
    epilogue: Epilogue = field(default_factory=Epilogue)


@dataclass
class ElementwiseLayer:
    """``out = act(op(operands...))`` with numpy broadcasting (FMA: a * b + c)."""

    op: VecOp
    operands: list[str]
    out: str
    act: Activation = NO_ACTIVATION


@dataclass
class PoolLayer:
    kind: PoolKind
    x: str
    out: str
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]


@dataclass
class AliasLayer:
    """Flatten and Reshape: the same row-major data under another shape."""

    x: str
    out: str


Layer = ConvLayer | MatMulLayer | ElementwiseLayer | PoolLayer | AliasLayer


@dataclass
class LoweredRegion:
    """A region as layers, with what the compiler needs to place its tensors."""

    layers: list[Layer]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    constants: dict[str, np.ndarray]  # bound constants by name
    derived: dict[str, np.ndarray]  # tensors computed here (the data section)
    inputs: list[str]
    outputs: list[str]


# --- flattening ---------------------------------------------------------------------


@dataclass
class _Node:
    op: str
    inputs: list[str | None]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str


def _attrs(node: ir.Node) -> dict[str, Any]:
    return {key: attr.value for key, attr in node.attributes.items()}


def _flatten(region: Region, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, str]
             ) -> list[_Node]:
    """The region's nodes with composite calls replaced by their bodies; records every
    value's static shape and dtype."""

    def record(value: ir.Value, name: str) -> None:
        if not name:
            return  # an optional output nobody named
        if value.shape is None or not value.shape.is_static():
            raise CompileError(f"value '{name}' has no static shape")
        shapes[name] = tuple(int(d) for d in value.shape.dims)
        dtypes[name] = dtype_name(value.dtype) or "unknown"

    nodes: list[_Node] = []
    for value in region.graph.inputs:
        record(value, value.name)
    for node in region.graph:
        if node.op_type == "Constant" and node.domain == "":
            continue  # bound constants: read through region.constants
        for value in node.outputs:
            record(value, value.name)
        function = region.composite(node)
        if function is None:
            nodes.append(_Node(node.op_type, [v.name if v is not None else None
                                              for v in node.inputs],
                               [v.name for v in node.outputs], _attrs(node), node.name))
            continue
        if any(inner.domain not in ("", "ai.onnx") for inner in function):
            raise CompileError(f"composite {node.name} holds ops from other domains")
        names: dict[ir.Value, str] = {}
        for inner_value, outer in zip(function.inputs, node.inputs, strict=True):
            names[inner_value] = outer.name if outer is not None else ""
        for inner_value, outer in zip(function.outputs, node.outputs, strict=True):
            names[inner_value] = outer.name
        for inner in function:
            for value in inner.outputs:
                if value not in names:
                    names[value] = f"{node.name}/{value.name}"
                    record(value, names[value])
            nodes.append(_Node(inner.op_type,
                               [names.get(v) if v is not None else None for v in inner.inputs],
                               [names[v] for v in inner.outputs], _attrs(inner),
                               f"{node.name}/{inner.name}"))
    return nodes


# --- helpers ------------------------------------------------------------------------


def _pads(attrs: dict[str, Any], in_hw: Sequence[int], kernel: Sequence[int],
          strides: Sequence[int]) -> tuple[int, int, int, int]:
    """Explicit (top, left, bottom, right) pads, resolving ``auto_pad`` with static shapes."""
    mode = attrs.get("auto_pad", "NOTSET")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode in ("NOTSET", ""):
        pads = tuple(int(p) for p in attrs.get("pads") or (0, 0, 0, 0))
        return pads[0], pads[1], pads[2], pads[3]
    if mode == "VALID":
        return 0, 0, 0, 0
    before, after = [], []
    for size, k, s in zip(in_hw, kernel, strides, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + k - size)
        small, large = total // 2, total - total // 2
        before.append(small if mode == "SAME_UPPER" else large)
        after.append(large if mode == "SAME_UPPER" else small)
    return before[0], before[1], after[0], after[1]


def channel_vector(array: np.ndarray, out_shape: Sequence[int], axis: int) -> np.ndarray | None:
    """``array`` as one value per channel along ``axis`` of ``out_shape``, if it broadcasts
    along that axis alone (a scalar qualifies); else ``None``."""
    rank = len(out_shape)
    if array.ndim > rank:
        return None
    padded = (1,) * (rank - array.ndim) + array.shape
    axis %= rank
    if any(d != 1 for i, d in enumerate(padded) if i != axis):
        return None
    if padded[axis] not in (1, out_shape[axis]):
        return None
    return np.broadcast_to(array.reshape(-1), (out_shape[axis],)).astype(np.float64)


_ACTIVATIONS = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"}


# --- the fusion pass ----------------------------------------------------------------


class _Lowering:
    """Walks the flattened nodes once, turning each into a layer or folding it into the
    matrix op before it."""

    def __init__(self, region: Region, nodes: list[_Node], shapes: dict[str, tuple[int, ...]]):
        self.region = region
        self.nodes = nodes
        self.shapes = shapes
        self.constants = {name: c.numpy() for name, c in region.constants.items()}
        self.derived: dict[str, np.ndarray] = {}
        self.outputs = [v.name for v in region.graph.outputs]
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for index, node in enumerate(nodes):
            for name in node.inputs:
                if name:
                    self.consumers[name].append(index)
        self.fused: set[int] = set()

    # --- constants --------------------------------------------------------------------

    def const(self, name: str | None) -> np.ndarray | None:
        """The value of a bound constant (``None`` for a run-time value or no input)."""
        return self.constants.get(name) if name else None

    def need_const(self, node: _Node, index: int) -> np.ndarray:
        value = self.const(node.inputs[index] if index < len(node.inputs) else None)
        if value is None:
            raise CompileError(f"{node.op} {node.name}: input {index} must be a constant")
        return value

    def derive(self, stem: str, array: np.ndarray) -> str:
        """Register a compile-time tensor (it travels in the program's data section)."""
        name = f"simaccel.derived/{stem}/{len(self.derived)}"
        self.derived[name] = np.ascontiguousarray(array, dtype=np.float32)
        self.shapes[name] = tuple(array.shape)
        return name

    # --- activations ------------------------------------------------------------------

    def activation(self, node: _Node) -> Activation:
        op, attrs = node.op, node.attrs
        if op == "Relu":
            return Activation(Act.RELU)
        if op == "LeakyRelu":
            return Activation(Act.LEAKY_RELU, float(attrs.get("alpha", 0.01)))
        if op == "Sigmoid":
            return Activation(Act.SIGMOID)
        if op == "Tanh":
            return Activation(Act.TANH)
        if op == "HardSigmoid":
            return Activation(Act.HARD_SIGMOID, float(attrs.get("alpha", 0.2)),
                              float(attrs.get("beta", 0.5)))
        if op == "HardSwish":
            return Activation(Act.HARD_SWISH)
        if op == "Clip":
            # An omitted bound is float32's lowest / max, not an infinity (the ONNX spec,
            # and onnxruntime): Clip with no max turns +inf into 3.4028235e38.
            finfo = np.finfo(np.float32)
            low, high = attrs.get("min", finfo.min), attrs.get("max", finfo.max)
            for index in (1, 2):
                if index < len(node.inputs) and node.inputs[index]:
                    bound = float(self.need_const(node, index).reshape(-1)[0])
                    low, high = (bound, high) if index == 1 else (low, bound)
            return Activation(Act.CLIP, float(low), float(high))
        raise CompileError(f"{op} is not an activation")

    # --- the walk ---------------------------------------------------------------------

    def sole_consumer(self, value: str) -> int | None:
        """The one node reading ``value``, if exactly one does, it is not folded into
        another layer yet, and ``value`` is no region output."""
        readers = self.consumers.get(value, [])
        if len(readers) != 1 or value in self.outputs or readers[0] in self.fused:
            return None
        return readers[0]

    def lower(self) -> list[Layer]:
        placed: list[tuple[int, int, Layer]] = []
        for index, node in enumerate(self.nodes):
            if index in self.fused:
                continue
            layers, last = self.lower_node(index, node)
            placed += [(last, len(placed) + i, layer) for i, layer in enumerate(layers)]
        # A fused layer runs where its last node was: by then every input it reads exists.
        return [layer for *_, layer in sorted(placed, key=lambda item: item[:2])]

    def lower_node(self, index: int, node: _Node) -> tuple[list[Layer], int]:
        """The layers for the node at ``index`` and the index of the last node they cover."""
        op = node.op
        if op in ("Conv", "Gemm", "MatMul"):
            return self.matrix(index, node)
        if op in ("Add", "Sub", "Mul"):
            kind = {"Add": VecOp.ADD, "Sub": VecOp.SUB, "Mul": VecOp.MUL}[op]
            layer, last = self.elementwise(index, kind, [n for n in node.inputs if n],
                                           node.outputs[0])
            return [layer], last
        if op in _ACTIVATIONS:
            layer = ElementwiseLayer(VecOp.COPY, [node.inputs[0]], node.outputs[0],
                                     self.activation(node))
            return [layer], index
        if op == "BatchNormalization":
            layer, last = self.batchnorm(index, node)
            return [layer], last
        if op in ("MaxPool", "AveragePool", "GlobalAveragePool"):
            return [self.pool(node)], index
        if op == "ReduceMean":
            return self.spatial_mean(node), index
        if op in ("Flatten", "Reshape"):
            return [AliasLayer(node.inputs[0], node.outputs[0])], index
        raise CompileError(f"{op} ({node.name}) has no simaccel lowering")

    def elementwise(self, index: int, kind: VecOp, operands: list[str], out: str
                    ) -> tuple[ElementwiseLayer, int]:
        layer = ElementwiseLayer(kind, operands, out)
        last = index
        reader = self.sole_consumer(out)
        if reader is not None and self.nodes[reader].op in _ACTIVATIONS:
            layer.act = self.activation(self.nodes[reader])
            layer.out = self.nodes[reader].outputs[0]
            self.fused.add(reader)
            last = reader
        return layer, last

    def batchnorm(self, index: int, node: _Node) -> tuple[ElementwiseLayer, int]:
        shape = self.shapes[node.inputs[0]]
        scale, shift = self.bn_affine(node)
        broadcast = (len(scale),) + (1,) * (len(shape) - 2)
        operands = [node.inputs[0], self.derive("bn_scale", scale.reshape(broadcast)),
                    self.derive("bn_shift", shift.reshape(broadcast))]
        return self.elementwise(index, VecOp.FMA, operands, node.outputs[0])

    def bn_affine(self, node: _Node) -> tuple[np.ndarray, np.ndarray]:
        """BatchNormalization (inference) as ``x * scale + shift``, in float64."""
        gamma, beta, mean, var = (self.need_const(node, i).astype(np.float64) for i in (1, 2, 3, 4))
        scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
        return scale, beta - mean * scale

    def pool(self, node: _Node) -> PoolLayer:
        shape = self.shapes[node.inputs[0]]
        if len(shape) != 4:
            raise CompileError(f"{node.op} {node.name}: only 2-D pooling")
        if node.op == "GlobalAveragePool":
            return PoolLayer(PoolKind.AVG, node.inputs[0], node.outputs[0], shape[2:4], (1, 1),
                             (0, 0, 0, 0))
        attrs = node.attrs
        if any(d != 1 for d in attrs.get("dilations") or (1, 1)) or attrs.get("ceil_mode", 0):
            raise CompileError(f"{node.op} {node.name}: dilation and ceil_mode are not compiled")
        if node.op == "AveragePool" and attrs.get("count_include_pad", 0):
            raise CompileError(f"AveragePool {node.name}: count_include_pad is not compiled")
        if any(self.consumers.get(name) or name in self.outputs for name in node.outputs[1:]):
            raise CompileError(f"MaxPool {node.name}: the indices output is not compiled")
        kernel = tuple(int(k) for k in attrs["kernel_shape"])
        strides = tuple(int(s) for s in attrs.get("strides") or (1, 1))
        kind = PoolKind.MAX if node.op == "MaxPool" else PoolKind.AVG
        return PoolLayer(kind, node.inputs[0], node.outputs[0], kernel, strides,
                         _pads(attrs, shape[2:4], kernel, strides))

    def spatial_mean(self, node: _Node) -> list[Layer]:
        """ReduceMean over axes 2 and 3 of NCHW data is global average pooling. With
        keepdims=0 the pooled (N, C, 1, 1) result is the (N, C) output under another shape:
        an alias, no data moves."""
        x, out = node.inputs[0], node.outputs[0]
        shape = self.shapes[x]
        if len(node.inputs) > 1 and node.inputs[1]:
            axes = [int(a) for a in self.need_const(node, 1).reshape(-1)]
        else:
            axes = [int(a) for a in node.attrs.get("axes") or ()]
        try:
            reduced = reduced_axes(axes, len(shape), int(node.attrs.get("noop_with_empty_axes", 0)))
        except ValueError as exc:
            raise CompileError(f"ReduceMean {node.name}: {exc}") from exc
        if len(shape) != 4 or reduced != (2, 3):
            raise CompileError(f"ReduceMean {node.name}: only over axes 2 and 3 of 4-D data "
                               f"(global average pooling), not axes {axes} of rank {len(shape)}")
        if node.attrs.get("keepdims", 1):
            return [PoolLayer(PoolKind.AVG, x, out, shape[2:4], (1, 1), (0, 0, 0, 0))]
        pooled = f"{out}/simaccel.pooled"
        self.shapes[pooled] = (*shape[:2], 1, 1)
        return [PoolLayer(PoolKind.AVG, x, pooled, shape[2:4], (1, 1), (0, 0, 0, 0)),
                AliasLayer(pooled, out)]

    # --- matrix ops and what folds into them -----------------------------------------

    def matrix(self, index: int, node: _Node) -> tuple[list[Layer], int]:
        layer = self.conv(node) if node.op == "Conv" else self.matmul(node)
        if isinstance(layer, MatMulLayer) and self.odd_gemm_bias(node):
            # Gemm's C broadcasts in a way the drain cannot: add it in a layer of its own.
            c, out = node.inputs[2], node.outputs[0]
            layer.out = f"{node.name}/simaccel.gemm"
            self.shapes[layer.out] = self.shapes[out]
            add, last = self.elementwise(index, VecOp.ADD, [layer.out, c], out)
            return [layer, add], last
        epilogue = layer.epilogue
        axis = 1 if isinstance(layer, ConvLayer) else -1
        channels = self.shapes[layer.out][axis]
        last = index
        while (reader := self.sole_consumer(layer.out)) is not None:
            folded = self.fold(epilogue, self.nodes[reader], layer.out, axis, channels)
            if folded is None:
                break
            epilogue = folded
            layer.out = self.nodes[reader].outputs[0]
            self.fused.add(reader)
            last = reader
            if epilogue.act != NO_ACTIVATION:
                break  # nothing folds past the activation
        layer.epilogue = epilogue
        return [layer], last

    def fold(self, epilogue: Epilogue, node: _Node, value: str, axis: int, channels: int
             ) -> Epilogue | None:
        """``epilogue`` with ``node`` (which reads ``value``) folded in, or ``None``."""
        out_shape = self.shapes[value]
        scale = epilogue.scale if epilogue.scale is not None else np.ones(channels)
        shift = epilogue.shift if epilogue.shift is not None else np.zeros(channels)
        before_residual = epilogue.residual is None
        if node.op in _ACTIVATIONS and node.inputs[0] == value:
            return replace(epilogue, act=self.activation(node))
        if (node.op == "BatchNormalization" and before_residual
                and axis % len(out_shape) == 1):
            bn_scale, bn_shift = self.bn_affine(node)
            return replace(epilogue, scale=scale * bn_scale, shift=shift * bn_scale + bn_shift)
        if node.op not in ("Add", "Sub", "Mul") or len(node.inputs) != 2:
            return None
        other = node.inputs[1] if node.inputs[0] == value else node.inputs[0]
        if other == value:
            return None
        constant = self.const(other)
        vector = channel_vector(constant, out_shape, axis) if constant is not None else None
        if vector is not None and before_residual:
            if node.op == "Add":
                return replace(epilogue, shift=shift + vector)
            if node.op == "Sub" and node.inputs[0] == value:
                return replace(epilogue, shift=shift - vector)
            if node.op == "Mul":
                return replace(epilogue, scale=scale * vector, shift=shift * vector)
            return None
        if node.op == "Add" and before_residual and self.shapes[other] == out_shape:
            return replace(epilogue, residual=other)
        return None

    def conv(self, node: _Node) -> ConvLayer:
        attrs = node.attrs
        x_shape = self.shapes[node.inputs[0]]
        weight = self.need_const(node, 1)
        if len(x_shape) != 4 or weight.ndim != 4:
            raise CompileError(f"Conv {node.name}: only 2-D convolution")
        if any(d != 1 for d in attrs.get("dilations") or (1, 1)):
            raise CompileError(f"Conv {node.name}: dilation is not compiled")
        group = int(attrs.get("group", 1))
        depthwise = group != 1
        if (depthwise and not group == x_shape[1] == weight.shape[0]) or (
                weight.shape[1] != x_shape[1] // group):
            raise CompileError(f"Conv {node.name}: only group 1 or depthwise")
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        strides = tuple(int(s) for s in attrs.get("strides") or (1, 1))
        pads = _pads(attrs, x_shape[2:4], kernel, strides)
        epilogue = Epilogue()
        bias = self.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if len(node.inputs) > 2 and node.inputs[2] and bias is None:
            raise CompileError(f"Conv {node.name}: the bias must be a constant")
        if bias is not None:
            epilogue.shift = bias.astype(np.float64).reshape(-1)
        return ConvLayer(node.inputs[0], node.inputs[1], node.outputs[0], kernel, strides,
                         pads, depthwise, epilogue)

    def matmul(self, node: _Node) -> MatMulLayer:
        weight = self.need_const(node, 1)
        x_shape = self.shapes[node.inputs[0]]
        trans_b = False
        if node.op == "Gemm":
            attrs = node.attrs
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or (
                    attrs.get("beta", 1.0) != 1.0):
                raise CompileError(f"Gemm {node.name}: only transA 0, alpha 1, beta 1")
            trans_b = bool(attrs.get("transB", 0))
        elif len(x_shape) < 2 or weight.ndim < 2:
            raise CompileError(f"MatMul {node.name}: 1-D operands are not compiled")
        layer = MatMulLayer(node.inputs[0], node.inputs[1], node.outputs[0], trans_b)
        if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2]:
            # Gemm's C: a column bias folds into the shift, a full matrix is a residual
            # (anything else: see odd_gemm_bias).
            c = node.inputs[2]
            out_shape = self.shapes[node.outputs[0]]
            constant = self.const(c)
            vector = channel_vector(constant, out_shape, -1) if constant is not None else None
            if vector is not None:
                layer.epilogue.shift = vector
            elif self.shapes[c] == out_shape:
                layer.epilogue.residual = c
        return layer

    def odd_gemm_bias(self, node: _Node) -> bool:
        """Whether Gemm's C neither broadcasts along columns nor matches the output."""
        if node.op != "Gemm" or len(node.inputs) < 3 or not node.inputs[2]:
            return False
        c, out_shape = node.inputs[2], self.shapes[node.outputs[0]]
        constant = self.const(c)
        if constant is not None and channel_vector(constant, out_shape, -1) is not None:
            return False
        return self.shapes[c] != out_shape


def lower_region(region: Region) -> LoweredRegion:
    """The region's layers, in an order that respects every dependency."""
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    nodes = _flatten(region, shapes, dtypes)
    for name, constant in region.constants.items():
        shapes[name], dtypes[name] = constant.spec.shape, constant.spec.dtype
    lowering = _Lowering(region, nodes, shapes)
    layers = lowering.lower()
    dtypes.update(dict.fromkeys(lowering.derived, "float32"))
    return LoweredRegion(layers, shapes, dtypes, lowering.constants, lowering.derived,
                         [v.name for v in region.graph.inputs], lowering.outputs)
