"""Regressions of the package and runtime layer, each found from a user's seat: damaged
and hand-edited packages, vendor runtimes that return the wrong thing, outputs that
alias a caller's arrays, and models of many host steps."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from byoc_sdk import (
    CompiledModel,
    InputError,
    JsonGraph,
    RegionPolicy,
    StepError,
    Target,
    VendorRuntime,
    build,
    register_runtime,
)
from byoc_sdk.cli import main
from byoc_sdk.package import PackageError
from byoc_sdk.testing import run_onnxruntime


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _info(name: str, shape, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _three_steps() -> onnx.ModelProto:
    """MatMul+Relu (simaccel), Abs (host), MatMul (simaccel): x (2, 4) -> y (2, 4)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"], name="mm1"),
             helper.make_node("Relu", ["m"], ["r"], name="relu"),
             helper.make_node("Abs", ["r"], ["a"], name="abs"),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="mm2")]
    return _model(nodes, [_info("x", [2, 4])], [_info("y", [2, 4])], [w1, w2])


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pkg") / "three.byoc"
    compiled = build(_three_steps(), ["simaccel"], policy=RegionPolicy.keep_all())
    assert [s.kind for s in compiled.steps] == ["external", "host", "external"]
    compiled.save(path)
    return path


def _rewrite(source: Path, target: Path, edit_manifest=None) -> Path:
    """``source`` rewritten to ``target`` (deflated), its manifest passed through
    ``edit_manifest``: the members and their checksums are left as they were."""
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(members["manifest.json"])
    if edit_manifest is not None:
        edit_manifest(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


def _corrupt_deflate_stream(path: Path, member: str) -> None:
    """Make ``member``'s deflate stream start with a reserved block type (BTYPE 11), which
    zlib refuses (zlib.error) before zipfile gets to check the CRC."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    offset = info.header_offset
    name_length = int.from_bytes(data[offset + 26: offset + 28], "little")
    extra_length = int.from_bytes(data[offset + 28: offset + 30], "little")
    start = offset + 30 + name_length + extra_length
    data[start] = 0xFF  # BFINAL 1, BTYPE 11: "invalid block type"
    path.write_bytes(bytes(data))


# --- 1. a corrupt deflate stream is a PackageError, not an internal zlib.error ----------


@pytest.mark.parametrize("member", ["manifest.json", "model.onnx"])
def test_a_corrupt_compressed_member_is_a_package_error(package, tmp_path, capsys, member):
    damaged = _rewrite(package, tmp_path / "damaged.byoc")
    _corrupt_deflate_stream(damaged, member)

    with pytest.raises(PackageError, match="unreadable"):
        CompiledModel.load(damaged)
    for command in (["inspect", str(damaged)], ["run", str(damaged), "--random-inputs"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("byoc: error: file ") and "internal" not in err, err
        assert len(err.strip().splitlines()) == 1


# --- 2. region signatures and input specs are held against model.onnx ------------------


def _edit_region_output_shape(manifest):
    manifest["regions"][-1]["outputs"][0]["shape"] = [4, 2]


def _drop_region_outputs(manifest):
    manifest["regions"][0]["outputs"] = []


def _edit_input_shape(manifest):
    manifest["inputs"][0]["shape"] = [3, 4]


def _edit_region_input_dtype(manifest):
    manifest["regions"][0]["inputs"][0]["dtype"] = "float64"


@pytest.mark.parametrize(("edit", "field"), [
    # was a silently wrong output: the simulator's result reshaped to (4, 2)
    (_edit_region_output_shape, "regions[1].outputs[0].shape"),
    # was an internal error: ValueError from zip() in the runtime
    (_drop_region_outputs, "regions[0].outputs"),
    # was a failure of step 0 instead of the damage it is
    (_edit_input_shape, "inputs[0].shape"),
    (_edit_region_input_dtype, "regions[0].inputs[0].dtype"),
])
def test_an_edited_signature_is_named_as_damage(package, tmp_path, capsys, edit, field):
    edited = _rewrite(package, tmp_path / "edited.byoc", edit)

    with pytest.raises(PackageError, match=r"manifest\.json is damaged") as caught:
        CompiledModel.load(edited)
    assert f"field '{field}'" in str(caught.value)
    assert main(["run", str(edited), "--random-inputs"]) == 2
    assert f"field '{field}'" in capsys.readouterr().err


def test_an_unedited_package_still_loads_and_matches(package):
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    got = CompiledModel.load(package).run({"x": x})
    np.testing.assert_allclose(got["y"], run_onnxruntime(_three_steps(), {"x": x})["y"],
                               rtol=1e-4, atol=1e-5)


# --- 3. a vendor runtime's results are checked against its region's signature ----------


_RETURNS = {"kind": "float64"}


@register_runtime
class _SloppyRuntime(VendorRuntime):
    """Relu, returned as whatever ``_RETURNS`` asks for."""

    name = "regression_sloppy"
    thread_safe = True

    def __init__(self, artifact, constants, signature) -> None:
        pass

    def run(self, inputs):
        result = np.maximum(inputs[0], 0)
        kind = _RETURNS["kind"]
        if kind == "float64":
            return [result.astype(np.float64)]
        if kind == "list":
            return [result.tolist()]
        if kind == "scalar":  # a numpy scalar for a 0-d output: fine
            return [np.float32(result.reshape(()))]
        if kind == "bare":  # the array itself, not a list holding it
            return result
        return [result]


def _sloppy_target() -> Target:
    target = Target("sloppy", version="1", policy=RegionPolicy.keep_all(),
                    codegen=lambda region: JsonGraph({}, runtime=_SloppyRuntime.name))
    target.support("Relu", dtypes={"float32"}, static_shapes=True)
    return target


@pytest.mark.parametrize("kind", ["float64", "list"])
def test_a_vendor_result_of_the_wrong_type_names_its_own_region(kind):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Abs", ["r"], ["a"], name="abs"),
             helper.make_node("Relu", ["a"], ["y"], name="relu2")]
    model = _model(nodes, [_info("x", [2, 3])], [_info("y", [2, 3])])
    compiled = build(model, [_sloppy_target()])
    assert [s.target for s in compiled.steps] == ["sloppy", "host", "sloppy"]
    first = compiled.steps[0].name

    _RETURNS["kind"] = kind
    try:
        with pytest.raises(StepError) as caught:
            compiled.run({"x": np.ones((2, 3), np.float32)})
    finally:
        _RETURNS["kind"] = "ok"
    # Before: the host step after it failed (float64), or the caller got a list (list).
    assert caught.value.context.region == first
    assert caught.value.context.target == "sloppy"
    assert "expected float32(2, 3)" in str(caught.value)


@pytest.mark.parametrize("shape", [(2, 3), (1, 3), (3,)])
def test_a_vendor_array_returned_bare_is_named_as_such(shape):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    compiled = build(_model(nodes, [_info("x", shape)], [_info("y", shape)]),
                     [_sloppy_target()])
    _RETURNS["kind"] = "bare"
    try:
        with pytest.raises(StepError) as caught:
            compiled.run({"x": np.ones(shape, np.float32)})
    finally:
        _RETURNS["kind"] = "ok"
    # Before: its rows taken for outputs, "returned 2 outputs, expected 1" for (2, 3), a
    # wrong shape for (1, 3), "returned 3 outputs" for (3,).
    assert str(caught.value).endswith(
        f"vendor runtime 'regression_sloppy' returned an array (float32{shape}), not a list "
        "of arrays (one per output, 1 expected)")
    assert caught.value.context.target == "sloppy"


def test_a_vendor_numpy_scalar_for_a_0d_output_is_accepted():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    compiled = build(_model(nodes, [_info("x", [])], [_info("y", [])]), [_sloppy_target()])
    _RETURNS["kind"] = "scalar"
    try:
        out = compiled.run({"x": np.array(-2.0, np.float32)})["y"]
    finally:
        _RETURNS["kind"] = "ok"
    assert isinstance(out, np.ndarray) and out.shape == () and out == 0


# --- 4. a graph input that is also a graph output is handed out as a fresh array -------


def test_a_graph_input_passed_through_to_an_output_is_a_copy():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    model = _model(nodes, [_info("x", [2, 4])], [_info("r", [2, 4]), _info("x", [2, 4])])
    compiled = build(model, ["simaccel"], policy=RegionPolicy.keep_all())
    x = np.ones((2, 4), np.float32)

    outputs = compiled.run({"x": x})
    assert not np.shares_memory(outputs["x"], x)  # onnxruntime's outputs never do
    x[:] = 5  # the caller reuses its input buffer for the next run
    np.testing.assert_array_equal(outputs["x"], np.ones((2, 4), np.float32))


# --- 5. host sub-models are cut with lookups made once per model -----------------------


def test_lookups_for_host_steps_are_made_once_per_model(monkeypatch):
    from byoc_sdk import schedule

    nodes, previous = [], "x"
    for i in range(40):  # Relu (simaccel) and Abs (host) in turn: 20 host steps
        nodes.append(helper.make_node("Abs" if i % 2 else "Relu", [previous], [f"v{i}"],
                                      name=f"n{i}"))
        previous = f"v{i}"
    model = _model(nodes, [_info("x", [2, 4])], [_info(previous, [2, 4])])
    made = []
    original = schedule.ModelTables

    class Counting(original):
        def __init__(self, proto):
            made.append(1)
            super().__init__(proto)

    monkeypatch.setattr(schedule, "ModelTables", Counting)
    compiled = build(model, ["simaccel"], policy=RegionPolicy.keep_all())
    assert sum(step.kind == "host" for step in compiled.steps) == 20
    # Before: every host step rebuilt the model's value, initializer and function tables
    # (quadratic in the number of steps: seconds on a model of a few thousand nodes).
    assert len(made) == 1
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(compiled.run({"x": x})[previous],
                               run_onnxruntime(model, {"x": x})[previous], atol=1e-5)


# --- 6. inspect names a constant the manifest lists but no member holds ----------------


def test_inspect_names_a_listed_constant_without_a_member(package, tmp_path, capsys):
    def add_constant(manifest):
        manifest["constants"]["0" * 64] = {"dtype": "float32", "shape": [1]}

    edited = _rewrite(package, tmp_path / "extra.byoc", add_constant)
    assert main(["inspect", str(edited)]) == 2  # was 1: an internal KeyError
    err = capsys.readouterr().err
    assert err.startswith("byoc: error: file ") and f"constants/{'0' * 64}.bin" in err


def test_host_nodes_nothing_reads_are_not_run():
    """A Softmax whose output nothing reads (legal ONNX) formed a host step of its own with
    no outputs, which onnxruntime refused at run time; it is dead, so no step runs it."""
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["r"], name="conv"),
             helper.make_node("Softmax", ["r"], ["dead"], name="softmax"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    model = _model(nodes, [_info("x", [1, 2, 4, 4])], [_info("y", [1, 2, 4, 4])], [w])
    compiled = build(model, ["simaccel"], policy=RegionPolicy.keep_all())
    assert [s.kind for s in compiled.steps] == ["external"]
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)}
    np.testing.assert_allclose(compiled.run(feeds)["y"], run_onnxruntime(model, feeds)["y"],
                               rtol=1e-5, atol=1e-5)


# --- 7. the dimensions one symbol names are held to one size at the feed ----------------


def _shared_symbol() -> onnx.ModelProto:
    """x: [N, 4] + y: [N, 4], and m: [M, 4] concatenated to the sum on axis 0."""
    nodes = [helper.make_node("Add", ["x", "y"], ["s"], name="add"),
             helper.make_node("Concat", ["s", "m"], ["z"], name="concat", axis=0)]
    return _model(nodes, [_info("x", ["N", 4]), _info("y", ["N", 4]), _info("m", ["M", 4])],
                  [_info("z", [None, 4])])


@pytest.fixture(params=["built", "loaded"])
def shared_symbol(request, tmp_path) -> CompiledModel:
    compiled = build(_shared_symbol(), ["simaccel"])
    if request.param == "loaded":  # the symbols come from the package's model.onnx
        compiled = CompiledModel.load(compiled.save(tmp_path / "shared.byoc"))
    assert [spec.shape for spec in compiled.inputs] == [(-1, 4)] * 3  # no names here
    return compiled


def _feeds(**rows: int) -> dict[str, np.ndarray]:
    return {name: np.ones((n, 4), np.float32) for name, n in rows.items()}


def test_inputs_sharing_a_symbol_must_agree_at_the_feed(shared_symbol):
    with pytest.raises(InputError) as raised:
        shared_symbol.run(_feeds(x=2, y=3, m=1))
    # Before: a StepError from inside the host step, in onnxruntime's words about Add.
    assert str(raised.value) == (
        "input 'y' has size 3 in dimension 0 (symbol 'N'), but input 'x' has size 2 in "
        "dimension 0 (also 'N'): every dimension named 'N' must have one size")
    # Each symbol may take any size, and different symbols different sizes; the failed
    # feed left the model ready to run.
    for n, m in ((2, 1), (5, 3)):
        assert shared_symbol.run(_feeds(x=n, y=n, m=m))["z"].shape == (n + m, 4)


def test_a_symbol_twice_in_one_input_must_agree():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[1, 0]),
             helper.make_node("Add", ["x", "t"], ["y"], name="add")]
    compiled = build(_model(nodes, [_info("x", ["N", "N"])], [_info("y", ["N", "N"])]),
                     ["simaccel"])
    with pytest.raises(InputError, match=r"input 'x' has size 3 in dimension 1 \(symbol 'N'\), "
                                         r"but input 'x' has size 2 in dimension 0"):
        compiled.run({"x": np.ones((2, 3), np.float32)})
    assert compiled.run({"x": np.ones((3, 3), np.float32)})["y"].shape == (3, 3)


# --- 8. a feed that fits a dynamic input is taken on the fast path -------------------------


def _dynamic_inputs() -> onnx.ModelProto:
    """x: [N, 4] (one dimension fixed), u: [A, B] (none), v: [3, 5] (static), s: [K]
    (strings)."""
    nodes = [helper.make_node("Relu", ["x"], ["x_out"], name="relu_x"),
             helper.make_node("Relu", ["u"], ["u_out"], name="relu_u"),
             helper.make_node("Relu", ["v"], ["v_out"], name="relu_v"),
             helper.make_node("Identity", ["s"], ["s_out"], name="strings")]
    return _model(nodes, [_info("x", ["N", 4]), _info("u", ["A", "B"]), _info("v", [3, 5]),
                          _info("s", ["K"], TensorProto.STRING)],
                  [_info("x_out", ["N", 4]), _info("u_out", ["A", "B"]), _info("v_out", [3, 5]),
                   _info("s_out", ["K"], TensorProto.STRING)])


def _dynamic_feeds(rows: int, **changed: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": np.ones((rows, 4), np.float32), "u": np.ones((rows + 1, 2), np.float32),
            "v": np.ones((3, 5), np.float32),
            "s": np.array(["a"] * rows, dtype=object), **changed}


def test_a_feed_that_fits_a_dynamic_input_takes_the_fast_path(monkeypatch):
    compiled = build(_dynamic_inputs(), ["simaccel"])
    admitted = []
    slow_path = CompiledModel._admit

    def admit(self, name, array):
        admitted.append(name)
        return slow_path(self, name, array)

    monkeypatch.setattr(CompiledModel, "_admit", admit)
    for rows in (1, 2, 7):
        outputs = compiled.run(_dynamic_feeds(rows))
        assert outputs["x_out"].shape == (rows, 4) and outputs["u_out"].shape == (rows + 1, 2)
    # Before: every feed for a dynamic input took the slow path (its spec's -1 never
    # equals a feed's size), about 1.4 us per input per run.
    assert admitted == []
    # Strings as numpy's fixed-width str still take it, to be made object arrays.
    assert list(compiled.run(_dynamic_feeds(2, s=np.array(["a", "b"])))["s_out"]) == ["a", "b"]
    assert admitted == ["s"]


@pytest.mark.parametrize(("changed", "message"), [
    ({"x": np.ones((2, 5), np.float32)}, "input 'x' is float32(2, 5), expected float32(-1, 4)"),
    ({"x": np.ones((2, 4, 1), np.float32)},
     "input 'x' is float32(2, 4, 1), expected float32(-1, 4)"),
    ({"x": np.ones(4, np.float32)}, "input 'x' is float32(4,), expected float32(-1, 4)"),
    ({"x": np.ones((2, 4), np.float64)}, "input 'x' is float64(2, 4), expected float32(-1, 4)"),
    ({"u": np.ones(3, np.float32)}, "input 'u' is float32(3,), expected float32(-1, -1)"),
    ({"u": np.ones((1, 2, 3), np.float32)},
     "input 'u' is float32(1, 2, 3), expected float32(-1, -1)"),
    ({"v": np.ones((3, 4), np.float32)}, "input 'v' is float32(3, 4), expected float32(3, 5)"),
    ({"s": np.array([["a"]])}, "input 's' is object(1, 1), expected string(-1,)"),
    ({"s": np.array([1, 2])}, "input 's' is int64(2,), expected string(-1,)"),
], ids=["fixed size", "rank up", "rank down", "dtype", "free rank down", "free rank up",
        "static", "string rank", "string dtype"])
def test_a_feed_that_does_not_fit_a_dynamic_input_is_still_refused(changed, message):
    compiled = build(_dynamic_inputs(), ["simaccel"])
    with pytest.raises(InputError) as raised:
        compiled.run(_dynamic_feeds(2, **changed))
    assert str(raised.value) == message


# --- 9. onnxruntime's failure in a host step is one line, in its own words -----------------


_Failure = tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray], str, str]


def _broadcast_failure() -> _Failure:
    """x: [N, 4] + y: [M, 4] on the host (an unbound step: it makes the graph output),
    fed 2 and 3 rows: no symbol ties N to M, so onnxruntime is the first to object.
    Returns the model, bad and good feeds, and the node and reason the error names."""
    nodes = [helper.make_node("Add", ["x", "y"], ["s"], name="add")]
    model = _model(nodes, [_info("x", ["N", 4]), _info("y", ["M", 4])], [_info("s", [None, 4])])
    bad = {"x": np.ones((2, 4), np.float32), "y": np.ones((3, 4), np.float32)}
    good = {"x": np.ones((3, 4), np.float32), "y": np.ones((3, 4), np.float32)}
    return (model, bad, good, "Name:'add'",
            "Attempting to broadcast an axis by a dimension other than 1")


def _gather_failure() -> _Failure:
    """A Gather on the host bound to a frame (its output goes on to simaccel's Relu),
    given an index out of range."""
    nodes = [helper.make_node("Gather", ["x", "i"], ["g"], name="gather"),
             helper.make_node("Relu", ["g"], ["y"], name="relu")]
    model = _model(nodes, [_info("x", [3, 4]), _info("i", [2], TensorProto.INT64)],
                   [_info("y", [2, 4])])
    x = np.ones((3, 4), np.float32)
    bad, good = {"x": x, "i": np.array([0, 5])}, {"x": x, "i": np.array([0, 2])}
    return model, bad, good, "Name:'gather'", "indices element out of data bounds, idx=5"


@pytest.mark.parametrize("case", [_broadcast_failure, _gather_failure],
                         ids=["unbound", "bound"])
def test_a_failing_host_step_is_one_line_without_onnxruntime_s_source(case, tmp_path, capsys):
    model, feeds, good, node, reason = case()
    compiled = build(model, ["simaccel"], policy=RegionPolicy.keep_all())
    assert compiled.steps[0].name == "host_0"

    with pytest.raises(StepError) as raised:
        compiled.run(feeds)
    message = str(raised.value)
    # Bound or not, onnxruntime's words start at once (before, a bound step's said "Error
    # in execution: " first, which its IOBinding call puts before the status).
    assert message.startswith("target host, region host_0: step 0 (host) failed: "
                              "OnnxRuntimeError: Non-zero status code returned while "
                              "running "), message
    assert node in message and reason in message
    # Before: onnxruntime's status prefix and, for the broadcast, the C++ source file,
    # line and function that raised it ("/onnxruntime_src/.../element_wise_ops.h:583
    # void onnxruntime::BroadcastIterator::Append(ptrdiff_t, ptrdiff_t)").
    assert "[ONNXRuntimeError]" not in message and "onnxruntime_src" not in message
    assert "::" not in message and len(message.splitlines()) == 1
    # The whole of onnxruntime's message is kept for --debug, as the cause's cause.
    assert reason in str(raised.value.__cause__.__cause__)

    # byoc run prints the same line, and nothing else.
    package = compiled.save(tmp_path / "failing.byoc")
    args = ["run", str(package)]
    for name, array in feeds.items():
        np.save(tmp_path / f"{name}.npy", array)
        args += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err == f"byoc: error: {message}\n" and captured.out == ""

    assert compiled.run(good)  # the model is left ready to run


# --- 10. every error type a user can meet is exported and in the docs' list -------------


def _documented_errors() -> set[str]:
    """The error types the tree in architecture.md's "Errors and what they name" lists."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    tree = text.split("### Errors and what they name", 1)[1].split("```", 2)[1]
    return set(re.findall(r"\b([A-Z]\w*Error)\b", tree))


def test_the_error_types_are_exported_and_documented():
    import byoc_sdk
    from byoc_sdk import build as build_module
    from byoc_sdk import errors, package, runtime, toolchain, vendor_runtime

    exported = {name for name in byoc_sdk.__all__
                if isinstance(getattr(byoc_sdk, name), type)
                and issubclass(getattr(byoc_sdk, name), byoc_sdk.ByocError)}
    # Every ByocError of the modules that build, package and run a model: a caller who
    # wants to catch one should not have to know which private module defines it.
    defined = {name for module in (errors, build_module, package, runtime, toolchain,
                                   vendor_runtime)
               for name, value in vars(module).items()
               if isinstance(value, type) and issubclass(value, byoc_sdk.ByocError)
               and value.__module__ == module.__name__ and not name.startswith("_")}
    assert defined - exported == set()
    assert {"ModuleError", "OnnxRuntimeError", "RuntimeNotFoundError"} <= exported
    assert _documented_errors() == exported


def _with_program(source: Path, target: Path, program: bytes) -> Path:
    """``source`` with its one binary region's program replaced, under a fresh checksum."""
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    name = next(n for n in members if n.endswith("/program.bin"))
    members[name] = program
    manifest = json.loads(members["manifest.json"])
    manifest["members"][name] = hashlib.sha256(program).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return target


def test_a_region_that_fails_to_load_from_a_package_is_a_module_error(package, tmp_path):
    import byoc_sdk

    bad = _with_program(package, tmp_path / "bad.byoc", b"not a program")
    with pytest.raises(byoc_sdk.ModuleError) as raised:
        CompiledModel.load(bad)
    error = raised.value
    assert error.context.file == str(bad) and error.context.target == "simaccel"
    assert error.context.region and "module failed to load" in str(error)


def test_a_package_whose_runtime_is_missing_raises_runtime_not_found(package, monkeypatch):
    import byoc_sdk
    from byoc_sdk import vendor_runtime

    monkeypatch.setattr(vendor_runtime, "_registered", {})
    monkeypatch.setattr(vendor_runtime, "entry_points", lambda group: [])
    with pytest.raises(byoc_sdk.RuntimeNotFoundError) as raised:
        CompiledModel.load(package)
    error = raised.value
    assert error.context.region and error.context.target == "simaccel"
    assert "no vendor runtime 'simaccel' is installed" in str(error)
