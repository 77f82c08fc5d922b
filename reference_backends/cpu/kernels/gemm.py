"""Matrix products: the register-blocked micro-kernel, packing, and Gemm/MatMul.

``C[M, N] = A[M, K] B[K, N]`` is computed in tiles of ``mr`` rows by ``nr = nv *
vector_width`` columns held in vector registers (GCC/Clang vector extensions, so the
same source vectorizes for AVX-512, AVX2 or NEON). The micro-kernel reads A through
strides (row-major, transposed or packed alike) and B as a *panel*: ``K`` rows of
``nr`` contiguous floats, ``ldb`` apart. A panel is

* packed once in ``_init`` when B is a constant (with Gemm's alpha folded in),
* copied per call into thread scratch when B is computed (one vector copy per row when
  B is row-major, a gather when it is transposed), or read in place when the panel
  serves a single register tile.

Each tile goes through the kernel's epilogue on its way to C, so a bias, a residual or
an activation costs no extra pass. Convolution reuses all of this (see ``conv.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reference_backends.cpu.cwriter import CWriter, float_literal, int_list
from reference_backends.cpu.graph import Op, Tensor, UnsupportedError
from reference_backends.cpu.kernels.base import (
    Coords,
    Kernel,
    KernelContext,
    ModuleContext,
    strides_of,
)
from reference_backends.cpu.kernels.elementwise import Epilogue, Operand, Step
from reference_backends.cpu.params import GemmSchedule, RegionParams, default_gemm, resolve_params

# --- shared C pieces ---------------------------------------------------------------


def microkernel(module: ModuleContext, mr: int, nv: int, unroll: int,
                table: bool = False) -> str:
    """Emit (once) the ``mr`` x ``nv`` vector micro-kernel; return its name.

    ``tile[r * nr + c] = sum_k a[r * ars + col(k)] * b[k * ldb + c]`` for ``r < mr``,
    ``c < nr``, where column ``k`` of A is at ``k * aks``, or (``table``) at ``koff[k]``:
    an implicit im2col, whose columns are shifted windows of one padded image. It is
    always inlined, so constant strides fold into addressing.
    """
    vw = module.region.vector_width
    nr = nv * vw
    name = f"byoc_ukr{'t' if table else ''}_{mr}x{nv}_u{unroll}"
    column = "koff[k]" if table else "k * aks"
    a_cols = "const long* restrict koff" if table else "long aks"
    w = CWriter()
    w.line(f"static inline __attribute__((always_inline)) void {name}(")
    w.line(f"    long K, const float* restrict a, long ars, {a_cols},")
    with w.block("    const float* restrict b, long ldb, float* restrict tile)"):
        accumulators = ", ".join(f"c{r}_{v} = {{0}}" for r in range(mr) for v in range(nv))
        w.line(f"byoc_vf {accumulators};")
        w.pragma(f"GCC unroll {unroll}")
        with w.loop("k", "K"):
            for v in range(nv):
                w.line(f"const byoc_vf b{v} = *(const byoc_vfu*)(b + k * ldb + {v * vw});")
            w.line(f"const float* restrict ak = a + {column};")
            for r in range(mr):
                updates = " ".join(f"c{r}_{v} += s * b{v};" for v in range(nv))
                w.line(f"{{ const float s = ak[{r} * ars]; {updates} }}")
        for r in range(mr):
            for v in range(nv):
                w.line(f"*(byoc_vfu*)(tile + {r * nr + v * vw}) = c{r}_{v};")
    module.helper(name, w.text())
    return name


#: Packing routines used in ``_init`` (constant operands) and per call (computed ones).
PACKING = r"""
/* dst[K][nr] <- columns [n0, n0 + cols) of a K x N matrix (element (k, n) at
   src[k * ks + n * ns]), scaled (column n also by col_scale[n] unless NULL),
   zero-padded to nr columns. */
static void byoc_pack_panel(float* restrict dst, const float* restrict src, long K,
                            long n0, long cols, long ks, long ns, long nr, float scale,
                            const float* restrict col_scale) {
  for (long k = 0; k < K; ++k) {
    const float* restrict row = src + k * ks + n0 * ns;
    float* restrict out = dst + k * nr;
    long c = 0;
    for (; c < cols; ++c) {
      out[c] = row[c * ns] * scale * (col_scale ? col_scale[n0 + c] : 1.0f);
    }
    for (; c < nr; ++c) out[c] = 0.0f;
  }
}

/* dst[ceil(N / nr)][K][nr]: every panel of a K x N matrix. */
static void byoc_pack_b(float* restrict dst, const float* restrict src, long K, long N,
                        long ks, long ns, long nr, float scale,
                        const float* restrict col_scale) {
  for (long p = 0; p * nr < N; ++p) {
    long cols = N - p * nr < nr ? N - p * nr : nr;
    byoc_pack_panel(dst + p * K * nr, src, K, p * nr, cols, ks, ns, nr, scale, col_scale);
  }
}

/* dst[ceil(M / mr)][K][mr]: row blocks of an M x K matrix (element (m, k) at
   src[m * ms + k * ks]), row m scaled by scale[m] when scale is not NULL. */
static void byoc_pack_a(float* restrict dst, const float* restrict src, long M, long K,
                        long ms, long ks, long mr, const float* restrict scale) {
  for (long m0 = 0; m0 < M; m0 += mr) {
    float* restrict block = dst + m0 * K;
    for (long k = 0; k < K; ++k) {
      for (long r = 0; r < mr; ++r) {
        long m = m0 + r;
        float v = m < M ? src[m * ms + k * ks] : 0.0f;
        block[k * mr + r] = (m < M && scale) ? v * scale[m] : v;
      }
    }
  }
}
"""


def emit_tile_store(
    w: CWriter,
    ctx: KernelContext,
    kernel: Kernel,
    tile: str,
    nr: int,
    rows: str,
    cols: str,
    coords: Callable[[str, str], Coords],
) -> None:
    """Store ``rows`` x ``cols`` of ``tile`` through the kernel's epilogue; ``coords``
    maps the row and column variables to output coords."""
    with w.loop("r", rows), w.loop("c", cols, pragma="omp simd"):
        kernel.store(w, ctx, f"{tile}[r * {nr} + c]", coords("r", "c"))


# --- row blocks and panels, shared by GEMM, Conv and ConvTranspose ---------------


@dataclass(frozen=True)
class RowBlocks:
    """How the micro-kernel reads A: element (row, k) of the current matrix lives at
    ``base + row * row_stride + k * col_stride``. Packed (zero-padded) A may run the
    full-height micro-kernel on its last rows; unpacked A needs an exact edge kernel."""

    base: str
    row_stride: int
    #: Distance between columns, or "koff": columns at the offsets of that C table.
    col_stride: int | str
    rows: int
    padded: bool = False
    #: Offset from one row block to the next per row (``row_stride`` unless packed).
    block_stride: int | None = None
    #: The absolute row of ``i0`` (for the edge test against ``rows``).
    index: str = "i0"


def emit_microkernel_call(w: CWriter, ctx: KernelContext, a: RowBlocks, mr: int, nv: int,
                          unroll: int, k: int, bp: str, ldb: str) -> None:
    """``tile`` <- rows ``i0 .. i0 + mr`` of A times panel ``bp`` (rows ``ldb`` apart)."""
    table = a.col_stride == "koff"
    ukr = microkernel(ctx.module, mr, nv, unroll, table)
    edge = a.rows % mr
    block = a.row_stride if a.block_stride is None else a.block_stride
    call = (f"(long){k}, {a.base} + i0 * {block}, {a.row_stride}, {a.col_stride}, "
            f"{bp}, {ldb}, tile")
    if edge and not a.padded:
        edge_ukr = microkernel(ctx.module, edge, nv, unroll, table)
        w.line(f"if ({a.index} + {mr} <= {a.rows}) {ukr}({call});")
        w.line(f"else {edge_ukr}({call});")
    else:
        w.line(f"{ukr}({call});")


@dataclass
class Panels:
    """How a kernel gets panel ``jp`` of B (``cols`` valid columns) as ``bp`` / ``ldb``.

    ``mode`` is

    * "packed": ``source`` points at packed panels of ``k * nr`` floats, the matrix
      selected by ``matrix``;
    * "rows": row ``k`` of B starts at ``source + k * row_stride``;
    * "table": row ``k`` starts at ``source + koff[k]`` (a C table of the kernel);
    * "pack": B's columns are not contiguous; every panel is gathered.

    "rows" and "table" panels are copied into contiguous thread scratch (one vector
    copy per row: the micro-kernel then streams them from L1, which matters once a
    panel is reused by several row blocks), unless ``copy`` is off and the panel is
    read in place. ``full`` says every panel may be read ``nr`` columns wide (zeros or
    ignored values past ``cols``); otherwise a partial last panel is packed with zeros.
    """

    mode: str
    source: str
    k: int
    nr: int
    row_stride: int = 0
    col_stride: int = 1
    panels: int = 0
    matrix: str = "0"
    copy: bool = True
    full: bool = False

    def select(self, w: CWriter, ctx: KernelContext) -> str:
        """Emit the choice of ``bp`` for panel ``jp``; return the ldb expression."""
        k, nr = self.k, self.nr
        if self.mode == "packed":
            w.line(f"const float* restrict bp = {self.source} + "
                   f"({self.matrix} * {self.panels} + jp) * {k * nr};")
            return str(nr)
        scratch = ctx.scratch(4 * k * nr)
        pack = (f"byoc_pack_panel(buf, {self.source}, {k}, jp * {nr}, cols, "
                f"{self.row_stride}, {self.col_stride}, {nr}, 1.0f, NULL);")
        ctx.module.helper("packing", PACKING)
        if self.mode == "pack":
            w.line(f"float* restrict buf = {scratch};")
            w.line(pack)
            w.line("const float* restrict bp = buf;")
            return str(nr)
        if self.full and self.mode == "rows" and not self.copy:
            w.line(f"const float* restrict bp = {self.source} + jp * {nr};")
            return str(self.row_stride)
        if self.full:
            w.line(f"float* restrict buf = {scratch};")
            self._copy(w, ctx)
            w.line("const float* restrict bp = buf;")
            return str(nr)
        w.line("const float* restrict bp;")
        w.line("long ldb;")
        with w.block(f"if (cols == {nr})"):
            if self.copy:
                w.line(f"float* restrict buf = {scratch};")
                self._copy(w, ctx)
                w.line(f"bp = buf; ldb = {nr};")
            else:
                w.line(f"bp = {self.source} + jp * {nr}; ldb = {self.row_stride};")
        with w.block("else"):
            w.line(f"float* restrict buf = {scratch};")
            w.line(pack)
            w.line(f"bp = buf; ldb = {nr};")
        return "ldb"

    def _copy(self, w: CWriter, ctx: KernelContext) -> None:
        """``buf[k][nr]`` <- the ``nr`` columns of each row of panel ``jp``."""
        vw = ctx.vector_width
        row = "koff[k]" if self.mode == "table" else f"k * {self.row_stride}"
        with w.loop("k", self.k):
            w.line(f"const float* restrict src = {self.source} + jp * {self.nr} + {row};")
            for v in range(self.nr // vw):
                w.line(f"*(byoc_vfu*)(buf + k * {self.nr} + {v * vw}) = "
                       f"*(const byoc_vfu*)(src + {v * vw});")


def packed_constant_b(ctx: KernelContext, key: str, tensor: Tensor, offsets: Sequence[int],
                      k: int, n: int, row_stride: int, col_stride: int, nr: int,
                      scale: float = 1.0, col_scale: str = "NULL") -> tuple[str, list[int]]:
    """A state buffer with each distinct matrix of constant ``tensor`` (at ``offsets``)
    packed into panels; returns its name and each offset's matrix number. Column ``j``
    of matrix ``i`` is scaled by ``scale`` and by ``col_scale[i * n + j]`` (a C array,
    "NULL" for none)."""
    distinct = sorted(set(offsets))
    panels = -(-n // nr)
    module = ctx.module
    source = module.constant_source(tensor)

    def fill(w: CWriter) -> None:
        for index, offset in enumerate(distinct):
            factors = col_scale if col_scale == "NULL" else f"{col_scale} + {index * n}"
            w.line(f"byoc_pack_b(S.{name} + {index * panels * k * nr}, {source} + {offset}, "
                   f"{k}, {n}, {row_stride}, {col_stride}, {nr}, {float_literal(scale)}, "
                   f"{factors});")

    module.helper("packing", PACKING)
    name = module.state_field(key, "float", len(distinct) * panels * k * nr, fill)
    return ctx.state(name), [distinct.index(o) for o in offsets]


def offset_table(w: CWriter, name: str, offsets: Sequence[int]) -> None:
    """A static table of per-batch offsets."""
    w.line(f"static const long {name}[{len(offsets)}] = {int_list(offsets)};")


# --- the batched GEMM kernel -------------------------------------------------------


@dataclass(frozen=True)
class MatrixView:
    """A matrix operand of a batched product: element (row, col) of batch ``b`` lives at
    ``offsets[b] + row * row_stride + col * col_stride``."""

    tensor: Tensor
    row_stride: int
    col_stride: int
    offsets: tuple[int, ...]


@dataclass
class GemmLoops:
    """The loop structure of a batched product, shared by Gemm/MatMul and ConvTranspose:
    parallel units of ``mc`` rows by ``nc`` columns, panels inside, register tiles inside
    those. ``store(w, rows, cols)`` writes ``tile`` for rows ``i0..`` and panel ``jp``."""

    m: int
    n: int
    k: int
    batches: int
    params: GemmSchedule

    def emit(self, w: CWriter, ctx: KernelContext, a: RowBlocks, panels: Panels,
             store: Callable[[CWriter], None]) -> None:
        p = self.params
        nr = p.nv * ctx.vector_width
        count = -(-self.n // nr)
        per_unit = max(1, p.nc // nr)
        row_units = -(-self.m // p.mc)
        col_units = -(-count // per_unit)
        work = 2 * self.batches * self.m * self.n * self.k
        w.pragma(ctx.parallel(work, p.parallel_min, collapse=3, extra="schedule(static)"))
        with w.loop("bt", self.batches), w.loop("ib", row_units), w.loop("jb", col_units):
            w.line(f"float tile[{p.mr * nr}] __attribute__((aligned(64)));")
            stop = f"byoc_minl((jb + 1) * {per_unit}, {count})"
            with w.loop("jp", stop, start=f"jb * {per_unit}"):
                w.line(f"const long cols = byoc_minl({self.n} - jp * {nr}, {nr});")
                ldb = panels.select(w, ctx)
                row_stop = f"byoc_minl(ib * {p.mc} + {p.mc}, {self.m})"
                with w.loop("i0", row_stop, start=f"ib * {p.mc}", step=p.mr):
                    emit_microkernel_call(w, ctx, a, p.mr, p.nv, p.unroll, self.k, "bp", ldb)
                    w.line(f"const long rows = byoc_minl({self.m} - i0, {p.mr});")
                    store(w)


@dataclass(eq=False)
class GemmKernel(Kernel):
    """``out[b] = A[b] @ B[b]`` for each batch, through the epilogue."""

    a: MatrixView
    b: MatrixView
    m: int
    n: int
    k: int
    #: The output axes of M and N (``None`` where a 1-D operand dropped one); the axes
    #: before them are the batch axes.
    m_axis: int | None = None
    n_axis: int | None = None
    alpha: float = 1.0

    def reads(self) -> list[Tensor]:
        return [self.a.tensor, self.b.tensor, *self.epilogue.operands()]

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        p: GemmSchedule = self.params
        nr = p.nv * ctx.vector_width
        a, b = self.a, self.b
        offset_table(w, "a_off", a.offsets)
        if b.tensor.is_const:
            source, matrices = packed_constant_b(
                ctx, f"pb_{self.root.name}_{nr}", b.tensor, b.offsets, self.k, self.n,
                b.row_stride, b.col_stride, nr, self.alpha)
            offset_table(w, "b_mat", matrices)
            panels = Panels("packed", source, self.k, nr, panels=-(-self.n // nr),
                            matrix="b_mat[bt]")
        else:
            offset_table(w, "b_off", b.offsets)
            mode = "rows" if b.col_stride == 1 else "pack"
            panels = Panels(mode, f"{ctx.ptr(b.tensor)} + b_off[bt]", self.k, nr,
                            b.row_stride, b.col_stride,
                            copy=p.mc >= 2 * p.mr)  # a panel serving several tiles
        rows = RowBlocks(f"{ctx.ptr(a.tensor)} + a_off[bt]", a.row_stride, a.col_stride,
                         self.m)
        coords = self._coords(nr)
        loops = GemmLoops(self.m, self.n, self.k, len(a.offsets), p)
        loops.emit(w, ctx, rows, panels,
                   lambda w: emit_tile_store(w, ctx, self, "tile", nr, "rows", "cols", coords))

    def _coords(self, nr: int) -> Callable[[str, str], Coords]:
        out_rank = self.output.rank
        batch_axes = min(x for x in (self.m_axis, self.n_axis, out_rank) if x is not None)

        def coords(r: str, c: str) -> Coords:
            result: Coords = [(0, batch_axes, "bt")] if batch_axes else []
            if self.m_axis is not None:
                result.append((self.m_axis, self.m_axis + 1, f"i0 + {r}"))
            if self.n_axis is not None:
                result.append((self.n_axis, self.n_axis + 1, f"jp * {nr} + {c}"))
            return result

        return coords


# --- lowering Gemm and MatMul ------------------------------------------------------


def broadcast_offsets(out_batch: Sequence[int], batch: Sequence[int],
                       matrix_size: int) -> tuple[int, ...]:
    """Element offset of each output batch's matrix in an operand with batch dims
    ``batch`` (broadcast numpy-style to ``out_batch``)."""
    rank = len(out_batch)
    dims = (1,) * (rank - len(batch)) + tuple(batch)
    strides = strides_of(dims)
    offsets = []
    for index in np.ndindex(*out_batch) if rank else [()]:
        offsets.append(sum((i if d != 1 else 0) * s * matrix_size
                           for i, d, s in zip(index, dims, strides, strict=True)))
    return tuple(offsets)


@dataclass(frozen=True)
class Product:
    """A MatMul or Gemm as a batched product ``A[b] @ B[b]`` (M x K times K x N): its
    operands and the output axes of M and N (``None`` where a 1-D operand dropped one;
    the axes before them are the batch axes). The cuda generator lowers the same."""

    a: MatrixView
    b: MatrixView
    m: int
    n: int
    k: int
    m_axis: int | None
    n_axis: int | None


def matmul_product(op: Op) -> Product:
    """MatMul with numpy semantics: batch broadcasting, 1-D operands promoted."""
    a, b = op.inputs[0], op.inputs[1]
    if a.rank == 0 or b.rank == 0:
        raise UnsupportedError(f"MatMul {op.name!r} of a scalar")
    a_shape = (1, *a.shape) if a.rank == 1 else a.shape
    b_shape = (*b.shape, 1) if b.rank == 1 else b.shape
    m, k = a_shape[-2:]
    n = b_shape[-1]
    out_batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    a_view = MatrixView(a, k, 1, broadcast_offsets(out_batch, a_shape[:-2], m * k))
    b_view = MatrixView(b, n, 1, broadcast_offsets(out_batch, b_shape[:-2], k * n))
    nb = len(out_batch)
    m_axis = None if a.rank == 1 else nb
    n_axis = None if b.rank == 1 else nb + (0 if m_axis is None else 1)
    return Product(a_view, b_view, m, n, k, m_axis, n_axis)


def gemm_product(op: Op) -> Product:
    """Gemm's ``op(A) @ op(B)`` (transposes as strides); alpha and C are the caller's."""
    a, b = op.inputs[0], op.inputs[1]
    trans_a, trans_b = int(op.attr("transA", 0)), int(op.attr("transB", 0))
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    a_view = MatrixView(a, 1, m, (0,)) if trans_a else MatrixView(a, k, 1, (0,))
    b_view = MatrixView(b, 1, k, (0,)) if trans_b else MatrixView(b, n, 1, (0,))
    return Product(a_view, b_view, m, n, k, 0, 1)


def beta_steps(op: Op) -> list[Step]:
    """Gemm's ``+ beta * C`` as an epilogue step (none without C or with beta 0)."""
    c, beta = op.input(2), float(op.attr("beta", 1.0))
    if c is None or beta == 0.0:
        return []
    scaled = Op(f"{op.name}/beta", "byoc.AddScaled", [None, c], [op.output], {"beta": beta},
                op.opset)
    return [Step(scaled, [None, Operand(c, c.shape)])]


def matmul_kernel(op: Op, region: RegionParams) -> GemmKernel:
    """MatMul (see :func:`matmul_product`)."""
    return _gemm(op, region, matmul_product(op), 1.0, [])


def gemm_kernel(op: Op, region: RegionParams) -> GemmKernel:
    """Gemm: ``alpha * op(A) @ op(B) + beta * C`` with C broadcast to (M, N); alpha is
    folded into a constant B when it is packed, else applied in the epilogue."""
    product = gemm_product(op)
    alpha = float(op.attr("alpha", 1.0))
    folded = product.b.tensor.is_const
    steps = [] if alpha == 1.0 or folded else [scalar_step(op, "Mul", alpha)]
    return _gemm(op, region, product, alpha if folded else 1.0, [*steps, *beta_steps(op)])


def scalar_step(op: Op, op_type: str, value: float) -> Step:
    const = Tensor(f"{op.name}/{op_type.lower()}", (), "float32",
                   value=np.asarray(value, np.float32))
    synthetic = Op(f"{op.name}/{op_type.lower()}", op_type, [None, const], [op.output], {},
                   op.opset)
    return Step(synthetic, [None, Operand(const, ())])


def _gemm(op: Op, region: RegionParams, product: Product, alpha: float,
          steps: list[Step]) -> GemmKernel:
    p = product
    params = resolve_params(default_gemm(p.m, p.n, p.k, region.vector_width), op.op_type,
                            op.name, region)
    if params.mc % params.mr:  # units of work hold whole register tiles
        params = dataclasses.replace(params, mc=math.ceil(params.mc / params.mr) * params.mr)
    epilogue = Epilogue(op.output, steps)
    return GemmKernel(op, epilogue, params, a=p.a, b=p.b, m=p.m, n=p.n, k=p.k,
                      m_axis=p.m_axis, n_axis=p.n_axis, alpha=alpha)
