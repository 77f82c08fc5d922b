"""Shared fixtures. Test modules are imported in importlib mode and cannot import each
other, so anything shared lives here as a fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from byoc_sdk import Target


@pytest.fixture
def make_target() -> Callable[..., Target]:
    """``make_target(name, ops, priority=0, **target_fields)``: a target that supports
    ``ops`` (op types, float32) with no further conditions."""

    def make(name: str, ops: Iterable[str], priority: int = 0, **fields) -> Target:
        target = Target(name, priority=priority, **fields)
        ops = list(ops)
        if ops:
            target.support(*ops)
        return target

    return make


# --- build, run and package tests (examples/targets) ---------------------------------


@pytest.fixture(scope="session", autouse=True)
def build_cache_dir(tmp_path_factory):
    """Every compiled module of the test session goes to one cache of its own
    (``BYOC_CACHE_DIR``): never to the user's cache, and unchanged sources compile once.
    Session-scoped, so fixtures of any scope that compile see it too."""
    root = tmp_path_factory.mktemp("byoc-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BYOC_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="session")
def example_targets():
    """The example target modules of ``examples/targets``, by artifact kind:
    ``c_source`` (cdemo), ``json`` (jsondemo) and ``binary`` (bytedemo). Each has
    ``target``; the repository root is put on ``sys.path`` to import them."""
    import importlib
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        # Last, so the source tree never shadows the installed byoc_sdk (and its _native).
        sys.path.append(root)
    return {
        kind: importlib.import_module(f"examples.targets.{module}")
        for kind, module in (("c_source", "c_elementwise"), ("json", "json_graph"),
                             ("binary", "bytecode"))
    }


@pytest.fixture
def example_model():
    """``example_model(batch=4, seed=0)``: x -> MatMul(w) -> Add(b) -> Relu (output r)
    -> Softmax -> Mul(y) -> every other example op -> z. Softmax is the one op the example
    targets leave on the host, so a build has two regions around it. ``batch`` may be a
    name, for a dynamic batch dimension."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    def make(batch: int | str = 4, seed: int = 0) -> onnx.ModelProto:
        rng = np.random.default_rng(seed)
        weights = {
            "w": rng.standard_normal((8, 16)).astype(np.float32) / 3,
            "b": rng.standard_normal(16).astype(np.float32),
            "half": np.array([0.5], np.float32),  # a scalar constant
            "scale": (rng.random(16) + 0.5).astype(np.float32),  # a row-vector constant
        }
        node = helper.make_node
        nodes = [
            node("MatMul", ["x", "w"], ["h"]), node("Add", ["h", "b"], ["a"]),
            node("Relu", ["a"], ["r"]), node("Softmax", ["r"], ["s"]),
            node("Mul", ["s", "y"], ["m"]), node("Tanh", ["m"], ["t"]),
            node("Sigmoid", ["m"], ["g"]), node("Sub", ["g", "half"], ["k"]),
            node("Abs", ["k"], ["ab"]), node("Neg", ["ab"], ["n"]), node("Exp", ["n"], ["e"]),
            node("Div", ["e", "scale"], ["d"]), node("Max", ["d", "t"], ["u"]),
            node("Min", ["u", "g"], ["z"]),
        ]
        info = helper.make_tensor_value_info
        graph = helper.make_graph(
            nodes, "example",
            [info("x", onnx.TensorProto.FLOAT, [batch, 8]),
             info("y", onnx.TensorProto.FLOAT, [batch, 16])],
            [info("z", onnx.TensorProto.FLOAT, [batch, 16]),
             info("r", onnx.TensorProto.FLOAT, [batch, 16])],
            [numpy_helper.from_array(v, k) for k, v in weights.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)],
                                  ir_version=10)
        onnx.checker.check_model(model)
        return model

    return make


@pytest.fixture
def captured_regions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Regions the cpu codegen sees during the test (through its public hook)."""
    from reference_backends.cpu import codegen
    from reference_backends.cpu.target import target as cpu_target

    seen: list = []

    def recording(region):
        seen.append(region)
        return codegen.generate(region)

    monkeypatch.setattr(cpu_target, "codegen", recording)
    yield seen


# --- conformance runs on targets made for the test ------------------------------------


def _make_visible(folder: Path, name: str, entry_points: dict[str, dict[str, str]]) -> None:
    info = folder / f"{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def make_visible() -> Callable[[Path, str, dict[str, dict[str, str]]], None]:
    """``make_visible(folder, name, {group: {key: "module:attr"}})``: make packages in
    ``folder`` look installed to a subprocess with ``folder`` on ``PYTHONPATH``, as a
    dist-info with those entry points, without touching the test environment."""
    return _make_visible


def _sabotaged_template(folder: Path, name: str, module_c: str, codegen_py: str) -> Path:
    from byoc_sdk.conformance.template import render_template

    project = render_template(name, kind="c_source", output_dir=folder)
    codegen = project / f"{name}_byoc" / "codegen.py"
    text = codegen.read_text()
    step = 'self.lines += [f"  /* {step.op} */",'
    lowered = "program = lower(region)\n"
    assert step in text and lowered in text
    text = text.replace(step, 'if step.op == "Relu" and self.program.size(step.output) == 6:\n'
                              f"            self.lines.append({module_c!r})\n"
                              f"        {step}")
    text = text.replace(lowered, lowered + (
        '    if [s.op for s in program.steps] == ["Add"] and program.inputs == ["x0", "x1"] \\\n'
        '            and program.shapes["x0"] == program.shapes["x1"] == (2, 3):\n'
        f"        {codegen_py}\n"))
    codegen.write_text(text)
    _make_visible(project, f"{name}_byoc",
                  {"byoc.targets": {name: f"{name}_byoc.target:target"}})
    return project


@pytest.fixture(scope="session")
def sabotaged_template() -> Callable[[Path, str, str, str], Path]:
    """``sabotaged_template(folder, name, module_c, codegen_py)``: the c_source vendor
    template generated in ``folder`` as target ``name`` and made visible, except that its
    compiled module runs the C statement ``module_c`` on a Relu of six elements and its
    codegen the Python statement ``codegen_py`` on an Add of two 2x3 data inputs (the
    case op[Add-2x3-f32])."""
    return _sabotaged_template
