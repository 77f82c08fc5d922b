"""Matrix products on shared-memory tiles: Gemm, MatMul and Conv as an implicit GEMM.

One kernel shape serves all three. A block computes a ``bm`` x ``bn`` tile of
``C = A @ B`` for one batch (``blockIdx.z``); per step of ``bk`` along K its threads
stage a slice of A and of B in shared memory, synchronize, and each thread accumulates
a ``tm`` x ``tn`` tile of C in registers (its rows and columns interleaved with the
other threads', so reads from shared memory fall in different banks). What differs is
how an element of A or B is found:

- Gemm/MatMul read A and B through strides and a per-batch offset table (numpy
  broadcasting of batch dimensions, transposes);
- Conv is ``out[oc, p] = W[oc, k] @ col[k, p]`` per group: A is the weight matrix as
  stored, and B's element (k, p) is computed on the fly from the input image (the
  implicit im2col), zero in the padding. Its batch index is the group; pixels of all
  images form the columns, so small images still fill whole tiles.

Staging loops walk the contiguous axis of each operand with consecutive threads, so
global loads coalesce whichever way an operand is laid out.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reference_backends.cpu.cwriter import CWriter
from reference_backends.cpu.graph import Op, Tensor
from reference_backends.cpu.kernels.base import Coords, KernelContext
from reference_backends.cpu.kernels.conv import bias_steps
from reference_backends.cpu.kernels.elementwise import Epilogue, Step
from reference_backends.cpu.kernels.gemm import (
    MatrixView,
    Product,
    beta_steps,
    gemm_product,
    matmul_product,
    scalar_step,
)
from reference_backends.cpu.kernels.window import Window, conv_window, is_depthwise
from reference_backends.cpu.params import Schedule, resolve_params
from reference_backends.cuda.kernels.base import CudaKernel, Launch
from reference_backends.cuda.kernels.window import depthwise_kernel
from reference_backends.cuda.params import BlockSchedule, CudaParams, TileSchedule, default_tiles

#: ``load(row, col)`` -> C expression of one element of an operand.
Load = Callable[[str, str], str]


@dataclass(frozen=True)
class Operand2D:
    """How to stage one GEMM operand: its element expression and which of its two
    indices is contiguous in memory (``"row"`` or ``"col"``)."""

    load: Load
    contiguous: str


@dataclass(eq=False)
class TiledGemmKernel(CudaKernel):
    """``C[b] = A[b] @ B[b]`` (M x K times K x N) per batch, through the epilogue."""

    m: int = 0
    n: int = 0
    k: int = 0
    batches: int = 1

    def launch(self) -> Launch:
        p: TileSchedule = self.params
        return Launch((-(-self.n // p.bn), -(-self.m // p.bm), self.batches), p.threads)

    @abc.abstractmethod
    def operands(self, ctx: KernelContext) -> tuple[Operand2D, Operand2D]:
        """A and B inside the kernel (``bt`` names the batch)."""

    @abc.abstractmethod
    def coords(self) -> Coords:
        """Output coordinates of C's element (``m``, ``n``) of batch ``bt``."""

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        p: TileSchedule = self.params
        a, b = self.operands(ctx)
        cols = p.bn // p.tn  # threads along N
        w.line("const long bt = blockIdx.z;")
        w.line(f"const long m0 = (long)blockIdx.y * {p.bm}, n0 = (long)blockIdx.x * {p.bn};")
        w.line(f"const int tx = threadIdx.x % {cols}, ty = threadIdx.x / {cols};")
        w.line("(void)bt;")
        # One float of padding per row: staging that walks k fastest then writes a
        # column, and rows bm floats apart would fall into two banks.
        w.line(f"__shared__ float As[{p.bk}][{p.bm + 1}];")
        w.line(f"__shared__ float Bs[{p.bk}][{p.bn + 1}];")
        w.line(f"float acc[{p.tm}][{p.tn}];")
        w.line(f"for (int i = 0; i < {p.tm}; ++i) for (int j = 0; j < {p.tn}; ++j) "
               "acc[i][j] = 0.0f;")
        with w.block(f"for (long k0 = 0; k0 < {self.k}; k0 += {p.bk})"):
            self._stage(w, "As", a, p.bm, p.bk, "m0", self.m, rows_are_k=False)
            self._stage(w, "Bs", b, p.bn, p.bk, "n0", self.n, rows_are_k=True)
            w.line("__syncthreads();")
            with w.block(f"for (int kk = 0; kk < {p.bk}; ++kk)"):
                w.line(f"float ra[{p.tm}], rb[{p.tn}];")
                w.line(f"for (int i = 0; i < {p.tm}; ++i) "
                       f"ra[i] = As[kk][ty + i * {p.bm // p.tm}];")
                w.line(f"for (int j = 0; j < {p.tn}; ++j) rb[j] = Bs[kk][tx + j * {cols}];")
                w.line(f"for (int i = 0; i < {p.tm}; ++i) for (int j = 0; j < {p.tn}; ++j) "
                       "acc[i][j] += ra[i] * rb[j];")
            w.line("__syncthreads();")
        with w.block(f"for (int i = 0; i < {p.tm}; ++i)"):
            w.line(f"const long m = m0 + ty + i * {p.bm // p.tm};")
            w.line(f"if (m >= {self.m}) break;")
            with w.block(f"for (int j = 0; j < {p.tn}; ++j)"):
                w.line(f"const long n = n0 + tx + j * {cols};")
                w.line(f"if (n >= {self.n}) break;")
                self.store(w, ctx, "acc[i][j]", self.coords())

    def _stage(self, w: CWriter, array: str, operand: Operand2D, extent: int, bk: int,
               origin: str, limit: int, *, rows_are_k: bool) -> None:
        """Copy a ``bk`` x ``extent`` slice into ``array[kk][e]`` (zeros past the edges).
        The flat staging index runs fastest along the operand's contiguous axis."""
        p: TileSchedule = self.params
        k_fastest = operand.contiguous == ("row" if rows_are_k else "col")
        if k_fastest:
            split = f"const int kk = s % {bk}, e = s / {bk};"
        else:
            split = f"const int kk = s / {extent}, e = s % {extent};"
        with w.block(f"for (int s = threadIdx.x; s < {bk * extent}; s += {p.threads})"):
            w.line(split)
            w.line(f"const long k = k0 + kk, x = {origin} + e;")
            element = operand.load("k", "x") if rows_are_k else operand.load("x", "k")
            w.line(f"{array}[kk][e] = (k < {self.k} && x < {limit}) ? {element} : 0.0f;")


# --- Gemm and MatMul ---------------------------------------------------------------------


@dataclass(eq=False)
class MatrixKernel(TiledGemmKernel):
    """Gemm or MatMul: strided operands with per-batch offsets."""

    a: MatrixView | None = None
    b: MatrixView | None = None
    m_axis: int | None = None
    n_axis: int | None = None

    def reads(self) -> list[Tensor]:
        return [self.a.tensor, self.b.tensor, *self.epilogue.operands()]

    def operands(self, ctx: KernelContext) -> tuple[Operand2D, Operand2D]:
        return self._view(ctx, self.a, "a_off"), self._view(ctx, self.b, "b_off")

    def _view(self, ctx: KernelContext, view: MatrixView, name: str) -> Operand2D:
        pointer = ctx.ptr(view.tensor)
        offsets = set(view.offsets)
        if len(offsets) == 1:
            base = str(view.offsets[0])
        else:
            table = Tensor.derived(f"{self.root.name}/{name}",
                                   np.asarray(view.offsets, dtype=np.int64))
            base = f"{ctx.ptr(table)}[bt]"
        rs, cs = view.row_stride, view.col_stride

        def load(row: str, col: str) -> str:
            return f"{pointer}[{base} + {row} * {rs} + {col} * {cs}]"

        return Operand2D(load, "col" if cs == 1 else "row")

    def coords(self) -> Coords:
        out_rank = self.output.rank
        batch_axes = min(x for x in (self.m_axis, self.n_axis, out_rank) if x is not None)
        result: Coords = [(0, batch_axes, "bt")] if batch_axes else []
        if self.m_axis is not None:
            result.append((self.m_axis, self.m_axis + 1, "m"))
        if self.n_axis is not None:
            result.append((self.n_axis, self.n_axis + 1, "n"))
        return result


def _tiles(op: Op, m: int, n: int, params: CudaParams) -> TileSchedule:
    return resolve_params(default_tiles(m, n), op.op_type, op.name, params)


def _matrix_kernel(op: Op, params: CudaParams, product: Product,
                   steps: list[Step]) -> MatrixKernel:
    p = product
    return MatrixKernel(op, Epilogue(op.output, steps), _tiles(op, p.m, p.n, params),
                        m=p.m, n=p.n, k=p.k, batches=len(p.a.offsets), a=p.a, b=p.b,
                        m_axis=p.m_axis, n_axis=p.n_axis)


def matmul_kernel(op: Op, params: CudaParams) -> MatrixKernel:
    """MatMul with numpy semantics (:func:`~reference_backends.cpu.kernels.gemm.matmul_product`)."""
    return _matrix_kernel(op, params, matmul_product(op), [])


def gemm_kernel(op: Op, params: CudaParams) -> MatrixKernel:
    """Gemm: ``alpha * op(A) @ op(B) + beta * C``, alpha and C in the epilogue."""
    alpha = float(op.attr("alpha", 1.0))
    steps = [] if alpha == 1.0 else [scalar_step(op, "Mul", alpha)]
    return _matrix_kernel(op, params, gemm_product(op), [*steps, *beta_steps(op)])


# --- Conv as an implicit GEMM ------------------------------------------------------------


@dataclass(eq=False)
class ConvKernel(TiledGemmKernel):
    """Grouped 2-D convolution: per group, weights (M = out channels per group, K = in
    channels per group x kernel taps) times implicit columns (K x N = images x output
    pixels). A folded BatchNormalization scales each weight row as it is staged."""

    window: Window | None = None
    groups: int = 1
    scale: Tensor | None = None

    def operands(self, ctx: KernelContext) -> tuple[Operand2D, Operand2D]:
        g, op = self.window, self.root
        x, weights = op.inputs[0], op.inputs[1]
        wp, xp = ctx.ptr(weights), ctx.ptr(x)
        channels = x.shape[1]
        cg = channels // self.groups
        taps = g.kh * g.kw
        plane = g.oh * g.ow
        scale = self.scale

        def weight(row: str, col: str) -> str:
            value = f"{wp}[(bt * {self.m} + {row}) * {self.k} + {col}]"
            if scale is not None:
                value += f" * {ctx.load(scale, f'bt * {self.m} + {row}')}"
            return value

        def column(row: str, col: str) -> str:
            # (row, col) = (k, pixel): k -> (channel, kh, kw); pixel -> (image, oh, ow)
            channel = f"(bt * {cg} + {row} / {taps})"
            tap = f"({row} % {taps})"
            image, pixel = f"({col} / {plane})", f"({col} % {plane})"
            ih = f"({pixel} / {g.ow} * {g.sh} - {g.pt} + {tap} / {g.kw} * {g.dh})"
            iw = f"({pixel} % {g.ow} * {g.sw} - {g.pl} + {tap} % {g.kw} * {g.dw})"
            return (f"byoc_conv_tap({xp}, ({image} * {channels} + {channel}) * {g.h * g.w}, "
                    f"{ih}, {iw}, {g.h}, {g.w})")

        return Operand2D(weight, "col"), Operand2D(column, "col")

    def coords(self) -> Coords:
        plane = self.window.oh * self.window.ow
        return [(0, 1, f"(n / {plane})"), (1, 2, f"(bt * {self.m} + m)"),
                (2, 4, f"(n % {plane})")]


def conv_kernel(op: Op, params: CudaParams) -> CudaKernel:
    """Conv: the depthwise kernel for one input channel per group, else an implicit GEMM."""
    x = op.inputs[0]
    window = conv_window(op)
    groups = int(op.attr("group", 1))
    channels, out_channels = x.shape[1], op.output.shape[1]
    if is_depthwise(op):
        block = resolve_params(BlockSchedule(), "Conv", op.name,
                               _conv_params(params, BlockSchedule, TileSchedule))
        return depthwise_kernel(op, window, block)
    m = out_channels // groups
    k = channels // groups * window.kh * window.kw
    n = x.shape[0] * window.oh * window.ow
    scale = op.attr("byoc.scale")
    tiles = _tiles(op, m, n, _conv_params(params, TileSchedule, BlockSchedule))
    return ConvKernel(op, Epilogue(op.output, bias_steps(op)), tiles, m=m, n=n, k=k,
                      batches=groups, window=window, groups=groups,
                      scale=None if scale is None else
                      Tensor.derived(f"{op.name}/folded_scale", scale))


def _conv_params(params: CudaParams, schedule: type[Schedule],
                 other: type[Schedule]) -> CudaParams:
    """``params`` with the keys only ``other`` has left out of the ``Conv`` op record.

    Depthwise convolutions run on a BlockSchedule and the others on a TileSchedule, so
    one record for the op type (``{"Conv": {"bm": 32}}``) must tune the kernels it fits
    and pass over the others, not fail every region with a depthwise Conv; a key that
    neither schedule has is still an error, and per-kernel records stay strict.
    """
    record = params.ops.get("Conv")
    if not record:
        return params
    foreign = _field_names(other) - _field_names(schedule)
    kept = {key: value for key, value in record.items() if key not in foreign}
    return dataclasses.replace(params, ops={**params.ops, "Conv": kept})


def _field_names(schedule: type[Schedule]) -> set[str]:
    return {f.name for f in dataclasses.fields(schedule)}
