"""The codegen on inputs its target declines.

A target's check is the first line of defence; its codegen is the second. The suite
hands the codegen a region its check would have refused (another element type, a
run-time weight, an op the target does not declare) through a copy of the target that
claims everything, and accepts two outcomes: the codegen refuses (raises, or returns
an invalid artifact) and the region runs on the host; or it builds something that
computes the right result. Building something that computes garbage, or that fails only
when run, is a failure: the codegen should have raised.
"""

from __future__ import annotations

from byoc_sdk.conformance import checks
from byoc_sdk.conformance.cases import Case
from byoc_sdk.errors import ByocError
from byoc_sdk.target import Target
from partition.policy import RegionPolicy


def claiming_everything(target: Target, op_type: str) -> Target:
    """A copy of ``target`` (same name, codegen and options) that claims ``op_type``
    unconditionally."""
    clone = Target(target.name, version=target.version, vendor=target.vendor,
                   description=target.description, priority=target.priority,
                   merge_style=target.merge_style, constants=target.constants,
                   policy=RegionPolicy.keep_all(), codegen=target.codegen,
                   options=dict(target.options))
    clone.support(op_type)
    return clone


def codegen_on_declined(target: Target, case: Case) -> checks.Outcome:
    """Build ``case`` (which ``target`` declines) with a target that claims it anyway."""
    from byoc_sdk.build import build

    expected = checks.reference(case.model, case.feeds)
    clone = claiming_everything(target, case.subject)
    try:
        compiled = build(checks.onnx_copy(case.model), [clone], strict=False, host_threads=1)
    except ByocError as exc:
        raise checks.Failed(f"the build failed instead of falling back: {exc}") from exc
    region = next((r for r in compiled.package.regions), None)
    if region is None:
        raise checks.Skipped("no region was formed")
    if region.status != "compiled":
        return checks.Outcome(detail=f"codegen refused it ({region.reason}); it ran on the host")
    try:
        actual = compiled.run(dict(case.feeds))
    except ByocError as exc:
        raise checks.Failed(f"codegen built a region it cannot run ({case.reason}): {exc}; "
                            "it should raise instead") from exc
    try:
        error = checks.compare(actual, expected, case.tolerance)
    except checks.Failed as exc:
        raise checks.Failed(f"codegen built wrong code for an input its target declines "
                            f"({case.reason}): {exc}; it should raise instead") from exc
    return checks.Outcome(error, 1, case.nodes, "codegen handled it correctly")
