"""The conformance report: per op and per pattern, per model, per check; as JSON and text.

Results come from pytest's test reports: every suite test files itself (category,
subject, id) and what it measured (maximum error, nodes offloaded) in its
``user_properties``, which pytest also writes into JUnit XML.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Outcomes in the order tables show them.
OUTCOMES = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")
#: Categories filed per op / per pattern; the rest are listed as checks.
OP_CATEGORIES = ("op", "host", "backend")
CHECK_CATEGORIES = ("registration", "package", "robustness")


@dataclass
class Result:
    """One suite test's outcome."""

    id: str
    target: str
    category: str
    subject: str
    outcome: str
    message: str = ""
    max_error: float | None = None
    offloaded: int | None = None
    nodes: int | None = None
    detail: str = ""


def result_from(report: Any) -> Result | None:
    """The :class:`Result` a pytest ``TestReport`` stands for, or ``None`` when the
    report is not a suite test's final word (a passing setup, a teardown...)."""
    props = dict(report.user_properties)
    if "byoc.category" not in props:
        return None
    outcome = _outcome(report)
    if outcome is None:
        return None
    return Result(
        id=props["byoc.id"], target=props["byoc.target"], category=props["byoc.category"],
        subject=props["byoc.subject"], outcome=outcome, message=_message(report, outcome),
        max_error=props.get("byoc.max_error"), offloaded=props.get("byoc.offloaded"),
        nodes=props.get("byoc.nodes"), detail=props.get("byoc.detail", ""),
    )


def _outcome(report: Any) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else "xpassed"
        return report.outcome
    if report.when == "setup" and not report.passed:
        if xfail and report.skipped:
            return "xfailed"
        return "error" if report.failed else "skipped"
    if report.when == "teardown" and report.failed:
        return "error"
    return None


def _message(report: Any, outcome: str) -> str:
    if outcome == "passed":
        return ""
    if outcome in ("xfailed", "xpassed"):
        return str(getattr(report, "wasxfail", ""))
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    if isinstance(longrepr, str):  # a crashed test's: longreprtext adds the worker's name
        return longrepr
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longreprtext).strip()
    # pytest.fail() messages arrive as "Failed: ..."; the suite's verdicts need no prefix.
    return text.removeprefix("Failed: ")


@dataclass
class Row:
    """Counts of one subject (an op, a pattern) and its worst error."""

    subject: str
    counts: Counter = field(default_factory=Counter)
    max_error: float | None = None
    failures: list[dict[str, str]] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.counts[result.outcome] += 1
        if result.max_error is not None:
            self.max_error = max(self.max_error or 0.0, result.max_error)
        if result.outcome in ("failed", "error"):
            self.failures.append({"id": result.id, "message": result.message,
                                  "max_error": result.max_error})

    def to_dict(self) -> dict[str, Any]:
        return {**{o: self.counts.get(o, 0) for o in OUTCOMES}, "max_error": self.max_error,
                "failures": self.failures}


@dataclass
class ConformanceReport:
    """Every result of one target, and what the target is."""

    target: str
    results: list[Result]
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> Counter:
        return Counter(r.outcome for r in self.results)

    @property
    def conformant(self) -> bool:
        totals = self.totals
        return not (totals["failed"] or totals["error"]) and bool(totals["passed"])

    def rows(self, categories: Iterable[str]) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        wanted = set(categories)
        for result in self.results:
            if result.category in wanted and result.subject != "-":
                rows.setdefault(result.subject, Row(result.subject)).add(result)
        return dict(sorted(rows.items()))

    def models(self) -> dict[str, dict[str, Any]]:
        out = {}
        for r in self.results:
            if r.category != "model":
                continue
            share = r.offloaded / r.nodes if r.offloaded is not None and r.nodes else None
            out[r.subject] = {"outcome": r.outcome, "offloaded_nodes": r.offloaded,
                              "nodes": r.nodes, "offloaded_share": share,
                              "max_error": r.max_error, "message": r.message or r.detail}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            **self.metadata,
            "conformant": self.conformant,
            "totals": {o: self.totals.get(o, 0) for o in OUTCOMES},
            "ops": {k: v.to_dict() for k, v in self.rows(OP_CATEGORIES).items()},
            "patterns": {k: v.to_dict() for k, v in self.rows(("pattern",)).items()},
            "models": self.models(),
            "checks": {c: [_brief(r) for r in self.results if r.category == c]
                       for c in CHECK_CATEGORIES},
            "notes": self.notes,
            "tests": [asdict(r) for r in self.results],
        }

    def render(self) -> str:
        """The summary table printed at the end of a run."""
        meta = self.metadata
        lines = [f"target {self.target} {meta.get('version', '')} "
                 f"({meta.get('vendor') or 'no vendor'}): byoc {meta.get('byoc_version', '?')}, "
                 f"onnxruntime {meta.get('onnxruntime', '?')}", ""]
        lines += _table("ops", self.rows(OP_CATEGORIES))
        lines += _table("patterns", self.rows(("pattern",)))
        models = self.models()
        if models:
            lines.append(f"{'models':<28}{'result':<10}{'offloaded':>22}{'max error':>12}")
            for name, m in models.items():
                where = (f"{m['offloaded_nodes']}/{m['nodes']} nodes ({m['offloaded_share']:.0%})"
                         if m["offloaded_share"] is not None else "-")
                lines.append(f"  {name:<26}{m['outcome']:<10}{where:>22}"
                             f"{_error(m['max_error']):>12}")
            lines.append("")
        for category in CHECK_CATEGORIES:
            found = [r for r in self.results if r.category == category]
            if found:
                counts = Counter(r.outcome for r in found)
                lines.append(f"  {category:<26}" + ", ".join(
                    f"{counts[o]} {o}" for o in OUTCOMES if counts[o]))
        problems = [r for r in self.results if r.outcome in ("failed", "error")]
        if problems:
            lines += ["", "failures:"]
            lines += [f"  {r.id}: {_one_line(r.message)}" for r in problems]
        xpassed = [r for r in self.results if r.outcome == "xpassed"]
        if xpassed:
            lines += ["", "expected to fail but passed (remove them from the xfail file):"]
            lines += [f"  {r.id}" for r in xpassed]
        if self.notes:
            lines += ["", *(f"note: {n}" for n in self.notes)]
        totals = self.totals
        verdict = "CONFORMANT" if self.conformant else "NOT CONFORMANT"
        lines += ["", f"{verdict}: " + ", ".join(f"{totals[o]} {o}" for o in OUTCOMES
                                                  if totals[o])]
        return "\n".join(lines)


def _table(title: str, rows: dict[str, Row]) -> list[str]:
    if not rows:
        return []
    width = max(26, *(len(s) + 2 for s in rows))
    lines = [f"{title:<{width + 2}}{'passed':>7}{'failed':>7}{'xfail':>7}{'skipped':>8}"
             f"{'max error':>12}"]
    for subject, row in rows.items():
        c = row.counts
        lines.append(f"  {subject:<{width}}{c['passed'] + c['xpassed']:>7}"
                     f"{c['failed'] + c['error']:>7}{c['xfailed']:>7}{c['skipped']:>8}"
                     f"{_error(row.max_error):>12}")
    return [*lines, ""]


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 220 else line[:217] + "..."


def _brief(result: Result) -> dict[str, Any]:
    return {"id": result.id, "outcome": result.outcome,
            "message": result.message or result.detail}


def metadata(target_name: str) -> dict[str, Any]:
    """What the report says about the target and the tools it ran with."""
    import onnx
    import onnxruntime

    from byoc_sdk import __version__

    meta: dict[str, Any] = {"byoc_version": __version__, "onnx": onnx.__version__,
                            "onnxruntime": onnxruntime.__version__}
    try:
        from byoc_sdk.registry import get_target

        target = get_target(target_name)
    except Exception:  # the registration tests report why it did not load
        return meta
    return {"version": target.version, "vendor": target.vendor,
            "description": target.description, "codegen": target.codegen is not None, **meta}


def write_json(reports: list[ConformanceReport], path: Path) -> None:
    """One target's report as an object; several as {"targets": [...]}."""
    data: Any = reports[0].to_dict() if len(reports) == 1 else {
        "targets": [r.to_dict() for r in reports]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(data), indent=1, default=str, allow_nan=False))


def _finite(data: Any) -> Any:
    """``data`` with infinite and NaN numbers (a NaN output's error is infinite) as the
    strings "inf", "-inf" and "nan": JSON has no such numbers, and strict readers (a CI
    dashboard's JavaScript) refuse Python's ``Infinity``."""
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data
