"""``byoc conformance`` end to end on targets that must fail it: a target with wrong
numerics in one op, and a target without a codegen.

Both are made available to a subprocess the way an installed package is — a
``*.dist-info`` folder with entry points on ``PYTHONPATH`` — without touching the
environment the tests run in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from byoc_sdk.conformance.template import render_template

BYOC = [sys.executable, "-m", "byoc_sdk.cli"]


def _conformance(folder: Path, target: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([*BYOC, "conformance", "--target", target, *args], cwd=folder,
                          env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, make_visible) -> Path:
    """The json template as generated, but its Add kernel adds 0.01 too much."""
    folder = tmp_path_factory.mktemp("broken")
    project = render_template("brokenacc", kind="json", output_dir=folder)
    kernels = project / "brokenacc_byoc" / "kernels.py"
    text = kernels.read_text()
    assert '"Add": (2, np.add),' in text
    kernels.write_text(text.replace('"Add": (2, np.add),',
                                    '"Add": (2, lambda a, b: a + b + np.float32(0.01)),'))
    make_visible(project, "brokenacc_byoc", {
        "byoc.targets": {"brokenacc": "brokenacc_byoc.target:target"},
        "byoc.runtimes": {"brokenacc": "brokenacc_byoc.runtime:DeviceRuntime"},
    })
    return project


def test_wrong_numerics_in_one_op_fail_conformance_naming_it(broken: Path) -> None:
    report = broken / "report.json"
    done = _conformance(broken, "brokenacc", "--report", str(report))
    assert done.returncode == 1, done.stdout[-4000:]
    assert "NOT CONFORMANT" in done.stdout
    data = json.loads(report.read_text())
    assert data["conformant"] is False
    add = data["ops"]["Add"]
    assert add["failed"] >= 1
    failure = add["failures"][0]
    assert failure["id"].startswith(("op[Add-", "backend[test_add"))
    assert "max abs error 0.01" in failure["message"]
    assert "differs from" in failure["message"]
    # The other ops, and the fused pattern (a kernel of its own), are fine.
    assert data["ops"]["Relu"]["failed"] == 0 and data["ops"]["MatMul"]["failed"] == 0
    fused = [t for t in data["tests"] if t["id"].startswith("pattern[")]
    assert fused and {t["outcome"] for t in fused} == {"passed"}
    # The summary printed at the end names the op and the error as well.
    assert f"{failure['id']}: " in done.stdout and "max abs error 0.01" in done.stdout


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory, sabotaged_template) -> Path:
    """The c_source template as generated, but its compiled module writes through NULL on
    a Relu of six elements, and its codegen aborts the process on an Add of two 2x3
    data inputs (the case op[Add-2x3-f32])."""
    return sabotaged_template(tmp_path_factory.mktemp("crashing"), "crashacc",
                              "  *(volatile int*)0 = 1;", "__import__('os').abort()")


def test_a_crashing_case_is_one_failed_case_and_the_rest_still_run(crashing: Path) -> None:
    report, junit = crashing / "report.json", crashing / "conformance.xml"
    xfail = crashing / "xfail.txt"
    xfail.write_text("op[Add-2x3-f32]: the adder aborts until firmware 2\n")
    done = _conformance(crashing, "crashacc", "-k", "test_op", "--report", str(report),
                        "--junit", str(junit), "--xfail-file", str(xfail))
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(report.read_text())
    outcomes = {t["id"]: (t["outcome"], t["message"]) for t in data["tests"]}
    assert outcomes.pop("op[Relu-2x3-f32]") == (
        "failed", "crashed: SIGSEGV while running op[Relu-2x3-f32]")
    # A crash listed as an expected failure is one.
    assert outcomes.pop("op[Add-2x3-f32]") == (
        "xfailed", "the adder aborts until firmware 2 "
                   "(crashed: SIGABRT while running op[Add-2x3-f32])")
    # Every other case ran after the crashes, in replaced processes, and passed.
    assert len(outcomes) >= 10 and {o for o, _ in outcomes.values()} == {"passed"}, outcomes
    assert data["ops"]["Relu"]["failed"] == 1 and data["ops"]["Relu"]["passed"] >= 2
    assert "NOT CONFORMANT" in done.stdout
    assert "op[Relu-2x3-f32]: crashed: SIGSEGV while running op[Relu-2x3-f32]" in done.stdout
    xml = junit.read_text()
    case = xml[xml.index('name="test_op[Relu-2x3-f32]"'):]
    case = case[:case.index("</testcase>")]
    assert '<failure message="crashed: SIGSEGV' in case
    assert '<property name="byoc.category" value="op"' in case


def test_a_target_that_crashes_while_loading_ends_the_run_in_one_line(tmp_path: Path,
                                                                      make_visible) -> None:
    # Every replacement worker would crash the same way: no restart, no report.
    package = tmp_path / "crashload"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "target.py").write_text("import os\nos.abort()\n")
    make_visible(tmp_path, "crashload", {"byoc.targets": {"crashload": "crashload.target:t"}})
    done = _conformance(tmp_path, "crashload", "--report", str(tmp_path / "report.json"))
    assert done.returncode == 2, done.stdout[-4000:] + done.stderr[-4000:]
    assert ("byoc: the conformance process crashed: SIGABRT while collecting the suite of "
            "crashload") in done.stdout
    assert "replacing crashed worker" not in done.stdout
    assert not (tmp_path / "report.json").exists()


def test_conformance_options_select_and_write_junit(broken: Path) -> None:
    junit = broken / "only-relu.xml"
    done = _conformance(broken, "brokenacc", "-k", "op and Relu", "--junit", str(junit))
    assert done.returncode == 0, done.stdout[-4000:]
    xml = junit.read_text()
    assert 'name="test_op[Relu-2x3-f32]"' in xml and "test_op[Add" not in xml
    assert '<property name="byoc.category" value="op"' in xml


def test_expected_failures_file_turns_failures_into_xfail(broken: Path) -> None:
    xfail = broken / "xfail.txt"
    xfail.write_text("# known\nop[Add-*]: the adder is off by 0.01 until firmware 2\n"
                     "backend[test_add]: same adder\nmodel[*]: models use the adder\n"
                     "robustness[concurrent-runs]: same adder\n"
                     "op[Conv-*]: never matches anything\n")
    report = broken / "xfail-report.json"
    done = _conformance(broken, "brokenacc", "--xfail-file", str(xfail), "--report",
                        str(report), "-k", "op or backend or model")
    data = json.loads(report.read_text())
    assert data["ops"]["Add"]["xfailed"] >= 1 and data["ops"]["Add"]["failed"] == 0
    assert any("op[Conv-*]" in note for note in data["notes"])
    assert done.returncode == 0, done.stdout[-4000:]


def test_a_malformed_expected_failures_file_is_a_usage_error(broken: Path) -> None:
    xfail = broken / "bad-xfail.txt"
    xfail.write_text("op[Add-2x3-f32]:\n")
    done = _conformance(broken, "brokenacc", "--xfail-file", str(xfail))
    assert done.returncode == 2
    assert "needs a reason" in done.stderr and "bad-xfail.txt:1" in done.stderr


def test_a_target_without_codegen_cannot_pass(tmp_path: Path, make_visible) -> None:
    package = tmp_path / "nocg_target"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent('''
        from byoc_sdk import Target
        target = Target("nocg", version="1.0", vendor="Nobody", description="partition only")
        target.support("Relu", dtypes={"float32"}, static_shapes=True)
    '''))
    make_visible(tmp_path, "nocg_target", {"byoc.targets": {"nocg": "nocg_target:target"}})
    report = tmp_path / "report.json"
    done = _conformance(tmp_path, "nocg", "--report", str(report))
    assert done.returncode == 1
    assert "target nocg has no codegen" in done.stdout
    data = json.loads(report.read_text())
    assert data["conformant"] is False and data["codegen"] is False
    codegen = next(c for c in data["checks"]["registration"] if c["id"] == "registration[codegen]")
    assert codegen["outcome"] == "failed" and "cannot pass conformance" in codegen["message"]
    assert data["ops"]["Relu"]["skipped"] >= 1 and data["ops"]["Relu"]["passed"] >= 1  # host


def test_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([*BYOC, "conformance", "--target", "nosuchtarget"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "unknown target" in done.stderr and "nosuchtarget" in done.stderr


def test_a_malformed_xfail_file_beside_the_target_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The target's own conformance_xfail.txt, read inside pytest, used to end the run in
    # forty lines of pytest's traceback.
    from byoc_sdk.conformance import context
    from byoc_sdk.conformance.runner import run_conformance
    from byoc_sdk.errors import TargetError

    beside = tmp_path / "conformance_xfail.txt"
    beside.write_text("op[Add-*]\n")
    monkeypatch.setattr(context, "default_xfail_path", lambda name: beside)
    with pytest.raises(TargetError, match=r"xfail.txt:1: expected 'KIND\[ID\]: reason'"):
        run_conformance("cpu")


def _model_file(folder: Path, name: str, shape: str) -> Path:
    import onnx

    from byoc_sdk.testing import onnx_text

    path = folder / f"{name}.onnx"
    onnx.save(onnx_text(f"""<ir_version: 8, opset_import: ["" : 18]>
        g (float[{shape}] x) => (float[{shape}] y) {{ y = Relu(x) }}"""), path)
    return path


def test_a_vendors_own_models_run_beside_the_bundled_ones(tmp_path: Path) -> None:
    mine = _model_file(tmp_path, "my_relu", "3,5")
    report = tmp_path / "report.json"
    done = _conformance(tmp_path, "cpu", "--model", str(mine), "-k", "test_model and my_relu",
                        "--report", str(report))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "my_relu" in done.stdout
    assert json.loads(report.read_text())["models"]["my_relu"]["outcome"] == "passed"


@pytest.mark.parametrize(("name", "shape", "message"), [
    ("dynamic", "N,5", "does not have a static shape"),
    ("mlp", "3,5", "a model named 'mlp' is in the run already"),  # a bundled model's name
])
def test_a_model_that_cannot_take_part_is_one_error_line(tmp_path: Path, name: str,
                                                         shape: str, message: str) -> None:
    done = _conformance(tmp_path, "cpu", "--model", str(_model_file(tmp_path, name, shape)))
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_pytest_plugins_installed_beside_the_target_stay_out_of_the_run(tmp_path: Path,
                                                                       make_visible) -> None:
    # A vendor's environment holds pytest plugins of its own: pytest would load every one.
    (tmp_path / "strayplugin.py").write_text(
        "def pytest_configure(config):\n    raise RuntimeError('stray plugin loaded')\n")
    make_visible(tmp_path, "strayplugin", {"pytest11": {"stray": "strayplugin"}})
    done = _conformance(tmp_path, "cpu", "-k", "op and Relu-2x3-f32")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stray plugin loaded" not in done.stdout + done.stderr
    assert "\nCONFORMANT: " in done.stdout
