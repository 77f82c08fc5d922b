"""Tests for byoc_sdk.model_zoo: every model is valid ONNX, runs in onnxruntime, stays finite."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from byoc_sdk import model_zoo
from byoc_sdk.model_zoo import (
    IR_VERSION,
    OPSET,
    all_models,
    block_chain,
    random_dag,
    random_inputs,
    with_control_flow,
)

# Largest block of block_chain: Conv, Relu, Softmax, Mul, MatMul, Add, Add.
MAX_BLOCK_NODES = 7


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    # One thread: these models are tiny and thread-pool start-up dominates session creation.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def assert_valid(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    names = [node.name for node in model.graph.node]
    assert all(names), "every node needs a name"
    assert len(set(names)) == len(names), "node names must be unique"


def assert_runs_finite(model: onnx.ModelProto, seed: int = 0) -> list[np.ndarray]:
    outputs = run(model, random_inputs(model, seed))
    assert len(outputs) == len(model.graph.output)
    for value, out in zip(model.graph.output, outputs, strict=True):
        expected = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
        assert out.shape == expected, value.name
        assert np.isfinite(out).all(), value.name
    return outputs


@pytest.fixture(scope="module")
def zoo() -> dict[str, onnx.ModelProto]:
    return all_models()


ZOO_NAMES = [
    "small_cnn",
    "depthwise_cnn",
    "mlp",
    "transformer_block",
    "block_chain_200",
    "random_dag_0",
    "with_control_flow",
]


def test_all_models_names(zoo: dict[str, onnx.ModelProto]) -> None:
    assert sorted(zoo) == sorted(ZOO_NAMES)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_model_is_valid_and_runs(zoo: dict[str, onnx.ModelProto], name: str) -> None:
    model = zoo[name]
    assert_valid(model)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), f"{value.name} shape is not static"
    assert_runs_finite(model)


def test_builders_are_deterministic() -> None:
    for builder in (
        model_zoo.small_cnn,
        model_zoo.depthwise_cnn,
        model_zoo.mlp,
        model_zoo.transformer_block,
    ):
        assert builder().SerializeToString() == builder().SerializeToString()
        assert builder(seed=0).SerializeToString() != builder(seed=1).SerializeToString()


def test_builder_arguments_shape_the_io() -> None:
    model = model_zoo.small_cnn(batch=2, channels=1, size=16)
    assert_valid(model)
    assert [out.shape for out in assert_runs_finite(model)] == [(2, 10)]
    model = model_zoo.mlp(batch=3, features=5, hidden=(7,), classes=4)
    assert [out.shape for out in assert_runs_finite(model)] == [(3, 4)]
    model = model_zoo.transformer_block(batch=2, seq=5, dim=12, heads=3)
    assert_valid(model)
    assert [out.shape for out in assert_runs_finite(model)] == [(2, 5, 12)]
    with pytest.raises(ValueError):
        model_zoo.transformer_block(dim=10, heads=4)


def blocks_of(model: onnx.ModelProto) -> dict[int, list[onnx.NodeProto]]:
    blocks: dict[int, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        prefix = node.name.split("/")[0]
        assert prefix.startswith("block"), node.name
        blocks.setdefault(int(prefix.removeprefix("block")), []).append(node)
    return blocks


@pytest.mark.parametrize("n", [1, 5, 6, 11, 17, 18, 19, 100, 200, 1000])
def test_block_chain_node_count(n: int) -> None:
    model = block_chain(n)
    assert n <= len(model.graph.node) < n + MAX_BLOCK_NODES
    blocks = blocks_of(model)
    # Whole blocks only: dropping the last block would fall below n.
    last = max(blocks)
    assert len(model.graph.node) - len(blocks[last]) < n


def test_block_chain_has_softmax_diamond_every_third_block() -> None:
    model = block_chain(300)
    assert_valid(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    blocks = blocks_of(model)
    assert len(blocks) > 6
    for index, nodes in blocks.items():
        softmaxes = [node for node in nodes if node.op_type == "Softmax"]
        if index % 3 != 2:
            assert softmaxes == [], f"block {index} should have no Softmax"
            continue
        (softmax,) = softmaxes
        assert list(softmax.attribute) == [onnx.helper.make_attribute("axis", -1)]
        (mul,) = consumers[softmax.output[0]]
        assert mul.op_type == "Mul"
        # Diamond: the Mul reads the Softmax's input both directly and through the Softmax.
        assert set(mul.input) == {softmax.input[0], softmax.output[0]}
        assert {node.op_type for node in consumers[softmax.input[0]]} == {"Softmax", "Mul"}


def test_block_chain_bind_weights() -> None:
    bound = block_chain(40)
    unbound = block_chain(40, bind_weights=False)
    assert_valid(unbound)
    assert [i.name for i in bound.graph.input] == ["input"]
    weights = [init.name for init in unbound.graph.initializer]
    assert [i.name for i in unbound.graph.input] == ["input", *weights]
    assert len(weights) == 4 * len(blocks_of(unbound))
    # Same weights either way, so the two models compute the same function (up to rounding:
    # onnxruntime may fuse constant weights differently).
    assert random_inputs(unbound).keys() == {"input"}
    np.testing.assert_allclose(
        run(bound, random_inputs(bound))[0],
        run(unbound, random_inputs(unbound))[0],
        rtol=1e-5,
        atol=1e-6,
    )
    # Unbound weights really are parameters: feeding new values changes the result.
    feeds = random_inputs(unbound)
    feeds["block0/conv.weight"] = np.zeros((8, 8, 3, 3), dtype=np.float32)
    assert not np.array_equal(run(unbound, feeds)[0], run(bound, random_inputs(bound))[0])


def test_block_chain_rejects_empty() -> None:
    with pytest.raises(ValueError):
        block_chain(0)


def test_random_dag_is_deterministic_per_seed() -> None:
    serialized = [random_dag(seed, 25).SerializeToString() for seed in range(21)]
    assert serialized == [random_dag(seed, 25).SerializeToString() for seed in range(21)]
    assert len(set(serialized)) == len(serialized)


@pytest.mark.parametrize("seed", range(21))
def test_random_dag_checks_and_runs(seed: int) -> None:
    for n in range(1, 41):
        model = random_dag(seed, n)
        assert_valid(model)
        assert len(model.graph.node) == n
        consumed = {name for node in model.graph.node for name in node.input}
        produced = [out for node in model.graph.node for out in node.output]
        outputs = {out.name for out in model.graph.output}
        assert {v for v in produced if v not in consumed} <= outputs, "every sink is an output"
        assert_runs_finite(model, seed)


def test_random_dag_mixes_ops_and_shapes() -> None:
    ops = {node.op_type for seed in range(10) for node in random_dag(seed, 40).graph.node}
    assert ops == {
        "Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Softmax",
        "Add", "Mul", "Sub", "Max", "MatMul", "Split", "Concat",
    }  # fmt: skip
    model = random_dag(3, 20, n_inputs=3, width=6)
    assert [i.name for i in model.graph.input] == ["input0", "input1", "input2"]
    assert_valid(model)
    assert all(out.shape == (1, 6) for out in assert_runs_finite(model))
    # Odd widths cannot be split in halves; the DAG is still valid.
    odd = random_dag(0, 40, width=5)
    assert "Split" not in {node.op_type for node in odd.graph.node}
    assert_valid(odd)
    assert_runs_finite(odd)


def test_with_control_flow_runs_both_branches() -> None:
    model = with_control_flow()
    assert_valid(model)
    (if_node,) = [node for node in model.graph.node if node.op_type == "If"]
    branch_inputs = {
        name for attr in if_node.attribute for node in attr.g.node for name in node.input
    }
    # Both branches capture main-graph values instead of taking inputs.
    assert "hidden" in branch_inputs
    assert all(not attr.g.input for attr in if_node.attribute)

    feeds = random_inputs(model)
    results = {}
    for cond in (True, False):
        feeds["cond"] = np.array(cond)
        (out,) = run(model, feeds)
        assert out.shape == (1, 4)
        assert np.isfinite(out).all()
        results[cond] = out
    assert not np.array_equal(results[True], results[False])


def test_random_inputs_follow_the_declared_inputs() -> None:
    feeds = random_inputs(with_control_flow(), seed=1)
    assert feeds.keys() == {"input", "cond"}
    assert feeds["input"].dtype == np.float32 and feeds["input"].shape == (1, 16)
    assert feeds["cond"].dtype == np.bool_ and feeds["cond"].shape == ()
    model = model_zoo.small_cnn()
    first, again = random_inputs(model, seed=5), random_inputs(model, seed=5)
    np.testing.assert_array_equal(first["input"], again["input"])

    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    idx = onnx.helper.make_tensor_value_info("idx", onnx.TensorProto.INT64, [3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"], name="id")], "g", [x, idx], [y]
    )
    feeds = random_inputs(onnx.helper.make_model(graph))
    np.testing.assert_array_equal(feeds["idx"], np.zeros(3, dtype=np.int64))

    dynamic = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n"])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"], name="id")], "g", [dynamic], [y]
    )
    with pytest.raises(ValueError, match="static"):
        random_inputs(onnx.helper.make_model(graph))
