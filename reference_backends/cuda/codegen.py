"""The cuda target's codegen: a region in, one CUDA source file out (``CSource``).

The region is read, fused and planned exactly as for cpu (``reference_backends.cpu``:
one kernel per op with its elementwise chain, BatchNormalization folded into the Conv
before it); then each kernel becomes a ``__global__`` function and the module's C ABI
functions drive them:

- ``_init`` uploads the region's constants to the device once (shared by every load of
  the same library, reference counted, freed by ``_release``);
- the entry function copies the inputs to the device, launches the kernels on a stream,
  and copies the outputs back: copies happen at the region's boundary only, and every
  intermediate stays in one device workspace laid out at build time, with memory reused
  between tensors whose lifetimes do not overlap;
- calls may come from several threads at once: each call takes a stream and workspace
  from a pool (made on first need, kept for the next call);
- ``_stats`` reports copies, bytes and kernel time, which the profile shows.

With the ``emulate`` option the same source is compiled by the host C++ compiler
against ``byoc/cuda_emulation.h``, so the kernels' numbers can be checked without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from byoc_sdk.codegen import CSource, Region
from reference_backends.cpu.codegen import (
    check_arguments,
    write_lifecycle,
)
from reference_backends.cpu.cwriter import CWriter, c_identifier
from reference_backends.cpu.graph import RegionGraph, Tensor, UnsupportedError, read_region
from reference_backends.cpu.kernels.base import ctype
from reference_backends.cpu.lower import fold_batchnorms, make_kernels, pack_lifetimes
from reference_backends.cpu.params import as_record
from reference_backends.cuda.kernels import lower_op
from reference_backends.cuda.kernels.base import CudaKernel, CudaKernelContext, CudaModule
from reference_backends.cuda.params import CudaParams, cuda_params
from reference_backends.cuda.prelude import prelude


@dataclass
class Program:
    """What the writer needs: kernels in order and where every tensor lives on the
    device (byte offsets into the call's workspace, by root tensor)."""

    graph: RegionGraph
    kernels: list[CudaKernel]
    params: CudaParams
    offsets: dict[Tensor, int] = field(default_factory=dict)
    workspace_bytes: int = 0

    def kernel_params(self) -> dict[str, dict]:
        """Each kernel's schedule as a tuning record entry, by kernel name."""
        return {k.name: as_record(k.params) for k in self.kernels}


def plan(region: Region) -> Program:
    """Read, fuse and lay out ``region`` for the device."""
    params = cuda_params(region.options)
    graph = read_region(region)
    fold_batchnorms(graph)
    kernels = make_kernels(graph, lambda op: lower_op(op, params))
    for kernel in kernels:
        _check_launch(kernel)
    program = Program(graph, kernels, params)
    _place(program)
    return program


#: CUDA's limits on grid dimensions x, y and z.
GRID_LIMITS = (2**31 - 1, 65535, 65535)


def _check_launch(kernel: CudaKernel) -> None:
    """Refuse at build time a launch CUDA would refuse at run time."""
    grid = kernel.launch().grid
    for axis, (blocks, limit) in enumerate(zip(grid, GRID_LIMITS, strict=True)):
        if blocks > limit:
            raise UnsupportedError(f"node {kernel.name!r}: {blocks} blocks along grid "
                                   f"{'xyz'[axis]} (CUDA allows {limit}); larger tiles "
                                   "or fewer batches needed")


def _place(program: Program) -> None:
    """Workspace offsets for the inputs' device copies and every computed tensor: an
    input lives from the upload until its last reader, a kernel's result from its kernel
    until its last reader, and a region output until the download after the last kernel."""
    graph, kernels = program.graph, program.kernels
    end = len(kernels)
    last_use: dict[Tensor, int] = {}
    for index, kernel in enumerate(kernels):
        for tensor in kernel.reads():
            last_use[tensor.root()] = index
    for output in graph.outputs:
        last_use[output.root()] = end
    lifetimes = [(t, 0, last_use.get(t, 0)) for t in graph.inputs]
    for index, kernel in enumerate(kernels):
        root = kernel.output.root()
        lifetimes.append((root, index, max(index, last_use.get(root, index))))
    program.offsets, program.workspace_bytes = pack_lifetimes(lifetimes)


def generate(region: Region) -> CSource:
    """The codegen entry point (``target.codegen``)."""
    program = plan(region)
    return write_module(region, program)


def write_module(region: Region, program: Program) -> CSource:
    """The CUDA source of ``program`` as a :class:`CSource`."""
    entry = c_identifier(f"byoc_cuda_{region.name}", "byoc")
    module = CudaModule(region=None)
    storage = _Storage(program, module)
    kernels = CWriter()
    launches: list[str] = []
    for index, kernel in enumerate(program.kernels):
        if not kernel.output.size:
            # Nothing to compute, and CUDA refuses a launch of no blocks (a tiled product
            # with no rows, columns or batches has a grid of zero).
            continue
        ctx = CudaKernelContext(module, storage.name)
        body = CWriter(depth=1)
        kernel.emit(body, ctx)
        name = f"k{index}"
        launch = kernel.launch()
        kernels.comment(f"{name}: {kernel.describe()}")
        params = ", ".join(p.decl for p in ctx.params.values())
        kernels.line(f"static __global__ void __launch_bounds__({launch.threads}) "
                     f"{name}({params}) {{")
        kernels.extend(body)
        kernels.line("}")
        kernels.line()
        grid = ", ".join(map(str, launch.grid))
        arguments = "".join(f", {p.argument}" for p in ctx.params.values())
        launches.append(f"BYOC_LAUNCH({name}, dim3({grid}), dim3({launch.threads}), "
                        f"c->stream{arguments});")
    downloads = storage.downloads()
    text = "\n".join([
        _header(region, program, module),
        f'#define BYOC_ENTRY_NAME "{entry}"',
        f"#define BYOC_DEVICE {program.params.device}",
        prelude(),
        *module.helpers.values(),
        _state(entry, module),
        kernels.text(),
        _entry(entry, program, storage, launches, downloads),
    ])
    if program.params.emulate:
        return CSource(sources={f"{entry}.cc": text}, entry=entry,
                       constants=[t.name for t in module.constants],
                       flags=["-DBYOC_CUDA_EMULATION", "-pthread"])
    arch = program.params.arch
    return CSource(sources={f"{entry}.cu": text}, entry=entry,
                   constants=[t.name for t in module.constants], language="cuda",
                   flags=[f"-arch={arch}"] if arch else [])


def _header(region: Region, program: Program, module: CudaModule) -> str:
    w = CWriter()
    w.comment(f"byoc cuda module for region {region.name} (generated; do not edit).")
    w.comment("kernels:")
    for index, kernel in enumerate(program.kernels):
        skipped = "" if kernel.output.size else " (empty output: not launched)"
        w.comment(f"  k{index}: {kernel.describe()}{skipped}")
    w.comment(f"device {program.params.device}; workspace {program.workspace_bytes} bytes"
              + ("; built for the host emulation" if program.params.emulate else ""))
    for tensor in region.constants.values():
        w.comment(f"constant {tensor.name}: sha256 {tensor.sha256}")
    return w.text()


class _Storage:
    """Device names of where each tensor lives inside the entry function."""

    def __init__(self, program: Program, module: CudaModule) -> None:
        self.program = program
        self.module = module
        self.workspace = {root: f"t{n}" for n, root in enumerate(program.offsets)}

    def name(self, tensor: Tensor) -> str:
        root = tensor.root()
        if root.is_const:
            return f"S.{self.module.constant_buffer(root)}"
        if root in self.workspace:
            return self.workspace[root]
        raise AssertionError(f"tensor {tensor.name!r} has no device storage")

    def declarations(self, w: CWriter) -> None:
        for root, name in self.workspace.items():
            c = ctype(root)
            w.line(f"{c}* {name} = ({c}*)(c->ws + {self.program.offsets[root]});")

    def uploads(self) -> list[tuple[str, int, str]]:
        """(device name, bytes, host pointer) of each input copy."""
        return [(self.name(t), _nbytes(t), f"inputs[{t.input_index}].data")
                for t in self.program.graph.inputs]

    def downloads(self) -> list[tuple[str, int, str]]:
        """(host pointer, bytes, device name) of each output copy; naming them here
        also registers constant outputs for upload."""
        return [(f"outputs[{t.output_index}].data", _nbytes(t), self.name(t))
                for t in self.program.graph.outputs]


def _nbytes(tensor: Tensor) -> int:
    return tensor.size * np.dtype(tensor.dtype).itemsize


def _state(entry: str, module: CudaModule) -> str:
    """Device constants, the pool of per-call contexts, statistics, ``_init``,
    ``_release`` and ``_stats``."""
    w = CWriter()
    uploads = module.uploads
    with w.block("static struct", end="} S;"):
        for name, tensor in uploads.items():
            w.line(f"{ctype(tensor)}* {name};")
        w.line("int unused;")
    w.lines(_POOL)
    with w.block("static void byoc_state_free(void)"):
        w.line("byoc_device_scope device;  /* free where the memory lives */")
        w.line("byoc_pool_free();")
        for name in uploads:
            w.line(f"if (S.{name} != NULL) cudaFree(S.{name});")
            w.line(f"S.{name} = NULL;")
    w.line()
    signature = ("static int32_t byoc_state_build(const byoc_tensor* constants, char* error, "
                 "size_t error_size)")
    with w.block(signature):
        w.line("int32_t status = BYOC_OK;")
        w.line("(void)constants;")
        w.lines(_DEVICE_PROBE)
        w.lines(_SELECT_DEVICE)
        for name, tensor in uploads.items():
            index = module.constants.index(tensor)
            size = f"(size_t){tensor.size} * sizeof({ctype(tensor)})"
            w.line(f"BYOC_CUDA(cudaMalloc((void**)&S.{name}, {size}));")
            w.line(f"BYOC_CUDA(cudaMemcpy(S.{name}, constants[{index}].data, {size}, "
                   "cudaMemcpyHostToDevice));")
            w.line(f"byoc_stats.constant_bytes += {size};")
        # A copy from pageable memory may return before the data reaches the device, and
        # the calls' non-blocking streams do not wait for the default stream: wait here.
        w.line("BYOC_CUDA(cudaDeviceSynchronize());")
        w.line("done:")
        w.line("  return status;")
    w.line()
    write_lifecycle(w, entry, module.constants, export='extern "C" BYOC_EXPORT',
                    build="byoc_state_build(constants, error, error_size)", failure="status")
    w.line()
    with w.block(f"extern \"C\" BYOC_EXPORT int32_t {entry}_stats(char* text, size_t size)"):
        w.line("pthread_mutex_lock(&byoc_lock);")
        w.line("const int written = byoc_stats_json(text, size);")
        w.line("pthread_mutex_unlock(&byoc_lock);")
        w.line("return written < 0 || (size_t)written >= size ? BYOC_ERROR : BYOC_OK;")
    return w.text()


# Before anything else, a clear word when the machine has no GPU (or not that one): the
# CUDA runtime's own message for a missing driver does not say so.
_DEVICE_PROBE = r"""
int devices = 0;
const cudaError_t probe = cudaGetDeviceCount(&devices);
if (probe != cudaSuccess || devices <= BYOC_DEVICE) {
  snprintf(error, error_size, "no usable CUDA device %d (build with BYOC_CUDA_EMULATE=1 "
           "or the cuda option emulate=true to run on the CPU instead): %s",
           BYOC_DEVICE, probe != cudaSuccess ? cudaGetErrorString(probe) : "too few devices");
  return BYOC_DEVICE_ERROR;
}
"""

# Selecting the module's device for the rest of a function (the caller's current device
# comes back when it returns: see byoc_device_scope in the pool text).
_SELECT_DEVICE = r"""
byoc_device_scope device;
if (device.status != cudaSuccess) {
  snprintf(error, error_size, "%s: cudaSetDevice(%d) failed: %s", BYOC_ENTRY_NAME,
           BYOC_DEVICE, cudaGetErrorString(device.status));
  status = BYOC_DEVICE_ERROR;
  goto done;
}
"""

# The pool of per-call contexts (a stream, timing events and a device workspace each),
# the statistics, and the lock over both.
_POOL = r"""
/* Makes the module's device current for a scope and gives the calling thread its own
   current device back at the end: the application may be using another one. */
struct byoc_device_scope {
  int previous;
  cudaError_t status;
  byoc_device_scope() : previous(-1) {
    if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
    status = cudaSetDevice(BYOC_DEVICE);
  }
  ~byoc_device_scope() {
    if (previous >= 0 && previous != BYOC_DEVICE) cudaSetDevice(previous);
  }
};

typedef struct byoc_context {
  cudaStream_t stream;
  cudaEvent_t start, stop;
  char* ws;
  struct byoc_context* next;
} byoc_context;

static int byoc_refs = 0;
static pthread_mutex_t byoc_lock = PTHREAD_MUTEX_INITIALIZER;
static byoc_context* byoc_idle = NULL;

static struct {
  unsigned long long calls, launches, h2d_copies, h2d_bytes, d2h_copies, d2h_bytes;
  unsigned long long constant_bytes;
  double kernel_ms;
} byoc_stats;

static int byoc_stats_json(char* text, size_t size) {
  return snprintf(text, size,
      "{\"calls\": %llu, \"kernel_launches\": %llu, \"h2d_copies\": %llu, "
      "\"h2d_bytes\": %llu, \"d2h_copies\": %llu, \"d2h_bytes\": %llu, "
      "\"constant_bytes\": %llu, \"kernel_ms\": %.6f, \"emulated\": %s}",
      byoc_stats.calls, byoc_stats.launches, byoc_stats.h2d_copies, byoc_stats.h2d_bytes,
      byoc_stats.d2h_copies, byoc_stats.d2h_bytes, byoc_stats.constant_bytes,
      byoc_stats.kernel_ms, BYOC_CUDA_EMULATED ? "true" : "false");
}

static void byoc_context_destroy(byoc_context* c) {
  if (c->ws != NULL) cudaFree(c->ws);
  if (c->start != NULL) cudaEventDestroy(c->start);
  if (c->stop != NULL) cudaEventDestroy(c->stop);
  if (c->stream != NULL) cudaStreamDestroy(c->stream);
  free(c);
}

/* Called with byoc_lock held. */
static void byoc_pool_free(void) {
  while (byoc_idle != NULL) {
    byoc_context* next = byoc_idle->next;
    byoc_context_destroy(byoc_idle);
    byoc_idle = next;
  }
}

/* An idle context, or a new one; NULL with the error written on failure. */
static byoc_context* byoc_acquire(size_t ws_bytes, char* error, size_t error_size,
                                  int32_t* status_out) {
  pthread_mutex_lock(&byoc_lock);
  byoc_context* c = byoc_idle;
  if (c != NULL) byoc_idle = c->next;
  pthread_mutex_unlock(&byoc_lock);
  if (c != NULL) return c;
  int32_t status = BYOC_OK;
  c = (byoc_context*)calloc(1, sizeof(byoc_context));
  if (c == NULL) {
    *status_out = byoc_fail(error, error_size, BYOC_OUT_OF_MEMORY,
                            BYOC_ENTRY_NAME ": out of host memory");
    return NULL;
  }
  BYOC_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  BYOC_CUDA(cudaEventCreate(&c->start));
  BYOC_CUDA(cudaEventCreate(&c->stop));
  BYOC_CUDA(cudaMalloc((void**)&c->ws, ws_bytes ? ws_bytes : 1));
  return c;
done:
  byoc_context_destroy(c);
  *status_out = status;
  return NULL;
}

/* Back to the pool after a good call; destroyed after a failed one (its stream may
   hold a sticky error). */
static void byoc_return(byoc_context* c, int32_t status) {
  if (status != BYOC_OK) {
    cudaStreamSynchronize(c->stream);
    byoc_context_destroy(c);
    return;
  }
  pthread_mutex_lock(&byoc_lock);
  c->next = byoc_idle;
  byoc_idle = c;
  pthread_mutex_unlock(&byoc_lock);
}
"""


def _entry(entry: str, program: Program, storage: _Storage, launches: list[str],
           downloads: list[tuple[str, int, str]]) -> str:
    graph = program.graph
    w = CWriter()
    w.line(f"extern \"C\" BYOC_EXPORT int32_t {entry}(const byoc_tensor* inputs, "
           "int32_t num_inputs,")
    w.line("    const byoc_tensor* outputs, int32_t num_outputs, char* error, "
           "size_t error_size) {")
    body = CWriter(depth=1)
    body.line("int32_t status = BYOC_OK;")
    body.line("byoc_context* c = NULL;")
    check_arguments(body, entry, graph)
    body.lines(_SELECT_DEVICE)
    # cudaGetLastError reports the thread's last error, whoever made it: clear what an
    # earlier call left, so the launch checks below see this call's errors only.
    body.line("(void)cudaGetLastError();")
    body.line(f"c = byoc_acquire((size_t){program.workspace_bytes}, error, error_size, "
              "&status);")
    body.line("if (c == NULL) return status;")
    uploads = storage.uploads()
    with body.block():
        storage.declarations(body)
        for device, size, host in uploads:
            body.line(f"BYOC_CUDA(cudaMemcpyAsync({device}, {host}, {size}, "
                      "cudaMemcpyHostToDevice, c->stream));")
        body.line("BYOC_CUDA(cudaEventRecord(c->start, c->stream));")
        for launch in launches:
            body.line(launch)
            body.line("BYOC_CUDA(cudaGetLastError());")
        body.line("BYOC_CUDA(cudaEventRecord(c->stop, c->stream));")
        for host, size, device in downloads:
            body.line(f"BYOC_CUDA(cudaMemcpyAsync({host}, {device}, {size}, "
                      "cudaMemcpyDeviceToHost, c->stream));")
        body.line("BYOC_CUDA(cudaStreamSynchronize(c->stream));")
        body.line("float ms = 0.0f;")
        body.line("BYOC_CUDA(cudaEventElapsedTime(&ms, c->start, c->stop));")
        body.line("pthread_mutex_lock(&byoc_lock);")
        body.line("byoc_stats.calls += 1;")
        body.line(f"byoc_stats.launches += {len(launches)};")
        body.line(f"byoc_stats.h2d_copies += {len(uploads)};")
        body.line(f"byoc_stats.h2d_bytes += {sum(size for _, size, _ in uploads)};")
        body.line(f"byoc_stats.d2h_copies += {len(downloads)};")
        body.line(f"byoc_stats.d2h_bytes += {sum(size for _, size, _ in downloads)};")
        body.line("byoc_stats.kernel_ms += ms;")
        body.line("pthread_mutex_unlock(&byoc_lock);")
    w.extend(body)
    w.line("done:")
    w.line("  if (c != NULL) byoc_return(c, status);")
    w.line("  return status;")
    w.line("}")
    return w.text()

