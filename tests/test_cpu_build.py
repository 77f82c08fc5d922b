"""The cpu target end to end: whole models, codegen parameters and tuning records,
packages, module state and concurrent runs."""

from __future__ import annotations

import gc
import json
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc_sdk as byoc
from byoc_sdk import model_zoo
from byoc_sdk.testing import run_onnxruntime
from reference_backends.cpu import params
from reference_backends.cpu.lower import plan

RTOL, ATOL = 1e-4, 1e-5


def assert_matches(model: onnx.ModelProto, compiled: byoc.CompiledModel,
                   feeds: dict[str, np.ndarray]) -> None:
    expected = run_onnxruntime(model, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=RTOL, atol=ATOL, err_msg=name)


def conv_chain(seed: int = 0, channels: int = 8) -> onnx.ModelProto:
    """x -> Conv+Relu -> Conv -> Add(x) -> MatMul(const): names conv1, conv2, add, mm."""
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1] * 4),
        helper.make_node("Add", ["c2", "x"], ["a"], name="add"),
        helper.make_node("MatMul", ["a", "m"], ["y"], name="mm"),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "w1": weight(channels, channels, 3, 3), "b1": weight(channels, 1)[:, 0],
        "w2": weight(channels, channels, 3, 3), "m": weight(12, 12)}.items()]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       [1, channels, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 12, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def chain_feeds(channels: int = 8) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((1, channels, 12, 12))
            .astype(np.float32)}


def generated_source(compiled: byoc.CompiledModel) -> str:
    (region,) = [r for r in compiled.package.regions if r.target == "cpu"]
    return next(iter(region.artifact.sources.values()))


# --- whole models ------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [
    ("small_cnn", {"batch": 2}),
    ("depthwise_cnn", {}),
    ("transformer_block", {"seq": 12}),
    ("mlp", {}),
])
def test_zoo_models_end_to_end(name: str, kwargs: dict) -> None:
    model = getattr(model_zoo, name)(**kwargs)
    compiled = byoc.build(model, ["cpu"], strict=True)
    assert {n.target for n in compiled.report.partition.nodes} == {"cpu"}
    assert [r.status for r in compiled.report.regions] == ["compiled"]
    assert_matches(model, compiled, model_zoo.random_inputs(model, seed=3))


def test_bn_is_folded_and_chains_fused_in_a_cnn() -> None:
    compiled = byoc.build(model_zoo.small_cnn(), ["cpu"], strict=True)
    source = generated_source(compiled)
    # stem conv+BN+relu, block convs with their residual adds and relus, pool, head.
    kernels = [line for line in source.splitlines() if line.startswith("/*   k")]
    assert "BatchNormalization 'stem/bn' folded" in kernels[0]
    assert "stem_conv_bn_scale" in source  # the BN factors scale the packed weights
    assert any("Conv 'block1/conv2' + Add 'block1/conv2/bias', Add 'block1/add', "
               "Relu 'block1/relu2'" in line for line in kernels), kernels
    assert len(kernels) == 9


# --- parameters and tuning records -------------------------------------------------


def test_tuning_records_set_kernel_parameters() -> None:
    model = conv_chain()
    tuning = {"cpu_0": {
        "kernels": {"conv2": {"mr": 4, "nv": 1, "tile_rows": 2}},
        "ops": {"MatMul": {"mr": 3, "mc": 6, "unroll": 2}},
    }}
    compiled = byoc.build(model, ["cpu"], strict=True, tuning=tuning)
    source = generated_source(compiled)
    assert "Conv 'conv2' + Add 'add'; algorithm=gemm, tile_rows=2, mr=4, nv=1" in source
    assert "MatMul 'mm'; mr=3, nv=1, mc=6" in source
    assert "byoc_ukr_3x1_u2" in source
    assert_matches(model, compiled, chain_feeds())


def test_tuning_file_through_the_command_line(tmp_path) -> None:
    from byoc_sdk.cli import main

    model_path = tmp_path / "chain.onnx"
    onnx.save(conv_chain(), model_path)
    records = tmp_path / "tuning.json"
    records.write_text(json.dumps({"cpu_0": {"kernels": {"conv1": {"tile_rows": 3}}}}))
    package = tmp_path / "chain.byoc"
    code = main(["build", str(model_path), "--target", "cpu", "--strict",
                 "--tuning", str(records), "-o", str(package)])
    assert code in (0, None)
    loaded = byoc.CompiledModel.load(package)
    assert "tile_rows=3" in generated_source(loaded)
    assert_matches(conv_chain(), loaded, chain_feeds())


@pytest.mark.parametrize("options, reason", [
    ({"kernels": {"conv1": {"bogus": 1}}}, "has no parameters ['bogus']"),
    ({"kernels": {"conv1": {"mr": 0}}}, "mr must be a positive integer"),
    # Sizes that would have the generator or the C compiler run out of memory or time.
    ({"kernels": {"conv1": {"mr": 100_000}}}, "ConvSchedule.mr must be at most 32"),
    ({"ops": {"MatMul": {"unroll": 100_000}}}, "GemmSchedule.unroll must be at most 64"),
    ({"layout": "NCHW16c"}, "layout NCHW16c is not implemented"),
    ({"layout": "NWHC"}, "layout must be NCHW, NHWC or NCHW<x>c"),
    ({"vector_width": 3}, "vector_width must be one of"),
    ({"tile": 4}, "unknown cpu codegen options ['tile']"),
])
def test_bad_parameters_fall_back_with_the_reason(options: dict, reason: str) -> None:
    model = conv_chain()
    compiled = byoc.build(model, ["cpu"], tuning={"cpu_0": options})
    (region,) = compiled.report.regions
    assert region.status == "fallback"
    assert reason in region.reason
    assert_matches(model, compiled, chain_feeds())  # the host runs it instead
    with pytest.raises(byoc.BuildError, match="could not be compiled"):
        byoc.build(model, ["cpu"], tuning={"cpu_0": options}, strict=True)


@pytest.mark.parametrize("width", [4, 8])
def test_other_vector_widths_and_fixed_threads(width: int) -> None:
    model = model_zoo.small_cnn()
    compiled = byoc.build(model, ["cpu"], strict=True,
                          options={"cpu": {"vector_width": width, "threads": 2}})
    source = generated_source(compiled)
    assert f"vector_size({4 * width})" in source
    assert "num_threads(2)" in source or "omp parallel" not in source
    assert_matches(model, compiled, model_zoo.random_inputs(model))


PARALLEL_OPS = ("Conv", "MaxPool", "GlobalAveragePool", "Gemm", "MatMul", "Softmax",
                "LayerNormalization", "Add", "Mul", "Transpose", "Gelu", "ReduceMean")


@pytest.mark.parametrize("name", ["small_cnn", "depthwise_cnn", "transformer_block"])
def test_every_loop_parallel(name: str) -> None:
    """Parallel loops everywhere (threads sharing scratch, split work units) give the
    same results as onnxruntime."""
    model = getattr(model_zoo, name)()
    everything = {op: {"parallel_min": 1} for op in PARALLEL_OPS}
    compiled = byoc.build(model, ["cpu"], strict=True,
                          tuning={"cpu_0": {"threads": 3, "ops": everything}})
    assert "omp parallel for" in generated_source(compiled)
    for seed in range(3):
        assert_matches(model, compiled, model_zoo.random_inputs(model, seed=seed))


def test_program_exposes_its_schedule_as_a_tuning_record(captured_regions) -> None:
    """What a tuner starts from: the default schedule of every kernel, as a record that
    the build accepts and that reproduces the same source."""
    model = conv_chain()
    first = byoc.build(model, ["cpu"], strict=True)
    (region,) = captured_regions
    record = {"kernels": plan(region).kernel_params()}
    assert set(record["kernels"]) == {"conv1", "conv2", "mm"}
    assert record["kernels"]["mm"]["mr"] >= 1
    again = byoc.build(model, ["cpu"], strict=True, tuning={"cpu_0": record})
    assert generated_source(again) == generated_source(first)


def test_parameter_defaults_and_merging() -> None:
    skinny = params.default_gemm(1, 1024, 1024, 16)
    assert (skinny.mr, skinny.nv) == (1, 2)
    narrow = params.default_gemm(64, 10, 64, 16)
    assert narrow.nv == 1
    depthwise = params.default_conv(1, 56, 9, True, 16)
    assert depthwise.algorithm == "depthwise"
    assert params.default_conv(64, 56, 576, False, 16).algorithm == "implicit"
    conv = params.default_conv(64, 56, 576, False, 16, stride=2)
    assert conv.algorithm == "gemm" and conv.tile_rows * 56 * 576 * 4 <= 512 * 1024
    merged = byoc.merge_options({"threads": 1, "kernels": {"a": {"mr": 4}}},
                                {"kernels": {"a": {"nv": 1}, "b": {"mr": 2}}})
    assert merged == {"threads": 1, "kernels": {"a": {"mr": 4, "nv": 1}, "b": {"mr": 2}}}
    region = params.region_params({"kernels": {"x": {"mr": 6}}}, vector_width=8)
    resolved = params.resolve_params(params.default_gemm(32, 32, 32, 8), "MatMul", "x", region)
    assert resolved.mr == 6


def test_workspace_reuses_memory(captured_regions) -> None:
    """Intermediates whose lifetimes do not overlap share workspace bytes."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(6):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1] * 4))
        nodes.append(helper.make_node("Sigmoid", [f"c{i}"], [f"s{i}"]))
        nodes.append(helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"y{i}"]))
        x = f"y{i}"
    graph = helper.make_graph(
        nodes, "swish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    # im2col convolutions use thread scratch only (no workspace of their own).
    tuning = {"cpu_0": {"ops": {"Conv": {"algorithm": "gemm"}}}}
    compiled = byoc.build(model, ["cpu"], strict=True, tuning=tuning)
    (region,) = captured_regions
    program = plan(region)
    one = 8 * 16 * 16 * 4
    assert len(program.kernels) == 12  # conv, then sigmoid*x as one map, six times
    assert program.workspace_bytes <= 3 * one
    assert_matches(model, compiled, {"x": rng.standard_normal((1, 8, 16, 16))
                                     .astype(np.float32)})


def test_support_table_in_the_docs_is_current() -> None:
    from pathlib import Path

    from reference_backends.cpu import docs

    page = Path(__file__).resolve().parents[1] / "docs" / "backends" / "cpu.md"
    text = page.read_text()
    assert docs.updated(text, docs.support_markdown()) == text, (
        "docs/backends/cpu.md is stale: run python -m reference_backends.cpu.docs "
        "docs/backends/cpu.md")


# --- modules at run time -----------------------------------------------------------


def test_same_code_with_other_weights_gets_its_own_module() -> None:
    """Two regions with identical code but different constants: each keeps its weights."""
    first, second = conv_chain(seed=0), conv_chain(seed=1)
    built = [byoc.build(m, ["cpu"], strict=True) for m in (first, second)]
    libraries = {r.library for b in built for r in b.package.regions}
    assert len(libraries) == 2
    for model, compiled in zip((first, second), built, strict=True):
        assert_matches(model, compiled, chain_feeds())


def test_package_round_trip_shares_module_state_safely(tmp_path) -> None:
    model = conv_chain()
    compiled = byoc.build(model, ["cpu"], strict=True)
    path = compiled.save(tmp_path / "chain.byoc")
    loaded = byoc.CompiledModel.load(path)  # the same library, initialized a second time
    assert_matches(model, loaded, chain_feeds())
    del compiled
    gc.collect()  # releases the first load: the state must survive for the second
    assert_matches(model, loaded, chain_feeds())


def test_concurrent_runs_from_several_threads() -> None:
    model = model_zoo.small_cnn(batch=2)
    compiled = byoc.build(model, ["cpu"], strict=True)
    feeds = [model_zoo.random_inputs(model, seed=s) for s in range(4)]
    expected = [compiled.run(f)["probs"] for f in feeds]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}

    def work(index: int) -> None:
        for _ in range(5):
            results[index].append(compiled.run(feeds[index])["probs"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, runs in results.items():
        for value in runs:
            np.testing.assert_array_equal(value, expected[index])
