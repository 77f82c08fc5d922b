"""Rough floating-point operation counts per node, from static shapes.

Used to report how much of a model's work a partition offloads. Multiply-accumulate
ops count 2 per MAC; everything else counts one operation per output element. Nodes
with unknown shapes count 0 rather than guess.
"""

from __future__ import annotations

import math

import onnx_ir as ir

#: Ops counted by multiply-accumulates; every other op counts its output elements.
_MAC_OPS = frozenset(
    {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "MatMul", "MatMulInteger", "Gemm"}
)


def _numel(value: ir.Value | None) -> int | None:
    if value is None:
        return None
    shape = value.shape
    if shape is None or not shape.is_static():
        return None
    return math.prod(shape.dims)


def _dim(value: ir.Value | None, axis: int) -> int | None:
    if value is None or value.shape is None or not -len(value.shape) <= axis < len(value.shape):
        return None
    dim = value.shape.dims[axis]
    return dim if isinstance(dim, int) else None


def node_flops(node: ir.Node) -> int:
    """Estimated operations of one node (0 when shapes are unknown)."""
    inputs = node.inputs
    out = _numel(node.outputs[0]) if node.outputs else None
    if out is None:
        return 0
    op_type = node.op_type
    if op_type not in _MAC_OPS:
        return out
    weight = inputs[1] if len(inputs) > 1 else None
    if op_type in ("Conv", "ConvInteger", "QLinearConv"):
        w = weight if op_type != "QLinearConv" else inputs[3]
        kernel = _numel(w)
        out_channels = _dim(w, 0)
        if kernel is None or not out_channels:
            return out
        return 2 * out * (kernel // out_channels)
    if op_type == "ConvTranspose":
        kernel, x_numel, in_channels = _numel(weight), _numel(inputs[0]), _dim(weight, 0)
        if kernel is None or x_numel is None or not in_channels:
            return out
        return 2 * x_numel * (kernel // in_channels)
    if op_type in ("MatMul", "MatMulInteger"):
        k = _dim(inputs[0], -1)
        return 2 * out * k if k else out
    # Gemm: the one multiply-accumulate op left.
    trans_a = node.attributes.get_int("transA", 0)
    k = _dim(inputs[0], 0 if trans_a else -1)
    return 2 * out * k if k else out

