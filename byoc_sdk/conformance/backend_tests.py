"""ONNX's own backend node tests (``onnx.backend.test``) for the ops a target claims.

Each node test is a tiny model with inputs and the outputs ONNX's reference
implementation computed. They come from the test data folders when the installed onnx
ships them (``onnx/backend/test/data/node``), else from the generators that write those
folders (``onnx.backend.test.case.node``), which every onnx wheel has.

A test is run for a target when every op in it is one the target declares. Before that
the model is pinned to the IR version onnxruntime accepts, inputs the target needs as
constants become initializers (holding the test's values), and onnxruntime runs it
once: a test onnxruntime itself cannot run or gets wrong is skipped, not blamed on the
target. A test the target's check declines is skipped too: it stays on the host.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from byoc_sdk.target import Target

#: onnx backend tests compare with these tolerances (onnx.backend.test.runner).
BACKEND_RTOL = 1e-3
BACKEND_ATOL = 1e-7


@dataclass(eq=False)
class NodeTest:
    """One backend node test: a model, its inputs and ONNX's expected outputs."""

    name: str
    model: onnx.ModelProto = field(repr=False)
    inputs: list[np.ndarray] = field(repr=False)
    outputs: list[np.ndarray] = field(repr=False)
    rtol: float = BACKEND_RTOL
    atol: float = BACKEND_ATOL

    @property
    def op_types(self) -> frozenset[str]:
        return frozenset(n.op_type for n in self.model.graph.node
                         if n.domain in ("", "ai.onnx"))

    @property
    def foreign_domains(self) -> bool:
        return any(n.domain not in ("", "ai.onnx") for n in self.model.graph.node)

    @property
    def subject(self) -> str:
        """The op under test: the one op of the model, else the ops joined by '+'."""
        return "+".join(sorted(self.op_types)) or self.name

    def feeds(self) -> dict[str, np.ndarray]:
        initializers = {t.name for t in self.model.graph.initializer}
        names = [i.name for i in self.model.graph.input if i.name not in initializers]
        return dict(zip(names, self.inputs, strict=False))

    def expected(self) -> dict[str, np.ndarray]:
        return {o.name: v for o, v in zip(self.model.graph.output, self.outputs, strict=False)}


def tests_for(target: Target) -> tuple[list[NodeTest], int]:
    """The node tests whose every node ``target``'s check accepts, by name; and how many
    more test its ops on instances the check declines (those stay on the host)."""
    declared = {op for (domain, op) in target.ops if domain in ("", "ai.onnx")}
    if not declared:
        return [], 0
    found = [t for t in all_node_tests(frozenset(declared))
             if not t.foreign_domains and t.op_types and t.op_types <= declared]
    claimed = [t for t in found if _claimed(t, target)]
    return sorted(claimed, key=lambda t: t.name), len(found) - len(claimed)


def _claimed(test: NodeTest, target: Target) -> bool:
    """Whether the target's check accepts every node of the prepared test model."""
    from byoc_sdk.loader import load_model
    from byoc_sdk.node_info import NodeInfo

    try:
        model, _ = prepare(test, target)
        ir_model = load_model(model)
    except Exception:  # a test this onnx/onnxruntime pair cannot load is not the target's
        return False
    for node in ir_model.graph:
        opset = ir_model.opset_imports.get(node.domain or "")
        try:
            if target.check(NodeInfo(node, opset)) is not None:
                return False
        except Exception:  # a check that raises: let the test run and show it
            return True
    return True


@functools.cache
def all_node_tests(ops: frozenset[str] = frozenset()) -> tuple[NodeTest, ...]:
    """Every node test (of ``ops`` where a faster route finds them by op), once per process."""
    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    if folder.is_dir():
        return tuple(_from_folder(folder))
    return tuple(_from_generators(ops))


def _from_folder(folder: Path) -> Iterable[NodeTest]:
    for test_dir in sorted(folder.iterdir()):
        model_file = test_dir / "model.onnx"
        data = test_dir / "test_data_set_0"
        if not model_file.is_file() or not data.is_dir():
            continue
        model = onnx.load(model_file)
        inputs = [_read_tensor(p) for p in sorted(data.glob("input_*.pb"), key=_index)]
        outputs = [_read_tensor(p) for p in sorted(data.glob("output_*.pb"), key=_index)]
        if all(isinstance(v, np.ndarray) for v in (*inputs, *outputs)):
            yield NodeTest(test_dir.name, model, inputs, outputs)


def _index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _read_tensor(path: Path) -> np.ndarray | None:
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        return numpy_helper.to_array(tensor)
    except Exception:  # sequences, optionals and maps are not tensors: such tests are left out
        return None


def _from_generators(ops: frozenset[str]) -> Iterable[NodeTest]:
    """Run onnx's node test generators (the module of each op where its file is named
    after it, every module otherwise) and keep the tensor-only tests."""
    import importlib
    import pkgutil

    import onnx.backend.test.case.node as node_cases

    modules = {m.name for m in pkgutil.iter_modules(node_cases.__path__)}
    wanted = {m for op in ops for m in (op.lower(), op.lower() + "_") if m in modules}
    recorded = getattr(node_cases, "_NodeTestCases", None)  # where expect() records them
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if ops and len(wanted) >= len(ops) and isinstance(recorded, list):
            # Importing an op's module runs its generators: far quicker than all of them.
            for name in sorted(wanted):
                importlib.import_module(f"{node_cases.__name__}.{name}")
            cases = list(recorded)
        else:
            cases = node_cases.collect_testcases(None)
    for case in cases:
        if case.model is None or not case.data_sets:
            continue
        inputs, outputs = case.data_sets[0]
        if all(isinstance(v, np.ndarray) for v in (*inputs, *outputs)):
            yield NodeTest(case.name, case.model, list(inputs), list(outputs),
                           case.rtol, case.atol)


# --- preparing a test for a target --------------------------------------------------


def prepare(test: NodeTest, target: Target) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The test's model made ready to run: IR pinned, opset checked, and the inputs the
    target declares as constants turned into initializers. Raises ``ValueError`` with a
    reason when onnxruntime cannot take the model at all."""
    from byoc_sdk import versions

    limits = versions.runtime_limits()
    model = onnx.ModelProto()
    model.CopyFrom(test.model)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > limits.max_opset:
            raise ValueError(f"opset {opset.version} is newer than onnxruntime "
                             f"{limits.onnxruntime_version} runs ({limits.max_opset})")
    model.ir_version = min(model.ir_version, limits.max_ir_version)
    feeds = test.feeds()
    for name in _constant_inputs(model, target):
        _bake(model, name, feeds.pop(name))
    return model, feeds


def _constant_inputs(model: onnx.ModelProto, target: Target) -> list[str]:
    """Graph inputs feeding an input position the target's rule wants constant."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    graph_inputs = {i.name for i in model.graph.input}
    names: list[str] = []
    for node in model.graph.node:
        rule = target.rule_for(node.domain, node.op_type, opset)
        for index in rule.const_inputs if rule is not None else ():
            if index < len(node.input) and node.input[index] in graph_inputs:
                names.append(node.input[index])
    return list(dict.fromkeys(names))


def _bake(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Turn graph input ``name`` into an initializer holding ``value``."""
    kept = [i for i in model.graph.input if i.name != name]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.append(numpy_helper.from_array(value, name))
