"""The text every generated CUDA module starts with: includes, device helpers, checks.

The helper names are the cpu prelude's (``byoc_maxf``, ``byoc_sigmoid``...), so the
elementwise expressions the two generators share call the same functions; here they
are ``__device__`` functions on CUDA's own math library. Block reductions use a
shared-memory tree rather than warp shuffles: the same source then also runs in the
host emulation (``byoc/cuda_emulation.h``), which has no warps.
"""

from __future__ import annotations

from reference_backends.cpu.prelude import TENSOR_CHECK

PRELUDE = r"""
#include <byoc/abi.h>
#include <byoc/cuda.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
BYOC_DEFINE_ABI_VERSION
}

/* A NaN operand gives NaN, as in onnxruntime's Max, Min, Relu and Clip (CUDA's fmaxf
   would return the other operand and hide it). */
static __device__ __forceinline__ float byoc_maxf(float a, float b) {
  return (a > b || a != a) ? a : b;
}
static __device__ __forceinline__ float byoc_minf(float a, float b) {
  return (a < b || a != a) ? a : b;
}
static __device__ __forceinline__ float byoc_expf(float x) { return expf(x); }
static __device__ __forceinline__ float byoc_erff(float x) { return erff(x); }
static __device__ __forceinline__ float byoc_tanhf(float x) { return tanhf(x); }
static __device__ __forceinline__ float byoc_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static __device__ __forceinline__ float byoc_leaky(float x, float alpha) {
  return x >= 0.0f ? x : alpha * x;
}
static __device__ __forceinline__ float byoc_hardsigmoid(float x, float alpha, float beta) {
  return byoc_maxf(0.0f, byoc_minf(1.0f, alpha * x + beta));
}
static __device__ __forceinline__ float byoc_gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}
static __device__ __forceinline__ float byoc_gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* One input element of a convolution, zero in the padding. */
static __device__ __forceinline__ float byoc_conv_tap(const float* __restrict__ x, long base,
                                                      long ih, long iw, long h, long w) {
  return (ih >= 0 && ih < h && iw >= 0 && iw < w) ? x[base + ih * w + iw] : 0.0f;
}

/* Sum / maximum of v over the block (blockDim.x a power of two), returned to every
   thread; red holds blockDim.x floats of shared memory. */
static __device__ __forceinline__ float byoc_block_sum(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const float total = red[0];
  __syncthreads();
  return total;
}
static __device__ __forceinline__ float byoc_block_max(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] = byoc_maxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const float top = red[0];
  __syncthreads();
  return top;
}

@TENSOR_CHECK@
/* Run a CUDA call; on failure record its message and leave through `done`. */
#define BYOC_CUDA(call)                                                              \
  do {                                                                               \
    cudaError_t byoc_err_ = (call);                                                  \
    if (byoc_err_ != cudaSuccess) {                                                  \
      snprintf(error, error_size, "%s: %s failed: %s", BYOC_ENTRY_NAME, #call,        \
               cudaGetErrorString(byoc_err_));                                       \
      status = BYOC_DEVICE_ERROR;                                                    \
      goto done;                                                                     \
    }                                                                                \
  } while (0)
"""


def prelude() -> str:
    return PRELUDE.replace("@TENSOR_CHECK@", TENSOR_CHECK.strip("\n")).lstrip("\n")
