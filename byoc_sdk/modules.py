"""Turning build results into runners: compiled modules, vendor runtimes, host sessions.

Shared by the build (which has just compiled) and the package loader (which has just
verified the files), so a model runs the same way either way.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from byoc_sdk.codegen import Binary, CSource, JsonGraph
from byoc_sdk.errors import (
    ByocError,
    ModuleError,
    OnnxRuntimeError,
    describe_exception,
    onnxruntime_reason,
)
from byoc_sdk.memory_plan import ValueSpec
from byoc_sdk.runtime import BoundCall, Runner, StepError
from byoc_sdk.vendor_runtime import RegionSignature, RuntimeNotFoundError, get_runtime


def native_runner(
    library: str, artifact: CSource, signature: RegionSignature, constants: Sequence[np.ndarray]
) -> Runner:
    """Load a compiled module and bind its entry function (no Python between calls)."""
    from byoc_sdk import _native

    module = _native.Library(library)
    function = _native.Function(
        module, artifact.entry,
        [(spec.numpy_dtype, spec.shape) for spec in signature.inputs],
        [(spec.numpy_dtype, spec.shape) for spec in signature.outputs],
    )
    if function.has_init:
        function.init(list(constants))
    elif artifact.constants:
        # The entry would read constant pointers nobody set: a crash of the whole process
        # at the first run, rather than a region that falls back at load.
        count = len(artifact.constants)
        raise ModuleError(f"the artifact declares {count} constant{'s' if count > 1 else ''} "
                          f"but its module exports no {artifact.entry}_init")
    return function


def load_failure(exc: Exception) -> str:
    """Why a region's module or vendor runtime did not load, for a report or an error
    line; byoc's own errors say it in their words, anything else names its type."""
    reason = exc.reason if isinstance(exc, ByocError) else describe_exception(exc)
    return f"module failed to load: {reason}"


def bind_native(function, inputs: Sequence[str], outputs: Sequence[str]):
    """The binder of a compiled module's step: the native core checks the frame's arrays
    once, and each call reads the unbound inputs from the run's values by name and puts
    fresh arrays for the unbound outputs there (no Python between the two)."""

    def bind(fixed_in: Sequence[np.ndarray | None],
             fixed_out: Sequence[np.ndarray | None]) -> BoundCall:
        return function.bind(list(fixed_in), list(fixed_out), list(inputs), list(outputs))

    return bind


class NativeStats:
    """A compiled module's ``<entry>_stats`` counters, as a profile reads them."""

    def __init__(self, function) -> None:
        self._function = function

    def stats(self) -> Mapping[str, Any]:
        return json.loads(self._function.stats())


def vendor_runner(
    artifact: JsonGraph | Binary,
    signature: RegionSignature,
    constants: Mapping[str, np.ndarray],
) -> tuple[Runner, Any]:
    """Instantiate the artifact's vendor runtime; calls are serialised unless it is
    thread-safe. Returns the runner and the runtime instance (for its stats)."""
    runtime = get_runtime(artifact.runtime)(artifact, constants, signature)
    checked = _checked_results(artifact.runtime, signature)
    if runtime.thread_safe:
        return (lambda inputs: checked(runtime.run(inputs))), runtime
    lock = threading.Lock()

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        with lock:
            results = runtime.run(inputs)
        return checked(results)

    return run, runtime


def _checked_results(runtime: str, signature: RegionSignature):
    """A check of a vendor runtime's results against its region's signature: numpy arrays
    of the declared dtypes and shapes. The next step (or the caller, for a graph output)
    would otherwise get whatever came back: a wrong dtype or shape fails later in a step
    that did nothing wrong, or reaches the caller as a silently wrong output."""
    wanted = [(spec.name, spec.numpy_dtype, tuple(spec.shape)) for spec in signature.outputs]

    def check(results) -> list[np.ndarray]:
        if isinstance(results, np.ndarray | np.generic):
            # Taken as a sequence, an array would pass as its rows: "returned 2 outputs"
            # for a (2, 3) result, or a wrong shape for a (1, 3) one.
            raise StepError(f"vendor runtime '{runtime}' returned an array "
                            f"({results.dtype}{tuple(results.shape)}), not a list of arrays "
                            f"(one per output, {len(wanted)} expected)",
                            target=signature.target, region=signature.region)
        results = list(results)
        if len(results) != len(wanted):
            raise StepError(f"vendor runtime '{runtime}' returned {len(results)} outputs, "
                            f"expected {len(wanted)}", target=signature.target,
                            region=signature.region)
        for i, (result, (name, dtype, shape)) in enumerate(zip(results, wanted, strict=True)):
            if isinstance(result, np.generic):  # a reduction's numpy scalar: a 0-d array
                results[i] = result = np.asarray(result)
            if dtype.kind == "O" and isinstance(result, np.ndarray) and result.dtype.kind == "U":
                results[i] = result = result.astype(object)  # strings, as onnxruntime has them
            if (not isinstance(result, np.ndarray) or result.dtype != dtype
                    or result.shape != shape):
                got = (f"{result.dtype}{tuple(result.shape)}" if isinstance(result, np.ndarray)
                       else f"a {type(result).__name__}")
                raise StepError(f"vendor runtime '{runtime}' returned output {i} ('{name}') as "
                                f"{got}, expected {dtype}{shape}", target=signature.target,
                                region=signature.region)
        return results

    return check


#: onnxruntime's log severity for the sessions byoc makes: fatal only (4). Whatever goes
#: wrong in one also raises, and byoc reports that itself in one line naming the step;
#: ERROR lines would repeat it, unasked, before byoc's own, and WARNING lines would be
#: about the sub-models byoc cuts out for host steps, which the user never wrote.
SESSION_LOG_SEVERITY = 4


def session_options(threads: int = 0, spin: bool = False):
    """onnxruntime session options for every session byoc makes: ``threads`` intra-op
    threads (0: onnxruntime's default), idle threads that sleep unless ``spin``, and
    logging left to byoc's own errors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = SESSION_LOG_SEVERITY
    return options


@dataclass(frozen=True)
class HostThreading:
    """How each of a model's host sessions runs its kernels: ``threads`` intra-op threads
    (0: onnxruntime's default, one per physical core), and whether idle ones ``spin``."""

    threads: int
    spin: bool


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset and cgroup
    cpusets narrow), or all of the machine's where the platform cannot say."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def host_threading(requested: int, host_steps: int) -> HostThreading:
    """The threading of each of a model's ``host_steps`` onnxruntime sessions.

    Every session has a pool of its own (threads - 1 workers, the caller being the
    last), and onnxruntime's default of one thread per core for each made cores x steps
    threads: 885 for 59 host steps at 16 a session, and a model of thousands of steps
    could exhaust the process's thread limit at load. And a pool's threads spin for a
    while after each run; host steps come every few steps, so with several pools they
    never stop: 18 host steps on 2 CPUs burned 630 ms of CPU per 70 ms run in spinning
    threads, taking the cores from the main thread and from the modules between the
    steps (onnxruntime's shared global pool would bound the threads, but from Python it
    always spins). So with several host steps, idle threads sleep, and ``requested`` 0
    shares the available CPUs out among the sessions, at least one each.

    A model of one host step keeps onnxruntime's defaults, spinning included: its one
    pool competes with no other, and sleeping made a host-only model 15 to 35% slower
    (a wake-up for each parallel kernel). ``requested`` > 0 is taken as it is.
    """
    if requested < 0:
        raise ValueError(f"host_threads must be 0 (shared out automatically) or a "
                         f"positive count of threads per host step, not {requested}")
    if host_steps <= 1:
        return HostThreading(requested, spin=True)
    return HostThreading(requested or max(1, available_cpus() // host_steps), spin=False)


class HostSession:
    """An onnxruntime session over one host step's model, made once.

    Called with a list of arrays, it returns numpy arrays over the buffers onnxruntime
    allocated (not copies), taken from the shared arena (see :func:`_shared_cpu_arena`).
    When every output has a static shape it can also be bound to a frame's buffers
    (:meth:`bind`): an IOBinding made once per frame, so a run passes no arrays at all.
    A failing run raises :class:`~byoc_sdk.errors.OnnxRuntimeError` with onnxruntime's
    reason in one line; the runtime's ``StepError`` adds the step, region and target.
    """

    def __init__(self, model: onnx.ModelProto, inputs: Sequence[str],
                 pool: HostThreading = HostThreading(0, spin=True)) -> None:
        import onnxruntime as ort

        options = session_options(pool.threads, pool.spin)
        # The sub-models are small and made on load: full optimisation pays back at run
        # time.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # DequantizeLinear(constant weight) -> MatMul becomes MatMulNBits, by default at
        # accuracy level 4, which quantizes the activations to int8 too (~1e-2 off). Whether
        # onnxruntime fuses depends on the nodes around the pair (a whole model of the same
        # optimization level often keeps the exact MatMul, while the pair cut out into a
        # host step fuses), so a step would differ from onnxruntime on the original model.
        # Level 1 computes in float32: as exact as DequantizeLinear -> MatMul, and unlike
        # "session.disable_quant_qdq" it keeps the packed weights and the other QDQ
        # fusions, so steps run as fast and as the whole model's session does.
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
        # A memory pattern gives each run one block sized for all of the step's
        # intermediate values; without it they come one by one from the shared arena,
        # which hands back the chunks the previous step has just freed, still in cache
        # (measured: 1.13x -> 1.11x on a model cut into 22 host steps).
        options.enable_mem_pattern = False
        if _shared_cpu_arena():
            options.add_session_config_entry("session.use_env_allocators", "1")
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = tuple(inputs)
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        self.output_specs = _static_specs(model.graph.output)

    def __call__(self, args: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(self.outputs, dict(zip(self.inputs, args, strict=True)))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise _run_failed(exc) from exc

    def bind(self, fixed_in: Sequence[np.ndarray | None],
             fixed_out: Sequence[np.ndarray | None]) -> BoundCall:
        """A call that writes into ``fixed_out`` and reads ``fixed_in``, except for the
        ``None`` inputs, which it binds to the run's arrays each time."""
        binding = self.session.io_binding()
        late = []
        for name, array in zip(self.inputs, fixed_in, strict=True):
            if array is None:
                late.append(name)
            else:  # bound by its data pointer: the layout must be the plain one
                if not (array.flags.c_contiguous and array.dtype.isnative):
                    raise ValueError(f"input '{name}' must be a C-contiguous array of "
                                     "native byte order to be bound")
                binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        for name, array in zip(self.outputs, fixed_out, strict=True):
            binding.bind_output(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        run = self.session.run_with_iobinding

        def call(values: dict[str, np.ndarray]) -> None:
            try:
                for name in late:
                    binding.bind_cpu_input(name, values[name])
                run(binding)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise _run_failed(exc) from exc

        return call


#: What onnxruntime's IOBinding run puts in front of a failed status, where its plain run
#: puts the status prefix that ``onnxruntime_reason`` drops.
_IOBINDING_PREFIX = "Error in execution: "


def _run_failed(exc: Exception) -> OnnxRuntimeError:
    """onnxruntime's failure in a host step, bound or not, in one line: without its status
    prefix and C++ source location, which say nothing to the model's user (``--debug``
    shows them, in the traceback of the cause)."""
    return OnnxRuntimeError(onnxruntime_reason(exc).removeprefix(_IOBINDING_PREFIX))


def _static_specs(infos) -> tuple[ValueSpec, ...] | None:
    """The dtype and shape of each value, or ``None`` unless every one is a tensor of
    static shape and of a plain numeric or bool type: strings are numpy objects, which no
    byte buffer can hold, and onnxruntime binds no buffer of ml_dtypes' bfloat16 or
    float8 types."""
    specs = []
    for info in infos:
        tensor = info.type.tensor_type
        dims = tensor.shape.dim if info.type.HasField("tensor_type") else ()
        if not info.type.HasField("tensor_type") or not tensor.HasField("shape") or any(
            not d.HasField("dim_value") for d in dims
        ):
            return None
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        if dtype.kind not in "biuf":
            return None
        specs.append(ValueSpec(dtype, tuple(d.dim_value for d in dims)))
    return tuple(specs)


@functools.cache
def _shared_cpu_arena() -> bool:
    """Register one CPU arena for all host sessions of this process (once).

    With a session per host step, separate arenas spread intermediate buffers over more
    memory than one session would touch; a shared arena reuses the same, cache-warm
    chunks (measured: 1.18x -> 1.13x on a model cut into 22 host steps).
    """
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                             ort.OrtMemType.DEFAULT)
    try:
        ort.create_and_register_allocator(info, None)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        # Another user of this process registered one already: sharing it is fine.
        return "already" in str(exc).lower()
    return True


def region_runner(region, store: Mapping[str, np.ndarray]) -> tuple[Runner, Any]:
    """The runner of a compiled region (a :class:`~byoc_sdk.package.RegionBuild`), and
    the object whose ``stats()`` a profile shows (or ``None``)."""
    artifact = region.artifact
    named = {name: store[sha] for name, sha in region.constants.items()}
    if isinstance(artifact, CSource):
        if region.library is None:
            from byoc_sdk.toolchain import CompileJob, Toolchain

            # Built on another platform: rebuild from the sources kept in the package.
            region.library = Toolchain().compile(CompileJob(region.name, region.target, artifact))
        init = [named[name] for name in artifact.constants]
        function = native_runner(str(region.library), artifact, region.signature, init)
        return function, (NativeStats(function) if function.has_stats else None)
    listed = {name: named[name] for name in artifact.constants}
    runner, runtime = vendor_runner(artifact, region.signature, listed)
    return runner, runtime


def assemble(
    contents,
    source: str | None = None,
    runners: Mapping[str, tuple] | None = None,
    host_threads: int = 0,
    model=None,
):
    """A :class:`~byoc_sdk.runtime.CompiledModel` from build results (fresh or loaded).

    ``source`` is the package file errors name (``None`` for a fresh build).
    ``runners`` are regions' runners made already (by the build, which loads each
    module to check it); the others are made here. ``host_threads`` sets onnxruntime's
    intra-op threads for each host step (0: the CPUs shared out among the host steps,
    see :func:`host_threading`). ``model`` is the
    ``onnx_ir`` form of ``contents.model`` when the caller has it (the build does), so it
    is not parsed again.
    """
    import onnx_ir as ir

    from byoc_sdk.bulk import bulk_allocation
    from byoc_sdk.runtime import CompiledModel, Step
    from byoc_sdk.schedule import ModelTables, host_model, plan_steps

    if model is None:
        with bulk_allocation():
            model = ir.from_proto(contents.model)
    compiled = {r.name: r for r in contents.regions if r.status == "compiled"}
    runners = dict(runners or {})
    for name, region in compiled.items():
        if name in runners:
            continue
        try:
            runners[name] = region_runner(region, contents.constants)
        except Exception as exc:  # the native loader or a vendor runtime refused it
            # Typed, so a caller can tell a runtime that is not installed from a module
            # or runtime that is there but refuses its artifact.
            kind = RuntimeNotFoundError if isinstance(exc, RuntimeNotFoundError) else ModuleError
            raise kind(load_failure(exc), file=source, target=region.target,
                       region=name) from exc
    initializers = {t.name for t in contents.model.graph.initializer}
    graph_outputs = set(contents.outputs)
    steps = []
    tables = ModelTables(contents.model)  # once: a model may have thousands of host steps
    plans = plan_steps(model, set(runners))
    pool = host_threading(host_threads, sum(plan.kind == "host" for plan in plans))
    for index, plan in enumerate(plans):
        if plan.kind == "external":
            runner, runtime = runners[plan.name]
            region = compiled[plan.name]
            step = Step(index, plan.kind, plan.name, region.target, plan.inputs, plan.outputs,
                        runner, runtime.stats if runtime is not None else None)
            if isinstance(region.artifact, CSource):  # a native module writes into buffers
                step.output_specs = tuple(ValueSpec(spec.numpy_dtype, spec.shape)
                                          for spec in region.signature.outputs)
                step.bind = bind_native(runner, step.inputs, step.outputs)
        else:
            inputs = tuple(n for n in plan.inputs if n not in initializers)
            try:
                step_model = host_model(contents.model, plan, tables)
            except OnnxRuntimeError as exc:  # a value no step can declare: name the file
                context = exc.context
                raise OnnxRuntimeError(exc.reason, file=source, node=context.node,
                                       target=context.target, region=context.region) from exc
            try:
                session = HostSession(step_model, inputs, pool)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                # The loader's checks are onnx's; onnxruntime may still refuse a model
                # they pass (an attribute value a kernel rejects, a type it has no kernel
                # for). No host can run the step: the model is what needs fixing.
                raise OnnxRuntimeError(
                    f"onnxruntime cannot run host step {plan.name} "
                    f"({_node_names(contents.model, plan.nodes)}): {onnxruntime_reason(exc)}",
                    file=source, target="host", region=plan.name,
                ) from exc
            step = Step(index, plan.kind, plan.name, "host", inputs, plan.outputs, session)
            # A step making graph outputs stays unbound: onnxruntime writes a value into a
            # buffer of its own more cheaply than into a caller's (a final Identity just
            # passes its input on), and each run hands its caller fresh arrays anyway.
            if session.output_specs is not None and graph_outputs.isdisjoint(plan.outputs):
                step.output_specs, step.bind = session.output_specs, session.bind
        steps.append(step)
    constants = {name: contents.constants[sha] for name, sha in contents.step_constants.items()}
    return CompiledModel(steps, contents.inputs, contents.outputs, constants, contents)


def _node_names(model: onnx.ModelProto, positions: Sequence[int], most: int = 3) -> str:
    """The main-graph nodes at ``positions``, for a message: "nodes a, b, c and 4 more"."""
    names = [model.graph.node[i].name or f"#{i}" for i in positions]
    shown = ", ".join(names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"node{'s' if len(names) > 1 else ''} {shown}{more}"
