"""CUDA code generation for the ``cuda`` target: one persistent kernel per model.

The host part of the entry is the C driver's (unpacking, the same linearization, the same
output copies); in between it uploads the batch and launches **one** cooperative kernel that
runs every stage and every level of the batch, with a grid-wide barrier between ops instead
of a kernel launch per op or per level (Cortex's persistent kernel). Inside, each op spreads
its outputs over all threads of the grid; GEMM outputs are dot products reading the weights
from the L2-resident global memory.

The constants (weights and vocabulary tables) are uploaded once, by ``<entry>_init``, which
also sizes the cooperative grid; ``<entry>_release`` frees them when the last function bound
to the module goes (reference counted: the runner binds one function per node capacity).
A call allocates nothing on the device: the batch and the work arrays go to one block the
module keeps and grows, so calls into one module take turns.

With ``emulate`` the same source is compiled by the host C++ compiler against
``byoc/cuda_emulation.h``, where a cooperative grid is one block of the same threads, so the
kernel's indexing and barriers are checked against the numpy reference without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from byoc_sdk.codegen import CSource
from byoc_sdk.recursive.codegen_c import (
    LINEARIZE_C,
    DriverWriter,
    LoopNest,
    PlanWriter,
    expression,
)
from byoc_sdk.recursive.kernel import KernelSpec, gather_name
from byoc_sdk.recursive.lowering import Copy, Elementwise, Gemm, Plan
from byoc_sdk.recursive.stages import CellStages

THREADS = 256

DEVICE_MATH = r"""
__device__ __forceinline__ float byoc_sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }
__device__ __forceinline__ float byoc_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ float byoc_relu(float x) { return x < 0.0f ? 0.0f : x; }
#define BYOC_CUDA_CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
  snprintf(error, error_size, "CUDA: %s failed: %s", #call, cudaGetErrorString(e_)); \
  status = BYOC_DEVICE_ERROR; goto cleanup; } } while (0)
#define BYOC_FOR(t, total) for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; \
  t < (long long)(total); t += (long long)gridDim.x * blockDim.x)
"""


class CudaPlanWriter(PlanWriter):
    """A plan as a ``__device__`` function: every op a grid-stride loop, then a grid barrier."""

    def function(self) -> str:
        text = super().function()
        return text.replace(f"static void plan_{self.plan.name}({self.PARAMETERS}) {{",
                            f"__device__ void plan_{self.plan.name}(cg::grid_group& grid, int m, "
                            "float* const* io, float* scratch, const float* const* W, "
                            "const int32_t* leaf_words) {")

    def prelude(self) -> list[str]:
        return []  # the GPU's threads hide latency by their number, not by prefetches

    def gemm(self, op: Gemm) -> str:
        a, b, c = self.pointer(op.a), self.pointer(op.b), self.pointer(op.c)
        lda, ldb, ldc = self.ld(op.a), self.ld(op.b), self.ld(op.c)
        rows = op.rows or op.m_
        dot = [f"    for (int k = 0; k < {op.k}; ++k) s += a[k] * b[(size_t)k * {op.n}];"]
        if op.leaf_tables:  # a leaf child's share of the dot product is a table entry
            arity = self.spec.arity
            kc = op.k // arity
            dot = [f"    const float* const T[] = {{{self.leaf_tables(op)}}};",
                   f"    for (int q = 0; q < {arity}; ++q) {{",
                   f"      int32_t w = leaf_words[(size_t)r * {arity} + q];",
                   f"      if (w >= 0) s += T[q][(size_t)w * {op.m_ * op.n} + (size_t)i * "
                   f"{op.n} + j];",
                   f"      else if (w == -1) for (int k = q * {kc}; k < (q + 1) * {kc}; ++k) "
                   f"s += a[k] * b[(size_t)k * {op.n}];",  # -2: a missing child adds 0
                   "    }"]
        return "\n".join([
            f"  BYOC_FOR(t, (long long)m * {rows} * {op.n}) {{",
            f"    int r = (int)(t / ({rows} * {op.n})), i = (int)(t / {op.n} % {rows}), "
            f"j = (int)(t % {op.n});",
            f"    const float* a = {a} + (size_t)r * {lda} + (size_t)i * {op.k};",
            f"    const float* b = {b} + (size_t)r * {ldb} + j;",
            "    float s = 0.0f;",
            *dot,
            f"    {c}[(size_t)r * {ldc} + (size_t)i * {op.n} + j] = s;",
            "  }",
            "  grid.sync();"])

    def copy(self, op: Copy) -> str:
        dst, src = self.pointer(op.dst), self.pointer(op.src)
        return "\n".join([
            f"  BYOC_FOR(t, (long long)m * {op.outer} * {op.chunk}) {{",
            f"    int r = (int)(t / ({op.outer} * {op.chunk})), o = (int)(t / {op.chunk} % "
            f"{op.outer}), j = (int)(t % {op.chunk});",
            f"    {dst}[(size_t)r * {self.ld(op.dst)} + o * {op.dst_step} + j] = "
            f"{src}[(size_t)r * {self.ld(op.src)} + o * {op.src_step} + j];",
            "  }",
            "  grid.sync();"])

    def elementwise(self, op: Elementwise) -> str:
        loops = LoopNest(op)
        total = 1
        for dim in loops.dims:
            total *= dim
        names = {ref: f"p{i}" for i, (ref, _) in enumerate(loops.operands)}
        lines = [f"  BYOC_FOR(t, (long long)m * {total}) {{",
                 f"    int r = (int)(t / {total}), e = (int)(t % {total});"]
        inner = 1
        index_vars = []
        for d in reversed(range(len(loops.dims))):
            lines.append(f"    int i{d} = e / {inner} % {loops.dims[d]};")
            inner *= loops.dims[d]
            index_vars.insert(0, f"i{d}")
        indexes = [" + ".join(f"{v} * {st}" for v, st in zip(index_vars, strides, strict=True)
                              if st) or "0" for strides in loops.strides]
        for ref, _shape in loops.operands:
            lines.append(f"    const float* {names[ref]} = {self.pointer(ref)} + (size_t)r * "
                         f"{self.ld(ref)};")
        value = expression(op.expr, lambda leaf: f"{names[leaf[1]]}[{indexes[loops.slot(leaf)]}]")
        lines.append(f"    ({self.pointer(op.out)})[(size_t)r * {self.ld(op.out)} + "
                     f"{indexes[0]}] = {value};")
        lines += ["  }", "  grid.sync();"]
        return "\n".join(lines)


class CudaDriverWriter(DriverWriter):
    """The host entry (C driver with an upload, a launch and a download in the middle) and the
    persistent kernel it launches."""

    def kernel(self) -> str:
        spec = self.spec
        body = [*self.device_stage(spec.stages.leaf, "0", "lstart[1]", leaf=True),
                *self.device_stage(spec.stages.internal, "lstart[1]", "n", leaf=False),
                "  for (int32_t l = 1; l < n_levels; ++l) {",
                f"    for (int32_t p0 = lstart[l]; p0 < lstart[l + 1]; p0 += {spec.chunk_rows}) {{",
                f"      int m = min(lstart[l + 1] - p0, {spec.chunk_rows});",
                *self.device_call(spec.stages.internal.level, self.level_targets()),
                "    }",
                "  }"]
        return "\n".join([
            "struct ByocCtx {",
            f"  const float* W[{max(len(spec.constants), 1)}];",
            *(f"  {ctype} {name};" for ctype, name in self.context_fields()),
            "};",
            f"__global__ void __launch_bounds__({THREADS}) byoc_persistent(ByocCtx ctx) {{",
            "  cg::grid_group grid = cg::this_grid();",
            *(f"  {ctype} {name} = ctx.{name};" for ctype, name in self.context_fields()),
            "  const float* const* W = ctx.W;",
            "  const int32_t A = " + str(spec.arity) + ";",
            "  (void)A; (void)words; (void)order; (void)lchild; (void)leafword;",
            *body,
            "}"])

    def context_fields(self) -> list[tuple[str, str]]:
        """(C type, name) of what the kernel receives besides the weights ``W``."""
        spec = self.spec
        fields = [("int32_t", "n"), ("int32_t", "n_levels"), ("const int32_t*", "order"),
                  ("const int32_t*", "lchild"), ("const int32_t*", "lstart"),
                  ("const int32_t*", "words"), ("const int32_t*", "leafword")]
        fields += [("const float*", f"feature_{_ident(f.name)}") for f in spec.dense]
        fields += [("float*", name) for name, _, _ in spec.float_regions()]
        return fields

    def level_targets(self) -> list[str]:
        spec = self.spec
        return [f"states + (size_t)p0 * {spec.state_width} + {spec.stages.offsets[c.name]}"
                for c in spec.model.state]

    def device_stage(self, cell: CellStages, begin: str, end: str, leaf: bool) -> list[str]:
        spec = self.spec
        s = spec.state_width
        if not cell.direct and cell.hoist is None:
            return []
        lines = [f"  for (int32_t p0 = {begin}; p0 < {end}; p0 += {spec.chunk_rows}) {{",
                 f"    int m = min({end} - p0, {spec.chunk_rows});"]
        for component, table in cell.direct.items():
            width = cell.tables[table].width
            index = spec.const_index[("leaf", f"table:{table}")]
            offset = spec.stages.offsets[component]
            lines += [f"    BYOC_FOR(t, (long long)m * {width}) {{",
                      f"      int r = (int)(t / {width}), j = (int)(t % {width});",
                      f"      states[(size_t)(p0 + r) * {s} + {offset} + j] = "
                      f"W[{index}][(size_t)words[order[p0 + r]] * {width} + j];",
                      "    }"]
        if cell.direct:
            lines.append("    grid.sync();")
        if cell.hoist is not None:
            if leaf:
                targets = [f"states + (size_t)p0 * {s} + {o}" for o in cell.hoist_offsets]
            else:
                targets = [f"hoisted + (size_t)p0 * {cell.hoisted_width} + {o}"
                           for o in cell.hoist_offsets]
            lines += self.device_call(cell.hoist, targets)
        lines.append("  }")
        return lines

    def device_call(self, plan: Plan, targets: Sequence[str]) -> list[str]:
        io, lines = [], []
        outputs = iter(targets)
        for name, buffer in plan.buffers.items():
            if buffer.kind == "output":
                io.append(next(outputs))
            elif buffer.kind == "input":
                io.append(self.device_gather(plan, name, buffer.ld, lines))
        if any(b.kind == "input" and n != "hoisted" for n, b in plan.buffers.items()):
            lines.append("    grid.sync();")
        lines.append(f"    {{ float* io[] = {{{', '.join(io) or '0'}}};")
        lines.append(f"      plan_{plan.name}(grid, m, io, scratch, W, "
                     f"{self.plan_words(plan)}); }}")
        return lines

    def device_gather(self, plan: Plan, name: str, ld: int, lines: list[str]) -> str:
        spec = self.spec
        if name == "hoisted":
            return f"hoisted + (size_t)p0 * {ld}"
        buffer = gather_name(plan, name)
        kind, _, what = name.partition(":")
        if kind == "child":
            width = spec.model.component(what).size
            offset = spec.stages.offsets[what]
            lines += [f"    BYOC_FOR(t, (long long)m * A * {width}) {{",
                      f"      int r = (int)(t / (A * {width})), k = (int)(t / {width} % A), "
                      f"j = (int)(t % {width});",
                      "      int32_t c = lchild[(size_t)(p0 + r) * A + k];",
                      f"      {buffer}[(size_t)r * {ld} + k * {width} + j] = c >= 0 ? "
                      f"states[(size_t)c * {spec.state_width} + {offset} + j] : 0.0f;",
                      "    }"]
        else:
            if kind == "table":
                index = spec.const_index[(plan.name.split("_")[0], name)]
                source = f"W[{index}][(size_t)words[order[p0 + r]] * {ld} + j]"
            else:
                source = f"feature_{_ident(what)}[(size_t)order[p0 + r] * {ld} + j]"
            lines += [f"    BYOC_FOR(t, (long long)m * {ld}) {{",
                      f"      int r = (int)(t / {ld}), j = (int)(t % {ld});",
                      f"      {buffer}[(size_t)r * {ld} + j] = {source};",
                      "    }"]
        return buffer

    def lifecycle(self) -> str:
        """``<entry>_init`` uploads the constants and sizes the grid (once for every function
        bound to the module); ``<entry>_release`` frees them after the last one."""
        spec = self.spec
        count = max(len(spec.constants), 1)
        uploads = []
        for i, const in enumerate(spec.constants):
            size = f"sizeof(float) * (size_t){const.size}"
            uploads += [f"    BYOC_CUDA_CHECK(cudaMalloc((void**)&byoc_dW[{i}], {size}));",
                        f"    BYOC_CUDA_CHECK(cudaMemcpy(byoc_dW[{i}], constants[{i}].data, "
                        f"{size}, cudaMemcpyHostToDevice));"]
        return "\n".join([
            f"static const float* byoc_W[{count}];  /* host copies: the kernel reads byoc_dW */",
            f"static float* byoc_dW[{count}];",
            "static int byoc_refs = 0, byoc_grid = 0, byoc_device = 0;",
            "static void* byoc_work = NULL;  /* device work memory of the calls */",
            "static size_t byoc_work_bytes = 0;",
            "static pthread_mutex_t byoc_lock = PTHREAD_MUTEX_INITIALIZER;",
            "#define BYOC_ALIGN(bytes) (((size_t)(bytes) + 255) & ~(size_t)255)",
            "static void byoc_free_device(void) {",
            f"  for (int i = 0; i < {count}; ++i) {{ if (byoc_dW[i]) cudaFree(byoc_dW[i]); "
            "byoc_dW[i] = 0; }",
            "  if (byoc_work != NULL) cudaFree(byoc_work);",
            "  byoc_work = NULL; byoc_work_bytes = 0;",
            "}",
            *self.constants_check(),
            "  int32_t status = BYOC_OK;",
            "  pthread_mutex_lock(&byoc_lock);",
            "  if (byoc_refs == 0) {",
            "    int per_sm = 0; cudaDeviceProp prop;",
            "    /* The constants live on the device current here; calls run there. */",
            "    BYOC_CUDA_CHECK(cudaGetDevice(&byoc_device));",
            "    BYOC_CUDA_CHECK(cudaGetDeviceProperties(&prop, byoc_device));",
            "    BYOC_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, "
            f"byoc_persistent, {THREADS}, 0));",
            "    byoc_grid = prop.multiProcessorCount * (per_sm < 1 ? 1 : per_sm);",
            *uploads,
            "  }",
            "cleanup:",
            "  if (status == BYOC_OK) ++byoc_refs;",
            "  else if (byoc_refs == 0) byoc_free_device();",
            "  pthread_mutex_unlock(&byoc_lock);",
            "  (void)byoc_W;",
            "  return status;",
            "}",
            f"BYOC_EXPORT void {spec.entry}_release(void) {{",
            "  pthread_mutex_lock(&byoc_lock);",
            "  if (byoc_refs > 0 && --byoc_refs == 0) byoc_free_device();",
            "  pthread_mutex_unlock(&byoc_lock);",
            "}"])

    def compute(self) -> list[str]:
        """Upload the batch into the module's device work memory, launch the persistent
        kernel, download the states."""
        spec = self.spec
        uploads = [("ctx.order", "order", "int32_t", "n"),
                   ("ctx.lchild", "lchild", "int32_t", "(size_t)n * A"),
                   ("ctx.lstart", "lstart", "int32_t", "(size_t)n_levels + 1")]
        if spec.has_words:
            uploads.append(("ctx.words", "words", "int32_t", "n"))
        if spec.leaf_words:
            uploads.append(("ctx.leafword", "leafword", "int32_t", "(size_t)n * A"))
        first_dense = 3 + spec.has_words
        for i, f in enumerate(spec.dense):
            width = spec.input_specs(1)[first_dense + i][1][1]
            uploads.append((f"ctx.feature_{_ident(f.name)}", f"feature_{_ident(f.name)}",
                            "float", f"(size_t)n * {width}"))
        lines = [
            "  ByocCtx ctx; memset(&ctx, 0, sizeof ctx);",
            "  int caller_device = -1;",
            "  /* The device work memory is the module's: one call at a time uses it. */",
            "  pthread_mutex_lock(&byoc_lock);",
            "  {",
            "  /* The module's device for this call; the caller's comes back after it. */",
            "  BYOC_CUDA_CHECK(cudaGetDevice(&caller_device));",
            "  BYOC_CUDA_CHECK(cudaSetDevice(byoc_device));",
            "  ctx.n = n; ctx.n_levels = n_levels;",
            f"  for (int i = 0; i < {len(spec.constants)}; ++i) ctx.W[i] = byoc_dW[i];",
            "  /* One block for the float work and the batch, kept between calls, grown when a",
            "     batch needs more: no allocation per call. Parts start 256 bytes apart. */",
            f"  size_t need = BYOC_ALIGN(sizeof(float) * ((size_t){spec.float_work(0)} + "
            f"(size_t)cap * {spec.float_work(1) - spec.float_work(0)}));",
            f"  size_t at[{len(uploads)}];",
        ]
        for i, (_, _, ctype, count) in enumerate(uploads):
            lines.append(f"  at[{i}] = need; need += BYOC_ALIGN(sizeof({ctype}) * ({count}));")
        lines += [
            "  if (need > byoc_work_bytes) {",
            "    if (byoc_work != NULL) cudaFree(byoc_work);",
            "    byoc_work = NULL; byoc_work_bytes = 0;",
            "    BYOC_CUDA_CHECK(cudaMalloc(&byoc_work, need));",
            "    byoc_work_bytes = need;",
            "  }",
            "  { float* fw_d = (float*)byoc_work;",
            *(f"    ctx.{name} = fw_d; fw_d += (size_t)cap * {per} + {fixed};"
              for name, per, fixed in spec.float_regions()),
            "  }",
        ]
        for i, (field_, host, ctype, count) in enumerate(uploads):
            lines += [
                f"  {field_} = (const {ctype}*)((char*)byoc_work + at[{i}]);",
                f"  BYOC_CUDA_CHECK(cudaMemcpy((char*)byoc_work + at[{i}], {host}, "
                f"sizeof({ctype}) * ({count}), cudaMemcpyHostToDevice));",
            ]
        lines += [
            "  void* args[] = {&ctx};",
            "  BYOC_CUDA_CHECK(cudaLaunchCooperativeKernel(byoc_persistent, dim3(byoc_grid), "
            f"dim3({THREADS}), args, 0, 0));",
            "  BYOC_CUDA_CHECK(cudaDeviceSynchronize());",
            "  BYOC_CUDA_CHECK(cudaMemcpy(states, ctx.states, sizeof(float) * (size_t)n * "
            f"{spec.state_width}, cudaMemcpyDeviceToHost));",
            "  }",
            "cleanup:",
            "  if (caller_device >= 0 && caller_device != byoc_device) "
            "cudaSetDevice(caller_device);",
            "  pthread_mutex_unlock(&byoc_lock);",
            "  if (status != BYOC_OK) return status;",
        ]
        return lines


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def generate_cuda(spec: KernelSpec, *, emulate: bool = False) -> CSource:
    """The CUDA module of ``spec``: host entry per the byoc ABI plus the persistent kernel;
    with ``emulate``, built by the host C++ compiler for the CUDA emulation instead."""
    driver = CudaDriverWriter(spec)
    plans = [CudaPlanWriter(plan, spec).function() for plan in spec.plans()]
    text = "\n".join([
        f"/* Generated by byoc_sdk.recursive for model {spec.model.name} (CUDA). */",
        "#include <pthread.h>", "#include <stdint.h>", "#include <stdio.h>",
        "#include <string.h>", "#include \"byoc/abi.h\"", "#include \"byoc/cuda.h\"",
        "namespace cg = cooperative_groups;",
        DEVICE_MATH, LINEARIZE_C, *plans, driver.kernel(),
        "extern \"C\" {", driver.source(), "}", ""])
    if emulate:
        return CSource({f"{spec.entry}.cc": text}, spec.entry,
                       flags=["-DBYOC_CUDA_EMULATION", "-pthread"])
    return CSource({f"{spec.entry}.cu": text}, spec.entry, language="cuda",
                   flags=["-rdc=false"])
