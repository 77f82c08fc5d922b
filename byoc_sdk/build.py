"""Building: partition a model, generate code for every region, compile, and load.

``build`` is what ``byoc build`` runs. Each region goes to its target's codegen; what
comes back is checked, C/CUDA sources are compiled in parallel, and every module is
loaded once to make sure it works. A region whose codegen raises, returns something
that is not a valid artifact, fails to compile or fails to load falls back to the host
— the partitioned model still holds its ONNX function, which onnxruntime runs — and the
build report says so and why. With ``strict=True`` any fallback is an error instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import onnx_ir as ir

from byoc_sdk.codegen import (
    ARTIFACT_TYPES,
    ArtifactError,
    Constant,
    CSource,
    Region,
    TensorSpec,
    spec_of,
)
from byoc_sdk.content_hash import constant_hash
from byoc_sdk.errors import ByocError, describe_exception, vendor_log
from byoc_sdk.loader import ModelSource, load_model
from byoc_sdk.modules import assemble, load_failure, region_runner
from byoc_sdk.node_info import dtype_name, is_constant
from byoc_sdk.options import merge_options
from byoc_sdk.package import BuildReport, PackageContents, RegionBuild
from byoc_sdk.runtime import CompiledModel
from byoc_sdk.target import Target
from byoc_sdk.toolchain import CompileJob, Toolchain, ToolchainError
from partition.pipeline import Progress, partition_model
from partition.policy import RegionPolicy


class BuildError(ByocError):
    """A strict build had a region that could not be compiled."""


def build(
    model: ir.Model | ModelSource,
    targets: Sequence[Target | str],
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    strict: bool = False,
    policy: RegionPolicy | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    tuning: Mapping[str, Mapping[str, Any]] | None = None,
    toolchain: Toolchain | None = None,
    progress: Progress | None = None,
    progress_bar: bool = False,
    host_threads: int = 0,
) -> CompiledModel:
    """Partition ``model`` for ``targets``, build every region, and return the runnable model.

    ``input_shapes`` fixes dynamic input dimensions (name -> shape) before anything else.
    ``options`` overrides target codegen options (target name -> options); ``tuning``
    adds tuned parameters per region (region name -> options), for codegens that take
    them. ``progress`` is called with each stage's name; ``progress_bar`` shows one
    while regions compile. ``host_threads`` sets onnxruntime's threads for host steps.
    """
    say = progress or (lambda _stage: None)
    seconds: dict[str, float] = {}
    if not isinstance(model, ir.Model):
        say("load")
        start = time.perf_counter()
        model = load_model(model, input_shapes=input_shapes)
        seconds["load"] = time.perf_counter() - start
    elif input_shapes:
        raise ByocError("input_shapes needs the model as a path, bytes or ModelProto")
    start = time.perf_counter()
    result = partition_model(model, targets, policy=policy, progress=say)
    seconds["partition"] = time.perf_counter() - start
    by_name = {t.name: t for t in result.targets}
    partitioned = result.model
    say("codegen")
    start = time.perf_counter()
    regions: list[RegionBuild] = []
    codegen_input: dict[str, Region] = {}
    for call in [n for n in partitioned.graph if "byoc.region" in n.metadata_props]:
        target = by_name[call.metadata_props["byoc.target"]]
        region, outcome = _generate(partitioned, call, target, options, tuning)
        regions.append(outcome)
        if region is not None:
            codegen_input[outcome.name] = region
    seconds["codegen"] = time.perf_counter() - start
    say("compile")
    start = time.perf_counter()
    _compile(regions, toolchain or Toolchain(), progress_bar)
    seconds["compile"] = time.perf_counter() - start
    say("load modules")
    start = time.perf_counter()
    store = _constant_store(regions, codegen_input)
    runners = _load_modules(regions, store)
    seconds["load modules"] = time.perf_counter() - start
    fallbacks = [r for r in regions if r.status != "compiled"]
    if strict and fallbacks:
        first = fallbacks[0]
        more = f" (and {len(fallbacks) - 1} more regions)" if len(fallbacks) > 1 else ""
        # A reason's first line says what went wrong; the lines after it (a compiler's
        # output) are for the report and --debug, not for an error line.
        summary = first.reason.splitlines()[0] if first.reason else ""
        raise BuildError(f"could not be compiled: {summary}{more}",
                         target=first.target, region=first.name)
    proto = result.to_proto()
    step_constants = _step_constants(partitioned, {r.name for r in regions
                                                   if r.status == "compiled"}, store)
    inputs = [_input_spec(v) for v in partitioned.graph.inputs if not v.is_initializer()]
    contents = PackageContents(
        model=proto, regions=regions, inputs=inputs,
        outputs=[v.name for v in partitioned.graph.outputs], constants=store,
        step_constants=step_constants, targets={t.name: t.version for t in result.targets},
        report=BuildReport(result.report, regions, seconds),
    )
    say("schedule")
    return assemble(contents, runners=runners, host_threads=host_threads, model=partitioned)


def _generate(
    model: ir.Model,
    call: ir.Node,
    target: Target,
    options: Mapping[str, Mapping[str, Any]] | None,
    tuning: Mapping[str, Mapping[str, Any]] | None,
) -> tuple[Region | None, RegionBuild]:
    """Ask ``target``'s codegen for one region's artifact; never raises for its faults."""
    name = call.name
    outcome = RegionBuild(name, target.name, "fallback")
    function = model.functions[(call.domain, call.op_type, call.overload)]
    inputs = [spec_of(v) for v in function.inputs]
    outputs = [spec_of(v) for v in function.outputs]
    unknown = [v.name for v, s in zip([*function.inputs, *function.outputs],
                                      [*inputs, *outputs], strict=True) if s is None]
    if unknown:
        outcome.reason = (f"values {unknown} have no static shape or known type; fix the "
                          "input shapes (--input-shape)")
        return None, outcome
    from byoc_sdk.vendor_runtime import RegionSignature

    outcome.signature = RegionSignature(name, target.name, tuple(inputs), tuple(outputs))
    if target.codegen is None:
        outcome.reason = f"target {target.name} has no codegen yet"
        return None, outcome
    region = Region(
        name=name, target=target.name, function=function, model=model,
        inputs=tuple(inputs), outputs=tuple(outputs), constants=_bound_constants(function),
        options=merge_options(target.options, (options or {}).get(target.name),
                              (tuning or {}).get(name)),
    )
    start = time.perf_counter()
    try:
        artifact = target.codegen(region)
        if type(artifact) not in ARTIFACT_TYPES.values():
            raise ArtifactError(f"codegen returned {type(artifact).__name__}, not a CSource, "
                                "JsonGraph or Binary")
        artifact.validate(region)
    except ArtifactError as exc:
        outcome.reason = f"invalid artifact: {exc}"
        return region, outcome
    except Exception as exc:  # a vendor codegen can fail in any way; the build goes on
        vendor_log.debug("target %s, region %s: the codegen raised", target.name, name,
                         exc_info=True)
        outcome.reason = f"codegen raised {describe_exception(exc)}"
        return region, outcome
    finally:
        outcome.seconds = time.perf_counter() - start
    outcome.status, outcome.artifact = "compiled", artifact
    outcome.constants = {n: region.constants[n].sha256 for n in artifact.constants}
    return region, outcome



def _bound_constants(function: ir.Function) -> dict[str, Constant]:
    constants = {}
    for node in function:
        if node.op_type == "Constant" and not node.inputs and "value" in node.attributes:
            value = node.outputs[0]
            tensor = node.attributes["value"].value
            sha = constant_hash(value, tensor)
            spec = TensorSpec(value.name, dtype_name(tensor.dtype),
                              tuple(int(d) for d in tensor.shape.numpy()), sha)
            constants[value.name] = Constant(value.name, sha, spec, tensor)
    return constants


def _compile(regions: list[RegionBuild], toolchain: Toolchain, progress_bar: bool) -> None:
    jobs = [CompileJob(r.name, r.target, r.artifact) for r in regions
            if r.status == "compiled" and isinstance(r.artifact, CSource)]
    for name, outcome in toolchain.compile_all(jobs, progress=progress_bar).items():
        region = next(r for r in regions if r.name == name)
        if isinstance(outcome, ToolchainError):
            region.status, region.reason = "fallback", f"compilation failed: {outcome.reason}"
            if outcome.output:  # the report shows all of it, under its one-line summary
                region.reason += f"\n{outcome.output}"
                vendor_log.debug("target %s, region %s: the compiler rejected the sources:\n%s",
                                 region.target, name, outcome.output)
        else:
            region.library = outcome


def _constant_store(regions: list[RegionBuild], inputs: Mapping[str, Region]) -> dict:
    store = {}
    for region in regions:
        if region.status == "compiled":
            for name, sha in region.constants.items():
                store[sha] = inputs[region.name].constants[name].numpy()
    return store


def _load_modules(regions: list[RegionBuild], store: Mapping) -> dict[str, tuple]:
    """Load every compiled region once; a module that fails to load falls back."""
    runners = {}
    for region in regions:
        if region.status != "compiled":
            continue
        try:
            runners[region.name] = region_runner(region, store)
        except Exception as exc:  # the native loader or a vendor runtime refused it
            region.status = "fallback"
            region.reason = load_failure(exc)
    return runners


def _step_constants(model: ir.Model, compiled: set[str], store: dict) -> dict[str, str]:
    """Initializers the runtime itself must hand over, by name: constants the main graph
    passes into compiled regions ("inputs" mode), the defaults of initializers that are
    also graph inputs when a compiled region reads them (the package's inputs leave
    those out, so the default is what runs), and initializers that are graph outputs."""
    wanted = [value for call in model.graph if call.name in compiled
              for value in call.inputs
              if value is not None and (is_constant(value) or value.is_initializer())]
    wanted += [value for value in model.graph.outputs if value.is_initializer()]
    found = {}
    for value in wanted:
        if value.const_value is not None and value.name not in found:
            sha = constant_hash(value)
            store[sha] = value.const_value.numpy()
            found[value.name] = sha
    return found


def _input_spec(value: ir.Value) -> TensorSpec:
    """A graph input's spec; dynamic dimensions are -1 (any size)."""
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape.dims) if value.shape else ()
    return TensorSpec(value.name, dtype_name(value.dtype) or "float32", shape)
