"""What each conformance test does: build, run, compare, and say plainly what went wrong.

Every check raises :class:`Failed` (a conformance failure, shown without a traceback)
or :class:`Skipped` (nothing to judge, e.g. onnxruntime cannot run the reference) with a
message that names the case, the target and the numbers; and returns what the report
shows (maximum error, nodes offloaded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from byoc_sdk.errors import ByocError
from byoc_sdk.target import Target
from byoc_sdk.testing import max_error, run_onnxruntime
from partition.policy import RegionPolicy

#: (rtol, atol) per element type; integer and boolean results must match exactly.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (3e-2, 3e-2),
}
#: Whole models chain many ops: their float32 tolerance is looser.
MODEL_TOLERANCE = 10.0


@dataclass
class Outcome:
    """What a check measured (a failing one too: the report shows its maximum error)."""

    max_error: float | None = None
    offloaded: int | None = None
    nodes: int | None = None
    detail: str = ""


class Failed(AssertionError):
    """The target does not conform; the message says where and by how much, and
    ``measured`` holds the numbers the report lists."""

    def __init__(self, message: str, measured: Outcome | None = None) -> None:
        super().__init__(message)
        self.measured = measured or Outcome()


class Skipped(Exception):
    """The check cannot judge this case (the message says why)."""


def tolerance(dtype: str, scale: float = 1.0) -> tuple[float, float]:
    """(rtol, atol) for results of element type ``dtype``, scaled for the op."""
    rtol, atol = TOLERANCES.get(str(dtype), (0.0, 0.0))
    return rtol * scale, atol * scale


def compare(
    actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], scale: float = 1.0
) -> float:
    """Raise :class:`Failed` unless every output matches within its type's tolerance;
    returns the largest error."""
    worst = 0.0
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise Failed(f"outputs {missing} are missing")
    for name, want in expected.items():
        got = np.asarray(actual[name])
        want = np.asarray(want)
        if got.dtype != want.dtype:
            raise Failed(f"output {name} is {got.dtype}, onnxruntime gives {want.dtype}")
        if got.shape != want.shape:
            raise Failed(f"output {name} has shape {got.shape}, onnxruntime gives {want.shape}")
        error = max_error(got, want)
        worst = max(worst, error)
        rtol, atol = tolerance(want.dtype.name, scale)
        close = np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                           atol=atol, equal_nan=True)
        if not close.all():
            bad = int((~close).sum())
            raise Failed(f"output {name} differs from onnxruntime: max abs error {error:.3g} "
                         f"(rtol {rtol:g}, atol {atol:g}); {bad} of {close.size} elements "
                         f"out of tolerance{nan_mismatch(got, want, 'onnxruntime')}",
                         Outcome(max(worst, error)))
    return worst


def nan_mismatch(actual: np.ndarray, expected: np.ndarray, reference: str) -> str:
    """``": N NaN where REFERENCE gives a number, ..."``, or ``""`` when NaNs agree: the
    maximum error counts a lone NaN as infinite, which would hide what went wrong."""
    if actual.dtype.kind not in "fc" or expected.dtype.kind not in "fc":
        return ""
    ours, theirs = np.isnan(actual), np.isnan(expected)
    parts = []
    if count := int((ours & ~theirs).sum()):
        parts.append(f"{count} NaN{'s' if count > 1 else ''} where {reference} gives a number")
    if count := int((theirs & ~ours).sum()):
        parts.append(f"{count} number{'s' if count > 1 else ''} where {reference} gives NaN")
    return ": " + ", ".join(parts) if parts else ""


def compare_placed(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                   scale: float, offloaded: int, nodes: int) -> Outcome:
    """:func:`compare`, with what was offloaded kept in the outcome — pass or fail."""
    try:
        error = compare(actual, expected, scale)
    except Failed as exc:
        exc.measured = Outcome(exc.measured.max_error, offloaded, nodes)
        raise
    return Outcome(error, offloaded, nodes)


def reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs on the original model; :class:`Skipped` if it cannot run it."""
    try:
        return run_onnxruntime(model, feeds)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise Skipped(f"onnxruntime cannot run the reference: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# --- building -----------------------------------------------------------------------


def build_strict(model: onnx.ModelProto, target: Target, policy: RegionPolicy | None):
    """Build ``model`` for ``target`` where every claimed region must compile."""
    from byoc_sdk.build import build

    try:
        return build(model, [target], policy=policy, strict=True, host_threads=1)
    except ByocError as exc:
        raise Failed(f"build failed: {exc}") from exc


def placement(compiled, target: str) -> tuple[int, int, list[str]]:
    """(nodes on ``target``, all nodes, reasons of those left on the host)."""
    nodes = compiled.report.partition.nodes
    offloaded = [n for n in nodes if n.target == target]
    reasons = sorted({f"{n.op_type}: {n.reason}" for n in nodes if n.target != target})
    return len(offloaded), len(nodes), reasons


def run_model(compiled, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        return compiled.run(dict(feeds))
    except ByocError as exc:
        raise Failed(f"run failed: {exc}") from exc


def claimed_case(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], target: Target,
                 scale: float, pattern: str | None = None, raised: str = "") -> Outcome:
    """A case the target claims: every node offloaded (fused into ``pattern`` if given),
    built, run, and equal to onnxruntime within tolerance. ``raised``: what the target's
    check raised on it (the partitioner takes that as a no, so nothing else is judged)."""
    if raised:
        check = f"check of pattern {pattern}" if pattern is not None else "check"
        raise Failed(f"the {check} raised {raised} (a check must return True or a reason, "
                     "never raise)")
    expected = reference(model, feeds)
    compiled = build_strict(model, target, RegionPolicy.keep_all())
    offloaded, total, reasons = placement(compiled, target.name)
    if offloaded != total:
        raise Failed(f"the check accepts it, yet {total - offloaded} of {total} nodes stayed "
                     f"on the host: {'; '.join(reasons)}")
    if pattern is not None:
        fused = {_pattern_of(n.composite) for n in compiled.report.partition.nodes}
        if fused != {pattern}:
            raise Failed("the pattern check accepts it, yet it was fused as "
                         f"{sorted(map(str, fused))}")
    return compare_placed(run_model(compiled, feeds), expected, scale, offloaded, total)


def _pattern_of(composite: str | None) -> str | None:
    """The pattern a composite call instantiates: ``conv_act_3`` -> ``conv_act``."""
    if composite is None:
        return None
    head, _, number = composite.rpartition("_")
    return head if number.isdigit() else composite


def stays_on_host(model: onnx.ModelProto, target: Target, reason: str) -> Outcome:
    """A case the target's check declines: the partition must leave it on the host."""
    from partition.pipeline import partition_model

    try:
        result = partition_model(onnx_copy(model), [target], policy=RegionPolicy.keep_all())
    except ByocError as exc:
        raise Failed(f"partitioning failed: {exc}") from exc
    placed = [n for n in result.report.nodes if n.target == target.name]
    if placed:
        raise Failed(f"the check declines it ({reason}), yet {len(placed)} node(s) went to "
                     f"{target.name}: {', '.join(n.name for n in placed)}")
    return Outcome(None, 0, len(result.report.nodes), reason)


def declined_pattern(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], target: Target,
                     pattern: str, reason: str, scale: float) -> Outcome:
    """A pattern instance its check declines: never fused as ``pattern``; whatever the
    target claims of it instead still builds and computes the right thing."""
    expected = reference(model, feeds)
    compiled = build_strict(model, target, RegionPolicy.keep_all())
    fused = [n.name for n in compiled.report.partition.nodes
             if _pattern_of(n.composite) == pattern]
    if fused:
        raise Failed(f"the pattern check declines it ({reason}), yet {', '.join(fused)} "
                     f"were fused as {pattern}")
    offloaded, total, _ = placement(compiled, target.name)
    outcome = compare_placed(run_model(compiled, feeds), expected, scale, offloaded, total)
    outcome.detail = reason
    return outcome


def onnx_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


# --- artifacts ----------------------------------------------------------------------


def artifact_digests(compiled) -> dict[str, str]:
    """Region name -> sha256 of what its codegen produced (for determinism checks)."""
    from byoc_sdk.codegen import Binary, CSource, JsonGraph

    digests = {}
    for region in compiled.package.regions:
        artifact = region.artifact
        if region.status != "compiled" or artifact is None:
            continue
        h = hashlib.sha256(artifact.kind.encode())
        h.update(json.dumps(artifact.constants).encode())
        if isinstance(artifact, CSource):
            h.update(json.dumps([artifact.entry, artifact.language, artifact.flags,
                                 sorted(artifact.sources.items())]).encode())
        elif isinstance(artifact, JsonGraph):
            h.update(json.dumps([artifact.runtime, artifact.graph], sort_keys=True).encode())
        elif isinstance(artifact, Binary):
            h.update(artifact.runtime.encode() + b"\0" + bytes(artifact.data))
        digests[region.name] = h.hexdigest()
    return digests


def differing(first: Mapping[str, str], second: Mapping[str, str]) -> list[str]:
    """Regions whose artifacts differ (or exist in one build only)."""
    return sorted(name for name in set(first) | set(second)
                  if first.get(name) != second.get(name))


def outputs_equal(first: Sequence[Mapping[str, np.ndarray]],
                  second: Sequence[Mapping[str, np.ndarray]]) -> bool:
    """Whether two runs' outputs agree (tight: same code, same inputs)."""
    for a, b in zip(first, second, strict=True):
        for name in a:
            if not np.allclose(a[name], b[name], rtol=1e-6, atol=1e-7, equal_nan=True):
                return False
    return True
