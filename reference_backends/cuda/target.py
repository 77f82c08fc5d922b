"""cuda: generated CUDA C kernels for NVIDIA GPUs.

It runs float32 tensors of static shape: elementwise ops and activations, Gemm/MatMul,
2-D convolution and pooling, reductions, Softmax, LayerNormalization and Transpose.
Reshape-like ops are metadata only (they change no data, so their shape inputs must be
constants).

This module is the target's support table; its code generator is
:mod:`reference_backends.cuda.codegen`, attached in the package's ``__init__``. Regions
compile with ``nvcc``; with the ``emulate`` option (or ``BYOC_CUDA_EMULATE=1``) they
compile with the host C++ compiler and run on the CPU instead, for machines without a GPU.
"""

from __future__ import annotations

from byoc_sdk.target import Target
from reference_backends.common import FLOAT32, declare_float_kernels

target = Target(
    "cuda",
    version="0.1.0",
    vendor="byoc",
    description="Generated CUDA C kernels (float32, static shapes)",
    priority=5,
    merge_style="regions",
    constants="bind",
)

declare_float_kernels(target)
target.support("Transpose", dtypes=FLOAT32, static_shapes=True)
