"""Bad input found by fuzzing the command line: each case ends in one ``byoc: error:``
line (or argparse's usage error) and exit code 2, never a traceback or an internal error.

* models the loader accepts but onnxruntime refuses when a host session is made;
* packages whose manifest.json was edited by hand (valid JSON, wrong fields);
* option values and path clashes that would crash a command or destroy a file.

Tests that look at what onnxruntime itself prints use ``capfd``: its log lines come from
C++, below Python's ``sys.stderr``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from byoc_sdk import CompiledModel, PackageError, model_zoo
from byoc_sdk.cli import main
from byoc_sdk.codegen import TensorSpec
from byoc_sdk.errors import OnnxRuntimeError
from byoc_sdk.package import BuildReport, PackageContents, save_package


def byoc(capture: Any, *args: object) -> tuple[int, str, str]:
    """Run ``byoc ARGS`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capture.readouterr()
    return code, out, err


def usage_error(capture: Any, *args: object) -> str:
    """Run ``byoc ARGS``, expecting argparse's usage error; its last line."""
    with pytest.raises(SystemExit) as raised:
        main([str(a) for a in args])
    assert raised.value.code == 2
    err = capture.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("byoc: error: ")
    return lines[0]


def single_node_model(node: onnx.NodeProto, dtype: int, in_shape: list[int],
                      out_shape: list[int], initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", dtype, in_shape)],
        [helper.make_tensor_value_info("y", dtype, out_shape)], list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)  # onnx accepts it: the loader will too
    return model


# Valid ONNX (checker and shape inference pass) that onnxruntime 1.2x/1.3x refuses when it
# makes a session: a type with no kernel, and an attribute value the kernel rejects.
REFUSED = {
    "no kernel for the type": (
        lambda: single_node_model(helper.make_node("Erf", ["x"], ["y"], name="erf0"),
                                  TensorProto.DOUBLE, [2, 3], [2, 3]),
        "erf0", "Could not find an implementation for Erf",
    ),
    "attribute value a kernel rejects": (
        lambda: single_node_model(
            helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize0", mode="bogus"),
            TensorProto.FLOAT, [1, 1, 2, 2], [1, 1, 4, 4],
            [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])],
        ),
        "resize0", "mode attribute is bogus",
    ),
}


@pytest.fixture(scope="module")
def package(tmp_path_factory, build_cache_dir) -> Path:
    """small_cnn built for cpu: one compiled C region, so the manifest has every field."""
    folder = tmp_path_factory.mktemp("package")
    onnx.save_model(model_zoo.small_cnn(), folder / "cnn.onnx")
    path = folder / "cnn.byoc"
    assert main(["build", str(folder / "cnn.onnx"), "-t", "cpu", "-o", str(path)]) == 0
    return path


def damaged(source: Path, target: Path, edit: Callable[[dict], Any]) -> Path:
    """A copy of ``source`` whose manifest ``edit`` changed in place (what it returns is
    ignored); the members' checksums still match."""
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


# --- onnxruntime refuses a host step -----------------------------------------------------------


@pytest.mark.parametrize("case", REFUSED)
def test_build_of_a_model_onnxruntime_refuses_is_one_error_line(case, capfd, tmp_path):
    make, node, reason = REFUSED[case]
    onnx.save_model(make(), tmp_path / "m.onnx")

    code, out, err = byoc(capfd, "build", tmp_path / "m.onnx", "-t", "simaccel",
                          "-o", tmp_path / "m.byoc")

    assert code == 2
    # One line: neither an internal error nor onnxruntime's own "[E:onnxruntime:..." log
    # line before it (the host session logs at fatal severity only).
    line = one_error_line(err)
    assert "host step host_0" in line and "region host_0" in line
    assert node in line and reason in line
    # onnxruntime's status prefix and C++ source location are left to --debug.
    assert "[ONNXRuntimeError]" not in line and "/onnxruntime_src" not in line
    assert out == "" and not (tmp_path / "m.byoc").exists()


def test_debug_shows_onnxruntime_s_whole_message(capfd, tmp_path):
    make, _node, _reason = REFUSED["attribute value a kernel rejects"]
    onnx.save_model(make(), tmp_path / "m.onnx")

    code, _, err = byoc(capfd, "build", tmp_path / "m.onnx", "-t", "simaccel",
                        "-o", tmp_path / "m.byoc", "--debug")

    assert code == 2
    assert "Traceback" in err and "upsamplebase.h" in err
    assert err.splitlines()[-1].startswith("byoc: error: ")


def test_run_of_a_package_whose_host_step_onnxruntime_refuses(capfd, tmp_path):
    # A package as a byoc of another onnxruntime could have written it: all host.
    make, node, reason = REFUSED["no kernel for the type"]
    contents = PackageContents(
        model=make(), regions=[], inputs=[TensorSpec("x", "float64", (2, 3))], outputs=["y"],
        constants={}, step_constants={}, targets={}, report=BuildReport(None, []),
    )
    path = save_package(contents, tmp_path / "erf.byoc")

    with pytest.raises(OnnxRuntimeError) as raised:
        CompiledModel.load(path)
    assert raised.value.context.file == str(path)
    code, out, err = byoc(capfd, "run", path, "--random-inputs")

    assert code == 2
    line = one_error_line(err)
    assert str(path) in line and "host step host_0" in line
    assert node in line and reason in line
    assert out == ""


def test_reference_that_onnxruntime_refuses_is_one_error_line(capsys, package, tmp_path):
    make, _node, reason = REFUSED["attribute value a kernel rejects"]
    onnx.save_model(make(), tmp_path / "ref.onnx")

    code, _, err = byoc(capsys, "run", package, "--random-inputs",
                        "--reference", tmp_path / "ref.onnx")

    assert code == 2
    line = one_error_line(err)
    assert f"file {tmp_path / 'ref.onnx'}" in line and reason in line
    assert "/onnxruntime_src" not in line


# --- hand-damaged manifests ------------------------------------------------------------------


def _first(mapping: dict) -> Any:
    return next(iter(mapping.values()))


# edit of the manifest -> what the error line must say
MANIFEST_DAMAGE: dict[str, tuple[Callable[[dict], Any], str]] = {
    "format_version a string": (lambda m: m.update(format_version="1"),
                                "field 'format_version' should be an integer, not a string"),
    "members a list": (lambda m: m.update(members=[]),
                       "field 'members' should be an object, not an array"),
    "a digest an integer": (lambda m: m["members"].update({"model.onnx": 5}),
                            """field 'members["model.onnx"]' should be a string"""),
    "a digest not a sha256": (lambda m: m["members"].update({"model.onnx": "abc"}),
                              """field 'members["model.onnx"]' should be a sha256"""),
    "inputs missing": (lambda m: m.pop("inputs"), "field 'inputs' is missing"),
    "a shape a string": (lambda m: m["inputs"][0].update(shape="1x3x32x32"),
                         "field 'inputs[0].shape' should be an array, not a string"),
    "a dimension a string": (lambda m: m["inputs"][0].update(shape=["1", 3, 32, 32]),
                             "field 'inputs[0].shape[0]' should be an integer, not a string"),
    "a dimension a float": (lambda m: m["inputs"][0].update(shape=[1.0, 3, 32, 32]),
                            "field 'inputs[0].shape[0]' should be an integer, not a number"),
    "a dimension below -1": (lambda m: m["inputs"][0].update(shape=[-2, 3, 32, 32]),
                             "field 'inputs[0].shape[0]' is -2, below -1"),
    "an unknown dtype": (lambda m: m["inputs"][0].update(dtype="floaty"),
                         "field 'inputs[0].dtype' is 'floaty'"),
    "outputs a string": (lambda m: m.update(outputs="probs"),
                         "field 'outputs' should be an array, not a string"),
    "outputs not the model's": (lambda m: m.update(outputs=["nosuch"]),
                                "field 'outputs' lists ['nosuch'], but model.onnx's outputs"),
    "constants a list": (lambda m: m.update(constants=[]),
                         "field 'constants' should be an object, not an array"),
    "a constant's dtype": (lambda m: _first(m["constants"]).update(dtype="nope"),
                           "].dtype' is 'nope', not a numpy dtype"),
    "step_constants a list": (lambda m: m.update(step_constants=[]),
                              "field 'step_constants' should be an object"),
    "platform missing": (lambda m: m.pop("platform"), "field 'platform' is missing"),
    "regions an object": (lambda m: m.update(regions={}),
                          "field 'regions' should be an array, not an object"),
    "a region a string": (lambda m: m.update(regions=["cpu_0"]),
                          "field 'regions[0]' should be an object, not a string"),
    "a region's status missing": (lambda m: m["regions"][0].pop("status"),
                                  "field 'regions[0].status' is missing"),
    "a region's status unknown": (lambda m: m["regions"][0].update(status="done"),
                                  "field 'regions[0].status' is 'done', not 'compiled' or "
                                  "'fallback'"),
    "a region's kind unknown": (lambda m: m["regions"][0].update(kind="wasm"),
                                "field 'regions[0].kind' is 'wasm', not 'binary', 'c_source' "
                                "or 'json'"),
    "a region's outputs missing": (lambda m: m["regions"][0].pop("outputs"),
                                   "field 'regions[0].outputs' is missing"),
    "a region's entry an integer": (lambda m: m["regions"][0].update(entry=7),
                                    "field 'regions[0].entry' should be a string"),
    "a region's constants a list": (lambda m: m["regions"][0].update(constants=[]),
                                    "field 'regions[0].constants' should be an object"),
    "a region's constant unknown": (
        lambda m: m["regions"][0]["constants"].update({"stem/conv.weight": "0" * 64}),
        """field 'regions[0].constants["stem/conv.weight"]' names constant '000""",
    ),
    "a region's flags a string": (lambda m: m["regions"][0].update(flags="-O2"),
                                  "field 'regions[0].flags' should be an array"),
}


#: Damage that only shows against model.onnx, which loading reads and inspect does not.
LOAD_ONLY = {"outputs not the model's"}


@pytest.mark.parametrize("case", MANIFEST_DAMAGE)
def test_damaged_manifest_is_a_package_error_naming_the_field(case, package, tmp_path):
    edit, message = MANIFEST_DAMAGE[case]
    bad = damaged(package, tmp_path / "bad.byoc", edit)

    with pytest.raises(PackageError) as raised:
        CompiledModel.load(bad)

    assert raised.value.context.file == str(bad)
    assert message in raised.value.reason


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, command) for case in MANIFEST_DAMAGE for command in ("inspect", "run")
     if command == "run" or case not in LOAD_ONLY],
)
def test_damaged_manifest_is_one_error_line(case, command, capsys, package, tmp_path):
    edit, message = MANIFEST_DAMAGE[case]
    bad = damaged(package, tmp_path / "bad.byoc", edit)
    extra = ["--random-inputs"] if command == "run" else []

    code, out, err = byoc(capsys, command, bad, *extra)

    assert code == 2
    line = one_error_line(err)
    assert f"file {bad}" in line and message in line
    assert out == ""


def test_manifest_that_is_not_an_object_is_one_error_line(capsys, package, tmp_path):
    with zipfile.ZipFile(package) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["manifest.json"] = b"[" + members["manifest.json"] + b"]"
    bad = tmp_path / "bad.byoc"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)

    code, _, err = byoc(capsys, "inspect", bad)

    assert code == 2
    assert one_error_line(err) == (f"byoc: error: file {bad}: manifest.json is damaged: "
                                   "it should hold a JSON object, not an array")


def test_undamaged_package_passes_the_manifest_check(capsys, package):
    # The control of the cases above: the same package, unedited, runs and inspects.
    assert byoc(capsys, "inspect", package)[0] == 0
    assert byoc(capsys, "run", package, "--random-inputs", "--check")[0] == 0


# --- option values and paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--seed", "-1", "argument --seed: must be at least 0, not -1"),
        ("--seed", "x", "argument --seed: expected an integer, got 'x'"),
        ("--repeat", "abc", "argument --repeat: expected an integer, got 'abc'"),
        ("--rtol", "-1", "argument --rtol: must be a finite number of at least 0"),
        ("--atol", "-1e-3", "argument --atol: must be a finite number of at least 0"),
        ("--atol", "nan", "argument --atol: must be a finite number of at least 0"),
    ],
)
def test_out_of_range_run_option_is_a_usage_error(option, value, message, capsys, package):
    # "--atol=-1e-3": argparse would take a bare -1e-3 for an option.
    last = usage_error(capsys, "run", package, "--random-inputs", "--check",
                       f"{option}={value}")

    assert last.startswith(f"byoc run: error: {message}")


def test_zero_tolerances_are_accepted(capsys, package):
    code, out, _ = byoc(capsys, "run", package, "--random-inputs", "--check",
                        "--rtol", "0", "--atol", "0.001")

    assert code == 0 and "rtol 0.0, atol 0.001" in out


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_save_outputs_to_a_file_is_refused_before_the_run(where, capsys, package, tmp_path):
    (tmp_path / "taken").write_text("keep me")
    folder = tmp_path / "taken" if where == "a file" else tmp_path / "taken" / "sub"

    code, out, err = byoc(capsys, "run", package, "--random-inputs", "--save-outputs", folder)

    assert code == 2
    line = one_error_line(err)
    assert f"file {folder}" in line and "a file, not a folder" in line
    assert out == ""  # refused before the package was run
    assert (tmp_path / "taken").read_text() == "keep me"


def test_save_outputs_makes_missing_folders(capsys, package, tmp_path):
    folder = tmp_path / "new" / "outputs"

    code, _, _ = byoc(capsys, "run", package, "--random-inputs", "--save-outputs", folder)

    assert code == 0
    assert np.load(folder / "probs.npy").shape == (1, 10)


def test_dot_at_the_output_path_is_a_usage_error(capsys, tmp_path):
    model = tmp_path / "cnn.onnx"
    onnx.save_model(model_zoo.small_cnn(), model)
    output = tmp_path / "out.onnx"

    last = usage_error(capsys, "partition", model, "-t", "simaccel", "-o", output,
                       "--dot", tmp_path / "." / "out.onnx")

    assert last.startswith("byoc partition: error: argument --dot: ")
    assert "same file as --output" in last
    assert not output.exists()


def test_dot_at_the_default_output_path_is_a_usage_error(capsys, tmp_path, monkeypatch):
    onnx.save_model(model_zoo.small_cnn(), tmp_path / "cnn.onnx")
    monkeypatch.chdir(tmp_path)

    last = usage_error(capsys, "partition", "cnn.onnx", "-t", "simaccel",
                       "--dot", "cnn.partitioned.onnx")

    assert "argument --dot" in last and "same file as --output" in last


@pytest.mark.parametrize("command", ["partition", "build"])
def test_output_over_the_model_is_a_usage_error(command, capsys, tmp_path):
    model = tmp_path / "cnn.onnx"
    onnx.save_model(model_zoo.small_cnn(), model)
    before = model.read_bytes()

    last = usage_error(capsys, command, model, "-t", "simaccel", "-o", model)

    assert "argument --output" in last and "same file as the model" in last
    assert model.read_bytes() == before


def test_profile_over_the_package_is_a_usage_error(capsys, package):
    before = package.read_bytes()

    last = usage_error(capsys, "run", package, "--random-inputs", "--profile", package)

    assert "argument --profile" in last and "same file as the package" in last
    assert package.read_bytes() == before


@pytest.mark.parametrize("records", [[1, 2], {"cpu_0": 5}])
def test_tuning_records_of_the_wrong_shape_are_one_error_line(records, capsys, tmp_path):
    onnx.save_model(model_zoo.small_cnn(), tmp_path / "cnn.onnx")
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps(records))

    code, _, err = byoc(capsys, "build", tmp_path / "cnn.onnx", "-t", "cpu",
                        "--tuning", tuning, "-o", tmp_path / "cnn.byoc")

    assert code == 2
    line = one_error_line(err)
    assert f"file {tuning}" in line and "JSON object of objects" in line


# --- run --check and --reference on valid models ------------------------------------------------


def test_check_counts_nan_on_both_sides_as_equal(capsys, tmp_path):
    # Sqrt of the random normal inputs: NaN wherever an input is negative, on the host
    # step and in onnxruntime alike. That is the same result, not a mismatch.
    model = single_node_model(helper.make_node("Sqrt", ["x"], ["y"], name="sqrt0"),
                              TensorProto.FLOAT, [2, 8], [2, 8])
    onnx.save_model(model, tmp_path / "m.onnx")
    assert main(["build", str(tmp_path / "m.onnx"), "-t", "simaccel",
                 "-o", str(tmp_path / "m.byoc")]) == 0
    capsys.readouterr()

    code, out, _ = byoc(capsys, "run", tmp_path / "m.byoc", "--random-inputs", "--check")

    assert code == 0, out
    assert "y: max abs error 0, atol 1.14e-05 (1e-05 x largest |value| 1.14) ok" in out


def test_reference_with_external_data_runs_from_any_folder(capsys, package, tmp_path,
                                                            monkeypatch):
    # onnxruntime gets the reference as bytes, so it looked for the weights in the
    # current folder instead of beside the model.
    folder, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    onnx.save_model(model_zoo.small_cnn(), folder / "cnn.onnx", save_as_external_data=True,
                    location="cnn.bin", size_threshold=0)
    monkeypatch.chdir(elsewhere)

    code, out, err = byoc(capsys, "run", package, "--random-inputs",
                          "--reference", folder / "cnn.onnx")

    assert (code, err) == (0, "")
    assert f"check against onnxruntime on {folder / 'cnn.onnx'}" in out


def _build_host_only(tmp_path: Path, outputs: list[str]) -> Path:
    """A package whose host step computes each of ``outputs`` as Relu(x)."""
    nodes = [helper.make_node("Relu", ["x"], [name], name=f"relu{i}")
             for i, name in enumerate(outputs)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2]) for name in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=9)
    onnx.save_model(model, tmp_path / "m.onnx")
    # Relu alone makes no region simaccel keeps: everything runs on the host, no compiler.
    assert main(["build", str(tmp_path / "m.onnx"), "-t", "simaccel",
                 "-o", str(tmp_path / "m.byoc")]) == 0
    return tmp_path / "m.byoc"


def test_save_outputs_that_would_share_a_file_is_refused_before_the_run(capsys, tmp_path):
    package = _build_host_only(tmp_path, ["a/b", "a_b"])
    capsys.readouterr()

    code, out, err = byoc(capsys, "run", package, "--random-inputs",
                          "--save-outputs", tmp_path / "outs")

    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "outputs 'a/b' and 'a_b'" in line and "a_b.npy" in line
    assert not (tmp_path / "outs").exists()


def test_save_outputs_of_a_name_holding_nul_is_saved(capsys, tmp_path):
    package = _build_host_only(tmp_path, ["c\0d"])
    capsys.readouterr()

    code, _, err = byoc(capsys, "run", package, "--random-inputs",
                        "--save-outputs", tmp_path / "outs")

    assert (code, err) == (0, "")
    assert (tmp_path / "outs" / "c_d.npy").is_file()


def test_big_endian_input_is_read_in_the_machine_byte_order(capsys, package, tmp_path):
    data = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(">f4")
    np.save(tmp_path / "input.npy", data)

    code, out, err = byoc(capsys, "run", package, "--input", f"input={tmp_path / 'input.npy'}",
                          "--check")

    assert (code, err) == (0, "")
    assert "probs: max abs error" in out and "MISMATCH" not in out


def _save_x_to_y(path: Path, nodes: list[onnx.NodeProto]) -> None:
    """Save ``nodes`` as a model from float[2] ``x`` to float[2] ``y``, unchecked."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph(nodes, "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                      ir_version=9), path)


def test_a_line_break_in_a_node_name_keeps_the_error_on_one_line(capsys, tmp_path):
    node = helper.make_node("Add", ["x", "ghost"], ["y"], name="line1\nline2")
    _save_x_to_y(tmp_path / "m.onnx", [node])

    code, _, err = byoc(capsys, "partition", tmp_path / "m.onnx", "-t", "cpu",
                        "-o", tmp_path / "p.onnx")

    assert code == 2
    assert "node line1\\nline2: input 'ghost'" in one_error_line(err)


def test_explain_keeps_one_line_per_node_whatever_its_name(capsys, tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first\nnode"),
             helper.make_node("Neg", ["r"], ["y"], name="second\tnode")]
    _save_x_to_y(tmp_path / "m.onnx", nodes)

    code, out, _ = byoc(capsys, "partition", tmp_path / "m.onnx", "-t", "cpu", "--explain",
                        "-o", tmp_path / "p.onnx")

    assert code == 0
    explained = out.split("why each node went where it went:\n")[1].split("\n\n")[0]
    assert [line.split(" (")[0] for line in explained.splitlines()] == [
        "  first\\nnode", "  second\\tnode"]


# --- empty target names and output paths ---------------------------------------------------


@pytest.mark.parametrize("args", [
    ("partition", "m.onnx", "-t", ""),
    ("partition", "m.onnx", "-t", "simaccel", "-t", ""),
    ("build", "m.onnx", "-t", " "),
    ("targets", "--ops", ""),
    ("conformance", "-t", ""),
], ids=["partition", "second", "build-blank", "targets", "conformance"])
def test_an_empty_target_name_is_one_error_line_naming_it(args, capsys, tmp_path, monkeypatch):
    """Before, 'target : unknown target' (the empty name vanished from the line) and, for
    targets --ops, the list of targets with exit code 0."""
    monkeypatch.chdir(tmp_path)
    onnx.save_model(model_zoo.small_cnn(), "m.onnx")

    code, out, err = byoc(capsys, *args)

    assert code == 2 and out == ""
    name = args[-1]
    assert one_error_line(err).startswith(
        f"byoc: error: target {name!r}: empty target name; installed targets: ")
    assert "simaccel" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("args, option", [
    (("partition", "m.onnx", "-t", "simaccel", "-o", ""), "-o/--output"),
    (("partition", "m.onnx", "-t", "simaccel", "--dot", ""), "--dot"),
    (("build", "m.onnx", "-t", "simaccel", "--output", ""), "-o/--output"),
    (("run", "m.byoc", "--profile", ""), "--profile"),
    (("run", "m.byoc", "--save-outputs", ""), "--save-outputs"),
    (("new-backend", "acc", "-o", ""), "-o/--output"),
    (("conformance", "-t", "simaccel", "--report", ""), "--report"),
    (("conformance", "-t", "simaccel", "--junit", ""), "--junit"),
], ids=["partition", "dot", "build", "profile", "save-outputs", "new-backend", "report",
        "junit"])
def test_an_empty_output_path_is_one_error_line(args, option, capsys, tmp_path, monkeypatch):
    """Before, an empty path meant the default (partition, build: the model's stem in the
    current folder; new-backend: the current folder) or no file at all (--dot, --profile,
    --save-outputs, --report, --junit), without a word. Refused before any work."""
    monkeypatch.chdir(tmp_path)
    onnx.save_model(model_zoo.small_cnn(), "m.onnx")

    code, out, err = byoc(capsys, *args)

    assert code == 2 and out == ""
    assert one_error_line(err) == (f"byoc: error: argument {option}: empty path; give a "
                                   "path, or leave the option out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("args, message", [
    (("build", "m.onnx", "-t", "simaccel", "--tuning", ""), "argument --tuning: empty path"),
    (("run", "m.byoc", "--reference", ""), "argument --reference: empty path"),
    (("conformance", "-t", "simaccel", "--xfail-file", ""),
     "argument --xfail-file: empty path"),
    (("conformance", "-t", "simaccel", "--model", "m.onnx", "--model", ""),
     "argument --model: empty path"),
    (("new-backend", "acc", "--ops", ""), "argument --ops: empty list of ops"),
    (("new-backend", "acc", "--package", ""), "argument --package: empty name"),
], ids=["tuning", "reference", "xfail-file", "model", "ops", "package"])
def test_an_empty_input_option_is_one_error_line(args, message, capsys, tmp_path,
                                                 monkeypatch):
    """Before, --tuning '' built without tuning, --reference '' ran without a check,
    --xfail-file '' took the default file and --package '' the default name, without a
    word; --model '' was "file .: is a directory" and --ops '' "ops [] are not starter
    ops". Refused before any work, as empty output paths are."""
    monkeypatch.chdir(tmp_path)
    onnx.save_model(model_zoo.small_cnn(), "m.onnx")

    code, out, err = byoc(capsys, *args)

    assert code == 2 and out == ""
    what = message.rsplit("empty ", 1)[1]
    assert one_error_line(err) == (f"byoc: error: {message}; give a {what}, or leave the "
                                   "option out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("args, argument", [
    (("partition", "", "-t", "simaccel"), "model"),
    (("build", "", "-t", "simaccel"), "model"),
    (("run", ""), "package"),
    (("inspect", ""), "package"),
], ids=["partition", "build", "run", "inspect"])
def test_an_empty_file_argument_is_one_error_line(args, argument, capsys):
    # Before: "file .: is a directory, not an ONNX model file" (partition, build).
    code, out, err = byoc(capsys, *args)

    assert code == 2 and out == ""
    assert one_error_line(err) == f"byoc: error: argument {argument}: empty path; give a path"
