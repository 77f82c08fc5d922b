"""Specification of the ``byoc`` command line.

Runs ``byoc_sdk.cli.main`` in-process (fast) and the installed console script once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from byoc_sdk import model_zoo
from byoc_sdk.cli import main
from byoc_sdk.testing import assert_equivalent, onnx_text

SMALL_CNN = model_zoo.small_cnn()
SMALL_CNN_NODES = len(SMALL_CNN.graph.node)

# Relu | Softmax | Conv -> Relu | Softmax: simaccel claims two regions, a lone Relu (no
# compute-heavy op, a single node) and Conv+Relu (two nodes); Softmax stays on the host.
TWO_REGION_CHAIN = onnx_text("""
agraph (float[1,4,8,8] x) => (float[1,4,8,8] y)
<float[4,4,1,1] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}>
{
  [r1] a = Relu(x)
  [s1] b = Softmax<axis=1>(a)
  [c1] c = Conv(b, w)
  [r2] d = Relu(c)
  [s2] y = Softmax<axis=1>(d)
}
""")


def byoc(capsys, *args: object) -> tuple[int, str, str]:
    """Run ``byoc ARGS`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cnn(tmp_path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save_model(SMALL_CNN, path)
    return path


@pytest.fixture
def chain(tmp_path) -> Path:
    path = tmp_path / "chain.onnx"
    onnx.save_model(TWO_REGION_CHAIN, path)
    return path


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("byoc: error: ")
    assert "Traceback" not in err


# --- byoc partition -------------------------------------------------------------------------


def test_partition_exits_0_and_prints_the_report(capsys, cnn, tmp_path):
    output = tmp_path / "o.onnx"

    code, out, err = byoc(capsys, "partition", cnn, "--target", "simaccel", "-o", output)

    assert code == 0
    assert "simaccel" in out
    assert "regions" in out
    assert "not offloaded" in out
    assert f"wrote {output}" in out
    assert err == ""


def test_partition_writes_a_model_that_runs_like_the_original(capsys, cnn, tmp_path):
    output = tmp_path / "out.onnx"

    code, _, _ = byoc(capsys, "partition", cnn, "--target", "simaccel", "-o", output)

    assert code == 0
    partitioned = onnx.load_model(output)
    onnx.checker.check_model(partitioned)
    assert_equivalent(SMALL_CNN, partitioned)


def test_partition_explain_prints_one_line_per_node(capsys, cnn, tmp_path):
    code, out, _ = byoc(
        capsys, "partition", cnn, "-t", "simaccel", "-o", tmp_path / "o.onnx", "--explain"
    )

    assert code == 0
    explained = [line for line in out.splitlines() if " -> " in line]
    assert len(explained) == SMALL_CNN_NODES
    for node in SMALL_CNN.graph.node:
        prefix = f"  {node.name} ({node.op_type}) -> "
        assert sum(line.startswith(prefix) for line in explained) == 1, node.name


def test_partition_without_explain_prints_no_per_node_lines(capsys, cnn, tmp_path):
    _, out, _ = byoc(capsys, "partition", cnn, "-t", "simaccel", "-o", tmp_path / "o.onnx")

    assert not [line for line in out.splitlines() if " -> " in line]


def test_partition_json_prints_the_report_as_json(capsys, cnn, tmp_path):
    code, out, _ = byoc(
        capsys, "partition", cnn, "-t", "simaccel", "-o", tmp_path / "o.onnx", "--json"
    )

    assert code == 0
    report = json.loads(out)
    assert {"summary", "regions", "nodes", "not_offloaded"} <= set(report)
    assert len(report["nodes"]) == SMALL_CNN_NODES
    assert [r["target"] for r in report["regions"]] == ["simaccel"]
    assert (tmp_path / "o.onnx").is_file()


def test_partition_dot_writes_graphviz_with_a_cluster_per_region(capsys, cnn, tmp_path):
    dot = tmp_path / "view.dot"

    code, out, _ = byoc(
        capsys, "partition", cnn, "-t", "simaccel", "-o", tmp_path / "o.onnx", "--dot", dot
    )

    assert code == 0
    text = dot.read_text()
    assert text.lstrip().startswith("digraph")
    assert "cluster_simaccel_0" in text
    assert str(dot) in out


def _regions(capsys, model: Path, *options: object) -> list[dict]:
    code, out, _ = byoc(
        capsys, "partition", model, "-t", "simaccel", "-o", model.with_suffix(".out.onnx"),
        "--json", *options,
    )
    assert code == 0
    return json.loads(out)["regions"]


def test_default_policy_keeps_only_regions_worth_offloading(capsys, chain):
    regions = _regions(capsys, chain)

    assert [r["nodes"] for r in regions] == [2]


def test_keep_all_regions_offloads_every_claimed_region(capsys, chain):
    regions = _regions(capsys, chain, "--keep-all-regions")

    assert sorted(r["nodes"] for r in regions) == [1, 2]


def test_min_region_size_sends_smaller_regions_to_the_host(capsys, chain):
    assert _regions(capsys, chain, "--min-region-size", 3) == []


def test_two_targets_share_the_model_by_priority(capsys, cnn, tmp_path):
    output = tmp_path / "o.onnx"

    code, out, _ = byoc(
        capsys, "partition", cnn, "--target", "simaccel", "--target", "cpu", "-o", output,
        "--json",
    )

    assert code == 0
    report = json.loads(out)
    assert report["targets"] == ["simaccel", "cpu"]
    assert {r["target"] for r in report["regions"]} == {"simaccel", "cpu"}
    assert_equivalent(SMALL_CNN, onnx.load_model(output))


def test_default_output_is_stem_partitioned_onnx_in_the_current_folder(
    capsys, tmp_path, monkeypatch
):
    models = tmp_path / "models"
    models.mkdir()
    onnx.save_model(SMALL_CNN, models / "net.onnx")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    code, out, _ = byoc(capsys, "partition", models / "net.onnx", "-t", "simaccel")

    assert code == 0
    assert (work / "net.partitioned.onnx").is_file()
    assert not (models / "net.partitioned.onnx").exists()
    assert "wrote net.partitioned.onnx" in out


DYNAMIC_BATCH = """
    g (float[batch,3,8,8] x) => (float[batch,4,8,8] y)
    <float[4,3,3,3] w = {WEIGHTS}> {
      [conv] c = Conv<pads=[1,1,1,1]>(x, w)
      [relu] y = Relu(c)
    }""".replace("WEIGHTS", ", ".join(["0.1"] * 108))


def test_a_dynamic_batch_gets_a_hint_and_input_shape_fixes_it(capsys, tmp_path):
    """A model exported with a dynamic batch (torch's dynamic_axes) offloaded nothing, and
    nothing said why the fix was --input-shape, which partition did not even take."""
    model = tmp_path / "dynamic.onnx"
    onnx.save_model(onnx_text(DYNAMIC_BATCH), model)

    code, out, _ = byoc(capsys, "partition", model, "-t", "simaccel", "-o", tmp_path / "a.onnx")
    assert code == 0
    assert ("note: 2 nodes stayed on the host for want of static shapes, and inputs with "
            "dynamic dimensions feed the model (x [batch, 3, 8, 8]): fix them with e.g. "
            "--input-shape x=1x3x8x8 (input_shapes= from Python)") in out.splitlines()

    code, out, _ = byoc(capsys, "partition", model, "-t", "simaccel", "--input-shape",
                        "x=2x3x8x8", "-o", tmp_path / "b.onnx", "--json")
    report = json.loads(out)
    assert code == 0 and {n["target"] for n in report["nodes"]} == {"simaccel"}
    assert "input 'x' fixed to shape (2, 3, 8, 8)" in report["notes"]
    assert not any("static shapes" in note for note in report["notes"])


def test_verbose_prints_stage_timings_on_stderr(capsys, cnn, tmp_path):
    output = tmp_path / "o.onnx"

    code, out, err = byoc(capsys, "partition", cnn, "-t", "simaccel", "-o", output, "-v")

    assert code == 0
    assert "byoc: annotate..." in err
    assert " s" in err
    assert "byoc:" not in out


# --- errors ---------------------------------------------------------------------------------


def _missing(tmp_path: Path) -> list[object]:
    return ["partition", tmp_path / "missing.onnx", "-t", "simaccel"]


def _text_file(tmp_path: Path) -> list[object]:
    path = tmp_path / "readme.onnx"
    path.write_text("not a model\n")
    return ["partition", path, "-t", "simaccel"]


def _saved_cnn(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save_model(SMALL_CNN, path)
    return path


def _unknown_target(tmp_path: Path) -> list[object]:
    return ["partition", _saved_cnn(tmp_path), "-t", "nosuch", "-o", tmp_path / "o.onnx"]


def _same_target_twice(tmp_path: Path) -> list[object]:
    return ["partition", _saved_cnn(tmp_path), "-t", "cpu", "-t", "cpu", "-o", tmp_path / "o.onnx"]


BAD_INPUTS = {
    "missing model file": (_missing, "no such file"),
    "text file as the model": (_text_file, "not an ONNX model"),
    # Other vendor packages may be installed too: the bundled ones are listed in order.
    "unknown target": (_unknown_target, "unknown target; installed targets: "),
    "target given twice": (_same_target_twice, "given more than once"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_error_line(capsys, tmp_path, case):
    make_args, expected = BAD_INPUTS[case]

    code, out, err = byoc(capsys, *make_args(tmp_path))

    assert code == 2
    assert_one_error_line(err)
    assert expected in err
    assert out == ""
    if case == "unknown target":
        listed = err.split("installed targets: ")[1].strip().split(", ")
        assert listed == sorted(listed) and {"cpu", "cuda", "simaccel"} <= set(listed)


def test_error_line_names_the_file(capsys, tmp_path):
    _, _, err = byoc(capsys, *_text_file(tmp_path))

    assert str(tmp_path / "readme.onnx") in err


def test_error_line_names_the_unknown_target(capsys, tmp_path):
    _, _, err = byoc(capsys, *_unknown_target(tmp_path))

    assert "target nosuch" in err


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_debug_shows_the_traceback_of_an_error(capsys, tmp_path, case):
    make_args, expected = BAD_INPUTS[case]

    code, _, err = byoc(capsys, *make_args(tmp_path), "--debug")

    assert code == 2
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("byoc: error: ")
    assert expected in err.splitlines()[-1]


@pytest.mark.parametrize("option", ["-o", "--dot"])
def test_output_in_a_missing_folder_is_a_user_error(capsys, cnn, tmp_path, option):
    unwritable = tmp_path / "no" / "such" / "folder" / "out"
    args = ["partition", cnn, "-t", "simaccel", "-o", tmp_path / "o.onnx", option, unwritable]

    code, _, err = byoc(capsys, *args)

    assert code == 2
    assert_one_error_line(err)
    assert str(unwritable) in err
    assert not (tmp_path / "o.onnx").exists()  # refused before anything was written


def test_missing_target_option_is_a_usage_error(capsys, cnn):
    with pytest.raises(SystemExit) as caught:
        main(["partition", str(cnn)])

    assert caught.value.code == 2
    assert "--target" in capsys.readouterr().err


# --- byoc targets ---------------------------------------------------------------------------


def test_targets_lists_the_bundled_targets(capsys):
    code, out, _ = byoc(capsys, "targets")

    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert {"cpu", "cuda", "simaccel"} <= set(listed)
    assert out.splitlines()[0].split()[:2] == ["target", "version"]


def test_targets_ops_prints_the_support_table(capsys):
    code, out, _ = byoc(capsys, "targets", "--ops", "simaccel")

    assert code == 0
    assert out.startswith("simaccel ")
    rows = [line.split() for line in out.splitlines()]
    assert ["op", "Conv"] in [row[:2] for row in rows]
    assert any(row[:1] == ["pattern"] for row in rows)
    assert ["kind", "name", "opsets", "dtypes", "conditions"] in rows


def test_targets_ops_of_an_unknown_target_exits_2(capsys):
    code, out, err = byoc(capsys, "targets", "--ops", "nosuch")

    assert code == 2
    assert_one_error_line(err)
    assert "nosuch" in err
    assert out == ""


# --- the installed console script -----------------------------------------------------------


def _byoc_command() -> list[str]:
    beside_python = shutil.which("byoc", path=os.path.dirname(sys.executable))
    found = beside_python or shutil.which("byoc")
    return [found] if found else [sys.executable, "-m", "byoc_sdk.cli"]


def test_console_script_partitions_a_model(cnn, tmp_path):
    output = tmp_path / "out.onnx"

    done = subprocess.run(
        [*_byoc_command(), "partition", str(cnn), "--target", "simaccel", "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "simaccel" in done.stdout
    assert output.is_file()


def test_inspect_shows_a_fallen_back_region_with_its_reason(tmp_path, capsys):
    # A region whose C source failed to compile keeps no sources: inspect still lists it.
    records = tmp_path / "tuning.json"
    records.write_text(json.dumps({"cpu_0": {"vector_width": 3}}))
    package = tmp_path / "m.byoc"
    assert main(["build", "examples/small_cnn.onnx", "--target", "cpu", "--tuning",
                 str(records), "-o", str(package)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(package)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("cpu_0"))
    assert "fallback" in row and "vector_width must be one of" in row


def test_run_check_compares_shapes_too(tmp_path, capsys):
    # Two equal rows: values alone would match the one-row reference; the shape does not.
    model = onnx_text("""
        g (float[2, 4] x) => (float[2, 4] y) {
          y = Relu(x)
        }""")
    reference = onnx_text("""
        g (float[N, 4] x) => (float[1, 4] y) <int64[1] axes = {0}> {
          r = Relu(x)
          y = ReduceMax<keepdims = 1>(r, axes)
        }""")
    onnx.save(model, tmp_path / "m.onnx")
    onnx.save(reference, tmp_path / "ref.onnx")
    rows = np.tile(np.linspace(-1, 1, 4, dtype=np.float32), (2, 1))
    np.save(tmp_path / "x.npy", rows)
    package = tmp_path / "m.byoc"
    assert main(["build", str(tmp_path / "m.onnx"), "--target", "cpu",
                 "-o", str(package)]) == 0
    capsys.readouterr()
    code = main(["run", str(package), "--input", f"x={tmp_path / 'x.npy'}",
                 "--reference", str(tmp_path / "ref.onnx")])
    out = capsys.readouterr().out
    assert code == 1
    assert "y: float32(2, 4), expected float32(1, 4) MISMATCH" in out


def test_run_check_compares_dtypes_too(tmp_path, capsys):
    # The same values in float64 where the reference makes float32: not the same output.
    model = onnx_text("""
        g (float[2, 4] x) => (double[2, 4] y) {
          r = Relu(x)
          y = Cast<to = 11>(r)
        }""")
    reference = onnx_text("""
        g (float[2, 4] x) => (float[2, 4] y) {
          y = Relu(x)
        }""")
    onnx.save(model, tmp_path / "m.onnx")
    onnx.save(reference, tmp_path / "ref.onnx")
    package = tmp_path / "m.byoc"
    assert main(["build", str(tmp_path / "m.onnx"), "--target", "cpu",
                 "-o", str(package)]) == 0
    capsys.readouterr()
    code = main(["run", str(package), "--random-inputs", "--reference",
                 str(tmp_path / "ref.onnx")])
    out = capsys.readouterr().out
    assert code == 1
    assert "y: float64(2, 4), expected float32(2, 4) MISMATCH" in out


def test_run_check_holds_an_output_to_its_own_scale(tmp_path, capsys):
    # float32 sums of 1024 products differ in their last bits between any two correct
    # kernels (numpy and onnxruntime by 7e-5 here): before, MISMATCH on every backend.
    from byoc_sdk.testing import float_model

    weight = np.random.default_rng(0).standard_normal((1024, 512)).astype(np.float32)
    model = float_model([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])],
                        {"x": (64, 1024)}, ["y"], {"w": weight})
    onnx.save(model, tmp_path / "mm.onnx")
    package = tmp_path / "mm.byoc"
    assert main(["build", str(tmp_path / "mm.onnx"), "-t", "cpu", "-o", str(package)]) == 0
    capsys.readouterr()

    code = main(["run", str(package), "--random-inputs", "--check"])
    line = capsys.readouterr().out.splitlines()[-1]
    assert code == 0, line
    assert line.startswith("  y: max abs error ") and line.endswith(" ok")
    assert "atol 0.00128 (1e-05 x largest |value| 128)" in line


@pytest.mark.parametrize("package_body, reference_body, verdict", [
    # 1e-3 too large everywhere: caught at the largest values, small or large scale.
    ("y = Mul(x, c)", "y = Identity(x)", "MISMATCH"),
    ("y = Mul(z, c)", "y = Identity(z)", "MISMATCH"),
    # A NaN where onnxruntime has a number, or the other way round.
    ("y = Sqrt(x)", "y = Sqrt(a)", "MISMATCH"),
    ("y = Sqrt(a)", "y = Sqrt(x)", "MISMATCH"),
    # Equal NaNs are the same result.
    ("y = Sqrt(x)", "y = Sqrt(x)", "ok"),
])
def test_run_check_catches_what_is_wrong_at_any_scale(tmp_path, capsys, package_body,
                                                     reference_body, verdict):
    def model(body: str) -> onnx.ModelProto:
        return onnx_text(f"""
            g (float[8, 64] x) => (float[8, 64] y)
              <float c = {{1.001}}, float big = {{1000.0}}> {{
              a = Abs(x)
              z = Mul(x, big)
              {body}
            }}""")

    onnx.save(model(package_body), tmp_path / "m.onnx")
    onnx.save(model(reference_body), tmp_path / "ref.onnx")
    package = tmp_path / "m.byoc"
    assert main(["build", str(tmp_path / "m.onnx"), "-t", "cpu", "-o", str(package)]) == 0
    capsys.readouterr()

    code = main(["run", str(package), "--random-inputs", "--reference",
                 str(tmp_path / "ref.onnx")])
    line = capsys.readouterr().out.splitlines()[-1]
    assert code == (0 if verdict == "ok" else 1), line
    assert line.endswith(" ok") if verdict == "ok" else line.endswith(" of 512 elements)")


@pytest.mark.parametrize(("got", "want", "close"), [
    ([1.0, np.nan, np.inf], [1.0, np.nan, np.inf], [True, True, True]),
    ([np.nan, 1.0, -np.inf], [1.0, np.nan, np.inf], [False, False, False]),
    # The absolute tolerance grows with the largest finite |value|, never below atol.
    ([100.0, 0.0009], [100.0, 0.0], [True, True]),
    ([100.0, 0.0011], [100.0, 0.0], [True, False]),
    ([0.5, 1.5e-5], [0.5, 0.0], [True, False]),
    ([0.5, 0.5e-5], [0.5, np.inf], [True, False]),
])
def test_close_elements_scales_atol_by_the_reference(got, want, close):
    from byoc_sdk.testing import close_elements

    actual = close_elements(np.array(got, np.float32), np.array(want, np.float32),
                            rtol=0.0, atol=1e-5)
    assert actual.tolist() == close


@pytest.mark.parametrize("flops, text", [
    (999, "999 FLOP"), (12_780_000, "12.78 MFLOP"), (160_000_000_000, "160.00 GFLOP"),
    (123_456_700_000_000, "123.46 TFLOP"), (2_500_000_000_000_000, "2.50 PFLOP"),
    (1_500_000_000_000_000_000, "1500.00 PFLOP"),
    # Rounded up to the next unit: before, "1000.00 MFLOP" and "1000.00 kFLOP".
    (999_995_000, "1.00 GFLOP"), (999_995, "1.00 MFLOP"), (999_994_999, "999.99 MFLOP"),
    (1000, "1.00 kFLOP"), (999_995_000_000_000, "1.00 PFLOP"),
])
def test_flops_take_the_largest_unit_they_reach(flops, text):
    from byoc_sdk.report import _flops

    assert _flops(flops) == text


def test_report_of_a_model_of_teraflops(tmp_path, capsys):
    # Before: "20000.00 GFLOP". Shapes alone make the count: nothing is allocated.
    onnx.save(onnx_text("""
        g (float[100000, 1000] x, float[1000, 100000] w) => (float[100000, 100000] y) {
          y = MatMul(x, w)
        }"""), tmp_path / "m.onnx")
    assert main(["partition", str(tmp_path / "m.onnx"), "-t", "cpu",
                 "-o", str(tmp_path / "p.onnx")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"model: {tmp_path / 'm.onnx'}  (1 nodes, 20.00 TFLOP)"
    assert "cpu                1      1 100.0%    20.00 TFLOP 100.0%" in out.splitlines()
