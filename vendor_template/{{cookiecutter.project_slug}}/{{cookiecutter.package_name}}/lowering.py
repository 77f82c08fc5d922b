"""A region as a flat list of steps: where every code generator of this backend starts.

:func:`lower` walks the region the partitioner handed over, resolves every shape,
expands nothing it does not know, and checks again what the target's support rules
promised — a codegen must never emit wrong code, so anything unexpected raises
``NotImplementedError``: byoc then runs that region on the host and reports why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_ir as ir
from byoc_sdk import Region
from byoc_sdk.node_info import dtype_name

from .about import DENSE_RELU

UNARY = ("Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp")
BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")
MATMUL = "MatMul"
#: The largest rank the device (and the binary format) handles.
MAX_RANK = 6

Shape = tuple[int, ...]
#: How an operand of a binary op lines up with the op's output.
Broadcast = Literal["full", "scalar", "row"]


@dataclass(frozen=True)
class Step:
    """``output = op(*inputs)``, values by name; ``shape`` is the output's."""

    op: str
    inputs: tuple[str, ...]
    output: str
    shape: Shape


@dataclass
class Program:
    """A region ready to print. ``constants`` are listed in first-use order: the order
    the artifact names them, so the order the runtime or module receives them."""

    region: str
    inputs: list[str]
    outputs: list[str]
    constants: list[str] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def size(self, name: str) -> int:
        return math.prod(self.shapes[name])


def broadcast_kind(shape: Shape, out: Shape) -> Broadcast | None:
    """How an operand of ``shape`` feeds an output of shape ``out`` (``None``: not a way
    this device broadcasts)."""
    if shape == out:
        return "full"
    if len(shape) > len(out):
        return None
    if math.prod(shape) == 1:
        return "scalar"
    if out and shape[-1] == out[-1] and all(d == 1 for d in shape[:-1]):
        return "row"
    return None


def lower(region: Region) -> Program:
    """The steps of ``region``; raises ``NotImplementedError`` for anything else."""
    for spec in (*region.inputs, *region.outputs, *(c.spec for c in region.constants.values())):
        _float32(spec.dtype, spec.name)
    program = Program(region.name, [s.name for s in region.inputs],
                      [s.name for s in region.outputs])
    program.shapes.update({s.name: s.shape for s in region.inputs})
    for node in region.graph:
        if region.constant(node.outputs[0]) is not None:
            continue  # a bound constant: it reaches the code as a constant, not as a step
        _lower_node(region, program, node)
    for spec in region.outputs:
        if program.shapes.get(spec.name) != spec.shape:
            raise NotImplementedError(f"output {spec.name} is not computed as {spec.shape}")
    return program


def _float32(dtype: str | None, name: str) -> None:
    if dtype != "float32":
        raise NotImplementedError(f"value {name} is {dtype}; the device runs float32 only")


def _lower_node(region: Region, program: Program, node: ir.Node) -> None:
    where = f"node {node.name!r}"  # the report names the region; this names the node
    if len(node.outputs) != 1 or any(v is None for v in node.inputs):
        raise NotImplementedError(f"{where}: {node.op_type} with omitted inputs or several "
                                  "outputs")
    output = node.outputs[0]
    _float32(dtype_name(output.dtype), output.name)
    inputs = tuple(v.name for v in node.inputs)
    body = region.composite(node)
    if body is not None:
        if region.composite_pattern(node) != DENSE_RELU:
            raise NotImplementedError(f"{where}: composite {region.composite_pattern(node)}")
        op, inputs = DENSE_RELU, _dense_operands(body, inputs)
    elif node.domain in ("", "ai.onnx") and node.op_type in (*UNARY, *BINARY, MATMUL):
        op = node.op_type
    else:
        raise NotImplementedError(f"{where}: op {node.domain or 'ai.onnx'}::{node.op_type}")
    shapes = [_read(region, program, name) for name in inputs]
    shape = _shape_of(region, op, inputs, shapes)
    if len(shape) > MAX_RANK:
        raise NotImplementedError(f"rank {len(shape)} is above the device's {MAX_RANK}")
    program.shapes[output.name] = shape
    program.steps.append(Step(op, inputs, output.name, shape))


def _dense_operands(body: ir.Function, actual: tuple[str, ...]) -> tuple[str, str, str]:
    """(x, w, b) of a matmul_add_relu call, found through its body's nodes."""
    formal = {v.name: name for v, name in zip(body.inputs, actual, strict=True)}
    ops = {n.op_type: n for n in body}
    matmul, add = ops.get(MATMUL), ops.get("Add")
    if matmul is None or add is None or len(ops) != 3:
        raise NotImplementedError("matmul_add_relu body is not MatMul, Add, Relu")
    x, w = (formal[v.name] for v in matmul.inputs)
    b = next(formal[v.name] for v in add.inputs if v.name in formal)
    return x, w, b


def _read(region: Region, program: Program, name: str) -> Shape:
    """The shape of a value a step reads, noting constants as they are first read."""
    if name not in program.shapes:
        constant = region.constants.get(name)
        if constant is None:
            raise NotImplementedError(f"value {name} is read before it is computed")
        program.constants.append(name)
        program.shapes[name] = constant.spec.shape
    return program.shapes[name]


def _shape_of(region: Region, op: str, inputs: tuple[str, ...], shapes: list[Shape]) -> Shape:
    """The output shape of one step, after checking the step is one the device runs."""
    if op in UNARY:
        return shapes[0]
    if op in BINARY:
        return _broadcast(region, op, inputs, shapes)
    x, w = shapes[0], shapes[1]
    if inputs[1] not in region.constants or len(w) != 2 or not x or x[-1] != w[0]:
        raise NotImplementedError(f"MatMul of {x} by {w} (needs a constant 2-D weight)")
    out = (*x[:-1], w[1])
    if op == DENSE_RELU:
        _broadcast(region, "Add", (inputs[0], inputs[2]), [out, shapes[2]], bias=True)
    return out


def _broadcast(region: Region, op: str, inputs: tuple[str, ...], shapes: list[Shape],
               bias: bool = False) -> Shape:
    try:
        out = tuple(np.broadcast_shapes(*shapes))
    except ValueError as exc:
        raise NotImplementedError(f"{op} of shapes {shapes}: {exc}") from None
    for index, (name, shape) in enumerate(zip(inputs, shapes, strict=True)):
        how = broadcast_kind(shape, out)
        constant = name in region.constants or (bias and index == 0)
        if how is None or (how != "full" and not constant):
            raise NotImplementedError(f"{op} broadcasting {name} {shape} to {out}")
    if out not in shapes:
        raise NotImplementedError(f"{op} where neither operand has the output's shape")
    return out
