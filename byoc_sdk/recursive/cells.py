"""Recursive models as two ONNX cells and a state: what a model is, and how to write one.

A recursive model computes a *state* (one or more tensors, e.g. TreeLSTM's ``h`` and ``c``)
for every node of a tree or DAG. Two cells say how:

* the **leaf cell** maps a node's features (e.g. its word's embedding) to its state;
* the **internal cell** maps a node's features and its children's states to its state.

Each cell is an ONNX graph over *one node*: shapes carry no batch axis (a ``[H]`` vector is
one node's hidden state). Child ``k``'s state component ``c`` is the input named
:func:`child_input` ``(c, k)``; features are inputs named after the feature; outputs are the
state components, in order. Weights are initializers. The compiler batches the cells over
nodes itself, so a cell is written as plainly as the paper's equations.

Features come from a *vocabulary* (a table with one row per word: the node's word id picks
the row) or are *dense* (an array of per-node values passed at run time). :class:`CellBuilder`
keeps cell graphs short; see ``models.py`` for the shipped ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from byoc_sdk.errors import ByocError
from byoc_sdk.model_zoo import IR_VERSION, OPSET


class CellError(ByocError):
    """A cell graph does not fit its model: wrong inputs, outputs or shapes, or an op the
    recursive compiler does not take."""


def child_input(component: str, k: int) -> str:
    """The internal cell's input name for child ``k``'s state component ``component``."""
    return f"{component}.child{k}"


@dataclass(frozen=True)
class StateSpec:
    """One component of the state every node carries (float32, per-node ``shape``)."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Feature:
    """A per-node cell input. ``table`` (``[vocab, *shape]``) makes it a vocabulary feature
    looked up by the node's word id; ``None`` makes it dense (passed per node at run time)."""

    name: str
    shape: tuple[int, ...]
    table: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_vocab(self) -> bool:
        return self.table is not None


@dataclass(frozen=True, eq=False)
class RecursiveModel:
    """A recursive model: state, features, the two cells and how many children a node has.

    ``kind`` is the structure the model runs on. ``pad_missing`` lets an internal node have
    fewer than ``arity`` children, the missing ones reading zero states (DAG-RNN's border
    nodes); otherwise every internal node must have exactly ``arity``. ``params`` keeps the
    weights by name for baselines that rebuild the model elsewhere (PyTorch).
    """

    name: str
    state: tuple[StateSpec, ...]
    features: tuple[Feature, ...]
    leaf: onnx.ModelProto = field(repr=False)
    internal: onnx.ModelProto = field(repr=False)
    arity: int
    kind: Literal["tree", "dag"] = "tree"
    pad_missing: bool = False
    params: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_model(self)

    @property
    def state_size(self) -> int:
        """Floats of state per node (all components, flattened and concatenated)."""
        return sum(s.size for s in self.state)

    @property
    def vocab_size(self) -> int | None:
        sizes = {len(f.table) for f in self.features if f.table is not None}
        return sizes.pop() if sizes else None

    def feature(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)

    def component(self, name: str) -> StateSpec:
        """The state component called ``name``."""
        return next(c for c in self.state if c.name == name)


def check_model(model: RecursiveModel) -> None:
    """The cells' inputs, outputs and shapes agree with the model's state and features."""
    if model.arity < 1:
        raise CellError(f"model {model.name}: arity must be at least 1")
    vocab = {len(f.table) for f in model.features if f.table is not None}
    if len(vocab) > 1:
        raise CellError(f"model {model.name}: vocabulary features must share one vocabulary "
                        f"(tables have {sorted(vocab)} rows)")
    for f in model.features:
        if f.table is not None and tuple(f.table.shape[1:]) != f.shape:
            raise CellError(f"model {model.name}: feature {f.name}'s table has rows of shape "
                            f"{tuple(f.table.shape[1:])}, the feature is {f.shape}")
    features = {f.name: f.shape for f in model.features}
    children = {child_input(s.name, k): s.shape for s in model.state for k in range(model.arity)}
    _check_cell(model, "leaf", model.leaf, features)
    _check_cell(model, "internal", model.internal, {**features, **children})


def _check_cell(
    model: RecursiveModel, which: str, cell: onnx.ModelProto, allowed: Mapping[str, tuple]
) -> None:
    where = f"model {model.name}, {which} cell"
    try:
        onnx.checker.check_model(cell)
    except onnx.checker.ValidationError as exc:
        raise CellError(f"{where}: not a valid ONNX graph: {exc}") from exc
    try:
        # Strict: an output whose computed shape is not the state's it declares (a
        # MatMul to [1] for a state of [8]) would have the kernel write one float of
        # eight and leave the rest as they were.
        onnx.shape_inference.infer_shapes(cell, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        reason = " ".join(str(exc).replace("[ShapeInferenceError]", "").split())
        raise CellError(f"{where}: shapes do not agree: "
                        f"{reason.removeprefix('Inference error(s): ')}") from exc
    initializers = {t.name for t in cell.graph.initializer}
    for value in cell.graph.input:
        if value.name in initializers:
            continue
        if value.name not in allowed:
            raise CellError(f"{where}: input {value.name!r} is neither a feature nor a child "
                            f"state (allowed: {sorted(allowed)})")
        shape = _static_shape(value)
        if shape is not None and shape != tuple(allowed[value.name]):
            raise CellError(f"{where}: input {value.name!r} has shape {shape}, "
                            f"expected {tuple(allowed[value.name])}")
    names = [o.name for o in cell.graph.output]
    wanted = [s.name for s in model.state]
    if names != wanted:
        raise CellError(f"{where}: outputs are {names}, the state is {wanted}")
    for value, spec in zip(cell.graph.output, model.state, strict=True):
        shape = _static_shape(value)
        if shape is not None and shape != spec.shape:
            raise CellError(f"{where}: output {spec.name!r} has shape {shape}, "
                            f"the state component is {spec.shape}")


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    if not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


class CellBuilder:
    """Collects one cell graph: inputs, weights, nodes and outputs.

    ``b.op("MatMul", x, w)`` adds a node and returns its output name (a list of names when
    ``outputs`` > 1); value and node names are generated, so cells read like equations.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._nodes: list[onnx.NodeProto] = []
        self._inputs: list[onnx.ValueInfoProto] = []
        self._outputs: list[onnx.ValueInfoProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._count = 0

    def input(self, name: str, shape: Sequence[int]) -> str:
        """A float32 input (a feature or a child state) of per-node ``shape``."""
        self._inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def children(self, state: Sequence[StateSpec], arity: int) -> list[dict[str, str]]:
        """The inputs for every child's state: ``result[k][component]`` is the input name."""
        return [{s.name: self.input(child_input(s.name, k), s.shape) for s in state}
                for k in range(arity)]

    def weight(self, name: str, array: np.ndarray) -> str:
        """A constant (an initializer); float arrays are stored as float32."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self._initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        """Add a node; returns its output name (or names, when ``outputs`` > 1)."""
        self._count += 1
        names = [f"{op_type.lower()}{self._count}" + (f"_{i}" if outputs > 1 else "")
                 for i in range(outputs)]
        self._nodes.append(helper.make_node(op_type, list(inputs), names,
                                            name=f"{op_type}_{self._count}", **attrs))
        return names[0] if outputs == 1 else names

    def output(self, value: str, spec: StateSpec) -> None:
        """Make ``value`` the state component ``spec`` (renamed to the component's name)."""
        self._nodes.append(helper.make_node("Identity", [value], [spec.name],
                                            name=f"output_{spec.name}"))
        self._outputs.append(
            helper.make_tensor_value_info(spec.name, TensorProto.FLOAT, list(spec.shape)))

    def build(self) -> onnx.ModelProto:
        graph = helper.make_graph(self._nodes, self.name, self._inputs, self._outputs,
                                  initializer=self._initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 ir_version=IR_VERSION, producer_name="byoc_sdk.recursive")
