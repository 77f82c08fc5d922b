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

from collections.abc import Callable
from typing import ClassVar

import pytest

from byoc_sdk.conformance import checks, robustness, whole_models
from byoc_sdk.conformance.context import Param, TargetContext, context_for
from byoc_sdk.conformance.expectations import ExpectationError, expectation_for
from byoc_sdk.errors import ByocError


class ConformanceSuite:
    """Base class of a conformance test class; set ``target`` (and ``xfail_file``)."""

    #: The target's registered name; ``None`` takes it from ``--byoc-target``.
    target: ClassVar[str | None] = None
    #: Expected failures; ``None`` looks for conformance_xfail.txt beside the target.
    xfail_file: ClassVar[str | None] = None
    #: The vendor's own ONNX models (static input shapes), run beside the bundled ones.
    models: ClassVar[tuple[str, ...]] = ()

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
            expected = request.node.get_closest_marker("xfail")
            if expected is not None:  # for a crash, which the worker cannot report itself
                request.node.user_properties.append(
                    ("byoc.xfail", expected.kwargs.get("reason", "")))

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
        _judge(request, lambda: checks.claimed_case(c.model, c.feeds, context.target, c.tolerance,
                                                    raised=c.raised))

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
                                                    c.tolerance, pattern=c.subject,
                                                    raised=c.raised))

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
        _judge(request, lambda: whole_models.check_model(context, case.payload))

    def test_package(self, case: Param, context: TargetContext,
                     request: pytest.FixtureRequest) -> None:
        """A package saved, loaded in a fresh process, and run there with the same result."""
        _need_codegen(context)
        _need_entry_point(context)
        if case.payload == "runtime-only":
            _judge(request, lambda: whole_models.check_runtime_only(context))
        else:
            _judge(request, lambda: whole_models.check_package(context, case.payload))

    def test_robustness(self, case: Param, context: TargetContext,
                        request: pytest.FixtureRequest) -> None:
        """The codegen on inputs its target declines; deterministic artifacts; threads."""
        _need_codegen(context)
        if case.payload == "determinism":
            _need_entry_point(context)
            _judge(request, lambda: robustness.check_determinism(context))
        elif case.payload == "concurrent-runs":
            _judge(request, lambda: robustness.check_concurrent_runs(context))
        else:
            _judge(request, lambda: robustness.codegen_on_declined(context.target, case.payload))


# --- helpers -----------------------------------------------------------------------


def _context(config: pytest.Config, cls: type[ConformanceSuite]) -> TargetContext:
    name = cls.target or config.getoption("byoc_target", default=None)
    if not name:
        raise pytest.UsageError(f"{cls.__name__} has no target: set its 'target' attribute "
                                "or pass --byoc-target NAME")
    xfail = config.getoption("byoc_xfail_file", default=None) or cls.xfail_file
    models = (*cls.models, *(config.getoption("byoc_model", default=None) or ()))
    try:
        return context_for(name, xfail, models)
    except (ExpectationError, ByocError) as exc:  # a malformed xfail file, an unusable model
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
    verdict: checks.Failed | checks.Skipped | None = None
    try:
        outcome = check()
    except (checks.Failed, checks.Skipped) as exc:
        verdict, outcome = exc, None
    # Outside the except block, so that pytest shows the verdict alone, not a chain.
    if isinstance(verdict, checks.Skipped):
        pytest.skip(str(verdict))
    if isinstance(verdict, checks.Failed):
        _record(request, verdict.measured)
        pytest.fail(str(verdict), pytrace=False)
    if outcome is not None:
        _record(request, outcome)


def _record(request: pytest.FixtureRequest, outcome: checks.Outcome) -> None:
    """File what a check measured in the test's properties (the report reads them)."""
    props = request.node.user_properties
    if outcome.max_error is not None:
        props.append(("byoc.max_error", outcome.max_error))
    if outcome.nodes is not None:
        props += [("byoc.offloaded", outcome.offloaded), ("byoc.nodes", outcome.nodes)]
    if outcome.detail:
        props.append(("byoc.detail", outcome.detail))
