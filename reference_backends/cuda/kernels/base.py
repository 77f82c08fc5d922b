"""What every CUDA kernel shares: device constants, the emission context, launch shapes.

The cuda generator reuses the cpu generator's view of a region (tensors, ops, fusion,
epilogues, broadcast indexing: ``reference_backends.cpu``) and differs where the
machine does: a kernel here is a ``__global__`` function with a launch shape, its
constants live in device memory the module uploads once in ``_init``, and a value
derived at build time (a folded BatchNormalization scale, a batch offset table) is a
``__device__`` array in the source.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

from reference_backends.cpu.cwriter import CWriter, c_identifier
from reference_backends.cpu.graph import Tensor, UnsupportedError
from reference_backends.cpu.kernels.base import (
    Kernel,
    KernelContext,
    ModuleContext,
)
from reference_backends.cuda.params import BlockSchedule


@dataclass(frozen=True)
class Launch:
    """A kernel's grid (x, y, z blocks) and threads per block."""

    grid: tuple[int, int, int]
    threads: int

    def describe(self) -> str:
        x, y, z = self.grid
        return f"grid ({x}, {y}, {z}) x {self.threads} threads"


def flat_launch(count: int, params: BlockSchedule) -> Launch:
    """One thread per item of ``count``, capped at ``params.max_blocks`` blocks (each
    thread then strides over several items, see :func:`grid_stride`)."""
    blocks = max(1, min(params.max_blocks, -(-count // params.threads)))
    return Launch((blocks, 1, 1), params.threads)


@contextmanager
def grid_stride(w: CWriter, var: str, count: int | str) -> Iterator[None]:
    """``for`` each item ``var`` of ``count`` this thread owns, over the whole grid."""
    with w.block(f"for (long {var} = (long)blockIdx.x * blockDim.x + threadIdx.x; "
                 f"{var} < {count}; {var} += (long)gridDim.x * blockDim.x)"):
        yield


@dataclass
class CudaModule(ModuleContext):
    """The module-wide part of emission: helpers, device constants, derived arrays.

    Every region constant a kernel reads gets one device buffer (``S.<name>``), filled
    from the constant handed to ``_init``.
    """

    #: State field name -> the constant uploaded into it.
    uploads: dict[str, Tensor] = field(default_factory=dict)
    embedded_qualifier: ClassVar[str] = "static __device__ const"

    def constant_buffer(self, tensor: Tensor) -> str:
        if tensor.embedded:
            return self.embedded_array(tensor)
        name = c_identifier(f"c{self.constant_index(tensor)}_{tensor.name}", "s")
        self.uploads[name] = tensor
        return name


class CudaKernelContext(KernelContext):
    """Emission of one ``__global__`` function: its pointer parameters."""

    restrict: ClassVar[str] = "__restrict__"

    def scratch(self, nbytes: int, offset: int = 0, c_type: str = "float") -> str:
        raise UnsupportedError("cuda kernels keep their temporaries in shared memory, "
                               "not in a host scratch buffer")


@dataclass(eq=False)
class CudaKernel(Kernel):
    """A generated ``__global__`` function; :meth:`launch` says how it runs."""

    @abc.abstractmethod
    def launch(self) -> Launch:
        """The grid and block shape the kernel runs with."""

    def describe(self) -> str:
        return f"{super().describe()}; {self.launch().describe()}"
