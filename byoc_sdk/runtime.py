"""Running a compiled model: a schedule of steps over a table of values.

External steps call compiled modules (through the native core) or vendor runtimes;
host steps run onnxruntime sessions made once at load time. Values that pass between
steps with static shapes live in planned buffers (:mod:`byoc_sdk.memory_plan`), and the
steps that can write into a given buffer — compiled modules and host sessions — are
bound to them once, in a *frame*; each ``run`` takes a frame of its own from a pool, so
one model can run from several threads at once. Everything else (feeds, graph outputs,
vendor runtimes' results) goes through a per-run table, dropped after its last reader.
A failing step raises :class:`StepError` naming the step, the region and the target,
and leaves the model ready to run again.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from byoc_sdk.codegen import TensorSpec
from byoc_sdk.errors import ByocError, describe_exception
from byoc_sdk.memory_plan import MemoryPlan, ValueSpec, plan_memory

Runner = Callable[[list[np.ndarray]], Sequence[np.ndarray]]
#: A step bound to one frame: it reads the run's values it was not bound to from the
#: table, and puts the outputs it was not bound to there.
BoundCall = Callable[[dict[str, np.ndarray]], None]
#: Binds a step to fixed arrays, one per input and one per output; ``None`` marks those
#: that change from run to run.
Binder = Callable[[Sequence[np.ndarray | None], Sequence[np.ndarray | None]], BoundCall]


class StepError(ByocError):
    """A step failed while running."""


class InputError(ByocError):
    """The feeds do not match the model's inputs."""


@dataclass
class Step:
    """One unit of the schedule. ``target`` is "host" for onnxruntime steps.

    ``runner`` returns fresh outputs. A step that can write into buffers it is given has
    ``bind`` as well, and ``output_specs`` then gives every output's static dtype and shape.
    """

    index: int
    kind: str
    name: str
    target: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    runner: Runner = field(repr=False)
    stats: Callable[[], Mapping[str, Any]] | None = field(default=None, repr=False)
    bind: Binder | None = field(default=None, repr=False)
    output_specs: tuple[ValueSpec, ...] = field(default=(), repr=False)
    drop_after: tuple[str, ...] = ()

    def bound(self, arrays: Mapping[str, np.ndarray]) -> BoundCall:
        """This step's call in a frame whose fixed arrays are ``arrays``."""
        if self.bind is not None:
            return self.bind([arrays.get(name) for name in self.inputs],
                             [arrays.get(name) for name in self.outputs])
        runner, inputs, outputs = self.runner, self.inputs, self.outputs
        # A runtime may hand back an input, or a view of one, as an output (a valid zero
        # copy); read from a frame's buffer, that would be overwritten by a later step or
        # run, so such results are copied.
        fixed = [i for i, name in enumerate(inputs) if name in arrays]

        def call(values: dict[str, np.ndarray]) -> None:
            args = [values[name] for name in inputs]
            results = runner(args)
            if len(results) != len(outputs):
                raise StepError(f"step {self.index} returned {len(results)} outputs, "
                                f"expected {len(outputs)}", target=self.target, region=self.name)
            if fixed:
                results = [_unshared(result, args, fixed) for result in results]
            values.update(zip(outputs, results, strict=True))

        return call


def _unshared(result: np.ndarray, args: list[np.ndarray], fixed: list[int]) -> np.ndarray:
    """``result``, or a copy of it if it may share memory with one of ``args[fixed]``."""
    if isinstance(result, np.ndarray) and any(
        np.may_share_memory(result, args[i]) for i in fixed
    ):
        return result.copy()
    return result


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
        self._run_numbers = itertools.count(1)
        self._input_names = {spec.name for spec in self.inputs}
        self._input_checks = [_input_check(spec) for spec in self.inputs]
        self._same_sizes = _same_sizes(self.inputs, package.model)
        # Graph outputs that no step makes, the caller's to keep and to change: constants
        # (shared by every run) and inputs passed straight through (the caller's own feed).
        self._constant_outputs = [name for name in dict.fromkeys(self.outputs)
                                  if name in self.constants or name in self._input_names]
        self.memory_plan = _plan_buffers(self.steps, self.outputs)
        self._frames: list[_Frame] = []
        _plan_drops(self.steps, self.outputs, self.memory_plan)

    @property
    def report(self):
        """The build report: the partition report plus each region's build outcome."""
        return self.package.report

    def run(
        self, feeds: Mapping[str, np.ndarray], *, profile: Profile | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (input name -> array); outputs by name."""
        checked = self._check_feeds(feeds)
        run = next(self._run_numbers)  # atomic, unlike += 1
        try:  # list.pop and append are atomic: each frame serves one run at a time
            frame = self._frames.pop()
        except IndexError:
            frame = _Frame(self)
        values = dict(frame.values)
        values.update(checked)
        position = 0
        try:
            for position, call in enumerate(frame.calls):
                if profile is None:
                    call(values)
                else:
                    start = time.perf_counter_ns()
                    call(values)
                    profile.record(self.steps[position], start, time.perf_counter_ns(), run)
        except StepError:
            raise
        except Exception as exc:  # a module or vendor runtime can fail in any way
            step = self.steps[position]
            raise StepError(
                f"step {step.index} ({step.kind}) failed: {describe_exception(exc)}",
                target=step.target, region=step.name,
            ) from exc
        # Only after a run that went through: a failed step may leave a frame half bound.
        self._frames.append(frame)
        outputs = {name: values[name] for name in self.outputs}
        for name in self._constant_outputs:  # fresh arrays, as for every other output
            outputs[name] = outputs[name].copy()
        return outputs

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds as a fresh value table, after checking names, dtypes and shapes, and
        that the dimensions one symbol names have one size.

        This runs on every call, so the common case (right names, arrays of the right
        dtype and shape, whatever sizes they give dynamic dimensions) takes a handful of
        comparisons.
        """
        if feeds.keys() != self._input_names:
            expected = sorted(self._input_names)
            missing = sorted(self._input_names - feeds.keys())
            extra = sorted(feeds.keys() - self._input_names)
            parts = [f"missing inputs {missing}"] if missing else []
            parts += [f"unknown inputs {extra}"] if extra else []
            raise InputError("; ".join(parts) + f" (the model takes {expected})")
        values = {}
        for name, dtype, shape, rank, fixed, sizes in self._input_checks:
            array = feeds[name]
            if type(array) is not np.ndarray:
                array = np.asarray(array)
            got = array.shape
            # A static shape takes one comparison; a dynamic one never equals its spec
            # (the -1s), so its rank and the sizes of its fixed dimensions decide.
            if array.dtype != dtype or (
                got != shape and (len(got) != rank or fixed(got) != sizes)
            ):
                array = self._admit(name, array)
            if not array.flags.c_contiguous:  # steps bind feeds by their data pointer
                array = np.ascontiguousarray(array)
            values[name] = array
        if self._same_sizes:  # static inputs have none: then this is one test per run
            for check in self._same_sizes:
                name, axis, first, first_axis, _ = check
                if values[name].shape[axis] != values[first].shape[first_axis]:
                    raise _not_same_size(check, values)
        return values

    def _admit(self, name: str, array: np.ndarray) -> np.ndarray:
        """A feed off the fast path: fine only if it holds strings as numpy's
        fixed-width ``str`` (made an object array, as onnxruntime takes them) in a shape
        that fits; anything else raises."""
        spec = next(s for s in self.inputs if s.name == name)
        fits = len(array.shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        )
        if spec.dtype == "string" and array.dtype.kind == "U":
            array = array.astype(object)
        if array.dtype != spec.numpy_dtype or not fits:
            raise InputError(
                f"input '{name}' is {array.dtype}{tuple(array.shape)}, "
                f"expected {spec.dtype}{spec.shape}"
            )
        return array

    def save(self, path: str | Path) -> Path:
        """Write the package (a ``.byoc`` file); see :mod:`byoc_sdk.package`."""
        from byoc_sdk.package import save_package

        return save_package(self.package, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, host_threads: int = 0) -> CompiledModel:
        """Load a package written by :meth:`save`, checking every checksum.

        ``host_threads`` sets onnxruntime's intra-op threads for each host step; 0 shares
        the available CPUs out among the host steps, at least one each (one host step
        gets onnxruntime's default, one per physical core).
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


#: name, dtype, shape, rank, fixed, sizes: see :func:`_input_check`.
_InputCheck = tuple[str, np.dtype, tuple[int, ...], int, Callable[[tuple[int, ...]], Any], Any]


def _input_check(spec: TensorSpec) -> _InputCheck:
    """What a feed for ``spec`` must be for :meth:`CompiledModel._check_feeds` to take it
    as it is: of the spec's dtype, and of its shape, or of its rank with
    ``fixed(feed.shape) == sizes`` (the sizes of the dimensions that are not -1).

    A plain tuple, not a NamedTuple: the check unpacks it on every run, and unpacking a
    tuple subclass takes CPython's slow path (measured: 35 ns more per input).
    """
    shape = tuple(spec.shape)
    axes = [axis for axis, size in enumerate(shape) if size != -1]
    # itemgetter is the cheapest pick of several items of a tuple; it returns one size
    # for one axis and a tuple for more, so ``sizes`` is what it returns for the spec
    # itself. With no fixed dimension, the empty slice gives () for every shape.
    fixed = itemgetter(*axes) if axes else itemgetter(slice(0, 0))
    return spec.name, spec.numpy_dtype, shape, len(shape), fixed, fixed(shape)


class _SameSize(NamedTuple):
    """Input dimension ``axis`` of ``name`` must have the size of ``first_axis`` of
    ``first``: the model names both ``symbol`` (``N`` in ``x: [N, 4], y: [N, 4]``)."""

    name: str
    axis: int
    first: str
    first_axis: int
    symbol: str


def _same_sizes(inputs: Sequence[TensorSpec], model: Any) -> tuple[_SameSize, ...]:
    """What a feed must hold to one size: each dynamic dimension of ``inputs`` whose
    symbol an earlier one has, against the first one that has it.

    The symbols come from ``model`` (the partitioned ``onnx.ModelProto``, a package's
    checksummed model.onnx): a TensorSpec, and so the manifest, keeps -1 for a symbolic
    dimension. Loading a package has held the manifest's -1s against model.onnx's
    symbols already (``_check_interface``), so a symbol names only -1 dimensions.
    """
    declared = {info.name: info.type.tensor_type.shape.dim for info in model.graph.input}
    firsts: dict[str, tuple[str, int]] = {}
    checks = []
    for spec in inputs:
        # An input model.onnx declares without a shape has no dimension to name.
        for axis, (size, dim) in enumerate(zip(spec.shape, declared.get(spec.name, ()),
                                               strict=False)):
            if size != -1 or not dim.dim_param:
                continue
            first = firsts.setdefault(dim.dim_param, (spec.name, axis))
            if first != (spec.name, axis):
                checks.append(_SameSize(spec.name, axis, *first, dim.dim_param))
    return tuple(checks)


def _not_same_size(check: _SameSize, values: Mapping[str, np.ndarray]) -> InputError:
    name, axis, first, first_axis, symbol = check
    return InputError(
        f"input '{name}' has size {values[name].shape[axis]} in dimension {axis} (symbol "
        f"'{symbol}'), but input '{first}' has size {values[first].shape[first_axis]} in "
        f"dimension {first_axis} (also '{symbol}'): every dimension named '{symbol}' must "
        "have one size"
    )


class _Frame:
    """One run's working memory: the planned buffers, and every step bound to them."""

    def __init__(self, model: CompiledModel) -> None:
        fixed = {**model.memory_plan.allocate(), **model.constants}
        self.values = fixed  # the table each run starts from
        self.calls = [_dropping(_bind(step, fixed), step.drop_after) for step in model.steps]


def _bind(step: Step, fixed: Mapping[str, np.ndarray]) -> BoundCall:
    """``step`` bound to a frame's arrays; a refusal names the step."""
    try:
        return step.bound(fixed)
    except Exception as exc:  # the native core or onnxruntime refused a buffer
        raise StepError(f"step {step.index} ({step.kind}) could not be bound to its buffers: "
                        f"{describe_exception(exc)}", target=step.target,
                        region=step.name) from exc


def _dropping(call: BoundCall, names: tuple[str, ...]) -> BoundCall:
    """``call``, then the per-run values it was the last reader of are let go."""
    if not names:
        return call

    def call_and_drop(values: dict[str, np.ndarray]) -> None:
        call(values)
        for name in names:
            del values[name]

    return call_and_drop


def _plan_buffers(steps: list[Step], outputs: Sequence[str]) -> MemoryPlan:
    """Buffers for the values bound steps write, except graph outputs (each run hands
    those to its caller, so they are fresh arrays)."""
    keep = set(outputs)
    specs = {
        name: spec
        for step in steps if step.bind is not None
        for name, spec in zip(step.outputs, step.output_specs, strict=True)
        if name not in keep
    }
    return plan_memory([(step.inputs, step.outputs) for step in steps], specs)


def _plan_drops(steps: list[Step], outputs: Sequence[str], memory: MemoryPlan) -> None:
    """After which step each per-run intermediate value has no reader left."""
    keep = set(outputs) | memory.placement.keys()
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
