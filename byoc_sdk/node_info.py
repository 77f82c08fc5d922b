"""What a target's check function sees of a node: a read-only, numpy-flavoured view.

Views are built lazily: annotating a 100k-node model asks most nodes only for their op
type and one dtype, so attributes, shapes and constant values are computed on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

Dim = int | str | None


@functools.cache
def dtype_name(dtype: ir.DataType | None) -> str | None:
    """numpy's name for an ONNX element type ("float32", "int8", "bool"...)."""
    if dtype is None:
        return None
    if dtype == ir.DataType.STRING:
        return "string"  # numpy would say "object"
    try:
        return dtype.numpy().name
    except TypeError:  # types numpy has no name for (float4, int2, ...)
        return dtype.name.lower()


def is_constant(value: ir.Value) -> bool:
    """A value known at build time: an initializer that a caller cannot override."""
    return value.const_value is not None and not value.is_graph_input()


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output of a node."""

    value: ir.Value

    @property
    def name(self) -> str:
        return self.value.name or ""

    @property
    def dtype(self) -> str | None:
        """numpy-style element type, or ``None`` if shape inference could not tell."""
        return dtype_name(self.value.dtype)

    @property
    def shape(self) -> tuple[Dim, ...] | None:
        """Dimensions: an int where static, a name where symbolic, ``None`` where unknown.

        ``None`` for the whole shape when even the rank is unknown.
        """
        shape = self.value.shape
        if shape is None:
            return None
        return tuple(
            d if isinstance(d, int) else (d.value if d.value is not None else None)
            for d in shape.dims
        )

    @property
    def rank(self) -> int | None:
        shape = self.value.shape
        return None if shape is None else len(shape)

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        shape = self.value.shape
        return shape is not None and shape.is_static()

    @property
    def is_constant(self) -> bool:
        return is_constant(self.value)

    def numpy(self) -> np.ndarray | None:
        """The constant's value, or ``None`` if the tensor is not a constant."""
        return self.value.const_value.numpy() if self.is_constant else None


class NodeInfo:
    """A node as a support check sees it.

    ``inputs`` keeps ONNX positions: an omitted optional input is ``None``.
    """

    # Slots and explicit caches rather than ``functools.cached_property``: a view is made
    # for every node a target checks, and cached_property's per-access overhead was a
    # sizeable share of a check.
    __slots__ = ("_attributes", "_inputs", "_outputs", "node", "opset")

    def __init__(self, node: ir.Node, opset: int | None) -> None:
        self.node = node
        self.opset = opset
        self._attributes: dict[str, Any] | None = None
        self._inputs: tuple[TensorInfo | None, ...] | None = None
        self._outputs: tuple[TensorInfo, ...] | None = None

    @property
    def name(self) -> str:
        return self.node.name or ""

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def domain(self) -> str:
        return self.node.domain

    @property
    def attributes(self) -> Mapping[str, Any]:
        """Attribute values as Python objects (tensors as numpy arrays)."""
        if self._attributes is None:
            self._attributes = _python_attributes(self.node)
        return self._attributes

    def attr(self, name: str, default: Any = None) -> Any:
        """One attribute's value, or ``default`` when the node leaves it unset."""
        return self.attributes.get(name, default)

    @property
    def inputs(self) -> tuple[TensorInfo | None, ...]:
        if self._inputs is None:
            self._inputs = tuple(None if v is None else TensorInfo(v) for v in self.node.inputs)
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        if self._outputs is None:
            self._outputs = tuple(TensorInfo(v) for v in self.node.outputs)
        return self._outputs

    def input(self, index: int) -> TensorInfo | None:
        """Input ``index``, or ``None`` when it is omitted or beyond the node's inputs."""
        inputs = self.inputs
        return inputs[index] if index < len(inputs) else None

    def __repr__(self) -> str:
        return f"NodeInfo({self.op_type} {self.name!r}, opset {self.opset})"


def _python_attributes(node: ir.Node) -> dict[str, Any]:
    """A node's attribute values as Python objects: tensors as numpy arrays, lists as tuples."""
    out: dict[str, Any] = {}
    for name, attr in node.attributes.items():
        value = attr.value
        # Compare attribute types, not isinstance: protocol checks cost microseconds.
        if attr.type == ir.AttributeType.TENSOR:
            value = value.numpy()
        elif isinstance(value, tuple | list):
            value = tuple(value)
        out[name] = value
    return out
