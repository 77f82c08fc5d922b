"""Whole-model checks: the bundled models, and packages saved, reloaded and run in a
fresh process (where only the runtime half of a backend may be imported)."""

from __future__ import annotations

import numpy as np

from byoc_sdk.conformance import checks
from byoc_sdk.conformance.context import TargetContext


def check_model(context: TargetContext, name: str) -> checks.Outcome:
    """A bundled model, partitioned by the target's own policy, built, run, compared."""
    build = context.model_build(name)
    expected = checks.reference(build.model, build.feeds)
    try:
        compiled = context.compiled(build)
    except checks.Skipped as exc:  # its own build failed: here that is the failure
        raise checks.Failed(str(build.error)) from exc
    offloaded, total, _ = checks.placement(compiled, context.name)
    outcome = checks.compare_placed(checks.run_model(compiled, build.feeds), expected,
                                    build.scale, offloaded, total)
    regions = sum(1 for r in compiled.package.regions if r.status == "compiled")
    outcome.detail = f"{regions} region{'s' if regions != 1 else ''} compiled"
    return outcome


def check_package(context: TargetContext, name: str) -> checks.Outcome:
    """The package of ``name`` gives, loaded in a fresh process, what its model gives here."""
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


def check_runtime_only(context: TargetContext) -> checks.Outcome:
    """Loading and running packages imported neither the target's module nor its codegen's."""
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
