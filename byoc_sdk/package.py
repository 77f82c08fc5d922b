"""The ``.byoc`` package: one zip file holding everything a compiled model needs to run.

Layout::

    manifest.json                  format, versions, platform, targets, regions (each with
                                   its artifact's description and signature), constants,
                                   and the sha256 of every other member
    model.onnx                     the partitioned model; tensors of 256 bytes or more are
                                   external data pointing into constants/
    constants/<sha256>.bin         each constant once, raw little-endian bytes (dtype and
                                   shape in the manifest): no pickle anywhere
    regions/<name>/src/<file>      C/CUDA sources (kept so the package can be rebuilt)
    regions/<name>/lib/<platform>.so  the compiled module for the build platform
    regions/<name>/graph.json      a JSON artifact's graph
    regions/<name>/program.bin     a binary artifact's bytes
    report.json                    the build report

Loading checks the format version, refuses member names that could escape a folder
and members that would inflate past what they hold (zip bombs), verifies every
checksum, and needs only the runtime: compiled modules and vendor runtimes, never a
target's codegen. A package built on another platform is rebuilt from its sources when
a compiler is at hand.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import onnx

from byoc_sdk.codegen import Artifact, Binary, CSource, JsonGraph, TensorSpec
from byoc_sdk.errors import ByocError
from byoc_sdk.loader import attribute_graphs
from byoc_sdk.report import PartitionReport
from byoc_sdk.vendor_runtime import RegionSignature

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

FORMAT = "byoc-package"
FORMAT_VERSION = 1
EXTERNAL_MIN_BYTES = 256


class PackageError(ByocError):
    """A package is malformed, tampered with, or from an incompatible version."""


def platform_tag() -> str:
    """Where a compiled module runs: OS and machine (e.g. ``linux-x86_64``)."""
    return f"{sys.platform}-{platform.machine()}"


@dataclass
class RegionBuild:
    """How one region was built: compiled, or fallen back to the host and why."""

    name: str
    target: str
    status: str  # "compiled" or "fallback"
    reason: str = ""
    signature: RegionSignature | None = None
    artifact: Artifact | None = None
    constants: dict[str, str] = field(default_factory=dict)  # constant name -> sha256
    library: Path | None = None
    seconds: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "target": self.target, "status": self.status,
            "reason": self.reason, "kind": self.artifact.kind if self.artifact else None,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class BuildReport:
    """The partition report plus each region's build outcome."""

    partition: PartitionReport | None
    regions: list[RegionBuild]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fallbacks(self) -> list[RegionBuild]:
        return [r for r in self.regions if r.status != "compiled"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition.to_dict() if self.partition else None,
            "regions": [r.describe() for r in self.regions],
            "seconds": self.seconds,
        }

    def render(self) -> str:
        lines = []
        if self.partition is not None:
            lines.append(self.partition.render())
            lines.append("")
        compiled = len(self.regions) - len(self.fallbacks)
        lines.append(f"build: {compiled} of {len(self.regions)} regions compiled")
        for region in self.regions:
            kind = region.artifact.kind if region.artifact else "-"
            status = "compiled" if region.status == "compiled" else "FELL BACK to host"
            line = f"  {region.name:<14} {region.target:<10} {kind:<9} {status}"
            if region.reason:
                line += f": {region.reason}"
            lines.append(line)
        return "\n".join(lines)


@dataclass
class PackageContents:
    """Everything a package holds, in memory."""

    model: onnx.ModelProto  # partitioned, pinned, tensors inline
    regions: list[RegionBuild]
    inputs: list[TensorSpec]
    outputs: list[str]
    constants: dict[str, np.ndarray]  # sha256 -> array, needed by modules at load time
    step_constants: dict[str, str]  # main-graph value name -> sha256, read by external steps
    targets: dict[str, str]  # target name -> version
    report: BuildReport


# --- saving -------------------------------------------------------------------------


def save_package(contents: PackageContents, path: Path) -> Path:
    """Write ``contents`` to ``path`` (``.byoc`` added if it has no suffix)."""
    from byoc_sdk import __version__

    if not path.suffix:
        path = path.with_suffix(".byoc")
    members: dict[str, bytes] = {}
    store = dict(contents.constants)
    model = onnx.ModelProto()
    model.CopyFrom(contents.model)
    for tensor in _all_tensors(model):
        if _nbytes(tensor) >= EXTERNAL_MIN_BYTES:
            array = onnx.numpy_helper.to_array(tensor)
            sha = _tensor_hash(tensor, array)
            store[sha] = array
            _make_external(tensor, f"constants/{sha}.bin", array.nbytes)
    members["model.onnx"] = model.SerializeToString()
    table = {}
    for sha, array in store.items():
        data = _little_endian(array)
        members[f"constants/{sha}.bin"] = data.tobytes()
        table[sha] = {"dtype": np.dtype(array.dtype).name, "shape": list(data.shape)}
    regions = []
    for region in contents.regions:
        regions.append(_save_region(region, members))
    members["report.json"] = json.dumps(contents.report.to_dict(), indent=1).encode()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "byoc_version": __version__,
        "platform": {"tag": platform_tag(), "python": platform.python_version()},
        "targets": contents.targets,
        "inputs": [spec.to_json() for spec in contents.inputs],
        "outputs": contents.outputs,
        "step_constants": contents.step_constants,
        "constants": table,
        "regions": regions,
        "members": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        for name, data in members.items():
            zf.writestr(name, data)
    partial.replace(path)  # a crash mid-write never leaves a half package under the name
    return path


def _save_region(region: RegionBuild, members: dict[str, bytes]) -> dict[str, Any]:
    entry: dict[str, Any] = region.describe()
    if region.signature is not None:
        entry["inputs"] = [s.to_json() for s in region.signature.inputs]
        entry["outputs"] = [s.to_json() for s in region.signature.outputs]
    if region.status != "compiled" or region.artifact is None:
        return entry
    base = f"regions/{region.name}"
    artifact = region.artifact
    entry["constants"] = region.constants
    if isinstance(artifact, CSource):
        entry.update(entry=artifact.entry, language=artifact.language, flags=artifact.flags,
                     init_constants=artifact.constants, sources=sorted(artifact.sources))
        for name, text in artifact.sources.items():
            members[f"{base}/src/{name}"] = text.encode()
        if region.library is not None:
            members[f"{base}/lib/{platform_tag()}.so"] = Path(region.library).read_bytes()
    elif isinstance(artifact, JsonGraph):
        entry.update(runtime=artifact.runtime, init_constants=artifact.constants)
        members[f"{base}/graph.json"] = json.dumps(artifact.graph).encode()
    elif isinstance(artifact, Binary):
        entry.update(runtime=artifact.runtime, init_constants=artifact.constants)
        members[f"{base}/program.bin"] = bytes(artifact.data)
    return entry


def _all_tensors(model: onnx.ModelProto):
    """Initializers and Constant-node tensors of the graph, subgraphs and functions."""

    def in_nodes(nodes):
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                for sub in attribute_graphs(attr):
                    yield from in_graph(sub)

    def in_graph(graph):
        yield from graph.initializer
        yield from in_nodes(graph.node)

    yield from in_graph(model.graph)
    for function in model.functions:
        yield from in_nodes(function.node)


def _nbytes(tensor: onnx.TensorProto) -> int:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return 0
    if tensor.HasField("raw_data"):
        return len(tensor.raw_data)
    return tensor.ByteSize()


def _tensor_hash(tensor: onnx.TensorProto, array: np.ndarray) -> str:
    """The same hash as byoc_sdk.content_hash, computed from a TensorProto."""
    import onnx_ir as ir

    from byoc_sdk.content_hash import content_hash

    return content_hash(ir.Tensor(array, dtype=ir.DataType(tensor.data_type)))


def _make_external(tensor: onnx.TensorProto, location: str, length: int) -> None:
    for field_name in ("float_data", "int32_data", "int64_data", "double_data",
                       "uint64_data", "string_data"):
        tensor.ClearField(field_name)
    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


# --- loading ------------------------------------------------------------------------


def _safe_member(name: str, label: str) -> None:
    path = PurePosixPath(name)
    if (
        not name or name.startswith(("/", "\\")) or "\\" in name or ".." in path.parts
        or ":" in path.parts[0]
    ):
        raise PackageError(f"member '{name}' has an unsafe path (it could escape its folder)",
                           file=label)


#: JSON's types as errors name them; integer before number, which includes it.
_TYPES = {"null": "null", "boolean": "a boolean", "integer": "an integer", "number": "a number",
          "string": "a string", "array": "an array", "object": "an object"}


@functools.cache
def _manifest_validator() -> Validator:
    """Made once, on the first load: importing byoc does not import jsonschema."""
    from jsonschema import Draft202012Validator, validators

    from byoc_sdk.manifest import SCHEMA

    # JSON Schema counts 2.0 as an integer, but shapes and versions are used as Python
    # ints (json.loads makes 2.0 a float): only an int is one here, and a bool is not.
    ints = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(Draft202012Validator, type_checker=ints)(SCHEMA)


def _damaged(label: str, path: str, problem: str) -> NoReturn:
    where = f"field '{path}'" if path else "it"
    raise PackageError(f"manifest.json is damaged: {where} {problem}", file=label)


def _json_type(value: object) -> str:
    return next(name for kind, name in _TYPES.items()
                if _manifest_validator().is_type(value, kind))


def _shown(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _item(path: str, key: str) -> str:
    """``key`` of the map at ``path``, quoted: keys hold dots and slashes (of members)."""
    return f"{path}[{json.dumps(key)}]"


def _schema_problem(error: ValidationError) -> tuple[str, str]:
    """The field (``regions[0].entry``) and the problem that a schema error is about."""
    # Only the schema path tells a field (under "properties") from a map's key.
    path, keys = "", iter(error.absolute_path)
    steps = iter(list(error.absolute_schema_path)[:-1])  # the last is the failed keyword
    for step in steps:
        if step == "properties":
            next(steps)  # the field's name, which is the instance's next key
            path += f".{next(keys)}"
        elif step == "additionalProperties":
            path = _item(path, next(keys))
        elif step == "items":
            path += f"[{next(keys)}]"
    path, value, wanted = path.removeprefix("."), error.instance, error.validator_value
    if error.validator == "required":
        missing = next(key for key in wanted if key not in value)
        return f"{path}.{missing}".removeprefix("."), "is missing"
    if error.validator == "type":
        kinds = [wanted] if isinstance(wanted, str) else wanted
        return path, f"should be {' or '.join(_TYPES[k] for k in kinds)}, not {_json_type(value)}"
    if error.validator == "minimum":
        return path, f"is {value}, below {wanted}"
    if error.validator == "pattern":
        return path, f"should be {error.schema['description']}"
    if error.validator == "enum":
        *others, last = [_shown(choice) for choice in wanted]
        expected = error.schema.get("description") or f"{', '.join(others)} or {last}"
        return path, f"is {_shown(value)}, not {expected}"
    return path, error.message  # a keyword the schema does not use yet


def _check_manifest(manifest: dict[str, Any], label: str) -> None:
    """Every field, before anything reads one: a hand-damaged manifest is then one
    PackageError naming the field, never a KeyError or TypeError from the loader."""
    from jsonschema.exceptions import best_match

    error = best_match(_manifest_validator().iter_errors(manifest))
    if error is not None:
        _damaged(label, *_schema_problem(error))
    # What the schema cannot say: that what one field names, another holds.
    constants = manifest["constants"]

    def constant(sha: str, path: str) -> None:
        if sha not in constants:
            _damaged(label, path, f"names constant '{sha}', which 'constants' does not list")

    for sha, info in constants.items():
        path = _item("constants", sha)
        try:  # stored from a numpy array, so numpy (with ml_dtypes) must know it
            np.dtype(info["dtype"])
        except TypeError:
            _damaged(label, f"{path}.dtype", f"is '{info['dtype']}', not a numpy dtype")
    for name, sha in manifest["step_constants"].items():
        constant(sha, _item("step_constants", name))
    seen: set[str] = set()
    for i, entry in enumerate(manifest["regions"]):
        path, name = f"regions[{i}]", entry["name"]
        if name in seen:
            _damaged(label, f"{path}.name", f"repeats region name '{name}'")
        seen.add(name)
        if entry["status"] != "compiled":
            continue  # a fallback keeps no artifact: the host runs its ONNX function
        for key, sha in entry["constants"].items():
            constant(sha, _item(f"{path}.constants", key))
        for j, key in enumerate(entry["init_constants"]):
            if key not in entry["constants"]:
                _damaged(label, f"{path}.init_constants[{j}]",
                         f"names '{key}', which '{path}.constants' does not bind")
    # Members a field names are looked up where they are read (_member): one line too.


#: What reading a damaged member can raise: zipfile's own errors, and those of the layers
#: under it — zlib for a corrupt deflate stream, NotImplementedError for flag bits or a
#: compression method that a flipped byte made up.
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error,
                    NotImplementedError, RuntimeError)

#: The most a member other than a constant may inflate to. Weights are constants, which
#: inflate to exactly the bytes the manifest gives their dtype and shape; what is left
#: (model.onnx without its large tensors, sources, libraries, programs, reports, the
#: manifest) is code and descriptions, far below this in any real package.
MAX_MEMBER_BYTES = 1 << 30

#: What byoc writes. zipfile inflates the others (bzip2, lzma) a whole read's worth at a
#: time, whatever the size asked for, so a small member could still inflate to gigabytes.
_COMPRESSIONS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})

#: A constant's bound: the bytes of its tensor, and that tensor, for a message.
_Holds = tuple[int, str]


def _read_member(zf: zipfile.ZipFile, name: str, label: str, holds: _Holds | None = None) -> bytes:
    """Member ``name``, refused before it is inflated if it would inflate to more than
    ``holds`` says (a constant) or :data:`MAX_MEMBER_BYTES` (any other member): a zip
    bomb, a few kilobytes in the file, is then never gigabytes in memory."""
    bound, what = holds or (MAX_MEMBER_BYTES, f"the {MAX_MEMBER_BYTES:,} bytes a member other "
                                              "than a constant may hold")
    info = zf.getinfo(name)
    if info.compress_type not in _COMPRESSIONS:
        raise PackageError(f"member '{name}' is compressed with method {info.compress_type}; "
                           "byoc writes only stored and deflated members", file=label)
    if info.file_size > bound:
        raise PackageError(f"member '{name}' inflates to {info.file_size:,} bytes, more than "
                           f"{what} (a zip bomb?)", file=label)
    try:
        with zf.open(info) as handle:
            # zipfile hands out no more than the declared size (the CRC then fails on a
            # member that inflates further), and asking for no more keeps zlib from
            # inflating past it first, as read() would, up to a gigabyte per call. At
            # least the compressed size, so that a stored or incompressible member
            # comes in one read rather than as a second copy of itself.
            return handle.read(max(info.file_size, info.compress_size))
    except _ZIP_READ_ERRORS as exc:
        raise PackageError(f"member '{name}' is unreadable: {exc}", file=label) from exc


def _constant_sizes(manifest: dict[str, Any]) -> dict[str, _Holds]:
    """What each constant's member may inflate to: the bytes of the tensor the manifest
    says it holds (``_constant`` checks later that it holds exactly that)."""
    sizes = {}
    for sha, info in manifest["constants"].items():
        dtype, shape = np.dtype(info["dtype"]), tuple(info["shape"])
        size = dtype.itemsize * math.prod(shape)  # Python ints: a huge shape cannot wrap
        sizes[f"constants/{sha}.bin"] = (
            size, f"the {size:,} bytes of the {dtype}{shape} tensor the manifest says it holds")
    return sizes


def read_package(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The verified manifest and members of a package."""
    label = str(path)
    if not path.is_file():
        raise PackageError("no such package file", file=label)
    try:
        zf = zipfile.ZipFile(path)
    except (ValueError, *_ZIP_READ_ERRORS) as exc:
        raise PackageError(f"not a byoc package (not a readable zip: {exc})", file=label) from exc
    with zf:
        names = zf.namelist()
        for name in names:
            _safe_member(name, label)
        if "manifest.json" not in names:
            raise PackageError("not a byoc package (no manifest.json)", file=label)
        manifest = strict_json(_read_member(zf, "manifest.json", label), "manifest.json", label)
        if not isinstance(manifest, dict):
            _damaged(label, "", f"should hold a JSON object, not {_json_type(manifest)}")
        if manifest.get("format") != FORMAT:
            raise PackageError("not a byoc package (wrong format field)", file=label)
        # Before the schema: another version's manifest may have other fields.
        version = manifest.get("format_version")
        if _manifest_validator().is_type(version, "integer") and version != FORMAT_VERSION:
            raise PackageError(
                f"package format version {version} is not supported "
                f"(this byoc reads version {FORMAT_VERSION}); rebuild it with this byoc",
                file=label,
            )
        # Every field is checked before any is used, so that a hand-edited manifest gets
        # one error naming the field, not a KeyError from wherever it is first read.
        _check_manifest(manifest, label)
        listed = manifest["members"]
        unlisted = sorted(set(names) - set(listed) - {"manifest.json"})
        if unlisted:
            raise PackageError(f"members not in the manifest: {unlisted}", file=label)
        members = {}
        constants = _constant_sizes(manifest)
        for name, digest in listed.items():
            _safe_member(name, label)
            if name not in names:
                raise PackageError(f"member '{name}' is missing (truncated package?)", file=label)
            data = _read_member(zf, name, label, constants.get(name))
            if hashlib.sha256(data).hexdigest() != digest:
                raise PackageError(f"checksum of member '{name}' does not match the manifest "
                                   "(the package was changed after it was built)", file=label)
            members[name] = data
    return manifest, members


def load_package(path: Path, host_threads: int = 0):
    """A :class:`~byoc_sdk.runtime.CompiledModel` from a verified package."""
    from byoc_sdk.modules import assemble

    manifest, members = read_package(path)
    label = str(path)
    try:
        store = {sha: _constant(sha, info, members, label)
                 for sha, info in manifest["constants"].items()}
        model = _model(_member(members, "model.onnx", label), label)
        _check_interface(manifest, model, label)
        for tensor in _all_tensors(model):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                location = next((e.value for e in tensor.external_data
                                 if e.key == "location"), "")
                sha = PurePosixPath(location).stem
                if sha not in store:
                    raise PackageError(f"model.onnx refers to constant '{location}', which the "
                                       "manifest does not list", file=label)
                tensor.ClearField("external_data")
                tensor.data_location = onnx.TensorProto.DEFAULT
                tensor.raw_data = _little_endian(store[sha]).tobytes()
        regions = [_load_region(entry, members, label) for entry in manifest["regions"]]
        contents = PackageContents(
            model=model,
            regions=regions,
            inputs=[TensorSpec.from_json(s) for s in manifest["inputs"]],
            outputs=list(manifest["outputs"]),
            constants=store,
            step_constants=dict(manifest["step_constants"]),
            targets=dict(manifest["targets"]),
            report=BuildReport(None, regions),
        )
    except (KeyError, TypeError, ValueError) as exc:
        # read_package checked every field on its own; this is the last net for what
        # only shows when the members are put together, so that it still gets one line.
        raise PackageError(f"manifest.json is inconsistent: {type(exc).__name__}: {exc}",
                           file=label) from exc
    return assemble(contents, source=label, host_threads=host_threads)


def _model(data: bytes, label: str) -> onnx.ModelProto:
    from google.protobuf.message import DecodeError

    try:
        return onnx.load_model_from_string(data)
    except DecodeError as exc:  # only a package rewritten with fresh checksums gets here
        raise PackageError(f"member 'model.onnx' is not an ONNX model: {exc}",
                           file=label) from exc


def _check_interface(manifest: dict[str, Any], model: onnx.ModelProto, label: str) -> None:
    """The manifest's inputs and outputs must be model.onnx's: the runtime checks feeds
    against the manifest and hands out model.onnx's values, so a mismatch would surface
    as a missing value in some step instead of as the damage it is."""
    initializers = {t.name for t in model.graph.initializer}
    interface = (
        ("inputs", [s["name"] for s in manifest["inputs"]],
         [i.name for i in model.graph.input if i.name not in initializers]),
        ("outputs", list(manifest["outputs"]), [o.name for o in model.graph.output]),
    )
    for key, listed, actual in interface:
        if listed != actual:
            raise PackageError(f"manifest.json is damaged: field '{key}' lists {listed}, but "
                               f"model.onnx's {key} are {actual}", file=label)
    # The runtime checks feeds against the manifest's dtypes and shapes, and compiled
    # modules and vendor runtimes read and write exactly what their region's signature
    # says: an edited one would be a module writing past its buffers, a runtime's result
    # reshaped to another shape, or a step count that no longer adds up.
    types = _value_types(model.graph)
    graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
    for j, (spec, name) in enumerate(zip(manifest["inputs"], graph_inputs, strict=True)):
        _check_spec(spec, types.get(name), f"inputs[{j}]", f"input '{name}'", label)
    calls = {prop.value: node for node in model.graph.node for prop in node.metadata_props
             if prop.key == "byoc.region"}
    functions = {(f.domain, f.name): f for f in model.functions}
    for i, entry in enumerate(manifest["regions"]):
        if entry["status"] != "compiled":
            continue  # the host runs a fallback's ONNX function: no signature is read
        path, name = f"regions[{i}]", entry["name"]
        call = calls.get(name)
        if call is None:
            _damaged(label, f"{path}.name", f"is '{name}', a region model.onnx does not call")
        function = functions.get((call.domain, call.op_type))
        inner = _value_types(function) if function is not None else {}
        for key, values, formal in (
            ("inputs", call.input, function.input if function is not None else None),
            ("outputs", call.output, function.output if function is not None else None),
        ):
            specs = entry[key]
            if len(specs) != len(values):
                _damaged(label, f"{path}.{key}", f"lists {len(specs)} values, but region "
                         f"{name} has {len(values)} {key} in model.onnx")
            if formal is not None and len(formal) != len(values):
                raise PackageError(f"model.onnx is malformed: region {name} is called with "
                                   f"{len(values)} {key}, but its function has "
                                   f"{len(formal)}", file=label)
            for j, (spec, value) in enumerate(zip(specs, values, strict=True)):
                where = f"{path}.{key}[{j}]"
                if formal is not None and spec["name"] != formal[j]:
                    _damaged(label, f"{where}.name", f"is '{spec['name']}', but model.onnx "
                             f"names {key[:-1]} {j} of region {name} '{formal[j]}'")
                known = inner.get(formal[j]) if formal is not None else None
                _check_spec(spec, known or types.get(value), where,
                            f"value '{value}'", label)


#: A value's element type and shape as model.onnx declares them: the shape is ``None``
#: when unknown, and a dynamic dimension is -1 (as in a TensorSpec).
_ValueType = tuple[int, tuple[int, ...] | None]


def _value_types(graph: onnx.GraphProto | onnx.FunctionProto) -> dict[str, _ValueType]:
    """The declared type of every tensor value of ``graph`` (a graph or a function)."""
    types: dict[str, _ValueType] = {}
    for tensor in getattr(graph, "initializer", ()):
        types[tensor.name] = (tensor.data_type, tuple(tensor.dims))
    for info in (*getattr(graph, "input", ()), *graph.value_info, *getattr(graph, "output", ())):
        if not isinstance(info, onnx.ValueInfoProto) or not info.type.HasField("tensor_type"):
            continue
        tensor = info.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1
                      for d in tensor.shape.dim) if tensor.HasField("shape") else None
        types.setdefault(info.name, (tensor.elem_type, shape))
    return types


def _check_spec(spec: dict[str, Any], known: _ValueType | None, path: str, what: str,
                label: str) -> None:
    """A manifest's TensorSpec at ``path`` must agree with what model.onnx declares."""
    if known is None:
        return  # model.onnx does not say: nothing to hold the field against
    import onnx_ir as ir

    from byoc_sdk.node_info import dtype_name

    elem, shape = known
    if elem != onnx.TensorProto.UNDEFINED:
        try:
            dtype = dtype_name(ir.DataType(elem))
        except ValueError:
            dtype = None
        if dtype is not None and spec["dtype"] != dtype:
            _damaged(label, f"{path}.dtype", f"is '{spec['dtype']}', but model.onnx's {what} "
                     f"is {dtype}")
    if shape is not None and list(shape) != list(spec["shape"]):
        _damaged(label, f"{path}.shape", f"is {json.dumps(spec['shape'])}, but model.onnx's "
                 f"{what} has shape {json.dumps(list(shape))}")


def _member(members: dict[str, bytes], name: str, label: str) -> bytes:
    if name not in members:
        raise PackageError(f"member '{name}' is named in the manifest but not listed in its "
                           "members", file=label)
    return members[name]


class _NotJson(ValueError):
    """What the strict reader refuses that Python's json module would take."""


def _refuse_constant(word: str) -> NoReturn:
    raise _NotJson(f"{word} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999: json.loads would make it inf
        raise _NotJson(f"number {text} is too large for a 64-bit float")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    table = dict(pairs)
    if len(table) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _NotJson(f"key {json.dumps(twice)} appears twice in one object")
    return table


def strict_json(data: bytes, name: str, label: str) -> Any:
    """Member ``name`` parsed as standard JSON (RFC 8259), or a PackageError naming it.

    A package is an exchange format, read by other tools too: Python's json module also
    takes NaN, Infinity, numbers that overflow to infinity and repeated keys (the last
    one wins, where another parser may keep the first), none of which byoc writes, so a
    member holding one was made or changed by something else and is refused.
    """
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant,
                          parse_float=_finite, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise PackageError(f"{name} is unreadable: not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})", file=label) from exc
    except RecursionError as exc:  # a few kilobytes of '[' would otherwise escape as this
        raise PackageError(f"{name} is unreadable: not standard JSON (nested too deeply)",
                           file=label) from exc
    except ValueError as exc:
        raise PackageError(f"{name} is unreadable: not standard JSON ({exc})",
                           file=label) from exc


def _text(members: dict[str, bytes], name: str, label: str) -> str:
    """Member ``name`` as UTF-8 text (a source file), or a PackageError naming it."""
    try:
        return _member(members, name, label).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageError(f"{name} is unreadable: not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})", file=label) from exc


def stored_constant(members: dict[str, bytes], sha: str, label: str) -> bytes:
    """The bytes of constant ``sha`` (a PackageError if no member holds it)."""
    return _member(members, f"constants/{sha}.bin", label)


def _constant(sha: str, info: dict[str, Any], members: dict[str, bytes], label: str) -> np.ndarray:
    name = f"constants/{sha}.bin"
    data = stored_constant(members, sha, label)
    dtype = np.dtype(info["dtype"])
    shape = tuple(int(d) for d in info["shape"])
    # math.prod of Python ints: np.prod would wrap around on a hand-made huge shape.
    if len(data) != dtype.itemsize * math.prod(shape):
        raise PackageError(f"member '{name}' holds {len(data)} bytes, not a {dtype}{shape} "
                           "tensor", file=label)
    return np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _little_endian(array: np.ndarray) -> np.ndarray:
    # ascontiguousarray makes a 0-d array 1-d: keep the shape, a scalar stays a scalar.
    array = np.ascontiguousarray(array).reshape(np.shape(array))
    return array.astype(array.dtype.newbyteorder("<"))


def _load_region(entry: dict[str, Any], members: dict[str, bytes], label: str) -> RegionBuild:
    signature = None
    if "inputs" in entry:
        signature = RegionSignature(
            entry["name"], entry["target"],
            tuple(TensorSpec.from_json(s) for s in entry["inputs"]),
            tuple(TensorSpec.from_json(s) for s in entry["outputs"]),
        )
    region = RegionBuild(entry["name"], entry["target"], entry["status"], entry["reason"],
                         signature, None, dict(entry.get("constants", {})))
    if region.status != "compiled":
        return region
    base = f"regions/{region.name}"
    kind = entry["kind"]
    if kind == "c_source":
        sources = {name: _text(members, f"{base}/src/{name}", label)
                   for name in entry["sources"]}
        region.artifact = CSource(sources, entry["entry"], list(entry["init_constants"]),
                                  list(entry["flags"]), entry["language"])
        library = members.get(f"{base}/lib/{platform_tag()}.so")
        region.library = _materialise(library) if library is not None else None
    elif kind == "json":
        name = f"{base}/graph.json"
        region.artifact = JsonGraph(strict_json(_member(members, name, label), name, label),
                                    entry["runtime"], list(entry["init_constants"]))
    else:  # "binary": the manifest's schema allows no other kind
        region.artifact = Binary(_member(members, f"{base}/program.bin", label),
                                 entry["runtime"], list(entry["init_constants"]))
    return region


def _materialise(library: bytes) -> Path:
    """A file holding ``library`` (dlopen needs a path), shared by content."""
    from byoc_sdk.toolchain import cache_dir

    digest = hashlib.sha256(library).hexdigest()
    target = cache_dir() / "packages" / f"{digest}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            handle.write(library)
        Path(handle.name).replace(target)
    return target
