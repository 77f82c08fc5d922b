"""Running one ONNX backend node test on a target (see :mod:`.backend_tests`)."""

from __future__ import annotations

import numpy as np

from byoc_sdk.conformance import checks
from byoc_sdk.conformance.backend_tests import NodeTest, prepare
from byoc_sdk.target import Target
from byoc_sdk.testing import max_error
from partition.policy import RegionPolicy


def run_node_test(test: NodeTest, target: Target) -> checks.Outcome:
    """Offload the test's nodes, build, run, and compare with ONNX's expected outputs."""
    try:
        model, feeds = prepare(test, target)
    except ValueError as exc:
        raise checks.Skipped(str(exc)) from exc
    expected = test.expected()
    _onnxruntime_agrees(model, feeds, expected, test)
    compiled = checks.build_strict(model, target, RegionPolicy.keep_all())
    offloaded, total, reasons = checks.placement(compiled, target.name)
    if offloaded == 0:
        raise checks.Skipped(f"the target's check declines it: {'; '.join(reasons)}")
    actual = checks.run_model(compiled, feeds)
    worst = 0.0
    for name, want in expected.items():
        got = actual.get(name)
        if got is None:
            raise checks.Failed(f"output {name} is missing")
        if got.shape != want.shape or got.dtype != want.dtype:
            raise checks.Failed(f"output {name} is {got.dtype}{got.shape}, ONNX expects "
                                f"{want.dtype}{want.shape}")
        error = max_error(got, want)
        worst = max(worst, error)
        rtol, atol = _tolerance(test, want.dtype.name)
        if not np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                           atol=atol, equal_nan=True):
            raise checks.Failed(f"output {name} differs from ONNX's expected output: max abs "
                                f"error {error:.3g} (rtol {rtol:g}, atol {atol:g})"
                                f"{checks.nan_mismatch(got, want, 'ONNX')}",
                                checks.Outcome(worst, offloaded, total))
    return checks.Outcome(worst, offloaded, total)


def _tolerance(test: NodeTest, dtype: str) -> tuple[float, float]:
    rtol, atol = checks.tolerance(dtype)
    return max(rtol, test.rtol), max(atol, test.atol)


def _onnxruntime_agrees(model, feeds, expected, test: NodeTest) -> None:
    """Skip a test onnxruntime itself cannot run, or gets wrong: not the target's fault."""
    try:
        outputs = checks.reference(model, feeds)
    except checks.Skipped:
        raise
    for name, want in expected.items():
        got = outputs.get(name)
        rtol, atol = _tolerance(test, want.dtype.name)
        if got is None or got.shape != want.shape or not np.allclose(
                got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                equal_nan=True):
            raise checks.Skipped("onnxruntime itself does not reproduce ONNX's expected "
                                 f"output {name}")
