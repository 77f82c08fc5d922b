"""Specification of ``byoc_sdk.loader.load_model`` and the runtime limits it enforces.

Every failure raises a ``ModelLoadError`` subclass whose one-line message names the file
and, where there is one, the node.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from byoc_sdk import model_zoo, versions
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
from byoc_sdk.loader import NOTES_KEY, SOURCE_KEY, load_model
from byoc_sdk.testing import onnx_text

LIMITS = versions.runtime_limits()


def _floats(name: str, shape=(2,)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    *,
    initializers: list[onnx.TensorProto] = (),
    opset: int = 21,
    ir_version: int = 10,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )


def _save(directory: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    path = directory / name
    path.write_bytes(model.SerializeToString())
    return path


def _relu_model(**kwargs) -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    return _model([node], [_floats("x")], [_floats("y")], **kwargs)


# A MatMul whose output "m" is an intermediate value with no value_info in the file.
MATMUL_RELU = """
agraph (float[2,3] x) => (float[2,4] y)
<float[3,4] w = {1,2,3,4,5,6,7,8,9,10,11,12}>
{
  [mm] m = MatMul(x, w)
  [relu] y = Relu(m)
}
"""


def _intermediate_shape(model: ir.Model) -> tuple:
    (mm,) = [node for node in model.graph if node.name == "mm"]
    return tuple(mm.outputs[0].shape)


# --- loading from each kind of source -------------------------------------------------------


def test_load_from_path_returns_ir_model_with_inferred_intermediate_shapes(tmp_path):
    path = _save(tmp_path, onnx_text(MATMUL_RELU))

    model = load_model(path)

    assert isinstance(model, ir.Model)
    assert _intermediate_shape(model) == (2, 4)


def test_load_from_str_path_records_the_source(tmp_path):
    path = _save(tmp_path, onnx_text(MATMUL_RELU))

    model = load_model(str(path))

    assert model.meta[SOURCE_KEY] == str(path)
    assert model.meta[NOTES_KEY] == []


def test_load_from_bytes_infers_shapes():
    model = load_model(onnx_text(MATMUL_RELU).SerializeToString())

    assert isinstance(model, ir.Model)
    assert _intermediate_shape(model) == (2, 4)
    assert model.meta[SOURCE_KEY] == "<bytes>"


def test_load_from_model_proto_infers_shapes():
    model = load_model(onnx_text(MATMUL_RELU))

    assert isinstance(model, ir.Model)
    assert _intermediate_shape(model) == (2, 4)
    assert model.meta[SOURCE_KEY] == "<ModelProto>"


def test_load_without_shape_inference_leaves_intermediate_shapes_unknown():
    model = load_model(onnx_text(MATMUL_RELU), infer_shapes=False)

    (mm,) = [node for node in model.graph if node.name == "mm"]
    assert mm.outputs[0].shape is None


def test_load_from_model_proto_leaves_the_callers_proto_untouched():
    first = helper.make_node("Relu", ["x"], ["y"], name="first")
    second = helper.make_node("Neg", ["y"], ["z"], name="second")
    proto = _model([second, first], [_floats("x")], [_floats("z")], ir_version=14)
    before = proto.SerializeToString()

    load_model(proto)

    assert proto.SerializeToString() == before


def test_loaded_zoo_model_keeps_its_initializer_values():
    proto = model_zoo.mlp()
    expected = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}

    model = load_model(proto)

    for name, value in model.graph.initializers.items():
        np.testing.assert_array_equal(value.const_value.numpy(), expected[name], err_msg=name)


# --- external data --------------------------------------------------------------------------


def _save_with_external_data(directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    proto = model_zoo.mlp()
    expected = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    path = directory / "model.onnx"
    onnx.save_model(
        proto,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (directory / "weights.bin").is_file()
    return path, expected


def _assert_values(model: ir.Model, expected: dict[str, np.ndarray]) -> None:
    assert set(model.graph.initializers) == set(expected)
    for name, value in model.graph.initializers.items():
        np.testing.assert_array_equal(value.const_value.numpy(), expected[name], err_msg=name)


def test_external_data_model_loads_from_its_path_with_readable_values(tmp_path, monkeypatch):
    path, expected = _save_with_external_data(tmp_path)
    monkeypatch.chdir(tmp_path)

    model = load_model(path)

    _assert_values(model, expected)


def test_external_data_model_loads_from_any_working_directory(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path, expected = _save_with_external_data(model_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    model = load_model(path)

    _assert_values(model, expected)


def test_missing_external_data_file_is_a_load_error_naming_it(tmp_path):
    path, _ = _save_with_external_data(tmp_path)
    (tmp_path / "weights.bin").unlink()

    with pytest.raises(ModelLoadError) as caught:
        load_model(path)

    message = str(caught.value)
    assert "weights.bin" in message
    assert str(path) in message
    assert "missing" in message


def test_external_data_model_from_bytes_asks_to_load_it_from_its_path(tmp_path):
    path, _ = _save_with_external_data(tmp_path)

    with pytest.raises(ModelLoadError) as caught:
        load_model(path.read_bytes())

    message = str(caught.value)
    assert "weights.bin" in message
    assert "external" in message
    assert "from its path" in message


def _external_mlp(directory: Path, edit: dict[str, str | None]) -> Path:
    """The mlp saved with its weights in ``weights.bin``, then every external tensor's
    ``edit`` keys set to the given value, or dropped where it is ``None``."""
    path, _ = _save_with_external_data(directory)
    proto = onnx.load(path, load_external_data=False)
    for tensor in proto.graph.initializer:
        fields = {e.key: e.value for e in tensor.external_data} | edit
        del tensor.external_data[:]
        for key, value in fields.items():
            if value is not None:
                tensor.external_data.add(key=key, value=value)
    return _save(directory, proto)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"offset": "abc"}, "external data offset 'abc' is not a non-negative integer"),
        ({"length": "-5"}, "external data length '-5' is not a non-negative integer"),
        # onnx_ir would read the tensor's full size; onnxruntime refuses the model.
        ({"length": "4"}, "external data length 4 does not match its"),
    ],
)
def test_malformed_external_data_fields_are_a_load_error_naming_the_initializer(
    tmp_path, edit, message
):
    path = _external_mlp(tmp_path, edit)

    with pytest.raises(ModelLoadError, match=message) as caught:
        load_model(path)

    assert "initializer '" in str(caught.value)
    assert str(path) in str(caught.value)


def test_truncated_external_data_without_lengths_is_a_truncated_model_error(tmp_path):
    # Without a length key the tensor's own size tells how far its data reaches.
    path = _external_mlp(tmp_path, {"length": None, "offset": None})
    weights = tmp_path / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:10])

    with pytest.raises(TruncatedModelError, match="ends before initializer"):
        load_model(path)


def _save_constant_node_with_external_data(directory: Path) -> tuple[Path, np.ndarray]:
    value = np.arange(16, dtype=np.float32).reshape(4, 4)
    const = helper.make_node("Constant", [], ["w"], name="weights",
                             value=numpy_helper.from_array(value, "w_value"))
    matmul = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    proto = _model([const, matmul], [_floats("x", (2, 4))], [_floats("y", (2, 4))])
    path = directory / "model.onnx"
    onnx.save_model(proto, path, save_as_external_data=True, location="weights.bin",
                    size_threshold=0, convert_attribute=True)
    assert (directory / "weights.bin").is_file()
    return path, value


def test_constant_node_with_external_data_loads_from_any_working_directory(tmp_path,
                                                                          monkeypatch):
    model_dir, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    model_dir.mkdir()
    elsewhere.mkdir()
    path, value = _save_constant_node_with_external_data(model_dir)
    monkeypatch.chdir(elsewhere)

    model = load_model(path)

    (const,) = [node for node in model.graph if node.op_type == "Constant"]
    np.testing.assert_array_equal(const.attributes["value"].value.numpy(), value)


def test_truncated_external_data_of_a_constant_node_names_the_node(tmp_path):
    path, _ = _save_constant_node_with_external_data(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)

    with pytest.raises(TruncatedModelError,
                       match="ends before tensor 'w_value' of node weights"):
        load_model(path)


# --- files that are not ONNX models ---------------------------------------------------------


def test_missing_file_raises_model_not_found_naming_the_file(tmp_path):
    path = tmp_path / "nope.onnx"

    with pytest.raises(ModelNotFoundError) as caught:
        load_model(path)

    assert str(path) in str(caught.value)
    assert "no such file" in str(caught.value)


def test_directory_raises_model_load_error_naming_it(tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        load_model(tmp_path)

    assert str(tmp_path) in str(caught.value)
    assert "is a directory" in str(caught.value)


def test_empty_file_raises_not_onnx_naming_the_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")

    with pytest.raises(NotOnnxError) as caught:
        load_model(path)

    assert str(path) in str(caught.value)
    assert "empty" in str(caught.value)


def test_text_file_raises_not_onnx_naming_the_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n")

    with pytest.raises(NotOnnxError) as caught:
        load_model(path)

    assert str(path) in str(caught.value)
    assert "not an ONNX model" in str(caught.value)


def test_truncated_model_raises_truncated_model_error_naming_the_file(tmp_path):
    data = model_zoo.small_cnn().SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(TruncatedModelError) as caught:
        load_model(path)

    assert str(path) in str(caught.value)
    assert "ends early" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        ModelNotFoundError,
        NotOnnxError,
        TruncatedModelError,
        InvalidGraphError,
        GraphCycleError,
        DanglingInputError,
        UnsupportedVersionError,
    ],
)
def test_every_load_failure_is_a_model_load_error(error):
    assert issubclass(error, ModelLoadError)


# --- malformed graphs -----------------------------------------------------------------------


def test_cycle_raises_graph_cycle_error_naming_both_nodes(tmp_path):
    a = helper.make_node("Relu", ["b_out"], ["a_out"], name="node_a")
    b = helper.make_node("Neg", ["a_out"], ["b_out"], name="node_b")
    path = _save(tmp_path, _model([a, b], [_floats("x")], [_floats("a_out")]))

    with pytest.raises(GraphCycleError) as caught:
        load_model(path)

    message = str(caught.value)
    assert str(path) in message
    assert "cycle" in message
    assert "node_a" in message
    assert "node_b" in message


def test_node_reading_an_unproduced_value_raises_dangling_input_naming_node_and_value(tmp_path):
    node = helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")
    path = _save(tmp_path, _model([node], [_floats("x")], [_floats("y")]))

    with pytest.raises(DanglingInputError) as caught:
        load_model(path)

    message = str(caught.value)
    assert str(path) in message
    assert "node adder" in message
    assert "'ghost'" in message
    assert caught.value.context.node == "adder"


def test_two_nodes_of_one_name_raise_invalid_graph_naming_it(tmp_path):
    # onnxruntime refuses such a model; byoc's report and regions would name two nodes
    # alike.
    relu = helper.make_node("Relu", ["x"], ["r"], name="twin")
    neg = helper.make_node("Neg", ["r"], ["y"], name="twin")
    path = _save(tmp_path, _model([relu, neg], [_floats("x")], [_floats("y")]))

    with pytest.raises(InvalidGraphError) as caught:
        load_model(path)

    assert caught.value.context.node == "twin"
    assert "#0 (Relu), #1 (Neg)" in str(caught.value)
    assert "must be unique" in str(caught.value)


def test_unnamed_nodes_are_not_a_repeated_name():
    relu = helper.make_node("Relu", ["x"], ["r"])
    neg = helper.make_node("Neg", ["r"], ["y"])

    load_model(_model([relu, neg], [_floats("x")], [_floats("y")]))


def test_dangling_input_of_an_unnamed_node_names_its_position_and_op(tmp_path):
    relu = helper.make_node("Relu", ["x"], ["r"])
    add = helper.make_node("Add", ["r", "ghost"], ["y"])
    path = _save(tmp_path, _model([relu, add], [_floats("x")], [_floats("y")]))

    with pytest.raises(DanglingInputError) as caught:
        load_model(path)

    assert "#1 (Add)" in str(caught.value)


def test_graph_output_nobody_produces_raises_dangling_input_naming_it(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    path = _save(tmp_path, _model([node], [_floats("x")], [_floats("z")]))

    with pytest.raises(DanglingInputError) as caught:
        load_model(path)

    message = str(caught.value)
    assert str(path) in message
    assert "graph output 'z'" in message


def test_nodes_out_of_topological_order_are_resorted_with_a_note():
    first = helper.make_node("Relu", ["x"], ["y"], name="first")
    second = helper.make_node("Neg", ["y"], ["z"], name="second")
    third = helper.make_node("Abs", ["z"], ["w"], name="third")
    proto = _model([third, second, first], [_floats("x")], [_floats("w")])

    model = load_model(proto)

    assert [node.name for node in model.graph] == ["first", "second", "third"]
    notes = model.meta[NOTES_KEY]
    assert any("topological order" in note for note in notes)


def test_sorted_graph_keeps_its_order_and_gets_no_notes():
    model = load_model(model_zoo.small_cnn())

    assert [node.name for node in model.graph] == [n.name for n in model_zoo.small_cnn().graph.node]
    assert model.meta[NOTES_KEY] == []


def test_resorting_respects_values_read_by_subgraphs_from_the_outer_scope():
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["y"], ["t"], name="then_id")], "then", [], [_floats("t")]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["y"], ["e"], name="else_neg")], "else", [], [_floats("e")]
    )
    if_node = helper.make_node(
        "If", ["cond"], ["z"], name="if", then_branch=then_branch, else_branch=else_branch
    )
    consumer = helper.make_node("Neg", ["z"], ["out"], name="consumer")
    producer = helper.make_node("Relu", ["x"], ["y"], name="producer")
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    proto = _model([consumer, if_node, producer], [_floats("x"), cond], [_floats("out")])

    model = load_model(proto)

    assert [node.name for node in model.graph] == ["producer", "if", "consumer"]


# --- versions -------------------------------------------------------------------------------


def test_runtime_limits_are_at_least_ir_10_and_opset_21():
    assert LIMITS.max_ir_version >= 10
    assert LIMITS.max_opset >= 21


def test_pinned_ir_version_is_the_runtime_max_ir_version():
    assert versions.pinned_ir_version() == LIMITS.max_ir_version


def test_opset_newer_than_the_runtime_raises_unsupported_version(tmp_path):
    opset = LIMITS.max_opset + 2  # 28 with onnxruntime 1.31
    if opset > onnx.defs.onnx_opset_version():
        pytest.skip("the installed onnx cannot describe an opset newer than onnxruntime's")
    path = _save(tmp_path, _relu_model(opset=opset))

    with pytest.raises(UnsupportedVersionError) as caught:
        load_model(path)

    message = str(caught.value)
    assert str(path) in message
    assert f"opset {opset}" in message
    assert f"at most {LIMITS.max_opset}" in message
    assert "onnx.version_converter" in message


needs_newer_onnx_ir = pytest.mark.skipif(
    LIMITS.max_ir_version >= onnx.IR_VERSION,
    reason="onnx and onnxruntime agree on the IR version; nothing to pin",
)


@needs_newer_onnx_ir
def test_newer_ir_version_with_ordinary_dtypes_is_pinned_with_a_note():
    model = load_model(_relu_model(ir_version=onnx.IR_VERSION))

    assert model.ir_version == LIMITS.max_ir_version
    notes = model.meta[NOTES_KEY]
    assert any(
        f"IR version {onnx.IR_VERSION} pinned to {LIMITS.max_ir_version}" in n for n in notes
    )


def _float6_tensor() -> onnx.TensorProto:
    dtype = getattr(TensorProto, "FLOAT6E2M3", None)
    if dtype is None or versions.min_ir_for_dtype(dtype) <= LIMITS.max_ir_version:
        pytest.skip("needs an onnx with FLOAT6E2M3 and an onnxruntime without it")
    try:
        return helper.make_tensor("w6", dtype, [2], [0.5, 1.0])
    except Exception as exc:  # onnx may know the type but not how to pack it
        pytest.skip(f"onnx cannot build a FLOAT6E2M3 tensor: {exc}")


def test_newer_ir_version_with_a_dtype_too_new_for_the_runtime_is_refused(tmp_path):
    tensor = _float6_tensor()
    cast = helper.make_node("Cast", ["w6"], ["y"], name="cast", to=TensorProto.FLOAT)
    proto = _model([cast], [], [_floats("y")], initializers=[tensor], ir_version=14)
    path = _save(tmp_path, proto)

    with pytest.raises(UnsupportedVersionError) as caught:
        load_model(path)

    message = str(caught.value)
    assert str(path) in message
    assert "IR version 14" in message
    assert f"IR {LIMITS.max_ir_version} at most" in message


def test_dtype_too_new_for_the_runtime_in_a_constant_node_is_refused():
    tensor = _float6_tensor()
    constant = helper.make_node("Constant", [], ["w6"], name="const", value=tensor)
    cast = helper.make_node("Cast", ["w6"], ["y"], name="cast", to=TensorProto.FLOAT)
    proto = _model([constant, cast], [], [_floats("y")], ir_version=14)

    with pytest.raises(UnsupportedVersionError):
        load_model(proto)


# --- the ONNX checker -----------------------------------------------------------------------


def _bad_relu(kind: str) -> onnx.ModelProto:
    if kind == "unknown attribute":
        node = helper.make_node("Relu", ["x"], ["y"], name="bad_relu", bogus=3)
    else:
        node = helper.make_node("Relu", ["x", "x"], ["y"], name="bad_relu")
    return _model([node], [_floats("x")], [_floats("y")])


@pytest.mark.parametrize("kind", ["unknown attribute", "too many inputs"])
def test_model_failing_the_onnx_checker_raises_invalid_graph_naming_the_file(tmp_path, kind):
    path = _save(tmp_path, _bad_relu(kind))

    with pytest.raises(InvalidGraphError) as caught:
        load_model(path)

    message = str(caught.value)
    assert str(path) in message
    assert "fails the ONNX checker" in message


def test_model_failing_the_onnx_checker_names_the_node(tmp_path):
    path = _save(tmp_path, _bad_relu("unknown attribute"))

    with pytest.raises(InvalidGraphError) as caught:
        load_model(path)

    assert caught.value.context.node == "bad_relu"
    assert "node bad_relu" in str(caught.value)


def test_model_load_errors_render_as_one_line(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("hello\n")

    with pytest.raises(ModelLoadError) as caught:
        load_model(os.fspath(path))

    assert "\n" not in str(caught.value)


def test_a_declared_output_shape_the_graph_contradicts_is_refused_naming_the_node():
    # Declared [1, 9], computed [1, 4]: a region compiled for the declared shape would
    # hand back memory it never wrote.
    model = onnx_text("""
        g (float[1, 4] x) => (float[1, 9] y) {
          [add] y = Add(x, x)
        }""")
    with pytest.raises(InvalidGraphError, match=r"node name: add.*\(4\) vs \(9\)"):
        load_model(model)


def test_a_declared_output_type_the_graph_contradicts_is_refused():
    model = onnx_text("""
        g (float[1, 4] x) => (int64[1, 4] y) {
          [add] y = Add(x, x)
        }""")
    with pytest.raises(InvalidGraphError, match="declared shape or type contradicts"):
        load_model(model)


def test_input_shapes_recompute_the_declared_output_shapes():
    # The declared output follows the old input shape; a new batch must not contradict it.
    model = onnx_text("""
        g (float[1, 4] x) => (float[1, 4] y) {
          y = Relu(x)
        }""")
    loaded = load_model(model, input_shapes={"x": (3, 4)})
    assert loaded.graph.outputs[0].shape.dims == (3, 4)
    with pytest.raises(ModelLoadError, match="must have positive dimensions"):
        load_model(model, input_shapes={"x": (-1, 4)})
