"""The codegen: each region becomes one C file that byoc compiles (cached) and calls directly.

The file follows byoc's module ABI (``byoc/abi.h``, shipped with the SDK): an entry
function named after the region, and ``<entry>_init`` receiving the region's constants
once. The entry may run on several threads at once, so intermediates live in a buffer
it allocates per call and nothing else is written outside its outputs.

Each step becomes one loop nest; MatMul (and the fused matmul_add_relu) a triple loop.
Replace the loops with calls into your device's library when you have one.
"""

from __future__ import annotations

import re

from byoc_sdk import CSource, Region

from .about import DENSE_RELU, TARGET
from .lowering import BINARY, UNARY, Program, Step, broadcast_kind, lower

#: C expressions of the ops; {a} and {b} stand for the operands' element expressions.
#: Max, Min and Relu go through the helpers in HELPERS_C, which keep a NaN operand as
#: onnxruntime does (fmaxf and fminf return the other operand and would hide it).
UNARY_C = {
    "Relu": "nan_max({a}, 0.0f)",
    "Sigmoid": "1.0f / (1.0f + expf(-{a}))",
    "Tanh": "tanhf({a})",
    "Abs": "fabsf({a})",
    "Neg": "-{a}",
    "Exp": "expf({a})",
}
BINARY_C = {
    "Add": "{a} + {b}",
    "Sub": "{a} - {b}",
    "Mul": "{a} * {b}",
    "Div": "{a} / {b}",
    "Max": "nan_max({a}, {b})",
    "Min": "nan_min({a}, {b})",
}
HELPERS_C = [
    "static inline float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }",
    "static inline float nan_min(float a, float b) { return (a < b || a != a) ? a : b; }",
]
assert set(UNARY_C) == set(UNARY) and set(BINARY_C) == set(BINARY)


def codegen(region: Region) -> CSource:
    """The C source of ``region``: one file, one entry function named after it."""
    program = lower(region)
    entry = re.sub(r"\W", "_", f"{TARGET}_{region.name}", flags=re.ASCII)
    return CSource({f"{entry}.c": _Writer(program, entry).write()}, entry,
                   constants=program.constants)


class _Writer:
    """Prints one program as C: every value is a float pointer named by its role."""

    def __init__(self, program: Program, entry: str) -> None:
        self.program = program
        self.entry = entry
        self.var: dict[str, str] = {}
        for i, name in enumerate(program.inputs):
            self.var[name] = f"in{i}"
        for i, name in enumerate(program.outputs):
            self.var[name] = f"out{i}"
        for i, name in enumerate(program.constants):
            self.var[name] = f"c{i}"
        self.offsets: dict[str, int] = {}  # intermediate -> offset in the scratch buffer
        self.scratch = 0
        for step in program.steps:
            if step.output not in self.var:
                self.var[step.output] = f"t{len(self.offsets)}"
                self.offsets[step.output] = self.scratch
                self.scratch += program.size(step.output)
        self.lines: list[str] = []

    def write(self) -> str:
        self.lines = [f"/* {TARGET}: generated for region {_comment(self.program.region)} */",
                      "#include <math.h>", "#include <stdlib.h>", '#include "byoc/abi.h"', "",
                      "BYOC_DEFINE_ABI_VERSION", *HELPERS_C, ""]
        self.write_init()
        self.write_entry()
        return "\n".join(self.lines) + "\n"

    def write_init(self) -> None:
        count = len(self.program.constants)
        if not count:
            return
        self.lines += [f"static const float* c{i};" for i in range(count)]
        self.lines += [
            "",
            f"BYOC_EXPORT int32_t {self.entry}_init(const byoc_tensor* constants, int32_t n,",
            "                             char* error, size_t error_size) {",
            f"  if (n != {count}) {{",
            '    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "wrong constants");',
            "  }",
        ]
        # Bare pointers: the ABI keeps the constant buffers alive while the module is loaded.
        self.lines += [f"  c{i} = (const float*)constants[{i}].data;" for i in range(count)]
        self.lines += ["  return BYOC_OK;", "}", ""]

    def write_entry(self) -> None:
        program = self.program
        n_in, n_out = len(program.inputs), len(program.outputs)
        self.lines += [
            f"BYOC_EXPORT int32_t {self.entry}(const byoc_tensor* inputs, int32_t num_inputs,",
            "                const byoc_tensor* outputs, int32_t num_outputs,",
            "                char* error, size_t error_size) {",
            f"  if (num_inputs != {n_in} || num_outputs != {n_out}) {{",
            '    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "wrong arguments");',
            "  }",
        ]
        self.lines += [f"  const float* in{i} = (const float*)inputs[{i}].data;"
                       for i in range(n_in)]
        self.lines += [f"  float* out{i} = (float*)outputs[{i}].data;" for i in range(n_out)]
        if self.scratch:
            # Per call, not static: calls from several threads must not share intermediates.
            self.lines += [
                f"  float* scratch = (float*)malloc({self.scratch} * sizeof(float));",
                "  if (scratch == NULL) {",
                '    return byoc_fail(error, error_size, BYOC_OUT_OF_MEMORY, "out of memory");',
                "  }",
            ]
        # Intermediates of zero elements (an empty batch) still need their names: the
        # loops that never run still mention them.
        for name, offset in self.offsets.items():
            where = f"scratch + {offset}" if self.scratch else "NULL"
            self.lines.append(f"  float* {self.var[name]} = {where};")
        for step in program.steps:
            if step.op in ("MatMul", DENSE_RELU):
                self.write_matmul(step)
            else:
                self.write_elementwise(step)
        if self.scratch:
            self.lines.append("  free(scratch);")
        self.lines += ["  return BYOC_OK;", "}"]

    def write_elementwise(self, step: Step) -> None:
        operands = {"a": self.element(step.inputs[0], step.shape)}
        if len(step.inputs) > 1:
            operands["b"] = self.element(step.inputs[1], step.shape)
        expression = (UNARY_C.get(step.op) or BINARY_C[step.op]).format(**operands)
        self.lines += [f"  /* {step.op} */",
                       f"  for (int64_t i = 0; i < {self.program.size(step.output)}; ++i) {{",
                       f"    {self.var[step.output]}[i] = {expression};",
                       "  }"]

    def write_matmul(self, step: Step) -> None:
        x, w = step.inputs[0], step.inputs[1]
        k, n = self.program.shapes[w]
        rows = self.program.size(step.output) // n
        out, a, b = self.var[step.output], self.var[x], self.var[w]
        value = "acc"
        if step.op == DENSE_RELU:
            value = f"nan_max(acc + {self.element(step.inputs[2], (n,), index='j')}, 0.0f)"
        self.lines += [
            f"  /* {step.op}: ({rows} x {k}) @ ({k} x {n}) */",
            f"  for (int64_t r = 0; r < {rows}; ++r) {{",
            f"    for (int64_t j = 0; j < {n}; ++j) {{",
            "      float acc = 0.0f;",
            f"      for (int64_t p = 0; p < {k}; ++p) acc += {a}[r * {k} + p] * {b}[p * {n} + j];",
            f"      {out}[r * {n} + j] = {value};",
            "    }",
            "  }",
        ]

    def element(self, name: str, shape: tuple[int, ...], index: str = "i") -> str:
        """Element ``index`` of ``name`` as a loop over ``shape`` sees it."""
        how = broadcast_kind(self.program.shapes[name], shape)
        if how == "scalar":
            return f"{self.var[name]}[0]"
        if how == "row" and index == "i":
            return f"{self.var[name]}[i % {shape[-1]}]"
        return f"{self.var[name]}[{index}]"


def _comment(text: str) -> str:
    return text.replace("*/", "* /").encode("ascii", "replace").decode()
