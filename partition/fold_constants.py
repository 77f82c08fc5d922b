"""FoldConstants: compute at partition time what depends on constants alone.

Exporters compute shapes at run time even where every shape is static: PyTorch's
``x.view(x.size(0), -1)`` becomes Shape -> Gather -> Concat -> Reshape, and a parameter
equal to another becomes ``Identity(first)``. To a target, the Reshape's shape input and
the Identity's output are then not constants, so the Reshape and the layer after it, or
a BatchNormalization reading the Identity, stay on the host. Folding turns such values
into the initializers they are, as onnxruntime does when it loads a model, and as TVM
folds constants before partitioning.

* ``Shape`` and ``Size`` of a value with a static shape become constants.
* ``Identity`` of a constant reads the constant itself.
* Any other node of the default domain whose inputs are all constants is evaluated, by
  onnxruntime in one session for all of them, unless it draws random numbers, holds a
  subgraph, quantizes (a quantized target wants the integer weights and their scales,
  not the floats they stand for), or would make the model more than
  :data:`GROWTH_LIMIT` bytes bigger (a ConstantOfShape mask is cheaper made at run time).

Shape inference then runs again, since a folded shape can make more shapes static, and
folding goes on until nothing more folds. A node feeding a graph output directly is
left as it is: the output stays computed by a node, as the model's user wrote it. The
folded nodes are recorded (``model.meta["byoc.folded"]``) for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from byoc_sdk import versions
from byoc_sdk.report import FoldedNode

FOLDED_KEY = "byoc.folded"
#: How many bytes folding one node may add to the model beyond what its inputs hold.
GROWTH_LIMIT = 64 * 1024
#: Rounds of folding and shape inference at most: each round folds what the shapes found
#: by the last one made static (a shape computed from a shape, ...).
MAX_ROUNDS = 8
#: Ops never evaluated ahead: random draws, and quantization (see the module docstring).
_NEVER = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
})
_DEFAULT_DOMAINS = ("", "ai.onnx")
_SHAPE_OPS = ("Shape", "Size")
_SUBGRAPHS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
#: The most bytes handed to one evaluation: well under protobuf's 2 GiB per message.
_EVALUATION_LIMIT = 1 << 30

logger = logging.getLogger(__name__)


class FoldConstantsPass(ir.passes.InPlacePass):
    """Replace what the main graph computes from constants alone by initializers."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        folded: list[FoldedNode] = model.meta.setdefault(FOLDED_KEY, [])
        before = len(folded)
        for _ in range(MAX_ROUNDS):
            if not _fold_once(model, folded):
                break
            # Not strict: the loader already refused contradictions, and a shape it could
            # not infer before stays unknown rather than failing the partition.
            ShapeInferencePass(strict_mode=False)(model)
        return ir.passes.PassResult(model, modified=len(folded) > before)


def _fold_once(model: ir.Model, folded: list[FoldedNode]) -> bool:
    """One round over the main graph; True if any node was folded."""
    graph = model.graph
    constants = {v for v in graph.initializers.values() if not v.is_graph_input()}
    known: dict[ir.Value, np.ndarray | None] = {}  # folded values; None: onnxruntime's to compute
    evaluate: list[ir.Node] = []
    aliases: list[tuple[ir.Value, ir.Value]] = []
    chosen: list[ir.Node] = []
    for node in graph:
        op_type = node.op_type
        if op_type in _SHAPE_OPS:
            inputs = node.inputs
            if not (inputs and inputs[0] is not None and _static(inputs[0])):
                continue
        elif not _all_known(node.inputs, constants, known):
            continue  # most nodes, at their first input: the cheap test comes first
        if node.domain not in _DEFAULT_DOMAINS or any(v.is_graph_output() for v in node.outputs):
            continue
        inputs = [v for v in node.inputs if v is not None]
        if op_type in _SHAPE_OPS:
            known[node.outputs[0]] = _shape_value(node, inputs[0].shape.dims)
        elif op_type == "Identity" and inputs[0] in constants:
            aliases.append((node.outputs[0], inputs[0]))
        elif _evaluable(node, inputs):
            known.update(dict.fromkeys(node.outputs))
            evaluate.append(node)
        else:
            continue
        chosen.append(node)
    if not chosen:
        return False
    inside = set(chosen)
    needed = [v for node in chosen if node.op_type != "Identity" for v in node.outputs
              if any(user not in inside for user, _ in v.uses())]
    if evaluate:
        try:
            known.update(_run(model, evaluate, known, needed))
        except Exception:  # onnxruntime refused or failed: the model is left as it was
            logger.debug("constant folding: onnxruntime could not evaluate %d nodes",
                         len(evaluate), exc_info=True)
            return False
    for value in needed:
        _replace_by_initializer(graph, value, known[value])
    for output, source in aliases:
        output.replace_all_uses_with(source)
    read = {v for node in chosen for v in node.inputs if v is not None}
    folded.extend(FoldedNode(node.name or node.op_type, node.op_type) for node in chosen)
    graph.remove(chosen, safe=True)
    for value in read:
        if value.is_initializer() and not value.uses() and not value.is_graph_output():
            graph.initializers.pop(value.name)
    return True


def _all_known(values: Iterable[ir.Value | None], constants: set[ir.Value],
               known: dict[ir.Value, np.ndarray | None]) -> bool:
    """Every given input is a constant or folded already."""
    # A plain loop: this runs for every node, and a generator costs more than the test.
    for value in values:
        if value is not None and value not in constants and value not in known:
            return False
    return True


def _static(value: ir.Value) -> bool:
    return value.shape is not None and value.shape.is_static()


def _shape_value(node: ir.Node, dims: tuple[int, ...]) -> np.ndarray:
    """What ``Shape`` (with its ``start`` and ``end``) or ``Size`` gives for ``dims``."""
    if node.op_type == "Size":
        return np.array(int(np.prod(dims, dtype=np.int64)), np.int64)
    # ONNX clamps start and end to the rank after adding it to negative ones, as slicing does.
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    return np.array(dims[start:end], np.int64)


def _evaluable(node: ir.Node, inputs: list[ir.Value]) -> bool:
    """Whether onnxruntime may compute ``node``, whose inputs are all constants: its
    outputs' types and shapes known, and the growth within :data:`GROWTH_LIMIT`."""
    if node.op_type in _NEVER or not node.outputs:
        return False
    if node.attributes and any(a.type in _SUBGRAPHS for a in node.attributes.values()):
        return False
    produced, taken = _bytes(node.outputs), _bytes(inputs)
    return produced is not None and taken is not None and produced <= taken + GROWTH_LIMIT


def _bytes(values: Iterable[ir.Value]) -> int | None:
    """The bytes ``values`` take, or ``None`` if a type or shape is unknown (or a string)."""
    total = 0
    for value in values:
        dtype = value.dtype
        if dtype is None or dtype == ir.DataType.STRING or not _static(value):
            return None
        total += (int(np.prod(value.shape.dims, dtype=np.int64)) * dtype.bitwidth + 7) // 8
    return total


def _run(model: ir.Model, nodes: list[ir.Node], known: dict[ir.Value, np.ndarray | None],
         needed: list[ir.Value]) -> dict[ir.Value, np.ndarray]:
    """Evaluate ``nodes`` with onnxruntime, from the constants they read; the values of
    ``needed`` that they produce."""
    from byoc_sdk.testing import run_onnxruntime

    produced = {v for node in nodes for v in node.outputs}
    wanted = [v for v in needed if v in produced]
    if not wanted:  # what they make is read only by nodes folded with them, or by none
        return {}
    feeds: dict[str, ir.Value] = {}
    for node in nodes:
        for value in node.inputs:
            if value is not None and value not in produced:
                feeds[value.name] = value
    initializers = []
    for name, value in feeds.items():
        array = known.get(value)
        initializers.append(onnx.numpy_helper.from_array(
            array if array is not None else value.const_value.numpy(), name))
    graph = onnx.helper.make_graph(
        [ir.serde.serialize_node(node) for node in nodes], "fold", [],
        [onnx.helper.make_tensor_value_info(v.name, int(v.dtype), None) for v in wanted],
        initializers,
    )
    proto = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", model.opset_imports.get("", 1))],
        ir_version=versions.pinned_ir_version(),
    )
    if proto.ByteSize() > _EVALUATION_LIMIT:
        raise ValueError(f"{proto.ByteSize()} bytes of constants to evaluate")
    results = run_onnxruntime(proto, {})
    return {value: results[value.name] for value in wanted}


def _replace_by_initializer(graph: ir.Graph, value: ir.Value, array: np.ndarray) -> None:
    """Make an initializer holding ``array`` take ``value``'s name and readers."""
    name = value.name
    value.name = f"{name}.folded"  # its node goes; the initializer keeps the name
    tensor = ir.tensor(array, name=name)
    constant = ir.Value(name=name, shape=ir.Shape(array.shape),
                        type=ir.TensorType(tensor.dtype), const_value=tensor)
    value.replace_all_uses_with(constant)
    graph.register_initializer(constant)
