"""What the suite learns about one target, computed once per process and shared by its tests.

Collection needs the cases (to name the tests); running needs builds that several tests
share (a model's build serves the model test, the package test and the robustness
tests). :func:`context_for` hands every test of a target the same :class:`TargetContext`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from byoc_sdk.conformance import backend_tests, cases, checks
from byoc_sdk.conformance.expectations import Expectation, read_expectations
from byoc_sdk.conformance.timeout import time_for
from byoc_sdk.errors import ByocError
from byoc_sdk.target import Target
from partition.policy import RegionPolicy

#: Package tests cover at most this many of the model set (those with most regions).
MAX_PACKAGED_MODELS = 2
#: Ops tried, in order, for the "op the target does not declare at all" robustness case.
UNDECLARED_CANDIDATES = ("Softmax", "Sin", "Conv", "Relu", "Add", "Cos")
#: Seconds the fresh process may take.
FRESH_TIMEOUT = 300


@functools.lru_cache(maxsize=8)
def vendor_models(paths: tuple[str, ...]) -> dict[str, onnx.ModelProto]:
    """A vendor's own models, to run beside the bundled ones: file stem -> model. Refuses
    (``ByocError``, one line naming the file) a model byoc cannot load, one without static
    input shapes (its feeds are drawn from them) and a name the model set has already.
    Remembered: the command line checks them before pytest starts, in the same process."""
    from byoc_sdk.loader import load_model
    from byoc_sdk.model_zoo import random_inputs
    from byoc_sdk.testing import as_proto

    found: dict[str, onnx.ModelProto] = {}
    for path in paths:
        name = Path(path).stem
        if name in model_set() or name in found:
            raise ByocError(f"a model named {name!r} is in the run already; rename the file",
                            file=str(path))
        model = as_proto(load_model(path))
        try:
            random_inputs(model)
        except ValueError as exc:
            raise ByocError(f"{exc}: conformance draws feeds from static input shapes; fix "
                            "them in the model (onnxruntime.tools.make_dynamic_shape_fixed "
                            "does)", file=str(path)) from exc
        found[name] = model
    return found


def model_set() -> dict[str, Callable[[], onnx.ModelProto]]:
    """The bundled models every target is run on: name -> builder (small sizes, so that
    a run stays quick; the structures are the model zoo's)."""
    from byoc_sdk import model_zoo

    return {
        "small_cnn": lambda: model_zoo.small_cnn(size=16),
        "depthwise_cnn": lambda: model_zoo.depthwise_cnn(size=16),
        "mlp": model_zoo.mlp,
        "transformer_block": lambda: model_zoo.transformer_block(seq=8, dim=32),
        "random_dag_0": lambda: model_zoo.random_dag(0, 24),
        "random_dag_1": lambda: model_zoo.random_dag(1, 24),
    }


@dataclass
class Param:
    """One test's parameter: its id, what the report files it under, and its payload."""

    id: str
    category: str
    subject: str
    payload: Any = None
    #: Set for a placeholder that only says why there is nothing to test.
    skip: str = ""


@dataclass
class ModelBuild:
    """One model built for the target, with what comparing it needs."""

    name: str
    model: onnx.ModelProto = field(repr=False)
    feeds: dict[str, np.ndarray] = field(repr=False)
    keep_all: bool
    scale: float
    compiled: Any = None
    error: BaseException | None = None


class TargetContext:
    """The target under test and everything derived from it."""

    def __init__(self, name: str, xfail_file: str | os.PathLike | None = None,
                 models: Sequence[str | os.PathLike] = ()) -> None:
        self.name = name
        self.model_files = tuple(str(m) for m in models)
        self.entry_point: EntryPoint | None = _entry_point(name)
        self.target: Target | None = None
        self.load_error = ""
        try:
            from byoc_sdk.registry import get_target

            self.target = get_target(name)
        except ByocError as exc:
            self.load_error = str(exc)
        self.xfail_path = Path(xfail_file) if xfail_file else self.default_xfail_path()
        self.expectations: list[Expectation] = (
            read_expectations(self.xfail_path) if self.xfail_path and self.xfail_path.is_file()
            else [])
        self._builds: dict[str, ModelBuild] = {}

    # --- where things are -----------------------------------------------------------

    @property
    def module(self) -> str | None:
        """The module the target's entry point names (``None`` for in-process targets)."""
        return self.entry_point.module if self.entry_point is not None else None

    def default_xfail_path(self) -> Path | None:
        """``conformance_xfail.txt`` beside the module that defines the target."""
        return xfail_path_beside(self.module)

    @property
    def has_codegen(self) -> bool:
        return self.target is not None and self.target.codegen is not None

    def no_codegen_reason(self) -> str:
        if self.target is None:
            return f"target {self.name} did not load"
        return f"target {self.name} has no codegen: nothing it claims can be built"

    # --- what to test ---------------------------------------------------------------

    @functools.cached_property
    def generated(self) -> cases.GeneratedCases:
        return cases.generate(self.target) if self.target is not None else cases.GeneratedCases()

    @functools.cached_property
    def node_tests(self) -> tuple[list[backend_tests.NodeTest], int]:
        if self.target is None:
            return [], 0
        return backend_tests.tests_for(self.target)

    @functools.cached_property
    def models(self) -> dict[str, onnx.ModelProto]:
        """The bundled models, then the vendor's own (``--model``)."""
        bundled = {name: make() for name, make in model_set().items()}
        return {**bundled, **vendor_models(self.model_files)}

    @functools.cached_property
    def regions_per_model(self) -> dict[str, int]:
        """How many regions the target gets in each model (partition only, no build)."""
        from partition.pipeline import partition_model

        counts = {}
        for name, model in self.models.items():
            try:
                result = partition_model(checks.onnx_copy(model), [self.target])
                counts[name] = len(result.report.regions)
            except Exception:  # a vendor check can fail in any way: the model test shows it
                counts[name] = 0
        return counts

    def params(self, kind: str) -> list[Param]:
        """The parameters of one test function of the suite ("op", "model"...)."""
        return getattr(self, f"_params_{kind}")()

    def _params_registration(self) -> list[Param]:
        return [Param(check, "registration", check, check)
                for check in ("entry-point", "metadata", "declarations", "codegen")]

    def _params_op(self) -> list[Param]:
        found = [Param(c.id, "op", c.subject, c) for c in self.generated.claimed_ops]
        found += [Param(f"{op}-no-samples", "op", op, skip=f"{op}: {why}")
                  for op, why in self.generated.uncovered.items()]
        return found or [_nothing("op", "the target's check accepts no sample of its ops")]

    def _params_host(self) -> list[Param]:
        found = [Param(c.id, "host", c.subject, c) for c in self.generated.host_ops]
        return found or [_nothing("host", "the target's check declines no sample of its ops")]

    def _params_pattern(self) -> list[Param]:
        found = [Param(c.id, "pattern", c.subject, c) for c in self.generated.claimed_patterns]
        if not found:
            why = ("the target declares no patterns" if self.target is None
                   or not self.target.patterns else "no instance of its patterns is accepted")
            return [_nothing("pattern", why)]
        return found

    def _params_pattern_declined(self) -> list[Param]:
        found = [Param(c.id, "pattern", c.subject, c) for c in self.generated.declined_patterns]
        return found or [_nothing("pattern", "no instance of its patterns is declined")]

    def _params_backend(self) -> list[Param]:
        tests, _ = self.node_tests
        found = [Param(t.name, "backend", t.subject, t) for t in tests]
        return found or [_nothing("backend", "no ONNX node test of its ops is accepted")]

    def _params_model(self) -> list[Param]:
        return [Param(name, "model", name, name) for name in self.models]

    def _params_package(self) -> list[Param]:
        found = [Param(name, "package", name, name) for name in self.package_set]
        found.append(Param("runtime-only", "package", "runtime-only", "runtime-only"))
        return found

    def _params_robustness(self) -> list[Param]:
        declined = [c for c in self.generated.host_ops if "static shapes" not in c.reason][:3]
        found = [Param(f"declined-{c.id}", "robustness", "declined inputs", c) for c in declined]
        undeclared = self.undeclared_case
        if undeclared is not None:
            found.append(Param(f"undeclared-{undeclared.id}", "robustness", "declined inputs",
                               undeclared))
        found += [Param("determinism", "robustness", "determinism", "determinism"),
                  Param("concurrent-runs", "robustness", "concurrent runs", "concurrent-runs")]
        return found

    # --- shared builds --------------------------------------------------------------

    @functools.cached_property
    def undeclared_case(self) -> cases.Case | None:
        """A float32 case of a common op the target does not declare at all."""
        if self.target is None:
            return None
        from byoc_sdk.conformance.catalogue import samples_for

        for op_type in UNDECLARED_CANDIDATES:
            if ("", op_type) in self.target.ops:
                continue
            sample = samples_for(op_type)[0]
            case_id = f"{op_type}-{sample.label}-f32"
            model, feeds = cases.sample_model(sample, "float32", max(cases.OPSET, sample.since),
                                              seed=cases.seed_of(case_id))
            return cases.Case("robustness", op_type, case_id, model, feeds, "float32",
                              sample.tolerance, f"{self.name} does not declare {op_type}")
        return None

    @functools.cached_property
    def package_set(self) -> dict[str, ModelBuild]:
        """What the package and robustness tests build, save and reload: the models the
        target gets most regions in, one claimed op case and one claimed pattern case."""
        chosen: dict[str, ModelBuild] = {}
        if not self.has_codegen:
            return chosen
        ranked = sorted((n for n, r in self.regions_per_model.items() if r),
                        key=lambda n: -self.regions_per_model[n])
        for name in ranked[:MAX_PACKAGED_MODELS]:
            chosen[name] = self.model_build(name)
        for group in (self.generated.claimed_ops, self.generated.claimed_patterns):
            if group:
                case = group[0]
                chosen[case.id] = ModelBuild(case.id, case.model, case.feeds, True,
                                             case.tolerance)
        return chosen

    def model_build(self, name: str) -> ModelBuild:
        """The model set's ``name`` built with the target's own policy (once)."""
        if name not in self._builds:
            from byoc_sdk.model_zoo import random_inputs

            model = self.models[name]
            self._builds[name] = ModelBuild(name, model, random_inputs(model), False,
                                            checks.MODEL_TOLERANCE)
        return self._builds[name]

    def compiled(self, build: ModelBuild):
        """``build`` compiled (strictly: a claimed region that fails to build is an error)."""
        if build.compiled is None and build.error is None:
            policy = RegionPolicy.keep_all() if build.keep_all else None
            try:
                build.compiled = checks.build_strict(build.model, self.target, policy)
            except checks.Failed as exc:
                build.error = exc
        if build.error is not None:
            raise checks.Skipped(f"{build.name} does not build (see its own test): "
                                 f"{build.error}")
        return build.compiled

    @functools.cached_property
    def fresh(self) -> dict[str, Any]:
        """Save every package of the package set, then load and run them — and rebuild
        their models — in a fresh Python process (see :mod:`byoc_sdk.conformance.fresh`)."""
        # Removed when the process exits (the context, and so the folder, lives until then).
        self._work = tempfile.TemporaryDirectory(prefix="byoc-conformance-")
        work = Path(self._work.name)
        job: dict[str, Any] = {"target": self.name, "packages": [], "rebuild": [],
                               "watch": self.watched_modules(), "result": str(work / "result.json")}
        for name, build in self.package_set.items():
            try:
                compiled = self.compiled(build)
            except checks.Skipped:
                continue
            stem = work / _file_name(name)
            compiled.save(stem.with_suffix(".byoc"))
            np.savez(stem.with_suffix(".feeds.npz"), **build.feeds)
            onnx.save(build.model, str(stem.with_suffix(".onnx")))
            job["packages"].append({"id": name, "package": str(stem.with_suffix(".byoc")),
                                    "feeds": str(stem.with_suffix(".feeds.npz")),
                                    "outputs": str(stem.with_suffix(".outputs.npz"))})
            job["rebuild"].append({"id": name, "model": str(stem.with_suffix(".onnx")),
                                   "keep_all": build.keep_all})
        job_file = work / "job.json"
        job_file.write_text(json.dumps(job))
        # Another hash seed: artifacts that depend on set or dict-of-hash order show up.
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        seconds, by_limit = time_for(FRESH_TIMEOUT)
        try:
            done = subprocess.run([sys.executable, "-m", "byoc_sdk.conformance.fresh",
                                   str(job_file)], capture_output=True, text=True, env=env,
                                  timeout=seconds, check=False)
        except subprocess.TimeoutExpired:
            if by_limit:
                return {"error": "the fresh process was still running when the check's time "
                                 f"limit was near (stopped after {seconds:.3g} s)"}
            return {"error": f"the fresh process took more than {FRESH_TIMEOUT} s"}
        result_file = Path(job["result"])
        if done.returncode != 0 or not result_file.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            return {"error": f"the fresh process exited with {done.returncode}: "
                             + " | ".join(tail)}
        result = json.loads(result_file.read_text())
        result["jobs"] = {p["id"]: p for p in job["packages"]}
        return result

    def watched_modules(self) -> list[str]:
        """Modules a package must run without: the target's and its codegen's."""
        names = [self.module] if self.module else []
        codegen = getattr(self.target, "codegen", None)
        module = getattr(codegen, "__module__", None)
        if module and module not in names and not module.startswith("byoc_sdk"):
            names.append(module)
        return names


def _nothing(category: str, why: str) -> Param:
    return Param("none", category, "-", skip=why)


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def xfail_path_beside(module: str | None) -> Path | None:
    """``conformance_xfail.txt`` beside ``module`` (``None`` if it cannot be found)."""
    if module is None:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "conformance_xfail.txt"


def default_xfail_path(name: str) -> Path | None:
    """The expected-failures file of installed target ``name``, beside its module."""
    entry = _entry_point(name)
    return xfail_path_beside(entry.module if entry is not None else None)


def _entry_point(name: str) -> EntryPoint | None:
    from byoc_sdk.registry import ENTRY_POINT_GROUP

    return next((ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name), None)


_CONTEXTS: dict[tuple[str, str, tuple[str, ...]], TargetContext] = {}


def context_for(name: str, xfail_file: str | os.PathLike | None = None,
                models: Sequence[str | os.PathLike] = ()) -> TargetContext:
    """The shared context of target ``name`` (made on first use)."""
    key = (name, str(xfail_file or ""), tuple(str(m) for m in models))
    vendor_models(key[2])  # a model that cannot take part fails here, before any test
    if key not in _CONTEXTS:
        _CONTEXTS[key] = TargetContext(name, xfail_file, models)
    return _CONTEXTS[key]


def expectations_of(name: str) -> list[Expectation]:
    """Every expected-failure entry read for target ``name`` in this process."""
    return [e for (target, *_), c in _CONTEXTS.items() if target == name
            for e in c.expectations]
