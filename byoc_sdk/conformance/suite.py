"""The conformance suite: test methods whose cases come from the target's declarations.

Subclass :class:`ConformanceSuite` in a test module and name the target; every check
then shows up as its own pytest item (``test_op[Relu-2x3-f32]``, ``test_model[mlp]``)::

    from byoc_sdk.conformance import ConformanceSuite

    class TestConformance(ConformanceSuite):
        target = "myaccel"

``byoc conformance --target NAME`` and ``pytest --byoc-target NAME`` run the same class
for the target they are given (:mod:`byoc_sdk.conformance.selected`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import pytest

from byoc_sdk.conformance import checks
from byoc_sdk.conformance.context import Param, TargetContext, context_for
from byoc_sdk.conformance.expectations import ExpectationError, expectation_for

#: Threads and rounds of the concurrent-runs check.
THREADS = 4
ROUNDS = 3


class ConformanceSuite:
    """Base class of a conformance test class; set ``target`` (and ``xfail_file``)."""

    #: The target's registered name; ``None`` takes it from ``--byoc-target``.
    target: ClassVar[str | None] = None
    #: Expected failures; ``None`` looks for conformance_xfail.txt beside the target.
    xfail_file: ClassVar[str | None] = None

    # --- parametrisation --------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Give each test function one parameter per case of its kind."""
        if "case" not in metafunc.fixturenames:
            return
        context = _context(metafunc.config, type(self))
        kind = metafunc.function.__name__.removeprefix("test_")
        params = []
        for param in context.params(kind):
            marks = []
            if param.skip:
                marks.append(pytest.mark.skip(reason=param.skip))
            entry = expectation_for(context.expectations, f"{kind}[{param.id}]")
            if entry is not None:
                marks.append(pytest.mark.xfail(reason=entry.reason, strict=False))
            params.append(pytest.param(param, id=param.id, marks=marks))
        metafunc.parametrize("case", params)

    @pytest.fixture
    def context(self, request: pytest.FixtureRequest) -> TargetContext:
        return _context(request.config, type(self))

    @pytest.fixture(autouse=True)
    def _describe(self, request: pytest.FixtureRequest) -> None:
        """File each test in the report: its category, subject and short id."""
        callspec = getattr(request.node, "callspec", None)
        param = callspec.params.get("case") if callspec is not None else None
        if isinstance(param, Param):
            kind = request.node.originalname.removeprefix("test_")
            request.node.user_properties += [
                ("byoc.target", _context(request.config, type(self)).name),
                ("byoc.category", param.category), ("byoc.subject", param.subject),
                ("byoc.id", f"{kind}[{param.id}]"),
            ]

    # --- registration -----------------------------------------------------------------

    def test_registration(self, case: Param, context: TargetContext,
                          request: pytest.FixtureRequest) -> None:
        """The target loads from its entry point; its metadata and declarations are sound."""
        from byoc_sdk.conformance import registration

        _judge(request, lambda: registration.check(case.payload, context))

    # --- ops and patterns -------------------------------------------------------------

    def test_op(self, case: Param, context: TargetContext, request: pytest.FixtureRequest) -> None:
        """A single-op model the check accepts: offloaded, built, run, equal to onnxruntime."""
        _need_codegen(context)
        c = case.payload
        _judge(request, lambda: checks.claimed_case(c.model, c.feeds, context.target, c.tolerance))

    def test_host(self, case: Param, context: TargetContext,
                  request: pytest.FixtureRequest) -> None:
        """A single-op model the check declines stays on the host."""
        c = case.payload
        _judge(request, lambda: checks.stays_on_host(c.model, context.target, c.reason))

    def test_pattern(self, case: Param, context: TargetContext,
                     request: pytest.FixtureRequest) -> None:
        """A pattern instance the check accepts: fused, built, run, equal to onnxruntime."""
        _need_codegen(context)
        c = case.payload
        _judge(request, lambda: checks.claimed_case(c.model, c.feeds, context.target,
                                                    c.tolerance, pattern=c.subject))

    def test_pattern_declined(self, case: Param, context: TargetContext,
                              request: pytest.FixtureRequest) -> None:
        """A pattern instance the check declines is not fused, and still computes right."""
        _need_codegen(context)
        c = case.payload
        _judge(request, lambda: checks.declined_pattern(c.model, c.feeds, context.target,
                                                        c.subject, c.reason, c.tolerance))

    def test_backend(self, case: Param, context: TargetContext,
                     request: pytest.FixtureRequest) -> None:
        """An ONNX backend node test of a claimed op matches ONNX's expected outputs."""
        from byoc_sdk.conformance.backend_run import run_node_test

        _need_codegen(context)
        _judge(request, lambda: run_node_test(case.payload, context.target))

    # --- models, packages, robustness -------------------------------------------------

    def test_model(self, case: Param, context: TargetContext,
                   request: pytest.FixtureRequest) -> None:
        """A bundled model, partitioned by the target's policy, built, run and compared."""
        _need_codegen(context)
        _judge(request, lambda: _model(context, case.payload))

    def test_package(self, case: Param, context: TargetContext,
                     request: pytest.FixtureRequest) -> None:
        """A package saved, loaded in a fresh process, and run there with the same result."""
        _need_codegen(context)
        _need_entry_point(context)
        if case.payload == "runtime-only":
            _judge(request, lambda: _runtime_only(context))
        else:
            _judge(request, lambda: _fresh_package(context, case.payload))

    def test_robustness(self, case: Param, context: TargetContext,
                        request: pytest.FixtureRequest) -> None:
        """The codegen on inputs its target declines; deterministic artifacts; threads."""
        _need_codegen(context)
        if case.payload == "determinism":
            _need_entry_point(context)
            _judge(request, lambda: _determinism(context))
        elif case.payload == "concurrent-runs":
            _judge(request, lambda: _concurrent_runs(context))
        else:
            _judge(request, lambda: _declined_input(context, case.payload))


# --- helpers -----------------------------------------------------------------------


def _context(config: pytest.Config, cls: type[ConformanceSuite]) -> TargetContext:
    name = cls.target or config.getoption("byoc_target", default=None)
    if not name:
        raise pytest.UsageError(f"{cls.__name__} has no target: set its 'target' attribute "
                                "or pass --byoc-target NAME")
    xfail = config.getoption("byoc_xfail_file", default=None) or cls.xfail_file
    try:
        return context_for(name, xfail)
    except ExpectationError as exc:
        raise pytest.UsageError(str(exc)) from exc


def _need_codegen(context: TargetContext) -> None:
    if not context.has_codegen:
        pytest.skip(context.no_codegen_reason())


def _need_entry_point(context: TargetContext) -> None:
    if context.entry_point is None:
        pytest.skip(f"target {context.name} is registered in-process only: a fresh process "
                    "cannot load it (register it under the byoc.targets entry point)")


def _judge(request: pytest.FixtureRequest, check: Callable[[], checks.Outcome | None]) -> None:
    """Run a check; record what it measured; turn its verdict into pytest's."""
    try:
        outcome = check()
    except checks.Skipped as exc:
        pytest.skip(str(exc))
    except checks.Failed as exc:
        pytest.fail(str(exc), pytrace=False)
    if outcome is None:
        return
    props = request.node.user_properties
    if outcome.max_error is not None:
        props.append(("byoc.max_error", outcome.max_error))
    if outcome.nodes is not None:
        props += [("byoc.offloaded", outcome.offloaded), ("byoc.nodes", outcome.nodes)]
    if outcome.detail:
        props.append(("byoc.detail", outcome.detail))


def _model(context: TargetContext, name: str) -> checks.Outcome:
    build = context.model_build(name)
    expected = checks.reference(build.model, build.feeds)
    try:
        compiled = context.compiled(build)
    except checks.Skipped as exc:  # its own build failed: here that is the failure
        raise checks.Failed(str(build.error)) from exc
    offloaded, total, _ = checks.placement(compiled, context.name)
    error = checks.compare(checks.run_model(compiled, build.feeds), expected, build.scale)
    regions = sum(1 for r in compiled.package.regions if r.status == "compiled")
    return checks.Outcome(error, offloaded, total,
                          f"{regions} region{'s' if regions != 1 else ''} compiled")


def _fresh_package(context: TargetContext, name: str) -> checks.Outcome:
    build = context.package_set[name]
    compiled = context.compiled(build)
    fresh = context.fresh
    if "error" in fresh:
        raise checks.Failed(fresh["error"])
    run = fresh["runs"].get(name)
    if run is None:
        raise checks.Failed(f"the fresh process did not run package {name}")
    if not run["ok"]:
        raise checks.Failed(f"loading and running the package in a fresh process failed: "
                            f"{run['error']}")
    here = checks.run_model(compiled, build.feeds)
    with np.load(fresh["jobs"][name]["outputs"]) as data:
        there = {key: data[key] for key in data.files}
    if set(here) != set(there) or not checks.outputs_equal([here], [there]):
        raise checks.Failed("the package gives other results in a fresh process than the "
                            "model it was saved from")
    offloaded, total, _ = checks.placement(compiled, context.name)
    return checks.Outcome(None, offloaded, total, "saved, loaded and run in a fresh process")


def _runtime_only(context: TargetContext) -> checks.Outcome:
    fresh = context.fresh
    if "error" in fresh:
        raise checks.Failed(fresh["error"])
    if not fresh["runs"]:
        raise checks.Skipped("no package was built")
    if fresh["imported"]:
        raise checks.Failed(
            f"loading and running packages imported {', '.join(fresh['imported'])}: a package "
            "must run with the runtime alone (keep the runtime in a module that imports neither "
            "the target nor the codegen, and the package's __init__ free of such imports)")
    return checks.Outcome(detail="packages ran without importing the target or its codegen")


def _determinism(context: TargetContext) -> checks.Outcome:
    fresh = context.fresh
    if "error" in fresh:
        raise checks.Failed(fresh["error"])
    problems = []
    for name, build in context.package_set.items():
        first = checks.artifact_digests(context.compiled(build))
        policy = checks.RegionPolicy.keep_all() if build.keep_all else None
        again = checks.artifact_digests(checks.build_strict(build.model, context.target, policy))
        elsewhere = fresh["digests"].get(name, {})
        if "error" in elsewhere:
            problems.append(f"{name}: rebuilding in a fresh process failed: {elsewhere['error']}")
            continue
        for label, other in (("a second build", again), ("a fresh process", elsewhere)):
            changed = checks.differing(first, other)
            if changed:
                problems.append(f"{name}: {label} gave other artifacts for {', '.join(changed)}")
    if problems:
        raise checks.Failed("codegen is not deterministic: " + "; ".join(problems))
    return checks.Outcome(detail=f"{len(context.package_set)} models built three times, "
                                 "identical artifacts")


def _concurrent_runs(context: TargetContext) -> checks.Outcome:
    runs = 0
    for name, build in context.package_set.items():
        compiled = context.compiled(build)
        feeds = [_reseeded(build.feeds, seed) for seed in range(1, THREADS + 1)]
        expected = [checks.run_model(compiled, f) for f in feeds]
        barrier = threading.Barrier(THREADS)

        def work(index: int, compiled: Any = compiled, feeds: list = feeds,
                 barrier: threading.Barrier = barrier) -> list[dict[str, np.ndarray]]:
            barrier.wait()
            return [checks.run_model(compiled, feeds[index]) for _ in range(ROUNDS)]

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(work, range(THREADS)))
        for index, outputs in enumerate(results):
            if not checks.outputs_equal([expected[index]] * ROUNDS, outputs):
                raise checks.Failed(f"{name}: runs from {THREADS} threads at once give other "
                                    "results than the same runs one at a time")
            runs += ROUNDS
    return checks.Outcome(detail=f"{runs} concurrent runs agreed with sequential ones")


def _reseeded(feeds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Feeds of the same types and shapes with other values (same value ranges' signs)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in feeds.items():
        if value.dtype.kind == "f":
            noise = rng.uniform(0.9, 1.1, value.shape).astype(value.dtype)
            out[name] = (value * noise).astype(value.dtype)
        else:
            out[name] = value
    return out


def _declined_input(context: TargetContext, case: Any) -> checks.Outcome:
    from byoc_sdk.conformance.robustness import codegen_on_declined

    return codegen_on_declined(context.target, case)
