"""PartitionGraph: each region becomes a model-local function and one call node.

The partitioned model must stay valid ONNX that onnxruntime runs as it is, with the
original's outputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from byoc_sdk import RegionPolicy, any_input, const, op, partition_model
from byoc_sdk.content_hash import SHA256_KEY, content_hash
from byoc_sdk.testing import assert_equivalent, onnx_text, run_onnxruntime
from byoc_sdk.versions import pinned_ir_version

KEEP_ALL = RegionPolicy.keep_all()

MLP = """
    g (float[2,4] x) => (float[2,4] y)
    <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4}> {
      [mm] m = MatMul(x, w)
      [add] a = Add(m, b)
      [sm] s = Softmax(a)
      [mm2] y = MatMul(s, w)
    }"""


def test_a_region_becomes_a_function_in_the_target_domain(make_target):
    model = onnx_text(MLP)
    result = partition_model(model, [make_target("acc", ["MatMul", "Add"])], policy=KEEP_ALL)
    proto = result.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == pinned_ir_version()
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("byoc.acc", 1)}
    calls = [n for n in proto.graph.node if n.domain == "byoc.acc"]
    assert [(n.op_type, n.name) for n in calls] == [("acc_0", "acc_0"), ("acc_1", "acc_1")]
    functions = {f.name: f for f in proto.functions}
    assert [n.name for n in functions["acc_0"].node if n.op_type != "Constant"] == ["mm", "add"]
    assert_equivalent(model, proto)


def test_bound_constants_live_inside_the_function(make_target):
    model = onnx_text(MLP)
    result = partition_model(model, [make_target("acc", ["MatMul", "Add"])], policy=KEEP_ALL)
    proto = result.to_proto()
    body = {f.name: f for f in proto.functions}["acc_0"]
    constants = [n for n in body.node if n.op_type == "Constant"]
    assert sorted(n.output[0] for n in constants) == ["b", "w"]
    assert list(proto.graph.node[0].input) == ["x"]
    # b is used only inside regions, so it no longer sits in the main graph.
    assert {t.name for t in proto.graph.initializer} == set()


def test_bound_constants_record_their_content_hash(make_target):
    model = onnx_text(MLP)
    result = partition_model(model, [make_target("acc", ["MatMul", "Add"])], policy=KEEP_ALL)
    function = next(iter(result.model.functions.values()))
    hashes = {
        node.outputs[0].name: node.outputs[0].metadata_props.get(SHA256_KEY)
        for node in function if node.op_type == "Constant"
    }
    assert all(len(h) == 64 for h in hashes.values())
    assert hashes["w"] != hashes["b"]


def test_constants_can_be_passed_as_call_inputs(make_target):
    model = onnx_text(MLP)
    target = make_target("acc", ["MatMul", "Add"], constants="inputs")
    proto = partition_model(model, [target], policy=KEEP_ALL).to_proto()
    assert list(proto.graph.node[0].input) == ["x", "w", "b"]
    assert {t.name for t in proto.graph.initializer} == {"w", "b"}
    assert_equivalent(model, proto)


def test_identical_constants_are_stored_once(make_target):
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4] b1 = {1, 2, 3, 4}, float[4] b2 = {1, 2, 3, 4}> {
          [a1] t = Add(x, b1)
          [a2] y = Add(t, b2)
        }""")
    target = make_target("acc", ["Add"], constants="inputs")
    proto = partition_model(model, [target], policy=KEEP_ALL).to_proto()
    assert len(proto.graph.initializer) == 1
    assert_equivalent(model, proto)


def test_content_hash_depends_on_dtype_shape_and_bytes():
    import numpy as np
    import onnx_ir as ir

    a = content_hash(ir.tensor(np.zeros(4, np.float32)))
    assert a == content_hash(ir.tensor(np.zeros(4, np.float32)))
    assert a != content_hash(ir.tensor(np.zeros((2, 2), np.float32)))
    assert a != content_hash(ir.tensor(np.zeros(4, np.int32)))


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "int8", "bool", "uint16"])
def test_content_hash_of_a_loaded_tensor_equals_that_of_its_values(dtype, tmp_path):
    # A tensor read from a model is hashed from its proto's fields; the hash must be the
    # one its values give in any other form (the package's store relies on it), for
    # tensors stored in raw bytes, in typed fields, and in an external file.
    import numpy as np
    import onnx
    import onnx_ir as ir
    from onnx import numpy_helper

    values = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    expected = content_hash(ir.tensor(values))
    raw = numpy_helper.from_array(values, "w")
    assert content_hash(ir.serde.deserialize_tensor(raw)) == expected
    typed = onnx.helper.make_tensor("w", raw.data_type, values.shape, values.ravel().tolist())
    assert not typed.HasField("raw_data")
    assert content_hash(ir.serde.deserialize_tensor(typed)) == expected
    external = onnx.TensorProto()
    external.CopyFrom(raw)
    (tmp_path / "w.bin").write_bytes(raw.raw_data)
    onnx.external_data_helper.set_external_data(external, "w.bin")
    external.ClearField("raw_data")
    external.data_location = onnx.TensorProto.EXTERNAL
    assert content_hash(ir.serde.deserialize_tensor(external, str(tmp_path))) == expected


def test_content_hash_of_four_bit_tensors_goes_through_their_values():
    import numpy as np
    import onnx_ir as ir

    values = ir.tensor(np.array([1, -2, 3], np.int8), dtype=ir.DataType.INT4)
    packed = ir.serde.serialize_tensor(values)
    assert content_hash(ir.serde.deserialize_tensor(packed)) == content_hash(values)


def test_a_composite_inside_a_region_is_a_nested_function_call(make_target):
    model = onnx_text(MLP)
    target = make_target("acc", ["MatMul"])
    target.pattern("mm_add", op("Add", op("MatMul", any_input(), const()), const()))
    proto = partition_model(model, [target], policy=KEEP_ALL).to_proto()
    functions = {f.name: f for f in proto.functions}
    inner = [n for n in functions["acc_0"].node if n.op_type != "Constant"]
    assert [(n.domain, n.op_type) for n in inner] == [("byoc.acc.composite", "mm_add_0")]
    assert [n.name for n in functions["mm_add_0"].node] == ["mm", "add"]
    assert_equivalent(model, proto)


def test_a_composite_whose_region_is_dropped_is_expanded_back(make_target):
    model = onnx_text(MLP)
    target = make_target("acc", [])
    target.pattern("mm_add", op("Add", op("MatMul", any_input(), const()), const()))
    result = partition_model(model, [target], policy=RegionPolicy(min_nodes=3))
    proto = result.to_proto()
    assert [n.name for n in proto.graph.node] == ["mm", "add", "sm", "mm2"]
    assert not proto.functions
    reasons = {n.name: n.reason for n in result.report.nodes}
    assert reasons["mm"] == ("acc pattern mm_add dropped: its region has 2 nodes, fewer than "
                             "min_nodes=3; MatMul is not supported by acc")
    assert_equivalent(model, proto)


def test_every_node_records_where_it_went_and_why(make_target):
    model = onnx_text(MLP)
    proto = partition_model(model, [make_target("acc", ["MatMul", "Add"])], policy=KEEP_ALL
                            ).to_proto()
    host = {n.name: {p.key: p.value for p in n.metadata_props} for n in proto.graph.node}
    assert host["sm"]["byoc.target"] == "host"
    assert "Softmax is not supported by acc" in host["sm"]["byoc.reason"]
    assert host["acc_0"]["byoc.region"] == "acc_0"
    body = {f.name: f for f in proto.functions}["acc_0"]
    mm = next(n for n in body.node if n.name == "mm")
    assert {p.key: p.value for p in mm.metadata_props}["byoc.region"] == "acc_0"


def test_a_model_with_nothing_offloaded_is_unchanged_but_pinned(make_target):
    model = onnx_text(MLP)
    proto = partition_model(model, [make_target("acc", ["Gelu"])]).to_proto()
    assert [n.name for n in proto.graph.node] == ["mm", "add", "sm", "mm2"]
    assert proto.ir_version == pinned_ir_version()
    assert_equivalent(model, proto)


# --- the names the partitioner makes never repeat a name of the graph ----------------

def _node_names(proto: onnx.ModelProto) -> list[list[str]]:
    return [[n.name for n in graph.node] for graph in (proto.graph, *proto.functions)]


@pytest.mark.parametrize(("name", "ops"), [
    ("acc_0", ["MatMul", "Add"]),               # a host node called like the region
    ("mm_add_0", ["MatMul", "Add"]),            # ... like a composite call
    ("mm_add_0", ["MatMul", "Add", "Softmax"]), # a region member called like one in it
    ("w_const", ["MatMul", "Add"]),             # a host node called like a Constant
])
def test_generated_names_avoid_the_names_of_the_graph(make_target, name, ops):
    """A node called like a region, a composite call or a bound weight's Constant made
    two nodes of one name: onnxruntime refused the model, and a build ran the wrong
    step under that name."""
    model = onnx_text(MLP.replace("[sm]", f"[{name}]"))
    target = make_target("acc", ops)
    target.pattern("mm_add", op("Add", op("MatMul", any_input(), const()), const()))
    proto = partition_model(model, [target], policy=KEEP_ALL).to_proto()
    for names in _node_names(proto):
        assert len(names) == len(set(names)), names
    assert_equivalent(model, proto)


def test_a_bound_weight_constant_avoids_a_member_named_like_it(make_target):
    model = onnx_text(MLP.replace("[sm]", "[w_const]"))
    proto = partition_model(model, [make_target("acc", ["MatMul", "Add", "Softmax"])],
                            policy=KEEP_ALL).to_proto()
    body = {f.name: f for f in proto.functions}["acc_0"]
    names = [n.name for n in body.node]
    assert "w_const" in names and len(names) == len(set(names))
    assert_equivalent(model, proto)


def test_a_string_initializer_is_hashed_and_stays_on_the_host(make_target):
    """Hashing a string constant called ``tobytes``, which string tensors lack: every
    partition of such a model was an internal error."""
    labels = onnx.helper.make_tensor("labels", onnx.TensorProto.STRING, [3], [b"a", b"b", b"c"])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("ArgMax", ["x"], ["i"], name="am", axis=0, keepdims=0),
         onnx.helper.make_node("Gather", ["labels", "i"], ["y"], name="g")],
        "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.STRING, [])], [labels])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)],
                                   ir_version=pinned_ir_version())
    result = partition_model(model, [make_target("acc", ["ArgMax"])], policy=KEEP_ALL)
    assert result.model.graph.initializers["labels"].metadata_props[SHA256_KEY]
    feeds = {"x": np.array([0.5, 2.0, 1.0], np.float32)}
    assert run_onnxruntime(result.to_proto(), feeds)["y"] == run_onnxruntime(model, feeds)["y"]


def test_string_contents_hash_apart_however_they_split():
    import onnx_ir as ir

    def strings(*items: bytes) -> ir.StringTensor:
        return ir.StringTensor(list(items), shape=ir.Shape([len(items)]))

    assert content_hash(strings(b"ab", b"c")) != content_hash(strings(b"a", b"bc"))
    assert content_hash(strings(b"ab", b"c")) == content_hash(strings(b"ab", b"c"))
