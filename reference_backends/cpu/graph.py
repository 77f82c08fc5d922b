"""The region as the generator sees it: tensors with static shapes, and ops in order.

:func:`read_region` turns a :class:`~byoc_sdk.codegen.Region` into a flat list of
:class:`Op` over :class:`Tensor` objects: composite calls are inlined (their bodies are
ordinary ONNX nodes, and fusing them is the planner's job, the same as for ops the
partitioner left unfused), bound constants carry their values, and ops whose result is
just a view of their input (Reshape, Flatten, Squeeze, Unsqueeze, Cast to float32 of
float32) are marked as aliases so that no code is generated for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from byoc_sdk.codegen import Region
from byoc_sdk.node_info import dtype_name

#: Ops that only reinterpret the shape of their first input.
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})

#: Storage order of each layout a 4-D activation may have, as the logical (NCHW) axes
#: from the outermost to the innermost in memory.
LAYOUT_AXES = {"NCHW": (0, 1, 2, 3), "NHWC": (0, 2, 3, 1)}


class UnsupportedError(ValueError):
    """The region holds something the generator cannot compile (the build falls back)."""


@dataclass(eq=False)
class Tensor:
    """One value of the region: static shape, numpy dtype name, and where it lives."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    value: np.ndarray | None = None
    producer: Op | None = None
    consumers: list[Op] = field(default_factory=list)
    input_index: int | None = None
    output_index: int | None = None
    #: The tensor whose storage this one shares (set for views such as Reshape; for a
    #: view of a constant, the constant whose data it is).
    alias_of: Tensor | None = None
    #: A value derived at build time (a folded bias, say), not a region constant: the
    #: generated source spells it out instead of receiving it in ``_init``.
    embedded: bool = False
    #: How a 4-D tensor is stored (see ``LAYOUT_AXES``); ``shape`` stays the logical
    #: NCHW shape whatever the layout, so only index computations look at this.
    layout: str = "NCHW"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_const(self) -> bool:
        return self.value is not None

    @classmethod
    def derived(cls, name: str, value: np.ndarray) -> Tensor:
        """A small build-time value the source embeds (see ``embedded``)."""
        value = np.ascontiguousarray(value)
        return cls(name, tuple(value.shape), value.dtype.name, value=value, embedded=True)

    @property
    def is_scalar_const(self) -> bool:
        """A constant of one element: generated code spells it as a literal."""
        return self.value is not None and self.value.size == 1

    @property
    def storage_axes(self) -> tuple[int, ...] | None:
        """The logical axes in storage order, ``None`` when stored row-major as shaped."""
        return None if self.layout == "NCHW" else LAYOUT_AXES[self.layout]

    def root(self) -> Tensor:
        """The tensor that owns this one's storage (itself unless it is a view)."""
        tensor = self
        while tensor.alias_of is not None:
            tensor = tensor.alias_of
        return tensor

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.dtype}{self.shape})"


@dataclass(eq=False)
class Op:
    """One ONNX node of the region (composite bodies inlined)."""

    name: str
    op_type: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    attrs: dict[str, Any]
    opset: int

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def input(self, index: int) -> Tensor | None:
        return self.inputs[index] if index < len(self.inputs) else None

    @property
    def output(self) -> Tensor:
        return self.outputs[0]

    def const_input(self, index: int) -> np.ndarray | None:
        """The build-time value of input ``index``, ``None`` when absent or computed."""
        tensor = self.input(index)
        return None if tensor is None else tensor.value

    def __repr__(self) -> str:
        return f"Op({self.op_type} {self.name!r})"


@dataclass
class RegionGraph:
    """The flattened region: ops in a valid execution order, inputs and outputs."""

    ops: list[Op]
    inputs: list[Tensor]
    outputs: list[Tensor]


def read_region(region: Region) -> RegionGraph:
    """Flatten ``region`` into tensors and ops, inlining composite calls."""
    opset = _default_opset(region.model)
    tensors: dict[ir.Value, Tensor] = {}
    ops: list[Op] = []

    def tensor_of(value: ir.Value) -> Tensor:
        found = tensors.get(value)
        if found is None:
            found = Tensor(value.name or f"v{len(tensors)}", _static_shape(value),
                           dtype_name(value.dtype) or "float32")
            tensors[value] = found
        return found

    inputs = [tensor_of(v) for v in region.function.inputs]
    for index, tensor in enumerate(inputs):
        tensor.input_index = index
    names = _UniqueNames()
    for node in region.graph:
        function = region.composite(node)
        if function is None:
            ops.extend(_lower_node(node, tensor_of, opset, names(node.name or node.op_type),
                                   region))
            continue
        members = (node.metadata_props.get("byoc.members") or "").split(",")
        inner_nodes = [n for n in function if n.op_type != "Constant"]
        if len(members) != len(inner_nodes):
            members = [f"{node.name}/{n.name or n.op_type}" for n in inner_nodes]
        member_name = dict(zip(map(id, inner_nodes), members, strict=True))
        scope: dict[ir.Value, Tensor] = {}
        for inner, outer in zip(function.inputs, node.inputs, strict=True):
            if outer is not None:
                scope[inner] = tensor_of(outer)
        for inner, outer in zip(function.outputs, node.outputs, strict=True):
            scope[inner] = tensor_of(outer)

        def scoped(value: ir.Value, _scope=scope, _prefix=node.name) -> Tensor:
            if value not in _scope:
                _scope[value] = Tensor(f"{_prefix}/{value.name}", _static_shape(value),
                                       dtype_name(value.dtype) or "float32")
            return _scope[value]

        for inner in function:
            name = names(member_name.get(id(inner), inner.name or inner.op_type))
            ops.extend(_lower_node(inner, scoped, opset, name, region))
    outputs = [tensor_of(v) for v in region.function.outputs]
    for index, tensor in enumerate(outputs):
        if tensor.output_index is not None:
            raise UnsupportedError(f"value {tensor.name!r} is two outputs of the region")
        tensor.output_index = index
    for op in ops:
        for tensor in op.inputs:
            if tensor is not None:
                tensor.consumers.append(op)
        for tensor in op.outputs:
            tensor.producer = op
    for op in ops:
        _mark_view(op)
    return RegionGraph(ops, inputs, outputs)


class _UniqueNames:
    """Node names made unique (a shared composite body repeats its members' names)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, name: str) -> str:
        unique, number = name, 1
        while unique in self.seen:
            number += 1
            unique = f"{name}#{number}"
        self.seen.add(unique)
        return unique


def _lower_node(node: ir.Node, tensor_of, opset: int, name: str, region: Region) -> list[Op]:
    """The node as an :class:`Op`, or nothing for a Constant (whose value is recorded)."""
    if node.op_type == "Constant" and node.domain == "":
        tensor = tensor_of(node.outputs[0])
        tensor.value = _constant_value(node, region)
        tensor.shape = tuple(tensor.value.shape)
        tensor.dtype = tensor.value.dtype.name
        return []
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedError(f"node {name!r}: op {node.domain}::{node.op_type} is not an "
                               "ONNX operator the cpu generator knows")
    attrs = {key: _attr_value(attr) for key, attr in node.attributes.items()}
    inputs = [None if v is None else tensor_of(v) for v in node.inputs]
    outputs = [tensor_of(v) for v in node.outputs]
    return [Op(name, node.op_type, inputs, outputs, attrs, opset)]


def _constant_value(node: ir.Node, region: Region) -> np.ndarray:
    bound = region.constants.get(node.outputs[0].name or "")
    if bound is not None:
        return np.asarray(bound.numpy())
    attrs = node.attributes
    if "value" in attrs:
        return np.asarray(attrs["value"].value.numpy())
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key].value, dtype=dtype)
    raise UnsupportedError(f"Constant {node.name!r} has no tensor or numeric value")


def _attr_value(attr: ir.Attr) -> Any:
    value = attr.value
    if attr.type == ir.AttributeType.TENSOR:
        return np.asarray(value.numpy())
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(value)
    return value


def _static_shape(value: ir.Value) -> tuple[int, ...]:
    shape = value.shape
    if shape is None or not shape.is_static():
        raise UnsupportedError(f"value {value.name!r} has no static shape")
    return tuple(int(d) for d in shape.dims)


def _default_opset(model: ir.Model) -> int:
    imports = model.opset_imports
    return int(imports.get("", imports.get("ai.onnx", 21)))


def _mark_view(op: Op) -> None:
    """Views share their input's storage: same elements, same order, another shape."""
    source = op.input(0)
    if source is None:
        return
    output = op.output
    is_view = op.op_type in VIEW_OPS or (op.op_type == "Cast" and source.dtype == output.dtype)
    if not is_view or source.size != output.size:
        return
    if source.value is not None:  # a view of a constant is a constant
        output.value = source.value.reshape(output.shape)
    # A view of a constant shares its data too: ``root()`` then leads to the region
    # constant that ``_init`` receives (the view itself is not one of them).
    output.alias_of = source


def is_folded(op: Op) -> bool:
    """True when ``op`` needs no code: its output is a view or a build-time constant."""
    return all(t.alias_of is not None or t.value is not None for t in op.outputs)
