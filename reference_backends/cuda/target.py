"""cuda: generated CUDA C kernels for NVIDIA GPUs.

It runs float32 tensors of static shape: elementwise ops and activations, Gemm/MatMul,
2-D convolution and pooling, reductions, Softmax and LayerNormalization. Reshape-like ops
are metadata only (they change no data, so their shape inputs must be constants).

This module is the target's support table only: its CUDA code generator is not written
yet, so every region it claims falls back to the host at build time (and says so).
"""

from __future__ import annotations

from byoc_sdk.target import Target
from reference_backends.common import declare_float_kernels

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
