"""Building models with the example targets and running them: the build/run contract.

Every target of ``examples/targets`` (one per artifact kind: C source, JSON graph,
binary) must give onnxruntime's outputs on the original model, after a build and after
a save and a load in a fresh process that has only the runtimes. Codegen and module
failures fall back to the host (or fail a strict build), run-time failures name their
step, and a compiled model runs from many threads at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from byoc_sdk import (
    Binary,
    BuildError,
    CompiledModel,
    CSource,
    InputError,
    JsonGraph,
    Profile,
    StepError,
    build,
    register_runtime,
)
from byoc_sdk.model_zoo import random_dag, random_inputs
from byoc_sdk.testing import assert_outputs_close, onnx_text, run_onnxruntime
from byoc_sdk.toolchain import Toolchain

KINDS = ["c_source", "json", "binary"]
REPO = Path(__file__).resolve().parents[1]
CODEGEN_MODULES = {
    "examples.targets.c_elementwise",
    "examples.targets.json_graph",
    "examples.targets.bytecode",
    "examples.targets.ops",
}
RUNTIME_MODULES = {
    "c_source": None,  # compiled modules need no vendor runtime at all
    "json": "examples.targets.json_graph_runtime",
    "binary": "examples.targets.bytecode_runtime",
}


def region_names(model: CompiledModel) -> list[str]:
    return [r.name for r in model.report.regions]


# --- the example targets give onnxruntime's results ---------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_example_target_matches_onnxruntime(kind, example_targets, example_model):
    model = example_model()
    target = example_targets[kind].target
    compiled = build(model, [target])

    report = compiled.report
    assert len(report.regions) == 2  # one on each side of the host Softmax
    assert report.fallbacks == [], report.render()
    assert {r.status for r in report.regions} == {"compiled"}
    assert {r.artifact.kind for r in report.regions} == {kind}
    assert "build: 2 of 2 regions compiled" in report.render()
    assert [s.kind for s in compiled.steps] == ["external", "host", "external"]
    assert {s.target for s in compiled.steps} == {target.name, "host"}

    for seed in range(3):
        feeds = random_inputs(model, seed)
        assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


def test_json_target_keeps_the_composite_as_one_node(example_targets, example_model):
    compiled = build(example_model(), [example_targets["json"].target])
    first = compiled.report.regions[0].artifact
    assert [n["op"] for n in first.graph["nodes"]] == ["matmul_add", "Relu"]
    assert first.constants == ["w", "b"]  # referenced by name, never inlined
    assert "0." not in json.dumps(first.graph)


def test_c_target_fuses_elementwise_ops(example_targets, example_model):
    compiled = build(example_model(), [example_targets["c_source"].target])
    tail = compiled.report.regions[1].artifact
    (source,) = tail.sources.values()
    # Ten elementwise ops of one shape: one loop, and only the output touches memory.
    assert source.count("for (int64_t i = 0;") == 1
    assert "malloc" not in source
    assert tail.constants == ["half", "scale"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_random_dag_matches_onnxruntime(kind, seed, example_targets):
    model = random_dag(seed, 24)
    target = example_targets[kind].target
    compiled = build(model, [target])
    assert compiled.report.regions and not compiled.report.fallbacks, compiled.report.render()
    # What the targets do not run (Softmax, Split, Concat) stays in the main graph.
    on_host = {n.op_type for n in compiled.package.model.graph.node
               if not n.domain.startswith("byoc.")}
    unsupported = {n.op_type for n in model.graph.node} - {
        *(op for (_, op) in target.ops)}
    assert on_host <= unsupported
    for feed_seed in range(2):
        feeds = random_inputs(model, feed_seed)
        assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


# --- save, then load in a process that has only the runtime --------------------------

CHILD = """
import importlib, json, os, sys
from pathlib import Path
# Last on the path: examples/ becomes importable without shadowing the installed byoc_sdk.
sys.path.append(os.environ["EXAMPLES_ROOT"])
import numpy as np

package, work, runtime = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if runtime != "-":
    importlib.import_module(runtime)  # registers the vendor runtime, nothing more
from byoc_sdk import CompiledModel

model = CompiledModel.load(package)
names = json.loads((work / "names.json").read_text())
feeds = {name: np.load(work / f"feed_{i}.npy") for i, name in enumerate(names["inputs"])}
outputs = model.run(feeds)
loaded = sorted(m for m in sys.modules if m.startswith("examples"))
codegen = set(json.loads(sys.argv[4])) & set(loaded)
assert not codegen, f"the codegen was imported: {sorted(codegen)}"
for i, name in enumerate(names["outputs"]):
    np.save(work / f"out_{i}.npy", outputs[name])
print(json.dumps(loaded))
"""


@pytest.mark.parametrize("kind", KINDS)
def test_saved_package_runs_in_a_fresh_process_without_the_codegen(
    kind, example_targets, example_model, tmp_path, build_cache_dir
):
    model = example_model()
    compiled = build(model, [example_targets[kind].target])
    package = compiled.save(tmp_path / "model")
    assert package.suffix == ".byoc" and package.is_file()

    feeds = random_inputs(model, seed=7)
    expected = run_onnxruntime(model, feeds)
    (tmp_path / "names.json").write_text(json.dumps(
        {"inputs": list(feeds), "outputs": list(expected)}))
    for i, array in enumerate(feeds.values()):
        np.save(tmp_path / f"feed_{i}.npy", array)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    runtime = RUNTIME_MODULES[kind] or "-"
    env = {**os.environ, "EXAMPLES_ROOT": str(REPO), "BYOC_CACHE_DIR": str(build_cache_dir)}
    done = subprocess.run(
        [sys.executable, str(script), str(package), str(tmp_path), runtime,
         json.dumps(sorted(CODEGEN_MODULES))],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    if kind == "c_source":
        assert loaded == []  # a C module needs nothing of examples/ at all
    else:
        assert runtime in loaded
    actual = {name: np.load(tmp_path / f"out_{i}.npy") for i, name in enumerate(expected)}
    assert_outputs_close(actual, expected)


# --- codegen and module failures fall back to the host ------------------------------


def _raising(region):
    raise RuntimeError("the tiler ran out of patience")


def _wrong_type(region):
    return {"sources": "not an artifact"}


def _unknown_constant(region):
    # Valid so far as it goes, but it asks for a constant the region does not bind.
    return CSource({"entry.c": '#include "byoc/abi.h"\nBYOC_DEFINE_ABI_VERSION\n'}, "entry",
                   constants=[*region.constants, "no_such_constant"])


def _syntax_error(region):
    return CSource({"broken.c": '#include "byoc/abi.h"\nint broken( {\n'}, "broken")


def _no_abi_version(region):
    source = ('#include "byoc/abi.h"\nBYOC_EXPORT int32_t entry(const byoc_tensor* i, '
              "int32_t ni, const byoc_tensor* o, int32_t no, char* e, size_t es) "
              "{ return 0; }\n")
    return CSource({"noversion.c": source}, "entry")


def _constants_without_init(region):
    # A module that compiles and loads but has nowhere to take its constants: its entry
    # would read pointers nobody set (a crash of the process at the first run, before).
    source = ('#include "byoc/abi.h"\nBYOC_DEFINE_ABI_VERSION\nBYOC_EXPORT int32_t entry('
              "const byoc_tensor* i, int32_t ni, const byoc_tensor* o, int32_t no, char* e, "
              "size_t es) { return 0; }\n")
    return CSource({"noinit.c": source}, "entry", constants=list(region.constants))


def _bad_bytecode(region):
    return Binary(b"NOPE" + bytes(12), runtime="bytedemo")


def _graph(graph):
    """A codegen returning a JsonGraph of ``graph`` (the jsondemo runtime's)."""
    return lambda region: JsonGraph(graph, runtime="jsondemo")


_HEADER_ONLY = '#include "byoc/abi.h"\nBYOC_DEFINE_ABI_VERSION\n'


def _malformed(**fields):
    """A codegen returning a CSource with ``fields`` of the wrong kind: a vendor slip the
    artifact's checks must name, never a crash of the build or a garbled compile."""

    def codegen(region):
        return CSource(**{"sources": {"entry.c": _HEADER_ONLY}, "entry": "entry", **fields})

    return codegen


FAILURES = {
    # name: (codegen, what the report's reason says)
    "raises": (_raising, ["codegen raised RuntimeError: the tiler ran out of patience"]),
    "wrong type": (_wrong_type, ["invalid artifact", "dict"]),
    "unknown constant": (_unknown_constant, ["invalid artifact", "no_such_constant"]),
    "syntax error": (_syntax_error, ["compilation failed", "broken.c", "error"]),
    "no ABI version": (_no_abi_version, ["module failed to load", "byoc_abi_version"]),
    "constants but no _init": (_constants_without_init,
                               ["module failed to load: the artifact declares 2 constants "
                                "but its module exports no entry_init"]),
    "runtime rejects program": (_bad_bytecode, ["module failed to load", "ValueError",
                                                "not a bytedemo program"]),
    "sources as a list": (_malformed(sources=[_HEADER_ONLY]),
                          ["invalid artifact", "CSource.sources"]),
    "empty file name": (_malformed(sources={"": _HEADER_ONLY}), ["invalid artifact", "''"]),
    "file name with NUL": (_malformed(sources={"a\0.c": _HEADER_ONLY}),
                           ["invalid artifact", "plain file name"]),
    "text not UTF-8": (_malformed(sources={"entry.c": _HEADER_ONLY + "/* \udc80 */"}),
                       ["invalid artifact", "entry.c", "UTF-8"]),
    "entry not a string": (_malformed(entry=5), ["invalid artifact", "CSource.entry 5"]),
    "flags as a string": (_malformed(flags="-O2"), ["invalid artifact", "CSource.flags"]),
    "flags not strings": (_malformed(flags=[2]), ["invalid artifact", "CSource.flags"]),
    "graph not JSON": (_graph({"nodes": {1, 2}}), ["invalid artifact", "not JSON-serialisable"]),
    # Python writes NaN and Infinity into JSON, which strict readers refuse.
    "graph with NaN": (_graph({"nodes": [{"op": "leaky_relu", "alpha": float("nan")}]}),
                       ["invalid artifact", "JsonGraph.graph['nodes'][0]['alpha'] is nan",
                        "JSON has no NaN or infinity"]),
    "graph with infinity": (_graph({"fill": [0.0, -np.inf]}),
                            ["invalid artifact", "JsonGraph.graph['fill'][1] is -inf"]),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failing_codegen_falls_back_to_the_host(case, example_targets, example_model):
    codegen, reason_parts = FAILURES[case]
    target = dataclasses.replace(example_targets["c_source"].target, codegen=codegen)
    model = example_model()
    compiled = build(model, [target])

    report = compiled.report
    assert len(report.regions) == 2 and len(report.fallbacks) == 2
    for region in report.fallbacks:
        for part in reason_parts:
            assert part in region.reason, region.reason
    assert "FELL BACK to host" in report.render()
    assert {s.kind for s in compiled.steps} == {"host"}
    feeds = random_inputs(model, seed=1)
    assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


@pytest.mark.parametrize("case", list(FAILURES))
def test_strict_build_names_region_and_target(case, example_targets, example_model):
    codegen, reason_parts = FAILURES[case]
    target = dataclasses.replace(example_targets["c_source"].target, codegen=codegen)
    with pytest.raises(BuildError) as raised:
        build(example_model(), [target], strict=True)
    error = raised.value
    assert error.context.target == "cdemo"
    assert error.context.region == "cdemo_0"
    assert "cdemo_0" in str(error) and "cdemo" in str(error)
    assert "and 1 more regions" in str(error)
    for part in reason_parts:
        assert part in str(error)


def test_an_unwritable_module_cache_is_a_build_error_naming_it(tmp_path, example_targets,
                                                                example_model):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(BuildError, match=f"module cache {blocker}.*BYOC_CACHE_DIR") as raised:
        build(example_model(), [example_targets["c_source"].target], strict=True,
              toolchain=Toolchain(cache=blocker))
    assert raised.value.context.region == "cdemo_0"


def test_a_compiler_that_cannot_run_is_named_as_such(tmp_path, example_targets,
                                                     example_model):
    not_executable = tmp_path / "cc"
    not_executable.write_text("not a program")
    with pytest.raises(BuildError, match=f"compiler '{not_executable}' cannot be run"):
        build(example_model(), [example_targets["c_source"].target], strict=True,
              toolchain=Toolchain(cc=str(not_executable), cache=tmp_path / "cache"))


def test_compiler_message_is_in_the_report(example_targets, example_model):
    target = dataclasses.replace(example_targets["c_source"].target, codegen=_syntax_error)
    compiled = build(example_model(), [target])
    reason = compiled.report.fallbacks[0].reason
    # The compiler's own diagnostic, with the file and line it points at.
    assert "broken.c:2" in reason, reason
    # Under a one-line summary, the compiler's whole output.
    summary, *output = reason.splitlines()
    assert summary.startswith("compilation failed: ") and "sources kept in " in summary
    assert any("broken.c:2" in line for line in output)


def test_strict_compile_failure_is_one_line_with_the_first_error(example_targets,
                                                                example_model):
    # Before: the whole compiler output on the error line, "\n" escaped.
    target = dataclasses.replace(example_targets["c_source"].target, codegen=_syntax_error)
    with pytest.raises(BuildError) as raised:
        build(example_model(), [target], strict=True)
    message = str(raised.value)
    assert "\\n" not in message and "\n" not in message
    assert "broken.c:2:" in message and "error:" in message
    assert message.endswith(" (and 1 more regions)")
    assert "; sources kept in " in message


# --- run-time failures ----------------------------------------------------------------


def test_module_failure_raises_step_error_and_the_next_run_works(
    example_targets, example_model
):
    model = example_model()
    compiled = build(model, [example_targets["c_source"].target],
                     options={"cdemo": {"check_finite": True}})
    assert not compiled.report.fallbacks
    source = next(iter(compiled.report.regions[0].artifact.sources.values()))
    assert "isfinite" in source

    feeds = random_inputs(model, seed=3)
    bad = {**feeds, "x": feeds["x"].copy()}
    bad["x"][1, 2] = np.nan
    step = next(s for s in compiled.steps if s.name == "cdemo_0")
    with pytest.raises(StepError) as raised:
        compiled.run(bad)
    error = raised.value
    assert error.context.region == "cdemo_0" and error.context.target == "cdemo"
    message = str(error)
    assert f"step {step.index}" in message
    assert "input x holds a non-finite value at element 10" in message
    assert error.__cause__ is not None and error.__cause__.status == 2  # INVALID_ARGUMENT

    assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


def test_vendor_runtime_failure_raises_step_error(example_targets, example_model):
    class PickyRuntime(example_targets["json"].JsonDemoRuntime):
        """jsondemo, but refusing inputs whose first element is negative."""

        name = "picky_jsondemo"

        def run(self, inputs):
            if inputs[0].flat[0] < 0:
                raise ValueError("picky: the first element is negative\n  at element 0\n")
            return super().run(inputs)

    register_runtime(PickyRuntime, replace=True)
    json_codegen = example_targets["json"].target.codegen

    def codegen(region):
        return dataclasses.replace(json_codegen(region), runtime=PickyRuntime.name)

    model = example_model()
    target = dataclasses.replace(example_targets["json"].target, codegen=codegen)
    compiled = build(model, [target])
    assert not compiled.report.fallbacks
    feeds = random_inputs(model, seed=0)
    feeds["x"][0, 0] = -1.0
    with pytest.raises(StepError) as raised:
        compiled.run(feeds)
    assert raised.value.context.region == "jsondemo_0"
    # A message of several lines keeps to one: the error line names step, region, target.
    assert str(raised.value).endswith(
        "step 0 (external) failed: ValueError: picky: the first element is negative "
        "(and 1 more line)")
    feeds["x"][0, 0] = 1.0
    assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


# --- concurrency ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_threads_share_one_compiled_model(kind, example_targets, example_model):
    model = example_model()
    compiled = build(model, [example_targets[kind].target])
    threads = 8
    cases = [random_inputs(model, seed) for seed in range(threads)]
    expected = [run_onnxruntime(model, feeds) for feeds in cases]
    start = threading.Barrier(threads)

    def work(index: int) -> int:
        start.wait()
        for _ in range(25):
            assert_outputs_close(compiled.run(cases[index]), expected[index])
        return index

    with ThreadPoolExecutor(threads) as pool:
        assert sorted(pool.map(work, range(threads))) == list(range(threads))


def test_outputs_of_a_run_outlive_later_runs(example_targets, example_model):
    # Host steps hand out onnxruntime's own output buffers, without a copy: a later run
    # must get buffers of its own, never overwrite the ones a caller still holds.
    model = example_model()
    compiled = build(model, [example_targets["c_source"].target])
    assert {step.kind for step in compiled.steps} == {"host", "external"}
    first_feeds, second_feeds = random_inputs(model, 0), random_inputs(model, 1)
    first = compiled.run(first_feeds)
    kept = {name: array.copy() for name, array in first.items()}
    for _ in range(3):
        compiled.run(second_feeds)
    for name, array in first.items():
        np.testing.assert_array_equal(array, kept[name])


def test_values_between_steps_live_in_planned_buffers(example_targets, example_model):
    # Every value passed between steps (graph outputs aside: callers keep those) is
    # written into a frame's planned buffers; a frame serves one run after another.
    model = example_model()
    compiled = build(model, [example_targets["c_source"].target])
    passed = {name for step in compiled.steps for name in step.outputs} - set(compiled.outputs)
    assert passed and set(compiled.memory_plan.placement) == passed
    for seed in range(3):
        feeds = random_inputs(model, seed)
        assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert len(compiled._frames) == 1


def test_string_values_between_steps_stay_out_of_the_planned_buffers(example_targets):
    # A string tensor is an array of Python objects: no byte buffer can hold it, so the
    # step making it runs unbound and the value goes through the per-run table.
    model = onnx_text("""
        g (float[2, 3] x) => (bool[2, 3] eq) {
          y = Softmax(x)
          s = Cast<to = 8>(x)
          r = Relu(y)
          rs = Cast<to = 8>(r)
          eq = Equal(s, rs)
        }""")
    compiled = build(model, [example_targets["c_source"].target])
    assert {step.kind for step in compiled.steps} == {"host", "external"}
    assert "s" not in compiled.memory_plan.placement
    feeds = {"x": np.abs(np.random.default_rng(0).random((2, 3))).astype(np.float32)}
    for _ in range(2):
        assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


def test_a_runtime_returning_its_input_does_not_alias_a_frame_buffer(example_targets,
                                                                      monkeypatch):
    # A vendor runtime may hand back an input as an output (a valid zero copy). The input
    # sits in a frame's planned buffer, which the next run overwrites: the output the
    # caller keeps must not change with it.
    runtime = sys.modules[example_targets["json"].JsonDemoRuntime.__module__]
    kernels = dict(runtime.KERNELS)
    kernels["Abs"] = (1, lambda x: x if (x >= 0).all() else np.abs(x))
    monkeypatch.setattr(runtime, "KERNELS", kernels)
    model = onnx_text("""
        g (float[2, 4] x) => (float[2, 4] a) {
          s = Softmax(x)
          a = Abs(s)
        }""")
    compiled = build(model, [example_targets["json"].target])
    assert "s" in compiled.memory_plan.placement  # the host step writes s into a buffer
    rng = np.random.default_rng(1)
    first_feeds = {"x": rng.random((2, 4)).astype(np.float32)}
    first = compiled.run(first_feeds)["a"]
    kept = first.copy()
    second = compiled.run({"x": rng.random((2, 4)).astype(np.float32) * 5})["a"]
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(first, second)
    assert_outputs_close({"a": first}, run_onnxruntime(model, first_feeds))


def test_a_model_with_external_data_partitions_and_packages_anywhere(tmp_path, example_targets):
    # The weights live in a file beside the source model; neither the partitioned model
    # written to another folder nor the package may point back at that file.
    import onnx

    from byoc_sdk import partition_model
    from byoc_sdk.model_zoo import transformer_block

    source = tmp_path / "source"
    source.mkdir()
    model = transformer_block()
    feeds = random_inputs(model, 0)
    expected = run_onnxruntime(model, feeds)
    sizes = [onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer]
    weights = sum(size for size in sizes if size > 1024)
    # (save_model turns the proto's own tensors into references to the file)
    onnx.save_model(model, source / "m.onnx", save_as_external_data=True,
                    location="m.bin", size_threshold=1024)

    out = tmp_path / "out"
    out.mkdir()
    partition_model(source / "m.onnx", ["cpu"]).save(out / "p.onnx")
    # The weights bound into the region function are Constant nodes there: they go to
    # the data file too, not inlined (before, the file was written empty).
    assert (out / "p.onnx.data").stat().st_size >= weights > 0
    assert (out / "p.onnx").stat().st_size < weights / 4
    assert_outputs_close(run_onnxruntime(onnx.load(out / "p.onnx"), feeds), expected)
    # Saved again over itself: the data file is written anew, not appended to.
    partition_model(out / "p.onnx", ["cpu"]).save(out / "p.onnx")
    assert (out / "p.onnx.data").stat().st_size < 2 * weights
    assert_outputs_close(run_onnxruntime(onnx.load(out / "p.onnx"), feeds), expected)

    compiled = build(source / "m.onnx", ["cpu"])
    path = compiled.save(out / "m.byoc")
    (source / "m.bin").unlink()  # the package must not need it
    assert_outputs_close(CompiledModel.load(path).run(feeds), expected)


def test_initializers_as_graph_inputs_and_outputs_reach_compiled_regions(example_targets):
    # W is an initializer and a graph input (a default a caller could override in
    # onnxruntime); the package's inputs leave it out, so its default runs, in the
    # compiled region as on the host. B is an initializer that is also a graph output.
    model = onnx_text("""
        g (float[2, 2] x, float[2, 2] W) => (float[2, 2] y, float[2] B)
        <float[2, 2] W = {1., 2., 3., 4.}, float[2] B = {5., 6.}> {
          a = Add(x, W)
          y = Relu(a)
        }""")
    compiled = build(model, [example_targets["c_source"].target])
    assert [spec.name for spec in compiled.inputs] == ["x"]
    assert {step.kind for step in compiled.steps} == {"external"}
    feeds = {"x": np.array([[-5.0, 1.0], [0.5, -9.0]], np.float32)}
    expected = run_onnxruntime(model, feeds)
    first = compiled.run(feeds)
    assert_outputs_close(first, expected)
    first["B"][:] = 0  # the caller's copy
    assert_outputs_close(compiled.run(feeds), expected)


# --- profiles -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_profile_has_one_event_per_step_and_run(kind, example_targets, example_model,
                                                tmp_path):
    model = example_model()
    target = example_targets[kind].target
    compiled = build(model, [target])
    profile = Profile()
    feeds = random_inputs(model, seed=0)
    runs = 3
    for _ in range(runs):
        compiled.run(feeds, profile=profile)
    profile.save(tmp_path / "trace.json")

    trace = json.loads((tmp_path / "trace.json").read_text())
    events = trace["traceEvents"]
    assert len(events) == runs * len(compiled.steps)
    for event in events:
        assert {"name", "cat", "ts", "dur"} <= set(event)
        assert event["ph"] == "X" and event["dur"] >= 0
    by_run: dict[int, list] = {}
    for event in events:
        by_run.setdefault(event["args"]["run"], []).append(event)
    assert len(by_run) == runs
    for run_events in by_run.values():
        ordered = sorted(run_events, key=lambda e: e["ts"])
        assert [e["name"] for e in ordered] == [s.name for s in compiled.steps]
        assert [e["cat"] for e in ordered] == [s.target for s in compiled.steps]
    if kind != "c_source":  # vendor runtimes' stats() show in the events
        external = [e for e in events if e["cat"] == target.name]
        assert all(len(e["args"]) > 3 for e in external)

    summary = profile.summary()
    assert set(summary) == {target.name, "host"}
    assert summary[target.name]["calls"] == runs * 2
    assert summary["host"]["calls"] == runs
    assert target.name in profile.render_summary()


# --- feeds ----------------------------------------------------------------------------


@pytest.fixture
def json_model(example_targets, example_model):
    return build(example_model(), [example_targets["json"].target])


def _feeds():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((4, 8)).astype(np.float32),
            "y": rng.standard_normal((4, 16)).astype(np.float32)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop("y"), r"missing inputs \['y'\]"),
        (lambda f: f.update(w=f["x"]), r"unknown inputs \['w'\]"),
        (lambda f: f.update(x=f["x"].astype(np.float64)),
         r"input 'x' is float64\(4, 8\), expected float32\(4, 8\)"),
        (lambda f: f.update(x=f["x"][:, :7]),
         r"input 'x' is float32\(4, 7\), expected float32\(4, 8\)"),
        (lambda f: f.update(x=f["x"][None]),
         r"input 'x' is float32\(1, 4, 8\), expected float32\(4, 8\)"),
    ],
    ids=["missing", "unknown", "dtype", "shape", "rank"],
)
def test_bad_feeds_raise_input_error(json_model, change, message):
    feeds = _feeds()
    change(feeds)
    with pytest.raises(InputError, match=message):
        json_model.run(feeds)


def test_feeds_may_be_non_contiguous(json_model, example_model):
    feeds = _feeds()
    wide = np.zeros((4, 32), np.float32)
    wide[:, ::2] = feeds["y"]
    feeds["y"] = wide[:, ::2]
    assert not feeds["y"].flags.c_contiguous
    expected = run_onnxruntime(example_model(), {k: np.ascontiguousarray(v)
                                                 for k, v in feeds.items()})
    assert_outputs_close(json_model.run(feeds), expected)


# --- input shapes -----------------------------------------------------------------------


def test_input_shapes_fix_a_dynamic_batch(example_targets):
    model = onnx_text("""
        g (float[N, 4] x) => (float[N, 3] y)
          <float[4, 3] w = {1., -2., 3., -4., 5., -6., 7., -8., 9., -1., 2., -3.},
           float[3] b = {0.5, -0.5, 0.25}>
        {
          h = MatMul(x, w)
          a = Add(h, b)
          y = Relu(a)
        }
    """)
    target = example_targets["c_source"].target
    dynamic = build(model, [target])
    assert dynamic.report.regions == []  # nothing static to claim
    assert not dynamic.memory_plan.placement  # nor to plan memory for
    for rows in (2, 5):
        feeds = {"x": np.linspace(-3, 3, rows * 4, dtype=np.float32).reshape(rows, 4)}
        assert_outputs_close(dynamic.run(feeds), run_onnxruntime(model, feeds))

    compiled = build(model, [target], input_shapes={"x": (2, 4)})
    assert [r.status for r in compiled.report.regions] == ["compiled"]
    assert compiled.inputs[0].shape == (2, 4)
    feeds = {"x": np.arange(8, dtype=np.float32).reshape(2, 4) - 3}
    assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))
    with pytest.raises(InputError, match=r"expected float32\(2, 4\)"):
        compiled.run({"x": np.zeros((3, 4), np.float32)})


# --- the example targets' own rules ---------------------------------------------------


def test_support_rules_leave_the_rest_on_the_host(example_targets):
    model = onnx_text("""
        g (float[2, 4] x, float[1, 4] row, float[4, 4] weight) => (float[2, 4] out) {
          a = Add(x, row)
          b = MatMul(a, weight)
          c = Max(b, x, a)
          out = Relu(c)
        }
    """)
    target = example_targets["c_source"].target
    compiled = build(model, [target])
    reasons = compiled.report.partition.render()
    # A run-time row vector, a run-time weight and a three-input Max are not claimed;
    # the Relu alone is.
    assert "only constants broadcast" in reasons
    assert "needs input 1 of MatMul to be a constant" in reasons
    assert "two inputs only" in reasons
    assert [r.status for r in compiled.report.regions] == ["compiled"]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 4)).astype(np.float32),
             "row": rng.standard_normal((1, 4)).astype(np.float32),
             "weight": rng.standard_normal((4, 4)).astype(np.float32)}
    assert_outputs_close(compiled.run(feeds), run_onnxruntime(model, feeds))


@pytest.fixture
def bytecode_program(example_targets, example_model):
    compiled = build(example_model(), [example_targets["binary"].target])
    return compiled.report.regions[0].artifact.data


def test_bytecode_round_trip_and_listing(example_targets, bytecode_program):
    fmt = sys.modules["examples.targets.bytecode_runtime"]
    program = fmt.decode(bytecode_program)
    assert fmt.encode(program) == bytecode_program
    assert (program.inputs, program.constants, len(program.instructions)) == (1, 2, 3)
    assert fmt.disassemble(bytecode_program).splitlines()[1:] == [
        "  t0 = MatMul(in0, c0)  (4, 16)",
        "  t1 = Add(t0, c1)  (4, 16)",
        "  t2 = Relu(t1)  (4, 16)",
        "  return t2",
    ]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: b"BYTE" + d[4:], "not a bytedemo program: magic b'BYTE'"),
        (lambda d: d[:4] + (2).to_bytes(2, "little") + d[6:],
         "bytedemo program version 2 is not supported"),
        (lambda d: d[:10], "truncated: 10 bytes, the header alone is 16"),
        (lambda d: d[:-3], "truncated"),
        (lambda d: d + b"\0", "1 trailing bytes"),
        (lambda d: d[:-8] + bytes([0x7F]) + d[-7:], "unknown opcode 0x7f"),
        (lambda d: d[:-4] + (9).to_bytes(2, "little") + d[-2:], "reads slot 9 before"),
    ],
    ids=["magic", "version", "short header", "truncated", "trailing", "opcode", "order"],
)
def test_bytecode_decoder_rejects_bad_programs(bytecode_program, corrupt, message):
    fmt = sys.modules["examples.targets.bytecode_runtime"]
    with pytest.raises(ValueError, match=message):
        fmt.decode(corrupt(bytecode_program))


def test_json_runtime_checks_the_graph_at_load(example_targets, example_model):
    compiled = build(example_model(), [example_targets["json"].target])
    region = compiled.report.regions[1]
    runtime = example_targets["json"].JsonDemoRuntime
    constants = {name: compiled.package.constants[sha] for name, sha in region.constants.items()}

    def load(edit):
        graph = json.loads(json.dumps(region.artifact.graph))
        edit(graph)
        return runtime(dataclasses.replace(region.artifact, graph=graph), constants,
                       region.signature)

    load(lambda g: None)
    with pytest.raises(ValueError, match="version 2 is not supported"):
        load(lambda g: g.update(version=2))
    with pytest.raises(ValueError, match="unknown op 'Softmax'"):
        load(lambda g: g["nodes"][0].update(op="Softmax"))
    with pytest.raises(ValueError, match=r"reads undefined values \['nowhere'\]"):
        load(lambda g: g["nodes"][0].update(inputs=["s", "nowhere"]))
    with pytest.raises(ValueError, match=r"outputs \['z'\] are never computed"):
        load(lambda g: g["nodes"].pop())


# --- known bugs -----------------------------------------------------------------------


def test_two_models_with_equal_sources_keep_their_own_constants(example_targets):
    def model(scale: float):
        return onnx_text(f"""
            g (float[1, 2] x) => (float[1, 2] y) <float[2, 2] w = {{{scale}, 0., 0., {scale}}}>
            {{
              h = MatMul(x, w)
              y = Relu(h)
            }}
        """)

    target = example_targets["c_source"].target
    first, second = model(1.0), model(2.0)
    compiled_first = build(first, [target])
    compiled_second = build(second, [target])  # same C source: the constants differ
    feeds = {"x": np.array([[1.0, 2.0]], np.float32)}
    assert_outputs_close(compiled_second.run(feeds), run_onnxruntime(second, feeds))
    assert_outputs_close(compiled_first.run(feeds), run_onnxruntime(first, feeds))


def test_region_ops_expand_composites_with_region_level_keys():
    """Region.ops(): composites expanded, their boundary mapped to the call's values, and
    two instances of one shared body kept apart by their keys."""
    from byoc_sdk import Region, RegionPolicy, Target, any_input, const, op

    seen: list[list] = []

    def spy(region: Region):
        seen.append(region.ops())
        raise RuntimeError("spy only")  # fall back: this test looks at the codegen's input

    target = Target("spy", codegen=spy, policy=RegionPolicy.keep_all())
    target.support("Relu", "MatMul", "Add")
    target.pattern("mm_add", op("Add", op("MatMul", any_input(), const()), const()))
    model = onnx_text("""
        g (float[2,4] x) => (float[2,4] y)
        <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1, 2, 3, 4}> {
          [mm1] m1 = MatMul(x, w)
          [add1] a1 = Add(m1, b)
          [relu] r = Relu(a1)
          [mm2] m2 = MatMul(r, w)
          [add2] y = Add(m2, b)
        }""")
    build(model, [target])
    (ops,) = seen
    assert [(o.op_type, o.composite, o.pattern) for o in ops] == [
        ("MatMul", "mm_add_0", "mm_add"), ("Add", "mm_add_0", "mm_add"), ("Relu", None, None),
        ("MatMul", "mm_add_1", "mm_add"), ("Add", "mm_add_1", "mm_add"),
    ]
    first_mm, first_add, relu, second_mm, second_add = ops
    assert first_mm.inputs[0].key == "x" and second_add.outputs[0].key == "y"
    assert relu.inputs[0].key == first_add.outputs[0].key  # crossing the boundary
    assert first_mm.outputs[0].key != second_mm.outputs[0].key  # shared body, two keys
    assert first_mm.outputs[0].value is second_mm.outputs[0].value
    assert first_mm.inputs[1].key == "w"  # a bound constant keeps its name


def test_string_graph_inputs_and_outputs_pass_through(tmp_path: Path) -> None:
    # A string graph input made every build an internal error ("data type 'string' not
    # understood"); strings are object arrays of str, as onnxruntime hands them out.
    from byoc_sdk.cli import main

    model = onnx_text("""<ir_version: 8, opset_import: ["" : 18]>
        g (string[2] s, float[2,4] x) => (float[2,4] y, string[2] t) {
          y = Relu(x)
          t = Identity(s)
        }""")
    compiled = build(model, ["cpu"])
    x = np.ones((2, 4), np.float32)
    for strings in (np.array(["a", "bc"]), np.array(["a", "bc"], dtype=object)):
        outputs = compiled.run({"s": strings, "x": x})
        assert outputs["t"].dtype == object and list(outputs["t"]) == ["a", "bc"]
    with pytest.raises(InputError, match="input 's' is int64"):
        compiled.run({"s": np.array([1, 2]), "x": x})
    package = compiled.save(tmp_path / "strings.byoc")
    assert list(CompiledModel.load(package).run({"s": np.array(["z", "y"]), "x": x})["t"]) == [
        "z", "y"]
    assert main(["run", str(package), "--random-inputs", "--check"]) == 0


# --- host sessions' threads ----------------------------------------------------------------


def _host_session_options(compiled: CompiledModel) -> list[tuple[int, bool]]:
    """Each host step's intra-op thread count, and whether its idle threads spin, as its
    session has them."""
    found = []
    for step in compiled.steps:
        if step.kind == "host":
            options = step.runner.session.get_session_options()
            try:
                spin = options.get_session_config_entry("session.intra_op.allow_spinning")
            except RuntimeError:  # not set: onnxruntime's default, which spins
                spin = "1"
            found.append((options.intra_op_num_threads, spin == "1"))
    return found


def _alternating() -> CompiledModel:
    """block_chain on simaccel: host steps (Softmax diamonds) between offloaded regions."""
    from byoc_sdk.model_zoo import block_chain

    compiled = build(block_chain(60), ["simaccel"])
    kinds = [step.kind for step in compiled.steps]
    assert kinds.count("host") == 3 and kinds.count("external") > 1, kinds
    return compiled


def test_host_steps_share_the_cpus_and_sleep_when_idle(monkeypatch):
    # onnxruntime gives each session a pool of one thread per core, spinning after each
    # run: with a session per host step, a model of 18 host steps on 2 cores burned
    # 630 ms of CPU per 70 ms run in threads spinning while other steps ran.
    from byoc_sdk import modules

    monkeypatch.setattr(modules, "available_cpus", lambda: 8)
    assert _host_session_options(_alternating()) == [(2, False)] * 3  # 8 CPUs, 3 steps

    monkeypatch.setattr(modules, "available_cpus", lambda: 2)
    assert _host_session_options(_alternating()) == [(1, False)] * 3  # at least one each


def test_host_threads_set_each_host_step_s_threads(tmp_path):
    from byoc_sdk.model_zoo import block_chain

    compiled = build(block_chain(60), ["simaccel"], host_threads=3)
    assert _host_session_options(compiled) == [(3, False)] * 3
    loaded = CompiledModel.load(compiled.save(tmp_path / "chain.byoc"), host_threads=2)
    assert _host_session_options(loaded) == [(2, False)] * 3
    with pytest.raises(ValueError, match=r"host_threads must be 0 .* not -1"):
        CompiledModel.load(tmp_path / "chain.byoc", host_threads=-1)


def test_one_host_step_keeps_onnxruntime_s_defaults(example_targets, example_model):
    # Its one pool competes with no other: every core, spinning, as onnxruntime has it
    # (sleeping made a host-only model 15 to 35% slower).
    compiled = build(example_model(), [example_targets["json"].target])
    assert [s.kind for s in compiled.steps].count("host") == 1
    assert _host_session_options(compiled) == [(0, True)]
    with pytest.raises(ValueError, match=r"host_threads must be 0 .* not -1"):
        build(example_model(), [example_targets["json"].target], host_threads=-1)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_many_host_steps_do_not_make_a_pool_each():
    from byoc_sdk.model_zoo import block_chain

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    model = block_chain(300)
    before = threads()
    compiled = build(model, ["simaccel"])
    compiled.run({"input": np.zeros((1, 8, 8, 8), np.float32)})
    host_steps = [s.kind for s in compiled.steps].count("host")
    assert host_steps == 18
    # Before, every host step's session made a pool of (physical cores - 1) workers.
    assert threads() - before <= (os.cpu_count() or 1), (threads() - before, host_steps)
