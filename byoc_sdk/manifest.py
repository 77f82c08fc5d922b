"""The JSON Schema (draft 2020-12) of a package's ``manifest.json``: loading validates each
manifest against it before reading a field (byoc_sdk.package), which also checks what no
schema can say (that what one field names, another holds). Unknown fields are allowed, for
manifests of a newer byoc. An enum's or pattern's ``description`` is what an error says
the value is not (``is 'floaty', not an ONNX element type``)."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from byoc_sdk.codegen import ARTIFACT_TYPES
from byoc_sdk.node_info import dtype_name

_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}


def _map(values: dict[str, Any]) -> dict[str, Any]:
    """An object used as a map from names (of members, constants...) to ``values``."""
    return {"type": "object", "additionalProperties": values}


#: TensorSpecs as ``to_json`` writes them (-1 marks a dynamic dimension).
_SPECS = {"type": "array", "items": {
    "type": "object",
    "required": ["name", "dtype", "shape"],
    "properties": {
        "name": _STRING,
        "dtype": {"type": "string", "description": "an ONNX element type",
                  "enum": sorted({dtype_name(t) for t in ir.DataType
                                  if t != ir.DataType.UNDEFINED})},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
        "sha256": {"type": ["string", "null"]},
    },
}}

#: The fields a compiled region's artifact adds to it, by the artifact's kind.
_ARTIFACT_FIELDS = {"c_source": ["entry", "language", "flags", "sources"],
                    "json": ["runtime"], "binary": ["runtime"]}

_REGION = {
    "type": "object",
    "required": ["name", "target", "status", "reason"],
    "properties": {
        "name": _STRING, "target": _STRING, "reason": _STRING,
        "status": {"enum": ["compiled", "fallback"]}, "kind": {"type": ["string", "null"]},
        "inputs": _SPECS, "outputs": _SPECS,
        "constants": _map(_STRING),  # constant name -> sha256 in the constants table
        "init_constants": _STRINGS, "flags": _STRINGS, "sources": _STRINGS,
        "entry": _STRING, "language": _STRING, "runtime": _STRING,
    },
    # The loader reads a signature's outputs wherever it finds its inputs.
    "dependentSchemas": {"inputs": {"required": ["outputs"]},
                         "outputs": {"required": ["inputs"]}},
    # A fallback keeps no artifact (the host runs its ONNX function). Each "if" requires
    # what it tests, so that a missing status or kind is reported as missing, not as
    # the fields that some status or kind would need.
    "if": {"required": ["status"], "properties": {"status": {"const": "compiled"}}},
    "then": {
        "required": ["kind", "inputs", "outputs", "constants", "init_constants"],
        "properties": {"kind": {"enum": sorted(ARTIFACT_TYPES)}},
        "allOf": [{"if": {"required": ["kind"], "properties": {"kind": {"const": kind}}},
                   "then": {"required": fields}} for kind, fields in _ARTIFACT_FIELDS.items()],
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "byoc package manifest",
    "type": "object",
    "required": ["format", "format_version", "byoc_version", "platform", "targets", "inputs",
                 "outputs", "step_constants", "constants", "regions", "members"],
    "properties": {
        # format's value and format_version's are read (each with its own error) first.
        "format": _STRING, "format_version": {"type": "integer"}, "byoc_version": _STRING,
        "platform": {"type": "object", "required": ["tag"], "properties": {"tag": _STRING}},
        "targets": _map(_STRING),  # target name -> version
        "inputs": _SPECS, "outputs": _STRINGS, "regions": {"type": "array", "items": _REGION},
        "step_constants": _map(_STRING),  # main-graph value name -> sha256
        "constants": _map({"type": "object", "required": ["dtype", "shape"], "properties": {
            "dtype": _STRING,
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        }}),
        "members": _map({"type": "string", "pattern": "^[0-9a-f]{64}$",  # name -> sha256
                         "description": "a sha256 (64 hex digits)"}),
    },
}
