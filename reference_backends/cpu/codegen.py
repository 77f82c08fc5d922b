"""The cpu target's codegen: a region in, one C source file out (``CSource``).

The module holds, in order: the prelude, shared helpers (micro-kernels, packing,
derived constant arrays), the state ``_init`` builds from the region's constants
(copies and packed weights, shared by every load of the same library and reference
counted), one static function per kernel, and the entry function, which checks its
arguments, allocates one workspace for the call, runs the kernels and frees it.

The source names every constant's sha256 in its header, so two regions with the same
code but other weights never share a compiled library (and its state).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from byoc_sdk.codegen import CSource, Region
from reference_backends.cpu.cwriter import CWriter, c_identifier, int_list
from reference_backends.cpu.graph import RegionGraph, Tensor
from reference_backends.cpu.kernels.base import (
    ABI_DTYPES,
    CTYPES,
    KernelContext,
    ModuleContext,
    ctype,
)
from reference_backends.cpu.lower import Program, plan
from reference_backends.cpu.prelude import prelude


def generate(region: Region) -> CSource:
    """The codegen entry point (``target.codegen``)."""
    program = plan(region)
    return write_module(region, program)


def write_module(region: Region, program: Program) -> CSource:
    """The C source of ``program`` as a :class:`CSource`."""
    entry = c_identifier(f"byoc_cpu_{region.name}", "byoc")
    module = ModuleContext(program.region)
    storage = _Storage(program)
    kernels = CWriter()
    calls: list[str] = []
    for index, kernel in enumerate(program.kernels):
        name = f"k{index}"
        if not kernel.output.size:
            # Nothing to compute (a MatMul of no rows), and the kernels' tile loops assume
            # at least one element.
            kernels.comment(f"{name}: {kernel.describe()} (empty output: not run)")
            kernels.line()
            continue
        ctx = KernelContext(module, storage.name)
        body = CWriter(depth=1)
        kernel.emit(body, ctx)
        kernels.comment(f"{name}: {kernel.describe()}")
        params = ", ".join([*(p.decl for p in ctx.params.values()),
                            "char* error", "size_t error_size"])
        kernels.line(f"static int32_t {name}({params}) {{")
        kernels.line("  (void)error; (void)error_size;")
        kernels.extend(body)
        kernels.line("  return BYOC_OK;")
        kernels.line("}")
        kernels.line()
        arguments = ", ".join([*(p.argument for p in ctx.params.values()),
                               "error", "error_size"])
        calls.append(f"{name}({arguments})")
    copies = _output_copies(program, module, storage.name)
    constants = [t.name for t in module.constants]
    text = "\n".join([
        _header(region, program, constants),
        prelude(program.region.vector_width),
        f"#define BYOC_SCRATCH ((size_t){module.scratch_bytes})",
        "",
        *module.helpers.values(),
        _state(entry, module),
        kernels.text(),
        _entry(entry, program, storage, calls, copies),
    ])
    flags = _flags(program)
    return CSource(sources={f"{entry}.c": text}, entry=entry, constants=constants, flags=flags)


def _flags(program: Program) -> list[str]:
    """Extra compiler flags. ``-fno-math-errno`` lets loops over sqrtf and friends
    vectorize (nothing reads errno). ``-z nodelete`` keeps the module mapped after the
    native core closes it: the OpenMP runtime it pulled in must outlive its worker
    threads, which stay parked inside it; unloading it with them alive crashes the
    process at their next wake-up."""
    flags = ["-fno-math-errno"]
    if sys.platform.startswith("linux"):
        flags.append("-Wl,-z,nodelete")
    return flags


def _header(region: Region, program: Program, constants: list[str]) -> str:
    w = CWriter()
    w.comment(f"byoc cpu module for region {region.name} (generated; do not edit).")
    w.comment("kernels:")
    for index, kernel in enumerate(program.kernels):
        w.comment(f"  k{index}: {kernel.describe()}")
    w.comment(f"region parameters: vector_width={program.region.vector_width}, "
              f"threads={program.region.threads}, layout={program.region.layout}")
    for name in constants:
        w.comment(f"constant {name}: sha256 {region.constants[name].sha256}")
    return w.text()


class _Storage:
    """C names of where each tensor lives inside the entry function."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.outputs = {root: output.output_index
                        for output, root in program.output_roots.items()}
        self.workspace = {root: f"t{n}" for n, root in enumerate(program.offsets)}

    def name(self, tensor: Tensor) -> str:
        root = tensor.root()
        if root.input_index is not None:
            return f"in{root.input_index}"
        if root in self.outputs:
            return f"out{self.outputs[root]}"
        if root in self.workspace:
            return self.workspace[root]
        raise AssertionError(f"tensor {tensor.name!r} has no storage")

    def declarations(self, w: CWriter) -> None:
        graph = self.program.graph
        for tensor in graph.inputs:
            c = ctype(tensor)
            w.line(f"const {c}* in{tensor.input_index} = "
                   f"(const {c}*)inputs[{tensor.input_index}].data;")
        for tensor in graph.outputs:
            c = ctype(tensor)
            w.line(f"{c}* out{tensor.output_index} = ({c}*)outputs[{tensor.output_index}].data;")
        for root, name in self.workspace.items():
            c = ctype(root)
            w.line(f"{c}* {name} = ({c}*)(ws + {self.program.offsets[root]});")


def _state(entry: str, module: ModuleContext) -> str:
    """The state struct, its build and free functions, ``_init`` and ``_release``."""
    w = CWriter()
    fields = list(module.state.values())
    with w.block("static struct", end="} S;"):
        for field in fields:
            w.line(f"{field.ctype}* {field.name};")
        w.line("int unused;")
    w.line("static int byoc_refs = 0;")
    w.line("static pthread_mutex_t byoc_lock = PTHREAD_MUTEX_INITIALIZER;")
    w.line()
    with w.block("static void byoc_state_free(void)"):
        for field in fields:
            w.line(f"free(S.{field.name}); S.{field.name} = NULL;")
    w.line()
    with w.block("static int32_t byoc_state_build(const byoc_tensor* constants)"):
        w.line("(void)constants;")
        for field in fields:
            w.line(f"S.{field.name} = ({field.ctype}*)byoc_alloc("
                   f"(size_t){field.count} * sizeof({field.ctype}));")
            w.line(f"if (S.{field.name} == NULL) return BYOC_OUT_OF_MEMORY;")
        for field in fields:
            with w.block():
                field.fill(w)
        w.line("return BYOC_OK;")
    w.line()
    write_lifecycle(w, entry, module.constants, export="BYOC_EXPORT",
                    build="byoc_state_build(constants)",
                    failure=("byoc_fail(error, error_size, status, "
                             f'"{entry}_init: out of memory")'))
    return w.text()


def write_lifecycle(w: CWriter, entry: str, constants: list[Tensor], *, export: str,
                    build: str, failure: str) -> None:
    """``<entry>_init`` and ``<entry>_release`` around a module's shared state: the first
    init checks the constants and builds the state (``build``, a C call returning a
    status; ``failure``, the C expression returned when it fails), later ones count
    references, and the last release frees it (``byoc_state_free``). The count is
    published with release order, so an entry that reads it with acquire order (see
    :func:`check_arguments`) also sees the state."""
    signature = (f"{export} int32_t {entry}_init(const byoc_tensor* constants, "
                 "int32_t num_constants, char* error, size_t error_size)")
    with w.block(signature):
        count = len(constants)
        check_count(w, "num_constants", count, f"{entry}_init takes {count} constants")
        check_tensors(w, "constants", constants, f"{entry}_init: constant")
        w.line("pthread_mutex_lock(&byoc_lock);")
        w.line("int32_t status = BYOC_OK;")
        with w.block("if (byoc_refs == 0)"):
            w.line(f"status = {build};")
            w.line("if (status != BYOC_OK) byoc_state_free();")
        w.line("if (status == BYOC_OK) __atomic_store_n(&byoc_refs, byoc_refs + 1, "
               "__ATOMIC_RELEASE);")
        w.line("pthread_mutex_unlock(&byoc_lock);")
        w.line(f"return status == BYOC_OK ? BYOC_OK : {failure};")
    w.line()
    with w.block(f"{export} void {entry}_release(void)"):
        w.line("pthread_mutex_lock(&byoc_lock);")
        with w.block("if (byoc_refs > 0)"):
            w.line("__atomic_store_n(&byoc_refs, byoc_refs - 1, __ATOMIC_RELEASE);")
            w.line("if (byoc_refs == 0) byoc_state_free();")
        w.line("pthread_mutex_unlock(&byoc_lock);")


def check_arguments(w: CWriter, entry: str, graph: RegionGraph) -> None:
    """The entry's checks before any work: ``_init`` has run (acquire order: see
    :func:`write_lifecycle`), and the inputs and outputs are the tensors ``graph``
    declares."""
    with w.block("if (__atomic_load_n(&byoc_refs, __ATOMIC_ACQUIRE) == 0)"):
        w.line(f'return byoc_fail(error, error_size, BYOC_ERROR, "{entry} was called '
               f'before {entry}_init");')
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    check_count(w, "num_inputs", n_in, f"{entry} takes {n_in} inputs")
    check_count(w, "num_outputs", n_out, f"{entry} takes {n_out} outputs")
    check_tensors(w, "inputs", graph.inputs, f"{entry}: input")
    check_tensors(w, "outputs", graph.outputs, f"{entry}: output")


def check_count(w: CWriter, variable: str, count: int, message: str) -> None:
    with w.block(f"if ({variable} != {count})"):
        w.line(f'return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "{message}");')


def check_tensors(w: CWriter, array: str, tensors: list[Tensor], what: str) -> None:
    for index, tensor in enumerate(tensors):
        shape = tensor.shape
        w.line(f"static const int64_t {array}_shape{index}[] = "
               f"{int_list(shape) if shape else '{0}'};")
        condition = (f"!byoc_check(&{array}[{index}], {ABI_DTYPES[tensor.dtype]}, "
                     f"{len(shape)}, {array}_shape{index})")
        dims = ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "")
        message = (f"{what} {index} ({_c_string(tensor.name)}) must be a contiguous "
                   f"{tensor.dtype} ({dims})")
        with w.block(f"if ({condition})"):
            w.line(f'return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "{message}");')


def _c_string(text: str) -> str:
    return "'" + "".join(ch if ch.isprintable() and ch not in '"\\' else "?"
                         for ch in text) + "'"


def _entry(entry: str, program: Program, storage: _Storage, calls: list[str],
           copies: list[str]) -> str:
    graph = program.graph
    w = CWriter()
    w.line(f"BYOC_EXPORT int32_t {entry}(const byoc_tensor* inputs, int32_t num_inputs,")
    w.line("    const byoc_tensor* outputs, int32_t num_outputs, char* error, "
           "size_t error_size) {")
    body = CWriter(depth=1)
    check_arguments(body, entry, graph)
    threads = program.region.threads
    body.line("int threads = omp_get_max_threads();")
    if threads:
        body.line(f"if (threads < {threads}) threads = {threads};")
    body.line(f"const size_t ws_bytes = (size_t){program.workspace_bytes};")
    body.line("char* ws = (char*)byoc_alloc(ws_bytes + (size_t)threads * BYOC_SCRATCH);")
    with body.block("if (ws == NULL)"):
        body.line(f'return byoc_fail(error, error_size, BYOC_OUT_OF_MEMORY, "{entry}: '
                  'cannot allocate its workspace");')
    body.line("char* scratch = ws + ws_bytes;")
    body.line("(void)scratch;")
    storage.declarations(body)
    body.line("int32_t status = BYOC_OK;")
    for call in calls:
        body.line(f"status = {call};")
        body.line("if (status != BYOC_OK) goto done;")
    for copy in copies:
        body.line(copy)
    w.extend(body)
    w.line("done:")
    w.line("  free(ws);")
    w.line("  return status;")
    w.line("}")
    return w.text()


def _output_copies(program: Program, module: ModuleContext,
                   name_of: Callable[[Tensor], str]) -> list[str]:
    """Copies into region outputs whose values live elsewhere (an input, a constant,
    another output's buffer)."""
    copies = []
    for output in program.graph.outputs:
        if output in program.output_roots:
            continue
        size = f"(size_t){output.size} * sizeof({CTYPES[output.dtype]})"
        source = f"S.{module.constant_buffer(output)}" if output.is_const else name_of(output)
        copies.append(f"memcpy(out{output.output_index}, {source}, {size});")
    return copies
