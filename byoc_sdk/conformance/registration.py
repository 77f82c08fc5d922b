"""Registration checks: the target loads from its entry point and declares sound things.

Each check returns an :class:`~byoc_sdk.conformance.checks.Outcome` or raises
``Failed``/``Skipped`` listing every problem it found, not only the first.
"""

from __future__ import annotations

import re

import numpy as np
import onnx

from byoc_sdk.conformance.cases import schema_dtypes
from byoc_sdk.conformance.checks import Failed, Outcome, Skipped
from byoc_sdk.conformance.context import TargetContext
from byoc_sdk.target import Target

#: PEP 440-ish: what packaging tools accept as a version.
_VERSION = re.compile(r"^\d+(\.\d+)*([._-]?(a|b|rc|dev|post)\d*)*(\+[A-Za-z0-9.]+)?$")
_KNOWN_DTYPES = {"float32", "float16", "float64", "bfloat16", "int8", "int16", "int32",
                 "int64", "uint8", "uint16", "uint32", "uint64", "bool", "complex64",
                 "complex128", "string", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                 "float8_e5m2fnuz", "int4", "uint4", "float4_e2m1"}


def check(which: str, context: TargetContext) -> Outcome:
    """Run registration check ``which`` ("entry-point", "metadata", "declarations",
    "codegen")."""
    if which == "entry-point":
        return _entry_point(context)
    target = _loaded(context)
    problems = {"metadata": _metadata, "declarations": _declarations,
                "codegen": _codegen}[which](target)
    if len(problems) == 1:
        raise Failed(problems[0])
    if problems:
        raise Failed(f"{len(problems)} problems: " + "; ".join(problems))
    return Outcome(detail=_summary(which, target))


def _loaded(context: TargetContext) -> Target:
    if context.target is None:
        raise Failed(f"target {context.name} did not load: {context.load_error}")
    return context.target


def _entry_point(context: TargetContext) -> Outcome:
    if context.entry_point is None:
        if context.target is not None:
            raise Skipped(f"target {context.name} is registered in-process, not through the "
                          "byoc.targets entry point")
        raise Failed(f"no byoc.targets entry point is named {context.name}: "
                     f"{context.load_error}")
    if context.target is None:
        raise Failed(context.load_error)
    return Outcome(detail=f"loads from {context.entry_point.value}")


def _metadata(target: Target) -> list[str]:
    problems = []
    if not _VERSION.match(target.version or ""):
        problems.append(f"version {target.version!r} is not a version number such as 1.2.0")
    if not target.description.strip():
        problems.append("description is empty (byoc targets and reports show it)")
    if not target.vendor.strip():
        problems.append("vendor is empty")
    if not isinstance(target.priority, int):
        problems.append(f"priority {target.priority!r} is not an integer")
    if not isinstance(target.options, dict):
        problems.append("options is not a dict")
    return problems


def _declarations(target: Target) -> list[str]:
    problems = []
    if not target.ops and not target.patterns:
        problems.append("the target declares no ops and no patterns")
    for (domain, op_type), rules in sorted(target.ops.items()):
        for rule in rules:
            problems += _rule_problems(domain, op_type, rule)
    for composite in target.patterns:
        for node in composite.pattern.walk():
            for op_type in getattr(node, "op_types", ()):
                if getattr(node, "domain", "") in ("", "ai.onnx") and not onnx.defs.has(op_type):
                    problems.append(f"pattern {composite.name} names {op_type}, not an ONNX op")
    return problems


def _rule_problems(domain: str, op_type: str, rule) -> list[str]:
    """What is wrong with one support declaration."""
    problems = []
    standard = domain in ("", "ai.onnx")
    if standard and not onnx.defs.has(op_type):
        return [f"{op_type} is not an ONNX op (declare custom ops with domain=...)"]
    first, last = rule.opsets
    if first is not None and last is not None and first > last:
        problems.append(f"{op_type}: opset range {first}-{last} is empty")
    for dtype in sorted(rule.dtypes or ()):
        if dtype not in _KNOWN_DTYPES:
            problems.append(f"{op_type}: dtype {dtype!r} is not a type name (numpy's, e.g. "
                            "float32)")
    if standard:
        opset = last if last is not None else max(first or 0, onnx.defs.onnx_opset_version())
        allowed = schema_dtypes(op_type, min(opset, onnx.defs.onnx_opset_version()), domain)
        if allowed and rule.dtypes:
            foreign = sorted(d for d in rule.dtypes if d in _KNOWN_DTYPES and d not in allowed
                             and _numpy_like(d))
            if foreign:
                problems.append(f"{op_type}: ONNX does not allow {', '.join(foreign)} for its "
                                "input 0")
        problems += _const_input_problems(op_type, rule, opset)
    return problems


def _numpy_like(dtype: str) -> bool:
    try:
        np.dtype(dtype)
    except TypeError:
        return dtype == "bfloat16"
    return True


def _const_input_problems(op_type: str, rule, opset: int) -> list[str]:
    try:
        schema = onnx.defs.get_schema(op_type, opset)
    except onnx.defs.SchemaError:
        return []
    variadic = schema.inputs and schema.inputs[-1].option == \
        onnx.defs.OpSchema.FormalParameterOption.Variadic
    return [f"{op_type}: const_inputs names input {i}, but {op_type} has "
            f"{len(schema.inputs)} inputs" for i in rule.const_inputs
            if i < 0 or (i >= len(schema.inputs) and not variadic)]


def _codegen(target: Target) -> list[str]:
    if target.codegen is None:
        return [f"target {target.name} has no codegen (Target.codegen is None): it can "
                "partition but not build, so every check that builds is skipped; a target "
                "without a codegen cannot pass conformance"]
    if not callable(target.codegen):
        return [f"codegen {target.codegen!r} is not callable"]
    return []


def _summary(which: str, target: Target) -> str:
    if which == "declarations":
        rules = sum(len(r) for r in target.ops.values())
        return f"{rules} op rules, {len(target.patterns)} patterns"
    if which == "codegen":
        return f"codegen {getattr(target.codegen, '__module__', '?')}." \
               f"{getattr(target.codegen, '__qualname__', '?')}"
    return f"{target.name} {target.version} by {target.vendor}"
