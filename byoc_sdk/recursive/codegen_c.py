"""C code generation for the ``cpu`` target: one fused kernel per model.

The generated module linearizes the batch itself (:data:`LINEARIZE_C`, the same numbering as
``linearize.py``), then runs, without leaving C:

1. the leaves: a row copy from a vocabulary table when the leaf state depends on the word
   only, else the leaf's hoisted stage over all leaves at once;
2. the internal nodes' hoisted stage over all internal nodes at once;
3. a loop over levels; each level, in chunks of ``chunk_rows`` nodes, gathers the children's
   states by index and runs the level stage: one GEMM per weight for the whole chunk (the
   weight panel stays in cache while every row of the chunk passes it), fused elementwise
   loops with vectorizable ``exp``-based activations, and copies only where a view will not do;
4. the roots' (and optionally all nodes') states, back in the caller's numbering.

GEMMs use register-blocked micro-kernels written with GCC vector extensions (16 floats with
AVX-512, else 8), so the code is portable C that the compiler maps to the machine's vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

from byoc_sdk.codegen import CSource
from byoc_sdk.recursive.kernel import INT_WORK, PANEL, KernelSpec, gather_name
from byoc_sdk.recursive.lowering import (
    Copy,
    Elementwise,
    Gemm,
    Plan,
    Ref,
    broadcast_shapes,
    leaves_of,
)
from byoc_sdk.recursive.stages import CellStages

MATH_C = r"""
/* exp for float, vectorizable: range reduction to [-ln2/2, ln2/2], degree-6 polynomial
   (relative error below 2e-7), then scaling by 2^n through the exponent bits. */
static inline float byoc_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float t = x * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f +
            r * (0.008333334f + r * 0.0013888889f)))));
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
static inline float byoc_sigmoid(float x) { return 1.0f / (1.0f + byoc_exp(-x)); }
static inline float byoc_tanh(float x) { return 2.0f / (1.0f + byoc_exp(-2.0f * x)) - 1.0f; }
static inline float byoc_relu(float x) { return x < 0.0f ? 0.0f : x; } /* NaN stays NaN */
"""

LINEARIZE_C = r"""
/* Linearization (see linearize.py): level = 0 for leaves, 1 + max(children's) otherwise,
   found by an iterative depth-first walk that also finds cycles; then a stable counting
   sort by level. Children arrive in each structure's own numbering. With `exact`, an
   internal node must have all A children (the check costs nothing here, where every
   child is read anyway; the Python side then need not count them per structure). */
static int byoc_linearize(int32_t n, int32_t A, int exact, int32_t n_trees,
                          const int32_t* children, const int32_t* tree_sizes, int32_t* gchild,
                          int32_t* level, int32_t* order, int32_t* pos, int32_t* lstart,
                          int32_t* stack, int32_t* nextk, int32_t* lchild, int32_t* n_levels,
                          char* error, size_t error_size) {
  int32_t v = 0;
  for (int32_t t = 0; t < n_trees; ++t) {
    int32_t start = v, size = tree_sizes[t];
    if (size < 1 || start + size > n) {
      snprintf(error, error_size, "structure %d: size %d does not fit the batch", t, size);
      return BYOC_INVALID_ARGUMENT;
    }
    for (; v < start + size; ++v) {
      int32_t count = 0;
      for (int32_t k = 0; k < A; ++k) {
        int32_t c = children[(size_t)v * A + k];
        if (c >= size || c < -1) {
          snprintf(error, error_size, "structure %d: node %d names child %d, which is not a "
                   "node (the structure has %d nodes)", t, v - start, c, size);
          return BYOC_INVALID_ARGUMENT;
        }
        count += c >= 0;
        gchild[(size_t)v * A + k] = c >= 0 ? c + start : -1;
      }
      if (exact && count != 0 && count != A) {
        snprintf(error, error_size, "structure %d: node %d has %d children, the model's "
                 "internal cell takes %d", t, v - start, count, A);
        return BYOC_INVALID_ARGUMENT;
      }
    }
  }
  if (v != n) {
    snprintf(error, error_size, "structure sizes add up to %d nodes, the batch has %d", v, n);
    return BYOC_INVALID_ARGUMENT;
  }
  const int32_t unseen = -1, on_path = -2;
  for (int32_t i = 0; i < n; ++i) level[i] = unseen;
  int32_t top_level = 0;
  for (int32_t s = 0; s < n; ++s) {
    if (level[s] != unseen) continue;
    int32_t top = 0;
    stack[0] = s; nextk[0] = 0; level[s] = on_path;
    while (top >= 0) {
      int32_t u = stack[top], k = nextk[top];
      int32_t c = k < A ? gchild[(size_t)u * A + k] : -1;
      if (c >= 0) {
        nextk[top] = k + 1;
        if (level[c] == on_path) {
          snprintf(error, error_size, "node %d (of the batch) lies on a cycle", c);
          return BYOC_INVALID_ARGUMENT;
        }
        if (level[c] == unseen) { level[c] = on_path; ++top; stack[top] = c; nextk[top] = 0; }
      } else {
        int32_t l = 0;
        for (int32_t j = 0; j < A; ++j) {
          int32_t d = gchild[(size_t)u * A + j];
          if (d >= 0 && level[d] + 1 > l) l = level[d] + 1;
        }
        level[u] = l;
        if (l > top_level) top_level = l;
        --top;
      }
    }
  }
  *n_levels = top_level + 1;
  for (int32_t l = 0; l <= top_level + 1; ++l) lstart[l] = 0;
  for (int32_t i = 0; i < n; ++i) lstart[level[i] + 1]++;
  for (int32_t l = 0; l <= top_level; ++l) lstart[l + 1] += lstart[l];
  for (int32_t l = 0; l <= top_level; ++l) nextk[l] = lstart[l];
  for (int32_t i = 0; i < n; ++i) { int32_t p = nextk[level[i]]++; pos[i] = p; order[p] = i; }
  for (int32_t p = 0; p < n; ++p) {
    for (int32_t k = 0; k < A; ++k) {
      int32_t c = gchild[(size_t)order[p] * A + k];
      lchild[(size_t)p * A + k] = c >= 0 ? pos[c] : -1;
    }
  }
  return BYOC_OK;
}
"""


#: Micro-kernels with this many rows or fewer stream their weight panel with prefetches.
STREAMING_ROWS = 2
#: How many k rows of the panel ahead they prefetch (8 rows of 64 floats: 2 KB).
PREFETCH_ROWS = 8
#: How much of a chunk's leaf-child table rows a level plan prefetches (a quarter of L2).
PREFETCH_BYTES = 256 << 10


def gemm_c(vl: int, mr: int, nv: int) -> str:
    """Micro-kernels ``mr`` rows x ``nv`` vectors of ``vl`` floats, tails and the driver.

    The driver walks column panels outermost and rows inside, so a panel of the weight
    (``k`` x ``nv * vl`` floats) is read from memory once per call and reused from cache by
    every row block of the level: the weights-stationary order of Cortex's schedules.
    """
    lines = [f"typedef float byoc_vf __attribute__((vector_size({vl * 4}), aligned(4)));",
             f"#define BYOC_VL {vl}", f"#define BYOC_MR {mr}", f"#define BYOC_NV {nv}",
             f"#define BYOC_PF {PREFETCH_ROWS}",
             "static inline byoc_vf byoc_load(const float* p) "
             "{ byoc_vf v; memcpy(&v, p, sizeof v); return v; }",
             "static inline void byoc_store(float* p, byoc_vf v) { memcpy(p, &v, sizeof v); }"]
    for rows in range(1, mr + 1):
        for vecs in range(1, nv + 1):
            lines.append(_micro_kernel(rows, vecs))
    lines.append(_dispatch(mr, nv))
    return "\n".join(lines)


def _micro_kernel(rows: int, vecs: int) -> str:
    """``rows`` x ``vecs`` vectors of C, accumulated over k in registers.

    With at most :data:`STREAMING_ROWS` rows (a batch-1 level: one or two nodes) a k step
    does too few FMAs to hide the weight panel's trip from L3, so the kernel prefetches
    the panel :data:`PREFETCH_ROWS` rows ahead; with more rows the FMAs bind and extra
    prefetches only cost issue slots."""
    acc = [[f"c{i}_{j}" for j in range(vecs)] for i in range(rows)]
    body = [f"static void byoc_mk_{rows}x{vecs}(int K, const float* restrict A, int lda, "
            "const float* restrict B, int ldb, float* restrict C, int ldc) {"]
    body.append("  byoc_vf " + ", ".join(f"{a} = {{0}}" for row in acc for a in row) + ";")
    body.append("  for (int k = 0; k < K; ++k) {")
    body.append("    const float* b = B + (size_t)k * ldb;")
    if rows <= STREAMING_ROWS:
        for j in range(vecs):
            body.append(f"    __builtin_prefetch(b + BYOC_PF * ldb + {j} * BYOC_VL);")
    for j in range(vecs):
        body.append(f"    byoc_vf b{j} = byoc_load(b + {j} * BYOC_VL);")
    for i in range(rows):
        # x - 0 is x exactly (unlike 0 + x, which is +0 for x = -0), so the compiler folds
        # the splat into the FMA's broadcast operand
        body.append(f"    {{ byoc_vf a = A[(size_t){i} * lda + k] - (byoc_vf){{0}};")
        body.append("      " + " ".join(f"{acc[i][j]} += a * b{j};" for j in range(vecs)) + " }")
    body.append("  }")
    for i in range(rows):
        for j in range(vecs):
            body.append(f"  byoc_store(C + (size_t){i} * ldc + {j} * BYOC_VL, {acc[i][j]});")
    body.append("}")
    return "\n".join(body)


def _dispatch(mr: int, nv: int) -> str:
    cases = []
    for vecs in range(1, nv + 1):
        row_cases = " ".join(f"case {r}: byoc_mk_{r}x{vecs}(K, A + (size_t)i * lda, lda, B + j, "
                             f"ldb, C + (size_t)i * ldc + j, ldc); break;"
                             for r in range(1, mr + 1))
        cases.append(f"      case {vecs}: switch (rows) {{ {row_cases} }} break;")
    return "\n".join([
        "/* C[M,N] = A[M,K] @ B[K,N] (row strides lda, ldb, ldc), overwriting C. */",
        "static void byoc_gemm(int M, int N, int K, const float* A, int lda, const float* B,",
        "                      int ldb, float* C, int ldc) {",
        "  int full = N - N % BYOC_VL;",
        "  for (int j = 0; j < full; j += BYOC_NV * BYOC_VL) {",
        "    int vecs = (full - j) / BYOC_VL; if (vecs > BYOC_NV) vecs = BYOC_NV;",
        "    for (int i = 0; i < M; i += BYOC_MR) {",
        "      int rows = M - i < BYOC_MR ? M - i : BYOC_MR;",
        "      switch (vecs) {",
        *cases,
        "      }",
        "    }",
        "  }",
        "  for (int i = 0; i < M && full < N; ++i) {",
        "    for (int j = full; j < N; ++j) {",
        "      float s = 0.0f;",
        "      for (int k = 0; k < K; ++k) s += A[(size_t)i * lda + k] * B[(size_t)k * ldb + j];",
        "      C[(size_t)i * ldc + j] = s;",
        "    }",
        "  }",
        "}",
        f"/* byoc_gemm with B packed in panels of {PANEL} columns (kernel.pack_panels). */",
        "static void byoc_gemm_packed(int M, int N, int K, const float* A, int lda, "
        "const float* Bp, float* C, int ldc) {",
        f"  for (int j = 0; j < N; j += {PANEL}) {{",
        f"    int w = N - j < {PANEL} ? N - j : {PANEL};",
        "    byoc_gemm(M, w, K, A, lda, Bp + (size_t)j * K, w, C + j, ldc);",
        "  }",
        "}",
        "/* y[M] = A[M,K] @ x[K]. */",
        "static void byoc_matvec(int M, int K, const float* A, int lda, const float* x, "
        "float* y) {",
        "  for (int i = 0; i < M; ++i) {",
        "    const float* a = A + (size_t)i * lda;",
        "    byoc_vf s = {0}; float t = 0.0f; int k = 0;",
        "    for (; k + BYOC_VL <= K; k += BYOC_VL) s += byoc_load(a + k) * byoc_load(x + k);",
        "    for (; k < K; ++k) t += a[k] * x[k];",
        "    for (int l = 0; l < BYOC_VL; ++l) t += s[l];",
        "    y[i] = t;",
        "  }",
        "}",
    ])


# --- plans ----------------------------------------------------------------------------


class PlanWriter:
    """Writes one plan as ``static void plan_<name>(int m, float* const* io, float* scratch,
    const float* const* W)``: ``io`` are the plan's input and output buffers in order."""

    def __init__(self, plan: Plan, spec: KernelSpec) -> None:
        self.plan, self.spec = plan, spec
        self.io = [n for n, b in plan.buffers.items() if b.kind in ("input", "output")]
        self.temps = plan.temp_offsets()

    def pointer(self, ref: Ref) -> str:
        buffer = self.plan.buffers[ref.buffer]
        if buffer.kind == "const":
            base = f"W[{self.spec.const(self.plan, ref.buffer)}]"
        elif buffer.kind == "temp":
            base = f"(scratch + (size_t){self.spec.chunk_rows * self.temps[ref.buffer]})"
        else:
            base = f"io[{self.io.index(ref.buffer)}]"
        return f"({base} + {ref.offset})" if ref.offset else base

    def ld(self, ref: Ref) -> int:
        return self.plan.buffers[ref.buffer].ld

    #: The plan function's parameters (the CUDA writer makes the same a device function).
    PARAMETERS = ("int m, float* const* io, float* restrict scratch, const float* const* W, "
                  "const int32_t* restrict leaf_words")

    def function(self) -> str:
        body = self.prelude()
        for op in self.plan.ops:
            if isinstance(op, Gemm):
                body.append(self.gemm(op))
            elif isinstance(op, Elementwise):
                body.append(self.elementwise(op))
            else:
                body.append(self.copy(op))
        return "\n".join([
            f"static void plan_{self.plan.name}({self.PARAMETERS}) {{",
            "  (void)io; (void)scratch; (void)W; (void)leaf_words;",
            *body, "}"])

    def leaf_tables(self, op: Gemm) -> str:
        """The C initialiser of the table pointers of a GEMM with leaf-child tables."""
        cell = self.plan.name.split("_")[0]
        return ", ".join(f"W[{self.spec.const_index[(cell, f'table:{i}')]}]"
                         for i in op.leaf_tables)

    def gemm(self, op: Gemm) -> str:
        if op.leaf_tables:
            return self.leaf_gemm(op)
        a, b, c = self.pointer(op.a), self.pointer(op.b), self.pointer(op.c)
        lda, ldb, ldc = self.ld(op.a), self.ld(op.b), self.ld(op.c)
        if op.rows:
            packed = f"W[{self.spec.const(self.plan, op.b.buffer, packed=True)}]"
            if op.rows == 1:
                return f"  byoc_gemm_packed(m, {op.n}, {op.k}, {a}, {lda}, {packed}, {c}, {ldc});"
            if lda == op.rows * op.k and ldc == op.rows * op.n:
                return (f"  byoc_gemm_packed(m * {op.rows}, {op.n}, {op.k}, {a}, {op.k}, "
                        f"{packed}, {c}, {op.n});")
        call = (f"byoc_matvec({op.m_}, {op.k}, {a} + (size_t)r * {lda}, {op.k}, "
                f"{b} + (size_t)r * {ldb}, {c} + (size_t)r * {ldc});" if op.n == 1 else
                f"byoc_gemm({op.m_}, {op.n}, {op.k}, {a} + (size_t)r * {lda}, {op.k}, "
                f"{b} + (size_t)r * {ldb}, {op.n}, {c} + (size_t)r * {ldc}, {op.n});")
        return f"  for (int r = 0; r < m; ++r) {call}"

    def prelude(self) -> list[str]:
        """What the plan does before its ops: prefetch leaf-child table rows."""
        return [self.prefetch_leaf_rows(op) for op in self.plan.ops
                if isinstance(op, Gemm) and op.leaf_tables]

    def prefetch_leaf_rows(self, op: Gemm) -> str:
        """Ask for the chunk's first leaf-child table rows (up to :data:`PREFETCH_BYTES`)
        before the plan's first op: they lie scattered over a large table, and the ops
        before this GEMM hide the trips. A batch-1 level's rows all fit."""
        size = op.m_ * op.n
        entries = max(1, PREFETCH_BYTES // (4 * size))
        return "\n".join([
            f"  {{ const float* const T[] = {{{self.leaf_tables(op)}}};",
            f"  int until = m * {self.spec.arity} < {entries} ? m * {self.spec.arity} : {entries};",
            "  for (int r = 0; r < until; ++r) if (leaf_words[r] >= 0) {",
            f"    const float* t = T[r % {self.spec.arity}] + (size_t)leaf_words[r] * {size};",
            f"    for (int e = 0; e < {size}; e += 16) __builtin_prefetch(t + e);",
            "  } }"])

    def leaf_gemm(self, op: Gemm) -> str:
        """A per-node ``W @ [S_0; ...]`` whose leaf children's shares are table rows: the one
        internal child's block is multiplied and the rows added (a missing child adds
        nothing); with several internal children, the whole product is computed as
        without tables."""
        a, b, c = self.pointer(op.a), self.pointer(op.b), self.pointer(op.c)
        arity, size = self.spec.arity, op.m_ * op.n
        kc = op.k // arity

        def product(k: int, a_at: str, b_at: str) -> str:
            if op.n == 1:
                return f"byoc_matvec({op.m_}, {k}, {a} + {a_at}, {op.k}, br + {b_at}, cr);"
            return (f"byoc_gemm({op.m_}, {op.n}, {k}, {a} + {a_at}, {op.k}, br + {b_at}, "
                    f"{op.n}, cr, {op.n});")

        return "\n".join([
            f"  {{ const float* const T[] = {{{self.leaf_tables(op)}}};",
            "  for (int r = 0; r < m; ++r) {",
            f"    const int32_t* lw = leaf_words + (size_t)r * {arity};",
            f"    const float* br = {b} + (size_t)r * {self.ld(op.b)};",
            f"    float* cr = {c} + (size_t)r * {self.ld(op.c)};",
            "    int inner = 0, n_inner = 0;",
            f"    for (int j = 0; j < {arity}; ++j) if (lw[j] == -1) {{ inner = j; ++n_inner; }}",
            f"    if (n_inner > 1) {{ {product(op.k, '0', '0')} continue; }}",
            f"    if (n_inner == 1) {product(kc, f'inner * {kc}', f'(size_t)inner * {kc * op.n}')}",
            "    int first = n_inner == 0;",
            f"    for (int j = 0; j < {arity}; ++j) {{",
            "      if (lw[j] < 0) continue;",
            f"      const float* t = T[j] + (size_t)lw[j] * {size};",
            f"      if (first) memcpy(cr, t, {size} * sizeof(float));",
            f"      else for (int e = 0; e < {size}; ++e) cr[e] += t[e];",
            "      first = 0;",
            "    }",
            "  } }"])

    def copy(self, op: Copy) -> str:
        dst, src = self.pointer(op.dst), self.pointer(op.src)
        return (f"  for (int r = 0; r < m; ++r) for (int o = 0; o < {op.outer}; ++o) "
                f"memcpy({dst} + (size_t)r * {self.ld(op.dst)} + o * {op.dst_step}, "
                f"{src} + (size_t)r * {self.ld(op.src)} + o * {op.src_step}, "
                f"{op.chunk} * sizeof(float));")

    def elementwise(self, op: Elementwise) -> str:
        loops = LoopNest(op)
        names = {}
        lines = ["  for (int r = 0; r < m; ++r) {",
                 f"    float* restrict o = {self.pointer(op.out)} + (size_t)r * {self.ld(op.out)};"]
        for i, (ref, _shape) in enumerate(loops.operands):
            names[ref] = f"p{i}"
            lines.append(f"    const float* p{i} = {self.pointer(ref)} + (size_t)r * "
                         f"{self.ld(ref)};")
        lines += loops.nest(lambda index: f"o[{index[0]}] = " + expression(
            op.expr, lambda leaf: f"{names[leaf[1]]}[{index[loops.slot(leaf)]}]") + ";")
        lines.append("  }")
        return "\n".join(lines)


class LoopNest:
    """The loops of an elementwise op: its dims with neighbours merged where every operand
    walks them contiguously, and each operand's strides (0 where it is broadcast); strides[0]
    are the output's."""

    def __init__(self, op: Elementwise) -> None:
        shape = tuple(op.shape) or (1,)
        leaves = list(leaves_of(op.expr))
        self.operands = list(dict.fromkeys((leaf[1], tuple(leaf[2])) for leaf in leaves))
        strides = [_contiguous(shape)] + [broadcast_shapes(shape, s) for _, s in self.operands]
        self.dims, self.strides = _collapse(list(shape), strides)

    def slot(self, leaf: tuple) -> int:
        return 1 + self.operands.index((leaf[1], tuple(leaf[2])))

    def nest(self, statement) -> list[str]:
        index_vars = [f"i{d}" for d in range(len(self.dims))]
        indexes = [" + ".join(f"{v} * {s}" if s != 1 else v
                              for v, s in zip(index_vars, st, strict=True) if s) or "0"
                   for st in self.strides]
        lines = []
        for depth, (var, dim) in enumerate(zip(index_vars, self.dims, strict=True)):
            lines.append("    " + "  " * depth + f"for (int {var} = 0; {var} < {dim}; ++{var})")
        lines.append("    " + "  " * len(self.dims) + statement(indexes))
        return lines


def _contiguous(shape: Sequence[int]) -> list[int]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step if dim != 1 else 0)
        step *= dim
    return strides[::-1]


def _collapse(dims: list[int], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop unit dims and merge neighbours every operand walks contiguously."""
    keep = [d for d, size in enumerate(dims) if size != 1] or [len(dims) - 1]
    dims = [dims[d] for d in keep]
    strides = [[s[d] for d in keep] for s in strides]
    d = 0
    while d + 1 < len(dims):
        if all(s[d] == s[d + 1] * dims[d + 1] for s in strides):
            dims[d:d + 2] = [dims[d] * dims[d + 1]]
            for s in strides:
                s[d:d + 2] = [s[d + 1]]
        else:
            d += 1
    return dims, strides


_BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
_UNARY = {"Sigmoid": "byoc_sigmoid", "Tanh": "byoc_tanh", "Relu": "byoc_relu"}


def expression(expr: tuple, leaf) -> str:
    """C text of a fused elementwise expression; ``leaf`` renders an operand read."""
    op = expr[0]
    if op == "leaf":
        return leaf(expr)
    args = [expression(arg, leaf) for arg in expr[1:]]
    if op in _BINARY:
        return f"({args[0]} {_BINARY[op]} {args[1]})"
    if op == "Neg":
        return f"(-{args[0]})"
    if op == "Identity":
        return args[0]
    return f"{_UNARY[op]}({args[0]})"


# --- the driver -----------------------------------------------------------------------


class DriverWriter:
    """Writes the entry function: unpack, linearize, stages, level loop, outputs."""

    def __init__(self, spec: KernelSpec) -> None:
        self.spec = spec

    def source(self) -> str:
        spec = self.spec
        return "\n".join([
            "BYOC_DEFINE_ABI_VERSION",
            self.lifecycle(),
            f"BYOC_EXPORT int32_t {spec.entry}(const byoc_tensor* in, int32_t n_in, "
            "const byoc_tensor* out, int32_t n_out, char* error, size_t error_size) {",
            *self.unpack(),
            "  int32_t n_levels = 0;",
            f"  int32_t status = byoc_linearize(n, A, {int(not spec.model.pad_missing)}, n_trees, "
            "children, tree_sizes, gchild, level, order, pos, lstart, stack, nextk, lchild, "
            "&n_levels, error, error_size);",
            "  if (status != BYOC_OK) return status;",
            *self.check_words(),
            *self.leaf_words(),
            *self.compute(),
            *self.outputs(),
            "  return BYOC_OK;",
            "}",
        ])

    def constants_check(self) -> list[str]:
        """The start of ``<entry>_init``: the constants must be the ones the spec lists, in
        number, element type and size (the module reads them by bare pointer later)."""
        spec = self.spec
        count = len(spec.constants)
        sizes = ", ".join(str(c.size) for c in spec.constants) or "0"
        return [
            f"BYOC_EXPORT int32_t {spec.entry}_init(const byoc_tensor* constants, "
            "int32_t n_constants, char* error, size_t error_size) {",
            f"  if (n_constants != {count}) return byoc_fail(error, error_size, "
            f"BYOC_INVALID_ARGUMENT, \"{spec.entry}: expected {count} constants\");",
            f"  static const int64_t sizes[{max(count, 1)}] = {{{sizes}}};",
            f"  for (int i = 0; i < {count}; ++i) {{",
            "    int64_t size = 1;",
            "    for (int32_t d = 0; d < constants[i].rank; ++d) size *= constants[i].shape[d];",
            "    if (constants[i].dtype != BYOC_FLOAT32 || constants[i].strides != NULL || "
            "size != sizes[i]) {",
            f"      snprintf(error, error_size, \"{spec.entry}: constant %d must be %lld "
            "contiguous float32 values\", i, (long long)sizes[i]);",
            "      return BYOC_INVALID_ARGUMENT;",
            "    }",
            "  }"]

    def lifecycle(self) -> str:
        """``<entry>_init``: the weights and tables are handed over once, not per call (the
        caller keeps them alive), so a call passes only the batch."""
        count = max(len(self.spec.constants), 1)
        return "\n".join([
            f"static const float* byoc_W[{count}];",
            *self.constants_check(),
            f"  for (int i = 0; i < {len(self.spec.constants)}; ++i) "
            "byoc_W[i] = (const float*)constants[i].data;",
            "  return BYOC_OK;",
            "}"])

    def compute(self) -> list[str]:
        """Leaves, hoisted stages and the level loop, filling ``states``."""
        return [*self.stage_loop(self.spec.stages.leaf, "0", "lstart[1]", leaf=True),
                *self.stage_loop(self.spec.stages.internal, "lstart[1]", "n", leaf=False),
                *self.levels()]

    def unpack(self) -> list[str]:
        spec = self.spec
        n_inputs = len(spec.input_specs(1))
        lines = [
            f"  if (n_in != {n_inputs} || n_out != 4) return byoc_fail(error, error_size, "
            f"BYOC_INVALID_ARGUMENT, \"{spec.entry}: expected {n_inputs} inputs and 4 outputs\");",
            "  const int64_t* sizes = (const int64_t*)in[0].data;",
            "  const int32_t n = (int32_t)sizes[0], n_trees = (int32_t)sizes[1];",
            "  const int want_nodes = sizes[2] != 0;",
            "  const int64_t cap = in[1].shape[0];",
            f"  const int32_t A = {spec.arity};",
            "  if (n < 1 || n > cap || n_trees < 1 || n_trees > n) return byoc_fail(error, "
            "error_size, BYOC_INVALID_ARGUMENT, \"batch sizes do not fit the buffers\");",
            "  const int32_t* children = (const int32_t*)in[1].data;",
            "  const int32_t* tree_sizes = (const int32_t*)in[2].data;",
        ]
        index = 3
        if spec.has_words:
            lines.append(f"  const int32_t* words = (const int32_t*)in[{index}].data;")
            index += 1
        for f in spec.dense:
            lines.append(f"  const float* feature_{_ident(f.name)} = "
                         f"(const float*)in[{index}].data;")
            index += 1
        lines.append("  const float* const* W = byoc_W;")
        lines.append("  float* roots_out = (float*)out[0].data;")
        lines.append("  float* nodes_out = (float*)out[1].data;")
        lines.append("  int32_t* iw = (int32_t*)out[2].data;")
        for name, per_node, per_arity, extra in INT_WORK:
            lines.append(f"  int32_t* {name} = iw; iw += cap * {per_node} + cap * A * "
                         f"{per_arity} + {extra};")
        lines.append("  float* fw = (float*)out[3].data;")
        for name, per, fixed in spec.float_regions():
            lines.append(f"  float* {name} = fw; fw += (size_t)cap * {per} + {fixed};")
        lines.append("  (void)roots_out; (void)nodes_out; (void)fw; (void)iw; (void)W;")
        return lines

    def check_words(self) -> list[str]:
        vocab = self.spec.model.vocab_size
        if vocab is None:
            return []
        return [
            "  for (int32_t t = 0, v = 0; t < n_trees; ++t) {",
            "    for (int32_t i = 0; i < tree_sizes[t]; ++i, ++v) {",
            f"      if (words[v] < 0 || words[v] >= {vocab}) {{",
            "        snprintf(error, error_size, \"structure %d: node %d has word id %d, outside "
            f"the vocabulary of {vocab}\", t, i, words[v]);",
            "        return BYOC_INVALID_ARGUMENT;",
            "      }",
            "    }",
            "  }",
        ]

    def leaf_words(self) -> list[str]:
        """Each node's children's words where they are leaves, -1 for internal children and
        -2 for missing ones (their share is zero), for the GEMMs that read leaf-child
        tables: leaves are the positions below lstart[1]."""
        if not self.spec.leaf_words:
            return []
        return ["  for (int32_t p = 0; p < n; ++p) for (int32_t k = 0; k < A; ++k) {",
                "    int32_t c = lchild[(size_t)p * A + k];",
                "    leafword[(size_t)p * A + k] = c < 0 ? -2 : c < lstart[1] ? words[order[c]] "
                ": -1;",
                "  }"]

    def stage_loop(self, cell: CellStages, begin: str, end: str, leaf: bool) -> list[str]:
        """Direct table rows and the hoisted stage over positions ``[begin, end)``."""
        spec = self.spec
        s = spec.state_width
        offsets = spec.stages.offsets
        if not cell.direct and cell.hoist is None:
            return []
        lines = [f"  for (int32_t p0 = {begin}; p0 < {end}; p0 += {spec.chunk_rows}) {{",
                 f"    int m = {end} - p0 < {spec.chunk_rows} ? {end} - p0 : {spec.chunk_rows};"]
        for component, table in cell.direct.items():
            width = cell.tables[table].width
            index = spec.const_index[("leaf", f"table:{table}")]
            lines.append(f"    for (int r = 0; r < m; ++r) memcpy(states + (size_t)(p0 + r) * {s}"
                         f" + {offsets[component]}, W[{index}] + (size_t)words[order[p0 + r]] * "
                         f"{width}, {width} * sizeof(float));")
        if cell.hoist is not None:
            if leaf:
                targets = [f"states + (size_t)p0 * {s} + {o}" for o in cell.hoist_offsets]
            else:
                width = cell.hoisted_width
                targets = [f"hoisted + (size_t)p0 * {width} + {o}" for o in cell.hoist_offsets]
            lines += self.call(cell.hoist, targets)
        lines.append("  }")
        return lines

    def levels(self) -> list[str]:
        spec = self.spec
        plan = spec.stages.internal.level
        s = spec.state_width
        targets = [f"states + (size_t)p0 * {s} + {spec.stages.offsets[c.name]}"
                   for c in spec.model.state]
        return [
            "  for (int32_t l = 1; l < n_levels; ++l) {",
            f"    for (int32_t p0 = lstart[l]; p0 < lstart[l + 1]; p0 += {spec.chunk_rows}) {{",
            f"      int m = lstart[l + 1] - p0 < {spec.chunk_rows} ? lstart[l + 1] - p0 : "
            f"{spec.chunk_rows};",
            *("  " + line for line in self.call(plan, targets)),
            "    }",
            "  }",
        ]

    def call(self, plan: Plan, targets: Sequence[str]) -> list[str]:
        """Gather a chunk's inputs for ``plan`` and call it; ``targets`` per output buffer."""
        spec = self.spec
        s = spec.state_width
        io, lines = [], []
        outputs = iter(targets)
        for name, buffer in plan.buffers.items():
            if buffer.kind == "output":
                io.append(next(outputs))
            elif buffer.kind == "input":
                io.append(self.gather(plan, name, buffer.ld, lines, s))
        lines.append(f"    {{ float* const io[] = {{{', '.join(io) or '0'}}};")
        lines.append(f"      plan_{plan.name}(m, io, scratch, W, {self.plan_words(plan)}); }}")
        return lines

    def plan_words(self, plan: Plan) -> str:
        """The leaf-word rows a plan's chunk reads (only the level stage has any)."""
        if self.spec.leaf_words and plan is self.spec.stages.internal.level:
            return "leafword + (size_t)p0 * A"
        return "0"

    def gather(self, plan: Plan, name: str, ld: int, lines: list[str], s: int) -> str:
        spec = self.spec
        if name == "hoisted":
            return f"hoisted + (size_t)p0 * {ld}"
        buffer = gather_name(plan, name)
        kind, _, what = name.partition(":")
        if kind == "child":
            width = spec.model.component(what).size
            offset = spec.stages.offsets[what]
            lines += [
                "    for (int r = 0; r < m; ++r) for (int k = 0; k < A; ++k) {",
                "      int32_t c = lchild[(size_t)(p0 + r) * A + k];",
                f"      float* d = {buffer} + (size_t)r * {ld} + k * {width};",
                f"      if (c >= 0) memcpy(d, states + (size_t)c * {s} + {offset}, "
                f"{width} * sizeof(float));",
                f"      else memset(d, 0, {width} * sizeof(float));",
                "    }"]
        elif kind == "table":
            cell = plan.name.split("_")[0]
            index = spec.const_index[(cell, name)]
            lines.append(f"    for (int r = 0; r < m; ++r) memcpy({buffer} + (size_t)r * {ld}, "
                         f"W[{index}] + (size_t)words[order[p0 + r]] * {ld}, "
                         f"{ld} * sizeof(float));")
        else:
            lines.append(f"    for (int r = 0; r < m; ++r) memcpy({buffer} + (size_t)r * {ld}, "
                         f"feature_{_ident(what)} + (size_t)order[p0 + r] * {ld}, "
                         f"{ld} * sizeof(float));")
        return buffer

    def outputs(self) -> list[str]:
        s = self.spec.state_width
        return [
            "  /* roots: the nodes no node names as a child, in batch order */",
            "  for (int32_t v = 0; v < n; ++v) nextk[v] = 0;",
            "  for (size_t i = 0; i < (size_t)n * A; ++i)",
            "    if (gchild[i] >= 0) nextk[gchild[i]] = 1;",
            "  for (int32_t v = 0, r = 0; v < n; ++v) if (!nextk[v]) {",
            f"    memcpy(roots_out + (size_t)r * {s}, states + (size_t)pos[v] * {s}, "
            f"{s} * sizeof(float));",
            "    ++r;",
            "  }",
            "  if (want_nodes) for (int32_t v = 0; v < n; ++v)",
            f"    memcpy(nodes_out + (size_t)v * {s}, states + (size_t)pos[v] * {s}, "
            f"{s} * sizeof(float));",
        ]


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def vector_config() -> str:
    """Micro-kernel shapes per instruction set: 6x4 of 16 floats with AVX-512 (24
    accumulators of 32 registers), 4x3 of 8 floats otherwise (12 of 16)."""
    return "\n".join(["#if defined(__AVX512F__)", gemm_c(16, 6, 4), "#else", gemm_c(8, 4, 3),
                      "#endif"])


def generate_c(spec: KernelSpec) -> CSource:
    """The C module of ``spec``: one entry function per the byoc ABI."""
    plans = [PlanWriter(plan, spec).function() for plan in spec.plans()]
    text = "\n".join([
        f"/* Generated by byoc_sdk.recursive for model {spec.model.name}. */",
        "#include <stdint.h>", "#include <stdio.h>", "#include <string.h>",
        "#include \"byoc/abi.h\"",
        MATH_C, vector_config(), LINEARIZE_C, *plans, DriverWriter(spec).source(), ""])
    return CSource({f"{spec.entry}.c": text}, spec.entry)

