"""The front end: read an ONNX model, check it, infer shapes, hand back an ``onnx_ir`` model.

Checks run cheapest and most specific first, so a broken model gets the message that
names its real problem (a missing file, a truncated download, a dangling input) instead
of whatever the ONNX checker happens to trip on later.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path

import networkx as nx
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from byoc_sdk import versions
from byoc_sdk.bulk import bulk_allocation
from byoc_sdk.errors import (
    DanglingInputError,
    GraphCycleError,
    InvalidGraphError,
    ModelLoadError,
    ModelNotFoundError,
    NotOnnxError,
    TruncatedModelError,
    UnsupportedVersionError,
)

ModelSource = str | os.PathLike | bytes | onnx.ModelProto

#: Keys of ``ir.Model.meta`` the loader fills in.
SOURCE_KEY = "byoc.source"
NOTES_KEY = "byoc.load_notes"

# A serialized ModelProto begins with field 1 (ir_version) as a varint: tag byte 0x08.
_MODEL_PROTO_FIRST_BYTE = 0x08
_DEFAULT_DOMAINS = ("", "ai.onnx")


def load_model(
    source: ModelSource,
    *,
    infer_shapes: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ir.Model:
    """Load, check and shape-infer an ONNX model.

    ``source`` is a path, the serialized bytes, or a ``ModelProto``. Tensors stored as
    external data stay on disk and are read lazily. Notes about repairs made on the way
    (a re-sorted graph, an IR version pinned down) are kept in
    ``model.meta["byoc.load_notes"]``.

    ``input_shapes`` (input name -> shape) replaces the shapes of graph inputs, fixing
    dynamic dimensions before shape inference.

    Raises a :class:`~byoc_sdk.errors.ModelLoadError` subclass naming the file and, where
    there is one, the node.
    """
    label, proto, base_dir = _read(source)
    notes: list[str] = []
    if input_shapes:
        _set_input_shapes(proto, input_shapes, label, notes)
    _check_versions(proto, label, notes)
    _check_structure(proto.graph, label, notes)
    external = _external_tensors(proto)  # a walk over every node: done once
    _check_external_data(external, label, base_dir)
    _run_checker(proto, bool(external), label)
    if infer_shapes:
        proto = _infer_shapes(proto, label)
        _types_from_onnxruntime(proto, base_dir, notes)
    with bulk_allocation():
        model = ir.from_proto(proto)
    if base_dir is not None:
        # Functions too: a partitioned model keeps bound weights in its region functions.
        for graph in (model.graph, *(f.graph for f in model.functions.values())):
            ir.external_data.set_base_dir(graph, base_dir)
    model.meta[SOURCE_KEY] = label
    model.meta[NOTES_KEY] = notes
    return model


def _set_input_shapes(
    proto: onnx.ModelProto, shapes: Mapping[str, Sequence[int]], label: str, notes: list[str]
) -> None:
    inputs = {i.name: i for i in proto.graph.input}
    for name, shape in shapes.items():
        if name not in inputs:
            raise ModelLoadError(
                f"no graph input named '{name}' (inputs: {', '.join(inputs)})", file=label
            )
        if any(int(d) < 1 for d in shape):
            raise ModelLoadError(
                f"input '{name}': the given shape {tuple(shape)} must have positive dimensions",
                file=label,
            )
        tensor = inputs[name].type.tensor_type
        if tensor.HasField("shape") and len(tensor.shape.dim) != len(shape):
            raise ModelLoadError(
                f"input '{name}' has rank {len(tensor.shape.dim)}, the given shape "
                f"{tuple(shape)} has rank {len(shape)}",
                file=label,
            )
        tensor.ClearField("shape")
        tensor.shape.dim.extend(onnx.TensorShapeProto.Dimension(dim_value=int(d)) for d in shape)
        notes.append(f"input '{name}' fixed to shape {tuple(int(d) for d in shape)}")
    # Shapes recorded for the old inputs need not hold any more: inference works them out
    # again (a declared output of batch 1 would otherwise contradict a batch of 2).
    del proto.graph.value_info[:]
    for output in proto.graph.output:
        if output.type.HasField("tensor_type") and output.type.tensor_type.HasField("shape"):
            for dim in output.type.tensor_type.shape.dim:
                dim.Clear()  # unknown, same rank


def attribute_graphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    """The subgraphs an attribute holds (an If branch, a Loop body...), if any."""
    return [attr.g, *attr.graphs] if attr.HasField("g") else list(attr.graphs)


def node_label(node: onnx.NodeProto, index: int) -> str:
    """How error messages name a node: its name, else its op type and position."""
    return node.name or f"#{index} ({node.op_type})"


def _read(source: ModelSource) -> tuple[str, onnx.ModelProto, Path | None]:
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return "<ModelProto>", proto, None
    if isinstance(source, bytes | bytearray):
        return "<bytes>", _parse(bytes(source), "<bytes>"), None
    path = Path(source)
    label = str(path)
    if not path.exists():
        raise ModelNotFoundError("no such file", file=label)
    if path.is_dir():
        raise ModelLoadError("is a directory, not an ONNX model file", file=label)
    if not path.is_file():
        raise ModelLoadError("not a regular file", file=label)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read: {exc.strerror}", file=label) from exc
    return label, _parse(data, label), path.resolve().parent


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    if not data:
        raise NotOnnxError("the file is empty", file=label)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as exc:
        if data[0] == _MODEL_PROTO_FIRST_BYTE:
            raise TruncatedModelError(
                f"the protobuf ends early or is corrupt after {len(data)} bytes "
                "(an interrupted download or copy?)",
                file=label,
            ) from exc
        raise NotOnnxError(
            "not an ONNX model (the bytes are not a ModelProto)", file=label
        ) from exc
    if proto.ir_version == 0 or not proto.HasField("graph"):
        # protobuf parses many foreign byte strings "successfully" into empty messages.
        raise NotOnnxError("not an ONNX model (no IR version or graph)", file=label)
    return proto


def _check_versions(proto: onnx.ModelProto, label: str, notes: list[str]) -> None:
    limits = versions.runtime_limits()
    runtime = f"onnxruntime {limits.onnxruntime_version}"
    for opset in proto.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and opset.version > limits.max_opset:
            raise UnsupportedVersionError(
                f"opset {opset.version} of the default domain is newer than {runtime} runs "
                f"(at most {limits.max_opset}); convert it first with "
                f"onnx.version_converter.convert_version(model, {limits.max_opset})",
                file=label,
            )
    if proto.ir_version <= limits.max_ir_version:
        return
    needed = max((versions.min_ir_for_dtype(t) for t in _dtypes_used(proto.graph)), default=3)
    if needed > limits.max_ir_version:
        raise UnsupportedVersionError(
            f"IR version {proto.ir_version} with data types of IR {needed}, newer than "
            f"{runtime} runs (IR {limits.max_ir_version} at most)",
            file=label,
        )
    notes.append(
        f"IR version {proto.ir_version} pinned to {limits.max_ir_version} for {runtime} "
        "(the model uses nothing newer)"
    )
    proto.ir_version = limits.max_ir_version


def _dtypes_used(graph: onnx.GraphProto) -> Iterable[int]:
    for tensor in graph.initializer:
        yield tensor.data_type
    for sparse in graph.sparse_initializer:
        yield sparse.values.data_type
    for info in (*graph.input, *graph.output, *graph.value_info):
        if info.type.HasField("tensor_type"):
            yield info.type.tensor_type.elem_type
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "to" and node.op_type in ("Cast", "CastLike", "EyeLike"):
                yield attr.i
            if attr.HasField("t"):
                yield attr.t.data_type
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values.data_type
            for tensor in attr.tensors:
                yield tensor.data_type
            for sub in attribute_graphs(attr):
                yield from _dtypes_used(sub)


def _check_structure(graph: onnx.GraphProto, label: str, notes: list[str]) -> None:
    """Repeated node names, dangling inputs and cycles, with node names; re-sort an
    unsorted but acyclic graph."""
    _check_unique_node_names(graph, label)
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name:
                producer[name] = index
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {t.values.name for t in graph.sparse_initializer}
    deps: list[set[int]] = []
    for index, node in enumerate(graph.node):
        node_deps = set()
        for name in _subgraph_reads(node):
            if name in producer:
                node_deps.add(producer[name])
        for name in node.input:
            if not name or (name in available and name not in producer):
                continue
            if name not in producer:
                raise DanglingInputError(
                    f"input '{name}' is not produced by any node, graph input or initializer",
                    file=label,
                    node=node_label(node, index),
                )
            node_deps.add(producer[name])
        deps.append(node_deps)
    for out in graph.output:
        if out.name not in producer and out.name not in available:
            raise DanglingInputError(
                f"graph output '{out.name}' is not produced by any node", file=label
            )
    order = _topological_order(deps)
    if order is None:
        raise GraphCycleError(_describe_cycle(graph, deps), file=label)
    if order != list(range(len(order))):
        nodes = [graph.node[i] for i in order]
        sorted_nodes = [onnx.NodeProto() for _ in nodes]
        for target, node in zip(sorted_nodes, nodes, strict=True):
            target.CopyFrom(node)
        del graph.node[:]
        graph.node.extend(sorted_nodes)
        notes.append("nodes were not in topological order; re-sorted")


def _check_unique_node_names(graph: onnx.GraphProto, label: str) -> None:
    """ONNX requires unique node names and onnxruntime refuses a model without them;
    byoc would pass them on, naming two nodes alike in its report and its regions."""
    holders: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        if node.name:
            holders.setdefault(node.name, []).append(index)
    for name, indices in holders.items():
        if len(indices) > 1:
            nodes = ", ".join(f"#{i} ({graph.node[i].op_type})" for i in indices)
            raise InvalidGraphError(
                f"{len(indices)} nodes have this name: {nodes}; node names must be unique",
                file=label,
                node=name,
            )


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Every value name read inside ``node``'s subgraphs (If, Loop, Scan bodies).

    ONNX names are unique across scopes, so a name a main-graph node produces is an
    outer-scope read: the node must come after its producer.
    """
    names: set[str] = set()
    for attr in node.attribute:
        for sub in attribute_graphs(attr):
            for inner in sub.node:
                names.update(n for n in inner.input if n)
                names |= _subgraph_reads(inner)
    return names


def _topological_order(deps: list[set[int]]) -> list[int] | None:
    """Kahn's algorithm, stable in file order; ``None`` if the graph has a cycle."""
    users: list[list[int]] = [[] for _ in deps]
    missing = [len(d) for d in deps]
    for index, node_deps in enumerate(deps):
        for dep in node_deps:
            users[dep].append(index)
    ready = [i for i, m in enumerate(missing) if m == 0]
    order: list[int] = []
    while ready:
        # Popping the smallest index keeps file order wherever the file was right.
        ready.sort(reverse=True)
        index = ready.pop()
        order.append(index)
        for user in users[index]:
            missing[user] -= 1
            if missing[user] == 0:
                ready.append(user)
    return order if len(order) == len(deps) else None


def _describe_cycle(graph: onnx.GraphProto, deps: list[set[int]]) -> str:
    digraph = nx.DiGraph((d, i) for i, node_deps in enumerate(deps) for d in node_deps)
    cycle = nx.find_cycle(digraph)
    names = [node_label(graph.node[src], src) for src, _ in cycle]
    return "the graph has a cycle: " + " -> ".join([*names, names[0]])


#: An external tensor and how messages name it: "initializer 'w'", or "tensor 'v' of
#: node c" for a node attribute's (a ``Constant`` saved with ``convert_attribute=True``).
_Named = tuple[str, onnx.TensorProto]


def _graph_tensors(graph: onnx.GraphProto) -> Iterable[_Named]:
    for tensor in graph.initializer:
        yield f"initializer '{tensor.name}'", tensor
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Iterable[onnx.NodeProto]) -> Iterable[_Named]:
    for index, node in enumerate(nodes):
        for attr in node.attribute:
            for tensor in [attr.t] if attr.HasField("t") else attr.tensors:
                yield f"tensor '{tensor.name}' of node {node_label(node, index)}", tensor
            for sub in attribute_graphs(attr):
                yield from _graph_tensors(sub)


def _external_tensors(proto: onnx.ModelProto) -> list[_Named]:
    """Every tensor kept in an external file, in the graph, its subgraphs and the
    model's functions."""
    tensors = chain(_graph_tensors(proto.graph),
                    *(_node_tensors(function.node) for function in proto.functions))
    return [(what, t) for what, t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


def _byte_size(tensor: onnx.TensorProto) -> int | None:
    """How many bytes the tensor's data takes; ``None`` for strings, which have no
    fixed size."""
    try:
        bits = ir.DataType(tensor.data_type).bitwidth
    except (TypeError, ValueError):
        return None
    return (math.prod(tensor.dims) * bits + 7) // 8


def _external_field(info: Mapping[str, str], key: str, what: str, label: str) -> int | None:
    if key not in info:
        return None
    try:
        value = int(info[key])
    except ValueError:
        value = -1
    if value < 0:
        raise ModelLoadError(
            f"{what}: external data {key} '{info[key]}' is not a non-negative integer",
            file=label,
        )
    return value


def _check_external_data(external: list[_Named], label: str, base_dir: Path | None) -> None:
    """Every external tensor's file exists next to the model and is long enough."""
    for what, tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if base_dir is None:
            raise ModelLoadError(
                f"{what} keeps its data in external file '{location}'; "
                "load the model from its path so the file can be found",
                file=label,
            )
        # A malformed number would fail deep in onnx_ir, and a wrong length would be
        # read as the tensor's size, in a model onnxruntime refuses.
        offset = _external_field(info, "offset", what, label) or 0
        length = _external_field(info, "length", what, label)
        size = _byte_size(tensor)
        if length is not None and size is not None and length != size:
            dtype = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
            raise ModelLoadError(
                f"{what}: external data length {length} does not match its {size} bytes "
                f"({dtype}, shape {tuple(tensor.dims)})",
                file=label,
            )
        path = (base_dir / location).resolve()
        if not path.is_relative_to(base_dir.resolve()):
            raise ModelLoadError(
                f"external data '{location}' of {what} lies outside the model's folder",
                file=label,
            )
        if not path.is_file():
            raise ModelLoadError(
                f"external data file '{location}' of {what} is missing", file=label
            )
        # Without a length, the tensor's own size says how far it reaches.
        end = offset + (length if length is not None else size or 0)
        if end > path.stat().st_size:
            raise TruncatedModelError(
                f"external data file '{location}' ends before {what} "
                f"({path.stat().st_size} bytes, needs {end})",
                file=label,
            )


# onnx names the failing node as "node name: X)" or, since 1.20, "Name: X OpType: ...".
_CHECKER_NODE = re.compile(r"node name: ([^)\s]+)\)|Name: (\S+) OpType")
_CHECKER_CONTEXT = re.compile(r"\s*==> Context:.*", re.S)


def _run_checker(proto: onnx.ModelProto, has_external: bool, label: str) -> None:
    if has_external:
        # The checker looks for external files in the current directory, not the
        # model's; _check_external_data already checked them, so check a copy whose
        # external tensors are empty (zero elements need no data) instead.
        stubbed = onnx.ModelProto()
        stubbed.CopyFrom(proto)
        for _what, tensor in _external_tensors(stubbed):
            del tensor.external_data[:]
            del tensor.dims[:]
            tensor.dims.append(0)
            tensor.data_location = onnx.TensorProto.DEFAULT
        proto = stubbed
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        text = str(exc)
        found = _CHECKER_NODE.search(text)
        message = " ".join(_CHECKER_CONTEXT.sub("", text).split())
        raise InvalidGraphError(
            f"fails the ONNX checker: {message}",
            file=label,
            node=next((g for g in found.groups() if g), None) if found else None,
        ) from exc


def _infer_shapes(proto: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """The model with inferred shapes. A declared shape or type that contradicts what a
    node computes is refused, naming the node: a region would be compiled for the
    declared shape and hand back memory it never wrote. Other inference failures are
    left to the runtime, as onnxruntime leaves them (strict inference refuses models it
    runs)."""
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        if _CONTRADICTION.search(str(exc)):
            detail = str(exc).split("Inference error(s): ")[-1].strip()
            raise InvalidGraphError(f"a declared shape or type contradicts the graph: {detail}",
                                    file=label) from exc
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise InvalidGraphError(f"shape inference failed: {exc}", file=label) from exc


def _types_from_onnxruntime(proto: onnx.ModelProto, base_dir: Path | None,
                            notes: list[str]) -> None:
    """Type the main-graph values that onnx's shape inference left untyped, as
    onnxruntime types them.

    onnx knows no schema of the ``com.microsoft`` ops that quantizers and optimizers
    write (QLinearAdd, QGemm, FusedMatMul, ...), so their outputs, and everything
    computed from them, have no type. Such a value that crosses from one host step to
    another, around an offloaded region, left the runtime with no type to declare it
    by. onnxruntime has the schemas: a session over a copy that lists the untyped values
    as outputs reports their types without running anything. Where onnxruntime cannot
    open the model either, the values stay untyped: it could not run the model anyway.
    """
    graph = proto.graph
    typed = {v.name for v in chain(graph.input, graph.output, graph.value_info)
             if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
    typed.update(t.name for t in graph.initializer)
    untyped = list(dict.fromkeys(
        name for node in graph.node for name in node.output if name and name not in typed))
    if not untyped:
        return
    import onnxruntime as ort  # only models with untyped values pay for the import

    from byoc_sdk.modules import session_options

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in untyped)
    options = session_options(1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if base_dir is not None:
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(base_dir))
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own exception types, one per failure
        return
    found = 0
    wanted = set(untyped)
    for output in session.get_outputs():
        kind = re.fullmatch(r"tensor\((\w+)\)", output.type or "")
        known = kind and onnx.TensorProto.DataType.DESCRIPTOR.values_by_name.get(
            kind.group(1).upper())
        if output.name not in wanted or not known:
            continue  # a sequence, a map, or a type name this onnx does not know
        elem = known.number
        # onnxruntime reports an unknown shape as [], a scalar's shape too: take [] as
        # unknown, which is never wrong (a scalar read as a tensor of rank 0 would be).
        dims = [d if isinstance(d, int | str) else None for d in output.shape or ()] or None
        graph.value_info.append(onnx.helper.make_tensor_value_info(output.name, elem, dims))
        found += 1
    if found:
        notes.append(f"types of {found} values that onnx's shape inference cannot type "
                     "(ops outside the default domain) taken from onnxruntime")


#: What onnx's strict inference says when a declared type disagrees with the inferred one.
_CONTRADICTION = re.compile(r"existing shape differ|existing type differ|elem type differ"
                            r"|existing shape.*rank", re.IGNORECASE)


def load_external_data(model: ir.Model) -> bool:
    """Read every tensor ``model`` still keeps in an external file into memory, in place,
    and say whether there was any.

    A model loaded from external data reads it lazily, from paths relative to the
    original file. Once partitioned, those tensors sit in initializers and in the
    ``Constant`` nodes of region functions alike; a model written elsewhere, or a
    package, must not point back at the original's files.
    """
    found = False
    for graph in (model.graph, *(f.graph for f in model.functions.values())):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                value.const_value = _in_memory(value.const_value)
                found = True
        for node in ir.traversal.RecursiveGraphIterator(graph):
            for name, attr in list(node.attributes.items()):
                if attr.type == ir.AttributeType.TENSOR and isinstance(attr.value,
                                                                       ir.ExternalTensor):
                    node.attributes[name] = ir.AttrTensor(name, _in_memory(attr.value))
                    found = True
    return found


def _in_memory(tensor: ir.ExternalTensor) -> ir.Tensor:
    return ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=tensor.name)
