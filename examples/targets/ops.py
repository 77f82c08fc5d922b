"""The codegen half the example targets share: what they accept, and a region as a list.

:func:`declare_support` tells a :class:`~byoc_sdk.Target` which nodes it may claim;
:func:`lower` turns a :class:`~byoc_sdk.Region` the partitioner gave it into a
:class:`Program` — a flat list of ops with every shape resolved and composite calls
expanded — which each example's codegen then prints in its own artifact format.

The rules are deliberately narrow, so that the code generators stay short:

* float32 only, and every shape static;
* unary elementwise ops: Relu, Sigmoid, Tanh, Abs, Neg, Exp;
* binary elementwise ops (Add, Sub, Mul, Div, Max, Min) on two inputs, whose shapes are
  equal or where one side is a *constant* scalar or row vector (a bias);
* MatMul of any input by a constant 2-D weight;
* the composite ``matmul_add``: ``Add(MatMul(x, const w), const b)``, a dense layer.

A codegen must never emit wrong code for a region it was handed: :func:`lower` checks
again what the support rules checked and raises :class:`NotImplementedError` on
anything else. byoc then runs that region on the host and says why in the build report.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_ir as ir

from byoc_sdk import (
    CheckResult,
    Constant,
    Match,
    NodeInfo,
    Region,
    Target,
    TensorSpec,
    any_input,
    const,
    op,
)

from .kernels import BINARY, MATMUL, MATMUL_ADD, UNARY

FLOAT32 = frozenset({"float32"})
UNARY_OPS: tuple[str, ...] = tuple(UNARY)
BINARY_OPS: tuple[str, ...] = tuple(BINARY)
ELEMENTWISE_OPS = frozenset(UNARY_OPS + BINARY_OPS)

Shape = tuple[int, ...]
#: How an operand of a binary op lines up with the op's output.
Broadcast = Literal["full", "scalar", "row"]


# --- support: what the targets claim ------------------------------------------------


def declare_support(target: Target) -> Target:
    """Declare the example op set and the ``matmul_add`` pattern on ``target``."""
    target.support(*UNARY_OPS, dtypes=FLOAT32, static_shapes=True)
    target.support(*BINARY_OPS, dtypes=FLOAT32, static_shapes=True,
                   note="equal shapes, or a constant scalar / row vector")(_binary_check)
    target.support(MATMUL, dtypes=FLOAT32, static_shapes=True, const_inputs=(1,),
                   note="constant 2-D weight")(_matmul_check)

    def dense_check(match: Match) -> CheckResult:
        # A composite is only as good as its parts: accept it when the target would
        # accept each of its ops on its own (dtypes, static shapes, broadcasting).
        for name in ("matmul", "add"):
            reason = target.check(match.info(name))
            if reason is not None:
                return reason
        return True

    target.pattern(
        MATMUL_ADD,
        op("Add", op(MATMUL, any_input("x"), const("w"), name="matmul"), const("b"),
           name="add"),
        check=dense_check,
        note="x @ w + b, w and b constants",
    )
    return target


def broadcast_kind(shape: Shape, out: Shape) -> Broadcast | None:
    """How an operand of ``shape`` feeds an output of shape ``out``, or ``None`` if the
    targets do not support it (numpy broadcasting is far more general)."""
    if shape == out:
        return "full"
    if len(shape) > len(out):
        return None
    if math.prod(shape) == 1:
        return "scalar"
    if out and shape[-1] == out[-1] and all(d == 1 for d in shape[:-1]):
        return "row"
    return None


def _static(shape: Iterable[int | str | None] | None) -> Shape:
    # The rules are declared with static_shapes=True, which byoc checks before calling
    # a check function: every dim is an int by the time one runs.
    return tuple(int(d) for d in shape or ())  # type: ignore[arg-type]


def _binary_check(node: NodeInfo) -> CheckResult:
    if len(node.inputs) != 2:  # Max and Min are variadic in ONNX
        return f"{node.op_type} is supported on two inputs only"
    out = _static(node.outputs[0].shape)
    kinds = []
    for tensor in node.inputs:
        if tensor is None:
            return f"{node.op_type} with an omitted input"
        kind = broadcast_kind(_static(tensor.shape), out)
        if kind is None:
            return (f"{node.op_type} broadcasting {tensor.shape} to {out} "
                    "(only equal shapes, a scalar or a row vector)")
        if kind != "full" and not tensor.is_constant:
            return f"{node.op_type} broadcasts a run-time input (only constants broadcast)"
        kinds.append(kind)
    if "full" not in kinds:
        return f"{node.op_type} where neither input has the output's shape"
    return True


def _matmul_check(node: NodeInfo) -> CheckResult:
    x, w = node.input(0), node.input(1)
    if x is None or w is None or w.rank != 2 or (x.rank or 0) < 1:
        return "MatMul needs a 2-D constant weight and an input of rank >= 1"
    if _static(x.shape)[-1] != _static(w.shape)[0]:
        return "MatMul with mismatched inner dimensions"
    return True


# --- lowering: a region as a flat list of ops ---------------------------------------


@dataclass(frozen=True)
class OpStep:
    """One op of a lowered region: ``output = op(*inputs)``, by value name."""

    op: str  # an op of kernels.UNARY / BINARY, MatMul, or matmul_add if kept whole
    inputs: tuple[str, ...]
    output: str
    shape: Shape


@dataclass
class Program:
    """A region ready to print: its ops in execution order, every value's shape known.

    ``constants`` are the region's bound constants the ops read, in first-use order:
    the order an artifact lists them, so the order the module or runtime receives them.
    """

    region: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    constants: list[Constant] = field(default_factory=list)
    steps: list[OpStep] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def constant_names(self) -> list[str]:
        return [c.name for c in self.constants]

    def uses(self) -> dict[str, list[int]]:
        """For each value, the indices of the steps that read it."""
        readers: dict[str, list[int]] = {}
        for index, step in enumerate(self.steps):
            for name in step.inputs:
                readers.setdefault(name, []).append(index)
        return readers


def lower(region: Region, *, keep_composites: bool = False) -> Program:
    """Flatten ``region`` into a :class:`Program`.

    Composite calls are expanded into their bodies' ops (the region's graph calls a
    function; :meth:`Region.composite` returns it), unless ``keep_composites`` is set,
    for a backend with a fused op of its own. Raises :class:`NotImplementedError` for
    anything outside the example op set.
    """
    for spec in (*region.inputs, *region.outputs, *(c.spec for c in region.constants.values())):
        if spec.dtype != "float32":
            raise NotImplementedError(f"value {spec.name} is {spec.dtype}; only float32 runs")
    program = Program(region.name, region.inputs, region.outputs)
    program.shapes.update({spec.name: spec.shape for spec in region.inputs})
    _Lowering(region, program, keep_composites).walk(region.graph, {})
    produced = {step.output for step in program.steps}
    for spec in region.outputs:
        if spec.name not in produced:
            raise NotImplementedError(f"output {spec.name} is not computed by an op")
        if program.shapes.get(spec.name) != spec.shape:
            raise NotImplementedError(
                f"output {spec.name}: computed shape {program.shapes.get(spec.name)}, "
                f"declared {spec.shape}")
    return program


class _Lowering:
    def __init__(self, region: Region, program: Program, keep_composites: bool) -> None:
        self.region = region
        self.program = program
        self.keep_composites = keep_composites
        self.fresh = itertools.count()

    def walk(self, nodes: Iterable[ir.Node], rename: dict[str, str]) -> None:
        """Emit ``nodes``; ``rename`` maps value names of a composite body to the
        region's names (empty at the top level)."""
        for node in nodes:
            if any(value is None for value in node.inputs):
                raise NotImplementedError(f"{node.op_type} with an omitted input")
            inputs = tuple(rename.get(v.name, v.name) for v in node.inputs)
            if len(node.outputs) != 1:
                raise NotImplementedError(f"{node.op_type} with {len(node.outputs)} outputs")
            if not rename and self.region.constant(node.outputs[0]) is not None:
                continue  # a bound constant: it reaches the code as a constant, not an op
            body = self.region.composite(node)
            if body is not None and not (self.keep_composites and
                                         self.region.composite_pattern(node) == MATMUL_ADD):
                # The body's formal inputs and outputs are the call's actual values; its
                # inner values get fresh names so two calls never collide.
                inner = {f.name: a for f, a in zip(body.inputs, inputs, strict=True)}
                inner.update({f.name: self.name_of(a, rename)
                              for f, a in zip(body.outputs, node.outputs, strict=True)})
                for inner_node in body:
                    for value in inner_node.outputs:
                        inner.setdefault(value.name, f"{node.name}/{value.name}#{next(self.fresh)}")
                self.walk(body, inner)
                continue
            kind = MATMUL_ADD if body is not None else node.op_type
            if body is None and node.domain not in ("", "ai.onnx"):
                raise NotImplementedError(f"op {node.domain}::{node.op_type}")
            self.emit(kind, inputs, self.name_of(node.outputs[0], rename))

    @staticmethod
    def name_of(value: ir.Value, rename: Mapping[str, str]) -> str:
        return rename.get(value.name, value.name)

    def read(self, name: str) -> Shape:
        """The shape of a value an op reads, noting the constants as they are first read."""
        program = self.program
        if name not in program.shapes:
            constant = self.region.constants.get(name)
            if constant is None:
                raise NotImplementedError(f"value {name} is read before it is computed")
            program.constants.append(constant)
            program.shapes[name] = constant.spec.shape
        return program.shapes[name]

    def emit(self, kind: str, inputs: tuple[str, ...], output: str) -> None:
        shapes = [self.read(name) for name in inputs]
        if kind in UNARY and len(inputs) == 1:
            shape = shapes[0]
        elif kind in BINARY and len(inputs) == 2:
            shape = self.broadcast(kind, inputs, shapes)
        elif kind == MATMUL and len(inputs) == 2:
            shape = self.matmul(inputs, shapes)
        elif kind == MATMUL_ADD and len(inputs) == 3:
            shape = self.matmul(inputs[:2], shapes[:2])
            # The bias must broadcast onto the product as a plain Add's would.
            self.broadcast("Add", (output, inputs[2]), [shape, shapes[2]])
        else:
            raise NotImplementedError(f"op {kind} with {len(inputs)} inputs")
        self.program.shapes[output] = shape
        self.program.steps.append(OpStep(kind, inputs, output, shape))

    def broadcast(self, kind: str, inputs: tuple[str, ...], shapes: list[Shape]) -> Shape:
        try:
            out = tuple(np.broadcast_shapes(*shapes))
        except ValueError as exc:
            raise NotImplementedError(f"{kind} of shapes {shapes}: {exc}") from None
        for name, shape in zip(inputs, shapes, strict=True):
            how = broadcast_kind(shape, out)
            if how is None or (how != "full" and name not in self.region.constants):
                raise NotImplementedError(f"{kind} broadcasting {name} {shape} to {out}")
        if out not in shapes:
            raise NotImplementedError(f"{kind} where neither input has the output's shape")
        return out

    def matmul(self, inputs: tuple[str, ...], shapes: list[Shape]) -> Shape:
        (x, w), (x_shape, w_shape) = inputs, shapes
        if w not in self.region.constants or len(w_shape) != 2 or not x_shape \
                or x_shape[-1] != w_shape[0]:
            raise NotImplementedError(f"MatMul of {x} {x_shape} by {w} {w_shape}")
        return (*x_shape[:-1], w_shape[1])
