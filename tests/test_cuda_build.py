"""The cuda target end to end.

Machines without a GPU (CI among them) check the generated kernels two ways: every
module compiles with ``nvcc`` (skipped only where nvcc is missing), and the same source,
built for the host emulation (``emulate``), runs and is compared with onnxruntime.
Tests marked ``gpu`` run the real modules and skip cleanly without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc_sdk as byoc
from byoc_sdk import model_zoo
from byoc_sdk.codegen import CSource, Region
from byoc_sdk.testing import run_onnxruntime
from byoc_sdk.toolchain import CompileJob, Toolchain
from partition.policy import RegionPolicy
from reference_backends.cuda import generate
from reference_backends.cuda import target as cuda_target
from reference_backends.cuda.device import device_count
from reference_backends.cuda.params import ParamError, TileSchedule, cuda_params

RTOL, ATOL = 1e-4, 1e-5
EMULATE = {"cuda": {"emulate": True}}
#: Keep single-op regions on cuda (its default policy leaves them to the host).
EVERY_REGION = RegionPolicy(min_nodes=1, require_compute=False)


HAS_GPU = device_count() > 0
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


# --- models ------------------------------------------------------------------------------


def single_op(op_type: str, inputs: Sequence[np.ndarray], consts: Sequence[int] = (),
              opset: int = 17, outputs: int = 1, **attrs) -> tuple[onnx.ModelProto, dict]:
    """A model of one node; inputs at ``consts`` positions become initializers."""
    names = [f"i{n}" for n in range(len(inputs))]
    outs = [f"y{n}" for n in range(outputs)]
    node = helper.make_node(op_type, names, outs, name=op_type.lower(), **attrs)
    graph_inputs, inits, feeds = [], [], {}
    for index, (name, value) in enumerate(zip(names, inputs, strict=True)):
        if index in consts:
            inits.append(numpy_helper.from_array(value, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
            feeds[name] = value
    graph = helper.make_graph([node], "single", graph_inputs,
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
                               for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True), feeds


def rand(*shape: int, seed: int = 0, positive: bool = False) -> np.ndarray:
    values = np.random.default_rng(seed + sum(shape)).standard_normal(shape)
    return (np.abs(values) + 0.1 if positive else values).astype(np.float32)


def build_emulated(model: onnx.ModelProto) -> byoc.CompiledModel:
    compiled = byoc.build(model, ["cuda"], strict=True, options=EMULATE, host_threads=1,
                          policy=EVERY_REGION)
    host = [n for n in compiled.report.partition.nodes if n.target == "host"]
    assert not host, f"left on the host: {[(n.name, n.reason) for n in host]}"
    return compiled


def check(model: onnx.ModelProto, feeds: dict, *, rtol: float = RTOL,
          atol: float = ATOL) -> byoc.CompiledModel:
    """Build for emulated cuda, compare with onnxruntime, and compile with nvcc."""
    compiled = build_emulated(model)
    expected = run_onnxruntime(model, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=rtol, atol=atol, err_msg=name)
    if shutil.which("nvcc"):
        compile_with_nvcc(compiled)
    return compiled


def cuda_sources(compiled: byoc.CompiledModel) -> list[tuple[str, CSource]]:
    """(region, artifact) of every cuda region, as nvcc would build it (the emulated
    artifact holds the same text under a C++ name)."""
    found = []
    for region in compiled.package.regions:
        if region.target != "cuda" or region.status != "compiled":
            continue
        artifact = region.artifact
        ((name, text),) = artifact.sources.items()
        found.append((region.name, CSource(sources={name.rsplit(".", 1)[0] + ".cu": text},
                                           entry=artifact.entry,
                                           constants=list(artifact.constants),
                                           language="cuda")))
    assert found, "no cuda region was built"
    return found


def compile_with_nvcc(compiled: byoc.CompiledModel) -> None:
    toolchain = Toolchain()
    for name, artifact in cuda_sources(compiled):
        assert toolchain.compile(CompileJob(name, "cuda", artifact)).is_file()


# --- single ops --------------------------------------------------------------------------

CONVS = [
    # (N, C, H, W), (OC, kh, kw), attributes
    ((2, 3, 9, 9), (5, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 4, 10, 11), (6, 3, 3), {"strides": [2, 2], "pads": [0, 1, 1, 0]}),
    ((1, 3, 12, 12), (4, 5, 5), {"dilations": [2, 2], "pads": [4, 4, 4, 4]}),
    ((1, 8, 7, 7), (6, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 8, 9, 9), (8, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),  # depthwise
    ((1, 4, 8, 8), (8, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),  # channel multiplier 2
    ((2, 16, 5, 7), (40, 1, 1), {}),
    ((1, 3, 10, 9), (4, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 70, 6, 6), (33, 3, 3), {"pads": [1, 1, 1, 1]}),  # K and M past one tile
]


@pytest.mark.parametrize("case", range(len(CONVS)))
def test_conv(case: int) -> None:
    (n, c, h, w), (oc, kh, kw), attrs = CONVS[case]
    groups = attrs.get("group", 1)
    model, feeds = single_op("Conv", [rand(n, c, h, w), rand(oc, c // groups, kh, kw, seed=1),
                                      rand(oc, seed=2)], consts=(1, 2), **attrs)
    check(model, feeds)


@pytest.mark.parametrize("shapes,attrs", [
    (((33, 70), (70, 45), (45,)), {}),
    (((70, 33), (45, 70), (1, 45)), {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
    (((4, 8), (8, 3), (4, 3)), {"beta": 0.0}),
])
def test_gemm(shapes, attrs) -> None:
    model, feeds = single_op("Gemm", [rand(*s, seed=i) for i, s in enumerate(shapes)],
                             consts=(1, 2), **attrs)
    check(model, feeds)


@pytest.mark.parametrize("a,b", [
    ((3, 17, 40), (40, 9)),
    ((2, 1, 5, 8), (3, 8, 70)),   # batch broadcasting both ways
    ((8,), (2, 8, 5)),            # 1-D operands
    ((4, 8), (8,)),
])
def test_matmul(a, b) -> None:
    model, feeds = single_op("MatMul", [rand(*a), rand(*b, seed=1)])
    check(model, feeds)


@pytest.mark.parametrize("op_type,attrs", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2], "ceil_mode": 1, "dilations": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1,
                     "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [2, 3], "ceil_mode": 1, "strides": [2, 2]}),
    ("GlobalAveragePool", {}),
])
def test_pooling(op_type, attrs) -> None:
    model, feeds = single_op(op_type, [rand(2, 3, 9, 10)], opset=19, **attrs)
    check(model, feeds)


@pytest.mark.parametrize("op_type", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("axes,keepdims", [((1,), 1), ((0, 2), 0), ((3,), 1), ((), 0)])
def test_reductions(op_type, axes, keepdims) -> None:
    inputs = [rand(3, 70, 5, 6)]
    consts = ()
    if axes:
        inputs.append(np.asarray(axes, np.int64))
        consts = (1,)
    model, feeds = single_op(op_type, inputs, consts=consts, opset=18, keepdims=keepdims)
    check(model, feeds)


@pytest.mark.parametrize("axis,opset", [(-1, 17), (1, 17), (1, 11), (0, 17)])
def test_softmax(axis, opset) -> None:
    model, feeds = single_op("Softmax", [rand(3, 300, 5)], opset=opset, axis=axis)
    check(model, feeds)


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_normalization(axis) -> None:
    x = rand(2, 4, 50)
    norm = x.shape[axis:] if axis != -1 else x.shape[-1:]
    model, feeds = single_op("LayerNormalization", [x, rand(*norm, seed=1), rand(*norm, seed=2)],
                             consts=(1, 2), axis=axis, epsilon=1e-3)
    check(model, feeds)


def test_elementwise_chain_with_broadcasting() -> None:
    """A map kernel over computed inputs fuses the ops after it."""
    x, y = rand(2, 3, 4, 5), rand(3, 1, 5, seed=1)
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]),
             helper.make_node("Mul", ["a", "x"], ["m"]),
             helper.make_node("Sigmoid", ["m"], ["s"]),
             helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Max", ["t", "y"], ["out"])]
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, y.shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    compiled = check(onnx.shape_inference.infer_shapes(model), {"x": x, "y": y})
    ((_, artifact),) = cuda_sources(compiled)
    source = next(iter(artifact.sources.values()))
    assert source.count("__global__ void") == 1  # one kernel, everything fused


def test_every_elementwise_op_in_one_fused_kernel() -> None:
    """Each unary, binary and activation op the target claims, chained: one kernel,
    every expression compiled by nvcc and checked in the emulation."""
    x = rand(2, 3, 4, 5)
    c = rand(1, 3, 1, 5, seed=1, positive=True)
    chain = [("Relu", {}), ("Add", {}), ("Sqrt", {}), ("Log", {}), ("Exp", {}), ("Erf", {}),
             ("Tanh", {}), ("Sigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
             ("HardSwish", {}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"}),
             ("LeakyRelu", {"alpha": 0.2}), ("Clip", {}), ("Mul", {}), ("Sub", {}),
             ("Div", {}), ("Pow", {}), ("Max", {}), ("Min", {}),
             ("BatchNormalization", {"epsilon": 1e-3})]
    nodes, value, inits = [], "x", [numpy_helper.from_array(c, "c"),
                                    numpy_helper.from_array(np.float32(2.0), "two"),
                                    numpy_helper.from_array(np.float32(-0.5), "lo"),
                                    numpy_helper.from_array(np.float32(0.7), "hi")]
    for channel_input in ("scale", "bias", "mean", "var"):
        inits.append(numpy_helper.from_array(rand(3, seed=len(inits), positive=True),
                                             channel_input))
    for index, (op_type, attrs) in enumerate(chain):
        extra = {"Clip": ["lo", "hi"], "Pow": ["two"],
                 "BatchNormalization": ["scale", "bias", "mean", "var"]}.get(op_type)
        if extra is None:
            extra = ["c"] if op_type in ("Add", "Mul", "Sub", "Div", "Max", "Min") else []
        out = f"v{index}"
        nodes.append(helper.make_node(op_type, [value, *extra], [out], **attrs))
        value = out
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(value, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    compiled = check(onnx.shape_inference.infer_shapes(model), {"x": x})
    ((_, artifact),) = cuda_sources(compiled)
    assert next(iter(artifact.sources.values())).count("__global__ void") == 1


# --- whole models ------------------------------------------------------------------------

MODELS = {
    "small_cnn": lambda: model_zoo.small_cnn(batch=2, size=16),
    "depthwise_cnn": lambda: model_zoo.depthwise_cnn(size=16),
    "mlp": model_zoo.mlp,
    "transformer_block": model_zoo.transformer_block,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_whole_models(name: str) -> None:
    model = MODELS[name]()
    feeds = model_zoo.random_inputs(model)
    check(model, feeds, rtol=1e-3, atol=1e-4)


def test_batchnorm_folds_into_conv() -> None:
    model = model_zoo.small_cnn(batch=1, size=16)
    compiled = build_emulated(model)
    source = "".join(next(iter(a.sources.values())) for _, a in cuda_sources(compiled))
    assert "BatchNormalization" in source and "folded" in source


# --- the module: statistics, threads, parameters, errors ---------------------------------


def test_profile_counts_copies_at_region_boundaries() -> None:
    model, feeds = single_op("MatMul", [rand(8, 16), rand(16, 4, seed=1)], consts=(1,))
    compiled = build_emulated(model)
    runs = 3
    for _ in range(runs):
        compiled.run(feeds)
    profile = byoc.Profile()
    compiled.run(feeds, profile=profile)
    ((_region, (target, stats)),) = profile.region_stats().items()
    assert target == "cuda"
    assert stats["calls"] == runs + 1
    assert stats["h2d_copies"] == runs + 1 and stats["h2d_bytes"] == (runs + 1) * 8 * 16 * 4
    assert stats["d2h_copies"] == runs + 1 and stats["d2h_bytes"] == (runs + 1) * 8 * 4 * 4
    assert stats["constant_bytes"] == 16 * 4 * 4  # uploaded once, at load
    assert stats["emulated"] is True
    assert "h2d_bytes" in profile.render_summary()


def test_concurrent_runs_share_one_module() -> None:
    model = model_zoo.mlp()
    compiled = build_emulated(model)
    feeds = [model_zoo.random_inputs(model, seed=s) for s in range(4)]
    expected = [run_onnxruntime(model, f) for f in feeds]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(3):
                got = compiled.run(feeds[index])
                for name, want in expected[index].items():
                    np.testing.assert_allclose(got[name], want, rtol=1e-3, atol=1e-4)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


def test_tile_parameters_from_a_tuning_record() -> None:
    model, feeds = single_op("MatMul", [rand(40, 50), rand(50, 30, seed=1)], consts=(1,))
    tuning = {"cuda_0": {"kernels": {"matmul": {"bm": 32, "bn": 32, "tm": 2, "tn": 2}}}}
    compiled = byoc.build(model, ["cuda"], strict=True, options=EMULATE, tuning=tuning,
                          policy=EVERY_REGION)
    np.testing.assert_allclose(compiled.run(feeds)["y0"], feeds["i0"] @ model_weight(model),
                               rtol=1e-4, atol=1e-5)
    ((_, artifact),) = cuda_sources(compiled)
    assert "bm=32, bn=32, bk=16, tm=2, tn=2" in next(iter(artifact.sources.values()))


def test_option_layers_merge_deeply() -> None:
    """The build's options and a region's tuning record each set part of one kernel's
    tiles; both parts apply."""
    model, _ = single_op("MatMul", [rand(40, 50), rand(50, 30, seed=1)], consts=(1,))
    options = {"cuda": {"emulate": True, "kernels": {"matmul": {"bm": 32, "tm": 2}}}}
    tuning = {"cuda_0": {"kernels": {"matmul": {"bn": 32, "tn": 2}}}}
    compiled = byoc.build(model, ["cuda"], strict=True, options=options, tuning=tuning,
                          policy=EVERY_REGION)
    ((_, artifact),) = cuda_sources(compiled)
    assert "bm=32, bn=32, bk=16, tm=2, tn=2" in next(iter(artifact.sources.values()))


def model_weight(model: onnx.ModelProto) -> np.ndarray:
    return numpy_helper.to_array(model.graph.initializer[0])


@pytest.mark.parametrize("options,message", [
    ({"emulate": "yes"}, "emulate must be true or false"),
    ({"device": -1}, "device must be a device ordinal"),
    ({"arch": "hopper"}, "arch must be a GPU architecture"),
    ({"tiles": {}}, "unknown cuda codegen options"),
])
def test_bad_options_are_refused(options, message) -> None:
    with pytest.raises(ParamError, match=message):
        cuda_params(options)


def test_bad_tiles_are_refused() -> None:
    with pytest.raises(ParamError, match="multiple of tm"):
        TileSchedule(bm=30, tm=4).validate()
    with pytest.raises(ParamError, match="threads per block"):
        TileSchedule(bm=128, bn=128, tm=2, tn=2).validate()


def test_bad_tuning_falls_back_with_the_reason() -> None:
    model, _ = single_op("MatMul", [rand(4, 5), rand(5, 3, seed=1)], consts=(1,))
    tuning = {"cuda_0": {"kernels": {"matmul": {"bm": 30, "tm": 4}}}}
    compiled = byoc.build(model, ["cuda"], options=EMULATE, tuning=tuning, policy=EVERY_REGION)
    (region,) = compiled.package.regions
    assert region.status == "fallback" and "multiple of tm" in region.reason


@needs_nvcc
def test_an_architecture_reaches_nvcc(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Region] = []

    def recording(region: Region) -> CSource:
        seen.append(region)
        return generate(region)

    monkeypatch.setattr(cuda_target, "codegen", recording)
    model, _ = single_op("Relu", [rand(3, 4)])
    build_emulated(model)
    region = dataclasses.replace(seen[0], options={"emulate": False, "arch": "sm_90"})
    artifact = generate(region)
    assert artifact.flags == ["-arch=sm_90"]
    assert Toolchain().compile(CompileJob(region.name, "cuda", artifact)).is_file()


def test_launches_beyond_cuda_grid_limits_fall_back() -> None:
    """70000 batches do not fit grid z (65535): refused at build time, not at run time."""
    model, feeds = single_op("MatMul", [rand(70000, 2, 2), rand(70000, 2, 2, seed=1)])
    compiled = byoc.build(model, ["cuda"], options=EMULATE, policy=EVERY_REGION)
    (region,) = compiled.package.regions
    assert region.status == "fallback" and "blocks along grid z" in region.reason
    np.testing.assert_allclose(compiled.run(feeds)["y0"], feeds["i0"] @ feeds["i1"],
                               rtol=1e-5, atol=1e-6)


@needs_nvcc
@pytest.mark.skipif(HAS_GPU, reason="a GPU is present")
def test_without_a_gpu_the_region_falls_back_and_says_why() -> None:
    model, feeds = single_op("Relu", [rand(3, 4)])
    compiled = byoc.build(model, ["cuda"], options={"cuda": {"emulate": False}},
                          policy=EVERY_REGION)
    (region,) = compiled.package.regions
    assert region.status == "fallback"
    assert "no usable CUDA device" in region.reason
    np.testing.assert_allclose(compiled.run(feeds)["y0"], np.maximum(feeds["i0"], 0))
    with pytest.raises(byoc.BuildError, match="no usable CUDA device"):
        byoc.build(model, ["cuda"], strict=True, options={"cuda": {"emulate": False}},
                   policy=EVERY_REGION)


def test_stats_json_is_well_formed() -> None:
    model, feeds = single_op("Relu", [rand(3, 4)])
    compiled = build_emulated(model)
    compiled.run(feeds)
    step = next(s for s in compiled.steps if s.target == "cuda")
    stats = step.stats()
    assert json.loads(json.dumps(stats)) == stats and stats["kernel_launches"] == 1


# --- on a real GPU -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_whole_models_on_the_gpu(name: str) -> None:
    model = MODELS[name]()
    feeds = model_zoo.random_inputs(model)
    compiled = byoc.build(model, ["cuda"], strict=True, options={"cuda": {"emulate": False}},
                   policy=EVERY_REGION)
    expected = run_onnxruntime(model, feeds)
    actual = compiled.run(feeds)
    for output, want in expected.items():
        np.testing.assert_allclose(actual[output], want, rtol=1e-3, atol=1e-4, err_msg=output)
    stats = next(s for s in compiled.steps if s.target == "cuda").stats()
    assert stats["emulated"] is False and stats["kernel_ms"] > 0


def test_support_table_in_the_docs_is_current() -> None:
    from pathlib import Path

    from reference_backends.cpu import docs
    from reference_backends.cuda.target import target

    page = Path(__file__).resolve().parents[1] / "docs" / "backends" / "cuda.md"
    text = page.read_text()
    assert docs.updated(text, docs.support_markdown(target), "cuda") == text, (
        "docs/backends/cuda.md is stale: run python -m reference_backends.cpu.docs "
        "docs/backends/cuda.md --target cuda")
