"""The cell op set: parsing a cell graph and evaluating its ops with numpy.

Every value carries a leading batch axis (constants a batch axis of 1), and each op follows
ONNX semantics on the per-node shape behind it. The numpy reference runs cells with it node
by node; the compiler uses it to fold constants, to learn per-node shapes, and to evaluate the
vocabulary tables it hoists. Ops outside :data:`SUPPORTED_OPS` are refused with the node named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from byoc_sdk.recursive.cells import CellError

Array = np.ndarray

ELEMENTWISE_BINARY = ("Add", "Sub", "Mul", "Div")
ELEMENTWISE_UNARY = ("Sigmoid", "Tanh", "Relu", "Neg", "Identity")
LAYOUT_OPS = ("Concat", "Split", "Slice", "Reshape", "Squeeze", "Unsqueeze")
SUPPORTED_OPS = frozenset(("MatMul", "Gemm", *ELEMENTWISE_BINARY, *ELEMENTWISE_UNARY,
                           *LAYOUT_OPS))


@dataclass(frozen=True)
class Step:
    """One node of a cell: op type, input and output value names, attributes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class CellGraph:
    """A cell graph read with onnx_ir: inputs, constants, steps in order, outputs."""

    name: str
    inputs: tuple[str, ...]
    constants: Mapping[str, Array]
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]

    @classmethod
    def parse(cls, model: onnx.ModelProto, where: str) -> CellGraph:
        """Read ``model``; raise :class:`CellError` naming the node of an unsupported op."""
        graph = ir.from_proto(model).graph
        constants = {name: np.asarray(value.const_value.numpy())
                     for name, value in graph.initializers.items()}
        steps = []
        graph.sort()  # in place: topological order, whatever order the file had
        for node in graph:
            if node.domain not in ("", "ai.onnx"):
                raise CellError(f"{where}: node {node.name} is in domain {node.domain!r}; "
                                "cells use standard ONNX ops")
            attrs = {key: _attr_value(attr) for key, attr in node.attributes.items()}
            if node.op_type == "Constant":
                constants[node.outputs[0].name] = np.asarray(attrs["value"])
                continue
            if node.op_type not in SUPPORTED_OPS:
                raise CellError(f"{where}: node {node.name} is a {node.op_type}, which the "
                                f"recursive compiler does not take (it takes "
                                f"{', '.join(sorted(SUPPORTED_OPS))})")
            steps.append(Step(node.name or node.op_type, node.op_type,
                              tuple(v.name if v is not None else "" for v in node.inputs),
                              tuple(v.name for v in node.outputs), attrs))
        inputs = tuple(v.name for v in graph.inputs if v.name not in constants)
        return cls(where, inputs, constants, tuple(steps), tuple(v.name for v in graph.outputs))

    def evaluate(self, inputs: Mapping[str, Array], dtype: type = np.float64) -> list[Array]:
        """The cell's outputs for a batch of nodes (``inputs`` carry the batch axis)."""
        values: dict[str, Array] = {k: _batched_const(v, dtype) for k, v in self.constants.items()}
        values.update(inputs)
        for step in self.steps:
            args = [values[name] if name else None for name in step.inputs]
            for name, result in zip(step.outputs, run_step(step, args, self.name), strict=True):
                values[name] = result
        return [values[name] for name in self.outputs]


def _batched_const(value: Array, dtype: type) -> Array:
    array = value.astype(dtype) if value.dtype.kind == "f" else value
    return array[None]


def _attr_value(attr: ir.Attr) -> Any:
    value = attr.value
    if isinstance(value, ir.TensorProtocol):
        return value.numpy()
    return value


def run_step(step: Step, args: Sequence[Array | None], where: str) -> list[Array]:
    """Evaluate one step on batched arrays."""
    try:
        return _IMPLEMENTATIONS[step.op](args, step.attrs, len(step.outputs))
    except CellError:
        raise
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise CellError(f"{where}: node {step.name} ({step.op}) failed on per-node shapes "
                        f"{[None if a is None else a.shape[1:] for a in args]}: {exc}") from exc


def const_arg(array: Array | None, what: str) -> np.ndarray:
    """A constant operand (shape, axes, starts...) without its batch axis."""
    if array is None:
        raise CellError(f"{what} is missing")
    if array.shape[0] != 1:
        raise CellError(f"{what} must be a constant, not computed per node")
    return array[0]


def per_node_axis(axis: int, rank: int) -> int:
    """An ONNX axis of a per-node tensor, made non-negative."""
    if not -rank <= axis < max(rank, 1):
        raise CellError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def align(*arrays: Array) -> list[Array]:
    """Insert unit axes after the batch axis so per-node ranks agree (numpy broadcasting)."""
    rank = max(a.ndim for a in arrays)
    return [a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:]) for a in arrays]


def _matmul(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
    a, b = args[0], args[1]
    ra, rb = a.ndim - 1, b.ndim - 1
    if not (1 <= ra <= 2 and 1 <= rb <= 2):
        raise CellError(f"MatMul takes per-node vectors and matrices, got ranks {ra} and {rb}")
    left = a[:, None, :] if ra == 1 else a
    right = b[:, :, None] if rb == 1 else b
    out = np.matmul(left, right)
    if rb == 1:
        out = out[..., 0]
    if ra == 1:
        out = out[:, 0]
    return [out]


def _gemm(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
    a, b = args[0], args[1]
    if a.ndim != 3 or b.ndim != 3:
        raise CellError("Gemm takes per-node matrices")
    if attrs.get("transA", 0):
        a = a.transpose(0, 2, 1)
    if attrs.get("transB", 0):
        b = b.transpose(0, 2, 1)
    out = attrs.get("alpha", 1.0) * np.matmul(a, b)
    if len(args) > 2 and args[2] is not None:
        out = out + attrs.get("beta", 1.0) * align(out, args[2])[1]
    return [out]


def _binary(fn: Callable[[Array, Array], Array]) -> Callable:
    def run(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
        return [fn(*align(args[0], args[1]))]
    return run


def _unary(fn: Callable[[Array], Array]) -> Callable:
    def run(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
        return [fn(args[0])]
    return run


def _concat(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
    rank = args[0].ndim - 1
    axis = per_node_axis(int(attrs["axis"]), rank)
    batch = max(a.shape[0] for a in args)
    parts = [np.broadcast_to(a, (batch, *a.shape[1:])) for a in args]
    return [np.concatenate(parts, axis=axis + 1)]


def split_sizes(args: Sequence[Array | None], attrs: Mapping[str, Any], outputs: int,
                length: int) -> list[int]:
    """The sizes a Split cuts its axis into (from the ``split`` input or equal parts)."""
    if len(args) > 1 and args[1] is not None:
        return [int(s) for s in const_arg(args[1], "Split's split input")]
    count = int(attrs.get("num_outputs", outputs))
    if length % count:
        raise CellError(f"Split of {length} into {count} equal parts")
    return [length // count] * count


def _split(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
    data = args[0]
    axis = per_node_axis(int(attrs.get("axis", 0)), data.ndim - 1)
    sizes = split_sizes(args, attrs, n_out, data.shape[axis + 1])
    return np.split(data, np.cumsum(sizes)[:-1], axis=axis + 1)


def slice_ranges(args: Sequence[Array | None], shape: Sequence[int]) -> list[tuple[int, int, int]]:
    """Per axis of the per-node ``shape``: (axis, start, stop) of a step-1 Slice."""
    starts = const_arg(args[1], "Slice's starts")
    ends = const_arg(args[2], "Slice's ends")
    axes = (const_arg(args[3], "Slice's axes") if len(args) > 3 and args[3] is not None
            else np.arange(len(starts)))
    steps = (const_arg(args[4], "Slice's steps") if len(args) > 4 and args[4] is not None
             else np.ones(len(starts), dtype=np.int64))
    if (np.asarray(steps) != 1).any():
        raise CellError("Slice with steps other than 1 is not supported")
    ranges = []
    for start, end, axis in zip(starts, ends, axes, strict=True):
        axis = per_node_axis(int(axis), len(shape))
        begin, stop, _ = slice(int(start), int(end)).indices(shape[axis])
        ranges.append((axis, begin, max(begin, stop)))
    return ranges


def _slice(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
    data = args[0]
    index = [slice(None)] * data.ndim
    for axis, begin, stop in slice_ranges(args, data.shape[1:]):
        index[axis + 1] = slice(begin, stop)
    return [data[tuple(index)]]


def reshape_target(args: Sequence[Array | None], shape: Sequence[int]) -> tuple[int, ...]:
    """The per-node shape a Reshape produces (ONNX's 0 and -1 resolved)."""
    target = [int(d) for d in const_arg(args[1], "Reshape's shape")]
    target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    total = int(np.prod(shape, dtype=np.int64))
    if target.count(-1) == 1:
        known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
        target[target.index(-1)] = total // max(known, 1)
    if int(np.prod(target, dtype=np.int64)) != total:
        raise CellError(f"cannot reshape {tuple(shape)} to {tuple(target)}")
    return tuple(target)


def _reshape(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
    data = args[0]
    return [data.reshape(data.shape[:1] + reshape_target(args, data.shape[1:]))]


def squeeze_shape(op: str, args: Sequence[Array | None], shape: Sequence[int]) -> tuple[int, ...]:
    """The per-node shape after a Squeeze or Unsqueeze."""
    axes = [int(a) for a in const_arg(args[1], f"{op}'s axes")]
    if op == "Squeeze":
        drop = {per_node_axis(a, len(shape)) for a in axes}
        if any(shape[a] != 1 for a in drop):
            raise CellError(f"Squeeze of a dimension that is not 1 in {tuple(shape)}")
        return tuple(d for i, d in enumerate(shape) if i not in drop)
    rank = len(shape) + len(axes)
    inserted = {per_node_axis(a, rank) for a in axes}
    dims = iter(shape)
    return tuple(1 if i in inserted else next(dims) for i in range(rank))


def _squeeze_like(op: str) -> Callable:
    def run(args: Sequence[Array], attrs: Mapping[str, Any], n_out: int = 1) -> list[Array]:
        data = args[0]
        return [data.reshape(data.shape[:1] + squeeze_shape(op, args, data.shape[1:]))]
    return run


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


_IMPLEMENTATIONS: dict[str, Callable[..., list[Array]]] = {
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Sigmoid": _unary(_sigmoid),
    "Tanh": _unary(np.tanh),
    "Relu": _unary(lambda x: np.maximum(x, 0)),
    "Neg": _unary(np.negative),
    "Identity": _unary(lambda x: x),
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Reshape": _reshape,
    "Squeeze": _squeeze_like("Squeeze"),
    "Unsqueeze": _squeeze_like("Unsqueeze"),
}

