"""The vendor template: rendered for each codegen kind, installed into this environment,
and passing the conformance suite as generated — the way a vendor starts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from byoc_sdk.conformance.template import TEMPLATE_DIR, render_template
from byoc_sdk.errors import ByocError

KINDS = {"json": "tpljson", "c_source": "tplcsrc", "binary": "tplbin"}
BYOC = [sys.executable, "-m", "byoc_sdk.cli"]


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--quiet",
                           "--disable-pip-version-check"], capture_output=True, text=True,
                          check=False)


def _uninstall(target: str) -> None:
    _pip("uninstall", "-y", f"{target}-byoc")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Every kind rendered and pip-installed (no build isolation, no dependencies)."""
    folder = tmp_path_factory.mktemp("backends")
    projects = {}
    try:
        for kind, target in KINDS.items():
            _uninstall(target)  # a leftover of an interrupted run
            project = render_template(target, kind=kind, output_dir=folder,
                                      vendor="Test Silicon")
            done = _pip("install", "--no-build-isolation", "--no-deps", str(project))
            assert done.returncode == 0, done.stdout + done.stderr
            projects[kind] = project
        yield projects
    finally:
        for target in KINDS.values():
            _uninstall(target)


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_backend_passes_conformance(kind: str, installed: dict[str, Path],
                                              tmp_path: Path) -> None:
    target = KINDS[kind]
    report = tmp_path / "report.json"
    junit = tmp_path / "conformance.xml"
    done = subprocess.run([*BYOC, "conformance", "--target", target, "--report", str(report),
                           "--junit", str(junit)], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["conformant"] and data["codegen"]
    assert data["totals"]["failed"] == 0 and data["totals"]["passed"] > 30
    assert set(data["ops"]) == {"Relu", "Add", "MatMul"}
    assert data["patterns"]["matmul_add_relu"]["passed"] >= 2
    assert data["models"]["mlp"]["offloaded_share"] > 0.5
    assert {c["outcome"] for c in data["checks"]["package"]} == {"passed"}
    assert "<testcase" in junit.read_text()
    assert "CONFORMANT" in done.stdout


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_backend_builds_empty_tensors(kind: str, installed: dict[str, Path]) -> None:
    """A batch of zero rows is a static shape its checks accept: every kind must build it
    (strictly: no fallback) and give onnxruntime's empty result, with a value between its
    steps (MatMul -> Relu -> Add) that holds no elements."""
    import numpy as np
    from onnx import helper

    from byoc_sdk import build
    from byoc_sdk.testing import float_model, run_onnxruntime
    from partition.policy import RegionPolicy

    rng = np.random.default_rng(0)
    model = float_model(
        [helper.make_node("MatMul", ["x", "w"], ["m"], "mm"),
         helper.make_node("Relu", ["m"], ["r"], "relu"),
         helper.make_node("Add", ["r", "b"], ["y"], "add")],
        {"x": [0, 4]}, ["y"],
        {"w": rng.standard_normal((4, 3)).astype(np.float32),
         "b": rng.standard_normal(3).astype(np.float32)})
    compiled = build(model, [KINDS[kind]], strict=True, policy=RegionPolicy.keep_all())
    assert {r.status for r in compiled.report.regions} == {"compiled"}
    feeds = {"x": np.zeros((0, 4), np.float32)}
    got, want = compiled.run(feeds)["y"], run_onnxruntime(model, feeds)["y"]
    assert got.shape == want.shape == (0, 3) and got.dtype == want.dtype


def test_generated_project_runs_its_own_tests(installed: dict[str, Path]) -> None:
    """The generated tests: unit tests of the codegen and the suite as a pytest class."""
    project = installed["binary"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=project, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-6000:]
    assert " passed" in done.stdout and "byoc conformance: tplbin" in done.stdout


def test_generated_layout_per_kind(installed: dict[str, Path]) -> None:
    """Each kind keeps its own codegen (and runtime), under the final names."""
    for kind, project in installed.items():
        package = project / f"{KINDS[kind]}_byoc"
        names = {p.name for p in package.glob("*.py")}
        assert {"target.py", "codegen.py", "lowering.py", "about.py"} <= names
        assert not any(n.startswith(("codegen_", "runtime_", "program_")) for n in names)
        assert ("runtime.py" in names) == (kind != "c_source")
        assert ("program.py" in names) == (kind == "binary")
        assert (project / ".github" / "workflows" / "conformance.yml").is_file()
        pyproject = (project / "pyproject.toml").read_text()
        assert ('"byoc.runtimes"' in pyproject) == (kind != "c_source")
        workflow = (project / ".github/workflows/conformance.yml").read_text()
        assert f"byoc conformance --target {KINDS[kind]}" in workflow


def test_new_backend_refuses_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "exists-byoc").mkdir()
    done = subprocess.run([*BYOC, "new-backend", "exists", "-o", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "already exists" in done.stderr
    assert not any((tmp_path / "exists-byoc").iterdir())


def test_new_backend_refuses_bad_answers(tmp_path: Path) -> None:
    with pytest.raises(ByocError, match="lowercase"):
        render_template("MyAccel", output_dir=tmp_path)
    with pytest.raises(ByocError, match="starter ops"):
        render_template("acc", ops=["Conv"], output_dir=tmp_path)
    with pytest.raises(ByocError, match="reserved"):
        render_template("host", output_dir=tmp_path)
    with pytest.raises(ByocError, match="taken by an installed target"):
        render_template("cpu", output_dir=tmp_path)  # the bundled one
    done = subprocess.run([*BYOC, "new-backend", "acc", "--kind", "verilog", "-o",
                           str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "invalid choice" in done.stderr
    assert not list(tmp_path.iterdir())


def test_new_backend_prints_next_steps(tmp_path: Path) -> None:
    done = subprocess.run([*BYOC, "new-backend", "npu", "--kind", "c_source", "--ops",
                           "Relu,MatMul", "-o", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "byoc conformance --target npu" in done.stdout
    about = (tmp_path / "npu-byoc" / "npu_byoc" / "about.py").read_text()
    assert 'OPS: tuple[str, ...] = tuple(["Relu", "MatMul"])' in about


def test_template_ships_inside_the_installed_package() -> None:
    """`byoc new-backend` works from an installed byoc, not only from a checkout."""
    assert (TEMPLATE_DIR / "cookiecutter.json").is_file()
    project = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
    assert (project / ".github" / "workflows" / "conformance.yml").is_file()
    assert (project / ".gitignore").is_file()
    assert (TEMPLATE_DIR / "hooks" / "post_gen_project.py").is_file()


def test_generated_sources_have_no_template_leftovers(installed: dict[str, Path]) -> None:
    for project in installed.values():
        for path in project.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".toml", ".md", ".yml", ".txt"):
                assert "cookiecutter" not in path.read_text(), path


def test_generated_code_is_lint_clean(installed: dict[str, Path]) -> None:
    for project in installed.values():
        done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                               "--line-length", "100", "--select", "E,F,W,I,UP,B,SIM,RUF",
                               "--ignore", "RUF001,RUF002,RUF003", "--exclude", "build", "."],
                              cwd=project, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout[-3000:]


def test_bytecode_in_an_installed_template_stays_out_of_the_project(tmp_path: Path,
                                                                     monkeypatch) -> None:
    # pip byte-compiles the template's .py files when byoc is installed from a wheel,
    # including those the post-generation hook removes for other codegen kinds.
    import shutil

    from byoc_sdk.conformance import template

    copy = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, copy)
    package = next(copy.glob("*/*/codegen_binary.py")).parent
    (package / "__pycache__").mkdir(exist_ok=True)  # an installed byoc may have one already
    (package / "__pycache__" / "codegen_binary.cpython-311.pyc").write_bytes(b"\0")
    monkeypatch.setattr(template, "TEMPLATE_DIR", copy)
    (tmp_path / "out").mkdir()
    project = render_template("pyc", kind="c_source", output_dir=tmp_path / "out")
    assert not list(project.rglob("*.pyc")) and not list(project.rglob("__pycache__"))
