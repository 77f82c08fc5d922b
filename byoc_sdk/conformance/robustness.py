"""Robustness: the codegen on inputs its target declines, deterministic artifacts, and
runs from several threads at once.

A target's check is the first line of defence; its codegen is the second. The suite
hands the codegen a region its check would have refused (another element type, a
run-time weight, an op the target does not declare) through a copy of the target that
claims everything, and accepts two outcomes: the codegen refuses (raises, or returns
an invalid artifact) and the region runs on the host; or it builds something that
computes the right result. Building something that computes garbage, or that fails only
when run, is a failure: the codegen should have raised.

Artifacts must not depend on the process (set order, object ids, time): the package set
is built twice here and once in a process with another hash seed, and every region's
artifact must come out byte for byte the same. Compiled models must run from several
threads at once (runtimes that are not ``thread_safe`` are serialised by byoc).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from byoc_sdk.conformance import checks
from byoc_sdk.conformance.cases import Case
from byoc_sdk.conformance.context import TargetContext
from byoc_sdk.errors import ByocError
from byoc_sdk.target import Target
from partition.policy import RegionPolicy

#: Threads and rounds of the concurrent-runs check.
THREADS = 4
ROUNDS = 3


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


def check_determinism(context: TargetContext) -> checks.Outcome:
    """Artifacts are the same built twice here and once in a process of another hash seed."""
    fresh = context.fresh
    if "error" in fresh:
        raise checks.Failed(fresh["error"])
    problems = []
    for name, build in context.package_set.items():
        first = checks.artifact_digests(context.compiled(build))
        policy = RegionPolicy.keep_all() if build.keep_all else None
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


def check_concurrent_runs(context: TargetContext) -> checks.Outcome:
    """Runs from several threads at once give what the same runs give one at a time."""
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
