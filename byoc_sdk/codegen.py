"""The codegen interface: what a target's codegen receives, and what it returns.

A codegen is a callable ``codegen(region: Region) -> Artifact``. It sees one region of
the partitioned model — its ONNX function as an ``onnx_ir`` graph, the specs of its
inputs and outputs, its constants with their content hashes, and the target's options —
and returns one of three artifact kinds:

* :class:`CSource`: C or CUDA sources exporting one entry function per the ABI in
  ``cpp/include/byoc/abi.h``; byoc compiles, caches and loads them;
* :class:`JsonGraph`: a JSON-serialisable graph plus the constants it uses, interpreted
  by a named vendor runtime (as TVM's JSON runtime does for TensorRT or DNNL);
* :class:`Binary`: opaque bytes plus the constants they use, loaded by a named vendor
  runtime.

Constants never travel inside artifacts: an artifact lists constant *names*, and the
package keeps each constant once, under its content hash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import onnx_ir as ir

from byoc_sdk.content_hash import SHA256_KEY, constant_hash
from byoc_sdk.node_info import dtype_name, is_constant

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A file name the toolchain can write into its build folder: no folder part, no control
#: characters, not hidden, not empty.
_PLAIN_FILE = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*")


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype name and static shape of a region input or output.

    ``sha256`` is set when the value is a build-time constant (passed in from the
    package's constant store at every call), ``None`` for run-time data.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str | None = None

    @property
    def numpy_dtype(self) -> np.dtype:
        """numpy's dtype: strings are object arrays of ``str``, as onnxruntime hands them
        out (numpy knows bfloat16, float8 and the 4-bit types by name once onnx_ir has
        loaded ml_dtypes)."""
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(data["name"], data["dtype"], tuple(data["shape"]), data.get("sha256"))


@dataclass(frozen=True)
class Constant:
    """A constant bound inside a region: its spec, content hash and value."""

    name: str
    sha256: str
    spec: TensorSpec
    tensor: ir.TensorProtocol = field(repr=False, compare=False)

    def numpy(self) -> np.ndarray:
        return self.tensor.numpy()


@dataclass(frozen=True)
class OpValue:
    """A value as an expanded op sees it.

    ``key`` is unique within the region: the value's name at region level, and
    ``<composite call>/<name>`` inside a composite — instances of one shared composite
    body hold the same value objects, so the key, not the object, tells them apart.
    ``value`` gives the dtype and shape (equal in every instance of a shared body).
    """

    key: str
    value: ir.Value


@dataclass(frozen=True)
class Op:
    """One ONNX op of a region, with composites expanded (see :meth:`Region.ops`)."""

    node: ir.Node
    inputs: tuple[OpValue | None, ...]
    outputs: tuple[OpValue, ...]
    composite: str | None = None  # the composite call this op came from
    pattern: str | None = None  # that composite's pattern

    @property
    def op_type(self) -> str:
        return self.node.op_type


@dataclass
class Region:
    """One region, as its target's codegen sees it.

    ``graph`` is the body of the region's function: original ONNX nodes, ``Constant``
    nodes for bound constants, and calls to composite functions (look one up with
    :meth:`composite`). ``inputs`` are the values the runtime passes at every call,
    ``outputs`` the values the region must write, both in call order. ``options`` are
    the target's codegen options, with per-region tuned parameters merged in.
    """

    name: str
    target: str
    function: ir.Function
    model: ir.Model = field(repr=False)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    constants: Mapping[str, Constant]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def graph(self) -> ir.Graph:
        return self.function.graph

    def composite(self, node: ir.Node) -> ir.Function | None:
        """The function a composite call node stands for, or ``None`` for a plain op."""
        return self.model.functions.get((node.domain, node.op_type, node.overload))

    def composite_pattern(self, node: ir.Node) -> str | None:
        """The pattern a composite call instantiates (e.g. "conv_act"), else ``None``."""
        return node.metadata_props.get("byoc.pattern")

    def constant(self, value: ir.Value) -> Constant | None:
        """The bound constant a value inside the region holds, if it is one."""
        return self.constants.get(value.name or "")

    def ops(self) -> list[Op]:
        """The region's ops in order, composites expanded, ``Constant`` nodes left out.

        A composite's parameters and results are mapped to the values of its call, so
        the ops read and write region-level keys wherever they cross the composite's
        boundary; ``composite``/``pattern`` say which fused unit an op came from.
        """
        ops: list[Op] = []
        for node in self.graph:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and not node.inputs:
                continue
            body = self.composite(node)
            if body is None:
                ops.append(Op(node, _refs(node.inputs, {}, ""), _refs(node.outputs, {}, "")))
                continue
            outer = {**dict(zip(body.inputs, node.inputs, strict=True)),
                     **dict(zip(body.outputs, node.outputs, strict=True))}
            scope = f"{node.name}/"
            pattern = self.composite_pattern(node)
            for inner in body:
                ops.append(Op(inner, _refs(inner.inputs, outer, scope),
                              _refs(inner.outputs, outer, scope), node.name, pattern))
        return ops


def _refs(values, outer: Mapping[ir.Value, ir.Value | None], scope: str) -> tuple:
    refs = []
    for value in values:
        if value is None:
            refs.append(None)
        elif value in outer:
            mapped = outer[value]
            refs.append(None if mapped is None else OpValue(mapped.name or "", mapped))
        else:
            refs.append(OpValue(f"{scope}{value.name}", value))
    return tuple(refs)


def spec_of(value: ir.Value) -> TensorSpec | None:
    """The spec of a value with a known dtype and static shape, else ``None``."""
    shape = value.shape
    dtype = dtype_name(value.dtype)
    if dtype is None or shape is None or not shape.is_static():
        return None
    sha = constant_hash(value) if is_constant(value) else value.metadata_props.get(SHA256_KEY)
    return TensorSpec(value.name or "", dtype, tuple(int(d) for d in shape.dims), sha)


# --- artifacts ------------------------------------------------------------------------


class ArtifactError(ValueError):
    """An artifact is malformed (raised by ``validate``; the build reports it)."""


@dataclass
class CSource:
    """C or CUDA sources for one region.

    ``sources`` maps file names (``.c``, ``.cc``/``.cpp`` or ``.cu``) to their text.
    ``entry`` is the exported entry function; ``<entry>_init`` and ``<entry>_release``
    are optional. ``constants`` names the region constants handed to ``<entry>_init``,
    in order. ``flags`` are extra compiler flags; ``language`` picks cc or nvcc.
    """

    kind: ClassVar[str] = "c_source"
    sources: dict[str, str]
    entry: str
    constants: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    language: Literal["c", "cuda"] = "c"

    def validate(self, region: Region) -> None:
        if not isinstance(self.sources, dict) or not self.sources or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.sources.items()):
            raise ArtifactError("CSource.sources must map file names to source text")
        if not isinstance(self.entry, str) or not _SYMBOL.fullmatch(self.entry):
            raise ArtifactError(f"CSource.entry {self.entry!r} is not a C identifier")
        if self.language not in ("c", "cuda"):
            raise ArtifactError(f"CSource.language must be 'c' or 'cuda', not {self.language!r}")
        # The flags go onto the compiler's command line one by one: a bare string would
        # go character by character ("-O2" as "-", "O", "2": read source from stdin).
        if not isinstance(self.flags, list) or not all(isinstance(f, str) for f in self.flags):
            raise ArtifactError("CSource.flags must be a list of strings")
        for name, text in self.sources.items():
            if not _PLAIN_FILE.fullmatch(name):
                raise ArtifactError(f"source file name {name!r} must be a plain file name")
            try:
                text.encode()  # written to disk, hashed and packaged as UTF-8
            except UnicodeEncodeError as exc:
                raise ArtifactError(f"source file {name} is not UTF-8 text: {exc}") from None
        _check_constants(self.constants, region)


@dataclass
class JsonGraph:
    """A JSON-serialisable graph interpreted by the vendor runtime named ``runtime``."""

    kind: ClassVar[str] = "json"
    graph: Any
    runtime: str
    constants: list[str] = field(default_factory=list)

    def validate(self, region: Region) -> None:
        import json

        try:
            json.dumps(self.graph)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"JsonGraph.graph is not JSON-serialisable: {exc}") from exc
        # json.dumps writes NaN and Infinity, which are not JSON: the package would hold a
        # graph.json that strict readers (other languages' parsers) refuse.
        found = _non_finite(self.graph)
        if found is not None:
            where, value = found
            raise ArtifactError(f"JsonGraph.graph{where} is {value}: JSON has no NaN or "
                                "infinity; pass such values in a constant, or as a string "
                                "the runtime parses")
        _check_runtime_name(self.runtime)
        _check_constants(self.constants, region)


def _non_finite(value: Any) -> tuple[str, float] | None:
    """The first NaN or infinite number in ``value`` (something json.dumps accepts, so
    free of cycles) and the subscripts that reach it: ``("['nodes'][0]['alpha']", nan)``."""
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", value)
    if isinstance(value, dict):
        pairs: Any = value.items()
    elif isinstance(value, list | tuple):
        pairs = enumerate(value)
    else:
        return None
    for key, item in pairs:
        found = _non_finite(item)
        if found is not None:
            return f"[{key!r}]{found[0]}", found[1]
    return None


@dataclass
class Binary:
    """Opaque bytes loaded by the vendor runtime named ``runtime``."""

    kind: ClassVar[str] = "binary"
    data: bytes
    runtime: str
    constants: list[str] = field(default_factory=list)

    def validate(self, region: Region) -> None:
        if not isinstance(self.data, bytes | bytearray):
            raise ArtifactError(f"Binary.data must be bytes, not {type(self.data).__name__}")
        _check_runtime_name(self.runtime)
        _check_constants(self.constants, region)


Artifact = CSource | JsonGraph | Binary
ARTIFACT_TYPES: dict[str, type] = {cls.kind: cls for cls in (CSource, JsonGraph, Binary)}

#: What a target provides to turn regions into artifacts.
Codegen = Callable[[Region], Artifact]


def _check_runtime_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"the runtime must be named by a non-empty string, not {name!r}")


def _check_constants(names: Any, region: Region) -> None:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ArtifactError("constants must be a list of constant names")
    unknown = [n for n in names if n not in region.constants]
    if unknown:
        raise ArtifactError(
            f"constants {unknown} are not bound in region {region.name} "
            f"(bound: {sorted(region.constants)})"
        )
