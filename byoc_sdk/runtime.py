"""Running a compiled model: a schedule of steps over a table of values.

External steps call compiled modules (through the native core) or vendor runtimes;
host steps run onnxruntime sessions made once at load time. Each ``run`` keeps its own
value table, so one model can run from several threads at once; values are dropped
after their last reader. A failing step raises :class:`StepError` naming the step, the
region and the target, and leaves the model ready to run again.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byoc_sdk.codegen import TensorSpec
from byoc_sdk.errors import ByocError, describe_exception

Runner = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


class StepError(ByocError):
    """A step failed while running."""


class InputError(ByocError):
    """The feeds do not match the model's inputs."""


@dataclass
class Step:
    """One unit of the schedule. ``target`` is "host" for onnxruntime steps."""

    index: int
    kind: str
    name: str
    target: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    runner: Runner = field(repr=False)
    stats: Callable[[], Mapping[str, Any]] | None = field(default=None, repr=False)
    drop_after: tuple[str, ...] = ()


class Profile:
    """Timing events of runs, exportable as a Chrome trace (chrome://tracing, Perfetto)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._origin = time.perf_counter_ns()

    def record(self, step: Step, start_ns: int, end_ns: int, run: int) -> None:
        args: dict[str, Any] = {"step": step.index, "run": run, "kind": step.kind}
        if step.stats is not None:
            args.update(step.stats())
        event = {
            "name": step.name, "cat": step.target, "ph": "X", "pid": 0,
            "tid": threading.get_ident() % 100_000,
            "ts": (start_ns - self._origin) / 1000, "dur": (end_ns - start_ns) / 1000,
            "args": args,
        }
        with self._lock:
            self.events.append(event)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per target: number of step executions and total milliseconds."""
        totals: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "ms": 0.0})
        for event in self.events:
            row = totals[event["cat"]]
            row["calls"] += 1
            row["ms"] += event["dur"] / 1000
        return dict(totals)

    def region_stats(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Per region: its target and the statistics its runtime reported for its last
        run (cycles, bytes moved...), for regions whose runtime reports any."""
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for event in self.events:
            stats = {k: v for k, v in event["args"].items() if k not in _EVENT_KEYS}
            if stats:
                found[event["name"]] = (event["cat"], stats)
        return found

    def render_summary(self) -> str:
        rows = self.summary()
        total = sum(r["ms"] for r in rows.values()) or 1.0
        lines = [f"{'target':<12}{'steps run':>10}{'time ms':>12}{'share':>8}"]
        for target, row in sorted(rows.items(), key=lambda kv: -kv[1]["ms"]):
            lines.append(f"{target:<12}{int(row['calls']):>10}{row['ms']:>12.3f}"
                         f"{row['ms'] / total:>8.1%}")
        stats = self.region_stats()
        if stats:
            lines.append("")
            lines.append("runtime statistics (last run of each region):")
            for region, (target, values) in stats.items():
                lines.extend(_wrap(f"  {region} ({target}):", [
                    f"{key} {_number(value)}" for key, value in values.items()
                ]))
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"traceEvents": self.events, "displayTimeUnit": "ms"}))


class CompiledModel:
    """A partitioned model with its regions compiled: ``run(feeds) -> outputs``.

    Made by :func:`byoc_sdk.build` or :meth:`load`; ``save`` writes a package.
    """

    def __init__(
        self,
        steps: list[Step],
        inputs: Sequence[TensorSpec],
        outputs: Sequence[str],
        constants: Mapping[str, np.ndarray],
        package: Any,
    ) -> None:
        self.steps = steps
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.constants = dict(constants)
        self.package = package  # byoc_sdk.package.PackageContents: what save() writes
        self._runs = 0
        self._input_names = {spec.name for spec in self.inputs}
        self._input_checks = [(s.name, s.numpy_dtype, s.shape) for s in self.inputs]
        _plan_drops(self.steps, self.outputs)

    @property
    def report(self):
        """The build report: the partition report plus each region's build outcome."""
        return self.package.report

    def run(
        self, feeds: Mapping[str, np.ndarray], *, profile: Profile | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (input name -> array); outputs by name."""
        values = self._check_feeds(feeds)
        if self.constants:
            values.update(self.constants)
        self._runs += 1
        run = self._runs
        for step in self.steps:
            args = [values[name] for name in step.inputs]
            start = time.perf_counter_ns() if profile is not None else 0
            try:
                results = step.runner(args)
            except Exception as exc:  # a module or vendor runtime can fail in any way
                raise StepError(
                    f"step {step.index} ({step.kind}) failed: {describe_exception(exc)}",
                    target=step.target, region=step.name,
                ) from exc
            if profile is not None:
                profile.record(step, start, time.perf_counter_ns(), run)
            if len(results) != len(step.outputs):
                raise StepError(
                    f"step {step.index} returned {len(results)} outputs, expected "
                    f"{len(step.outputs)}", target=step.target, region=step.name,
                )
            values.update(zip(step.outputs, results, strict=True))
            for name in step.drop_after:
                del values[name]
        return {name: values[name] for name in self.outputs}

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds as a fresh value table, after checking names, dtypes and shapes.

        This runs on every call, so the common case (right names, arrays of the right
        dtype and shape) takes a handful of comparisons.
        """
        if feeds.keys() != self._input_names:
            expected = sorted(self._input_names)
            missing = sorted(self._input_names - feeds.keys())
            extra = sorted(feeds.keys() - self._input_names)
            parts = [f"missing inputs {missing}"] if missing else []
            parts += [f"unknown inputs {extra}"] if extra else []
            raise InputError("; ".join(parts) + f" (the model takes {expected})")
        values = {}
        for name, dtype, shape in self._input_checks:
            array = feeds[name]
            if type(array) is not np.ndarray:
                array = np.asarray(array)
            if array.dtype != dtype or array.shape != shape:
                self._refuse(name, array)
            values[name] = array
        return values

    def _refuse(self, name: str, array: np.ndarray) -> None:
        """Raise for a feed of the wrong dtype or shape, unless only dynamic dims differ."""
        spec = next(s for s in self.inputs if s.name == name)
        fits = len(array.shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        )
        if array.dtype != spec.numpy_dtype or not fits:
            raise InputError(
                f"input '{name}' is {array.dtype}{tuple(array.shape)}, "
                f"expected {spec.dtype}{spec.shape}"
            )

    def save(self, path: str | Path) -> Path:
        """Write the package (a ``.byoc`` file); see :mod:`byoc_sdk.package`."""
        from byoc_sdk.package import save_package

        return save_package(self.package, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, host_threads: int = 0) -> CompiledModel:
        """Load a package written by :meth:`save`, checking every checksum.

        ``host_threads`` sets onnxruntime's threads for host steps (0: one per core).
        """
        from byoc_sdk.package import load_package

        return load_package(Path(path), host_threads)


#: Event arguments byoc sets itself; everything else came from a runtime's stats().
_EVENT_KEYS = frozenset({"step", "run", "kind"})


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _wrap(head: str, items: list[str], width: int = 96) -> list[str]:
    """``head`` then ``items``, two spaces apart, in lines of at most ``width``."""
    lines, line = [], head
    for item in items:
        if len(line) + 2 + len(item) > width and line.strip():
            lines.append(line)
            line = "     "
        line += "  " + item
    lines.append(line)
    return lines



def _plan_drops(steps: list[Step], outputs: Sequence[str]) -> None:
    """After which step each intermediate value has no reader left."""
    keep = set(outputs)
    last: dict[str, int] = {}
    for step in steps:
        for name in step.inputs:
            last[name] = step.index
    produced = {name for step in steps for name in step.outputs}
    by_step: dict[int, list[str]] = defaultdict(list)
    for name, index in last.items():
        if name in produced and name not in keep:
            by_step[index].append(name)
    for step in steps:
        step.drop_after = tuple(by_step.get(step.index, ()))
