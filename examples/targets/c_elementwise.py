"""Example target ``cdemo``: a codegen that prints C for each region.

The C-source route is the shortest way to a working backend. The codegen returns a
:class:`~byoc_sdk.CSource`; byoc compiles it with the system C compiler (cached by
content, in parallel with other regions), loads it through its native core, and calls
its entry function directly — there is no Python between a run's steps and the code.

What the generated file looks like (region ``cdemo_0``, ``r = Relu(x @ w + b)``)::

    #include <math.h>
    #include <stdlib.h>
    #include "byoc/abi.h"

    BYOC_DEFINE_ABI_VERSION

    static const float* c0; /* w: float32 (8, 16) */
    static const float* c1; /* b: float32 (16,) */

    BYOC_EXPORT int32_t cdemo_0_init(const byoc_tensor* constants, int32_t num_constants,
                                     char* error, size_t error_size) { ... c0 = ...; }

    BYOC_EXPORT int32_t cdemo_0(const byoc_tensor* inputs, int32_t num_inputs,
                                const byoc_tensor* outputs, int32_t num_outputs,
                                char* error, size_t error_size) {
      ...
      /* MatMul: x (4, 8) @ w (8, 16) -> (4, 16), a plain triple loop */
      /* Add, Relu fused: one loop over 64 elements */
    }

How it maps onto the module ABI (``cpp/include/byoc/abi.h``):

* constants are handed to ``<entry>_init`` once, in the order the artifact lists them;
  the caller keeps those buffers alive, so the module keeps bare pointers and copies
  nothing (and has no ``_release``: it owns nothing);
* the entry function may run on several threads at once, so it keeps no mutable global
  state: intermediate values live in a buffer it allocates per call;
* failures return a status and a message; the ``check_finite`` option shows one (the
  entry rejects inputs holding NaN or infinity, naming the input and element).

Elementwise ops of the same shape are fused into one loop; a value the rest of the
region does not need never leaves a register. Composite calls (``matmul_add``) are
expanded into their bodies' ops, which the same rules then fuse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from byoc_sdk import CSource, Region, RegionPolicy, Target

from .kernels import BINARY, MATMUL, UNARY
from .ops import OpStep, Program, broadcast_kind, declare_support, lower

#: Codegen options (override per build: ``build(..., options={"cdemo": {...}})``).
DEFAULT_OPTIONS = {
    # Make the entry check its inputs for NaN/inf and fail with a message if it finds one.
    "check_finite": False,
}

# C expressions of the ops; {a} and {b} are the operands' (float) expressions.
_UNARY_C = {
    "Relu": "fmaxf({a}, 0.0f)",
    "Sigmoid": "1.0f / (1.0f + expf(-{a}))",
    "Tanh": "tanhf({a})",
    "Abs": "fabsf({a})",
    "Neg": "-{a}",
    "Exp": "expf({a})",
}
_BINARY_C = {
    "Add": "{a} + {b}",
    "Sub": "{a} - {b}",
    "Mul": "{a} * {b}",
    "Div": "{a} / {b}",
    "Max": "fmaxf({a}, {b})",
    "Min": "fminf({a}, {b})",
}
assert set(_UNARY_C) == set(UNARY) and set(_BINARY_C) == set(BINARY)


def codegen(region: Region) -> CSource:
    """The C source of ``region``: one file, one entry function named after it."""
    program = lower(region)
    entry = _c_identifier(region.name)
    source = _CWriter(program, entry, bool(region.options.get("check_finite"))).write()
    return CSource({f"{entry}.c": source}, entry, constants=program.constant_names)


target = declare_support(Target(
    "cdemo",
    version="1.0.0",
    vendor="byoc examples",
    description="Example: C source per region (elementwise ops and MatMul, float32)",
    policy=RegionPolicy.keep_all(),
    codegen=codegen,
    options=dict(DEFAULT_OPTIONS),
))


# --- printing C ----------------------------------------------------------------------


@dataclass
class _Group:
    """Steps printed as one loop nest: a MatMul alone, or elementwise ops of one shape."""

    steps: list[OpStep] = field(default_factory=list)

    @property
    def fusable(self) -> bool:
        return self.steps[0].op != MATMUL

    @property
    def shape(self) -> tuple[int, ...]:
        return self.steps[0].shape


class _CWriter:
    def __init__(self, program: Program, entry: str, check_finite: bool) -> None:
        self.program = program
        self.entry = entry
        self.check_finite = check_finite
        self.readers = program.uses()
        self.lines: list[str] = []
        # Every value becomes a pointer named by its role: in<i>, out<i>, c<i> (a
        # constant) or t<i> (an intermediate in the per-call scratch buffer).
        self.var: dict[str, str] = {}
        for i, spec in enumerate(program.inputs):
            self.var[spec.name] = f"in{i}"
        for i, spec in enumerate(program.outputs):
            self.var[spec.name] = f"out{i}"
        for i, name in enumerate(program.constant_names):
            self.var[name] = f"c{i}"
        self.scratch_offsets: dict[str, int] = {}  # intermediate -> offset in scratch

    def write(self) -> str:
        groups = self.fuse()
        scratch = self.plan_scratch(groups)
        self.lines = [
            f"/* Generated by the byoc example target cdemo for region "
            f"{_comment(self.program.region)}. */",
            "#include <math.h>",
            "#include <stdlib.h>",
            '#include "byoc/abi.h"',
            "",
            "BYOC_DEFINE_ABI_VERSION",
            "",
        ]
        self.write_init()
        self.write_entry(groups, scratch)
        return "\n".join(self.lines) + "\n"

    # Which steps share a loop, and which values need memory.

    def fuse(self) -> list[_Group]:
        """Consecutive elementwise steps of one output shape share a loop."""
        groups: list[_Group] = []
        for step in self.program.steps:
            fusable = step.op != MATMUL
            if groups and fusable and groups[-1].fusable and groups[-1].shape == step.shape:
                groups[-1].steps.append(step)
            else:
                groups.append(_Group([step]))
        return groups

    def stored(self, name: str, group: _Group) -> bool:
        """Whether a value computed in ``group`` must be written to memory: it is an
        output, or a step outside its loop reads it."""
        if self.var.get(name, "").startswith("out"):
            return True
        inside = {id(s) for s in group.steps}
        return any(id(self.program.steps[i]) not in inside for i in self.readers.get(name, ()))

    def plan_scratch(self, groups: list[_Group]) -> int:
        """Give each stored intermediate a slice of one per-call scratch buffer; returns
        its size in floats. (No reuse between values: the examples keep it simple.)"""
        offset = 0
        for group in groups:
            for step in group.steps:
                if step.output not in self.var and self.stored(step.output, group):
                    self.var[step.output] = f"t{len(self.scratch_offsets)}"
                    self.scratch_offsets[step.output] = offset
                    offset += math.prod(step.shape)
        return offset

    # The functions.

    def write_init(self) -> None:
        constants = self.program.constants
        if not constants:
            return  # no _init: byoc calls it only if the module exports it
        for i, constant in enumerate(constants):
            self.lines.append(f"static const float* c{i}; /* {_comment(constant.name)}: "
                              f"float32 {constant.spec.shape} */")
        self.lines += [
            "",
            f"BYOC_EXPORT int32_t {self.entry}_init(const byoc_tensor* constants, "
            "int32_t num_constants,",
            "    char* error, size_t error_size) {",
            f"  if (num_constants != {len(constants)}) {{",
            f'    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, '
            f'"{self.entry}_init expects {len(constants)} constants");',
            "  }",
        ]
        for i, constant in enumerate(constants):
            numel = math.prod(constant.spec.shape)
            self.lines += [
                f"  if (constants[{i}].dtype != BYOC_FLOAT32 || "
                f"byoc_numel(&constants[{i}]) != {numel}) {{",
                f"    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "
                f'"constant {i} ({_c_string(constant.name, printf=False)}) is not float32 '
                f'with {numel} elements");',
                "  }",
            ]
        # Bare pointers: abi.h promises these buffers outlive every call.
        for i in range(len(constants)):
            self.lines.append(f"  c{i} = (const float*)constants[{i}].data;")
        self.lines += ["  return BYOC_OK;", "}", ""]

    def write_entry(self, groups: list[_Group], scratch: int) -> None:
        program = self.program
        add = self.lines.append
        add(f"BYOC_EXPORT int32_t {self.entry}(const byoc_tensor* inputs, int32_t num_inputs,")
        add("    const byoc_tensor* outputs, int32_t num_outputs,")
        add("    char* error, size_t error_size) {")
        n_in, n_out = len(program.inputs), len(program.outputs)
        add(f"  if (num_inputs != {n_in} || num_outputs != {n_out}) {{")
        add(f'    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "{self.entry} takes '
            f'{len(program.inputs)} inputs and {len(program.outputs)} outputs");')
        add("  }")
        for i, spec in enumerate(program.inputs):
            add(f"  const float* in{i} = (const float*)inputs[{i}].data; "
                f"/* {_comment(spec.name)} {spec.shape} */")
        for i, spec in enumerate(program.outputs):
            add(f"  float* out{i} = (float*)outputs[{i}].data; "
                f"/* {_comment(spec.name)} {spec.shape} */")
        if self.check_finite:
            self.write_finite_checks()
        if scratch:
            # Per call, not static: concurrent calls must not share intermediates.
            add(f"  float* scratch = (float*)malloc({scratch} * sizeof(float));")
            add("  if (scratch == NULL) {")
            add('    return byoc_fail(error, error_size, BYOC_OUT_OF_MEMORY, '
                '"no memory for intermediates");')
            add("  }")
            for name, offset in self.scratch_offsets.items():
                add(f"  float* {self.var[name]} = scratch + {offset}; /* {_comment(name)} */")
        for group in groups:
            if group.fusable:
                self.write_elementwise(group)
            else:
                self.write_matmul(group.steps[0])
        if scratch:
            add("  free(scratch);")
        add("  return BYOC_OK;")
        add("}")

    def write_finite_checks(self) -> None:
        for i, spec in enumerate(self.program.inputs):
            numel = math.prod(spec.shape)
            self.lines += [
                f"  for (int64_t i = 0; i < {numel}; ++i) {{",
                f"    if (!isfinite(in{i}[i])) {{",
                f'      snprintf(error, error_size, "input {_c_string(spec.name)} holds a '
                f'non-finite value at element %lld", (long long)i);',
                "      return BYOC_INVALID_ARGUMENT;",
                "    }",
                "  }",
            ]

    def write_matmul(self, step: OpStep) -> None:
        x, w = step.inputs
        k, n = self.program.shapes[w]
        rows = math.prod(step.shape) // n
        out, a, b = self.var[step.output], self.var[x], self.var[w]
        self.lines += [
            f"  /* MatMul: {_comment(x)} {self.program.shapes[x]} @ {_comment(w)} ({k}, {n}) "
            f"-> {step.shape} */",
            f"  for (int64_t r = 0; r < {rows}; ++r) {{",
            f"    for (int64_t j = 0; j < {n}; ++j) {{",
            "      float acc = 0.0f;",
            f"      for (int64_t p = 0; p < {k}; ++p) acc += {a}[r * {k} + p] * {b}[p * {n} + j];",
            f"      {out}[r * {n} + j] = acc;",
            "    }",
            "  }",
        ]

    def write_elementwise(self, group: _Group) -> None:
        numel = math.prod(group.shape)
        ops = ", ".join(s.op for s in group.steps)
        self.lines.append(f"  /* {ops}: one loop over {numel} elements */")
        self.lines.append(f"  for (int64_t i = 0; i < {numel}; ++i) {{")
        local: dict[str, str] = {}  # values computed in this loop -> their register
        for step in group.steps:
            args = [local.get(name) or self.element(name, group.shape) for name in step.inputs]
            template = _UNARY_C.get(step.op) or _BINARY_C[step.op]
            register = f"v{len(local)}"
            local[step.output] = register
            expression = template.format(a=args[0], b=args[-1])
            self.lines.append(f"    const float {register} = {expression}; "
                              f"/* {_comment(step.output)} */")
            if step.output in self.var:
                self.lines.append(f"    {self.var[step.output]}[i] = {register};")
        self.lines.append("  }")

    def element(self, name: str, shape: tuple[int, ...]) -> str:
        """The C expression of element ``i`` of ``name`` as seen by a loop over ``shape``."""
        how = broadcast_kind(self.program.shapes[name], shape)
        if how == "full":
            return f"{self.var[name]}[i]"
        if how == "scalar":
            return f"{self.var[name]}[0]"
        if how == "row":
            return f"{self.var[name]}[i % {shape[-1]}]"
        raise NotImplementedError(f"cannot broadcast {name} to {shape}")  # lower() rules it out


def _c_identifier(name: str) -> str:
    """A C identifier for a region name (they are usually identifiers already)."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII)
    return ident if re.match(r"[A-Za-z_]", ident) else f"r_{ident}"


def _c_string(text: str, *, printf: bool = True) -> str:
    """``text`` escaped for a C string literal (and for a printf format, if ``printf``)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "%" and printf:
            out.append("%%")
        elif char.isascii() and char.isprintable():
            out.append(char)
        else:
            out.append("?")
    return "".join(out)


def _comment(text: str) -> str:
    """``text`` made safe inside a C comment."""
    return text.replace("*/", "* /").encode("ascii", "replace").decode()
