"""The C text every generated module starts with: includes, vector types, small helpers.

Scalar helpers are ``static inline`` so that ``omp simd`` loops over them vectorize; the
OpenMP API is stubbed when the compiler has no OpenMP, so the same source builds (and
runs serially) everywhere.
"""

from __future__ import annotations

PRELUDE = r"""
#include <byoc/abi.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_max_threads(void) { return 1; }
#endif

/* GCC tunes some x86 targets to 256-bit auto-vectorization even with AVX-512; the
   explicit vector code is 512-bit there, and the omp simd loops should be too. */
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#endif

BYOC_DEFINE_ABI_VERSION

/* A SIMD vector of floats (GCC/Clang vector extensions); the _u type loads and stores
   at any float alignment. */
typedef float byoc_vf __attribute__((vector_size(@VECTOR_BYTES@)));
typedef float byoc_vfu __attribute__((vector_size(@VECTOR_BYTES@), aligned(4)));

static inline long byoc_minl(long a, long b) { return a < b ? a : b; }
static inline long byoc_maxl(long a, long b) { return a > b ? a : b; }
/* A NaN operand gives NaN, as in onnxruntime's Max, Min, Relu and Clip and numpy's
   maximum (fmaxf would return the other operand and hide it). */
static inline float byoc_maxf(float a, float b) { return (a > b || a != a) ? a : b; }
static inline float byoc_minf(float a, float b) { return (a < b || a != a) ? a : b; }
/* exp, erf and tanh without libm calls and without branches, so that loops over them
   vectorize (relative error below 1e-6; exp: Cephes' polynomial, erf: its Taylor series
   below 0.5 and Abramowitz-Stegun 7.1.26 above, tanh: Taylor below 0.3). */
static inline float byoc_expf(float x) {
  const float c = x < 88.72283935546875f ? (x > -103.972084f ? x : -103.972084f)
                                          : 88.72283935546875f;
  const float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* rint */
  const float r = (c - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  /* 2^n in two normal halves, so that n from -150 (denormal results) to 128 works */
  const int32_t half = (int32_t)n >> 1;
  union { int32_t i; float f; } s1 = { .i = (half + 127) << 23 };
  union { int32_t i; float f; } s2 = { .i = ((int32_t)n - half + 127) << 23 };
  const float y = p * s1.f * s2.f;
  return x > 88.72283935546875f ? INFINITY : (x < -103.972084f ? 0.0f : (x != x ? x : y));
}
static inline float byoc_erff(float x) {
  const float a = fabsf(x), z = x * x;
  float s = 1.0f / 9360.0f;
  s = s * z - 1.0f / 1320.0f;
  s = s * z + 1.0f / 216.0f;
  s = s * z - 1.0f / 42.0f;
  s = s * z + 1.0f / 10.0f;
  s = s * z - 1.0f / 3.0f;
  s = s * z + 1.0f;
  const float small = 1.1283791670955126f * a * s;
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float q = 1.061405429f;
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  const float large = 1.0f - q * t * byoc_expf(-z);
  const float r = a < 0.5f ? small : large;
  return x < 0.0f ? -r : r;
}
static inline float byoc_tanhf(float x) {
  const float a = fabsf(x), z = x * x;
  float s = 62.0f / 2835.0f;
  s = s * z - 17.0f / 315.0f;
  s = s * z + 2.0f / 15.0f;
  s = s * z - 1.0f / 3.0f;
  s = s * z + 1.0f;
  const float small = a * s;
  const float large = 1.0f - 2.0f / (byoc_expf(2.0f * a) + 1.0f);
  const float r = a < 0.3f ? small : large;
  return x < 0.0f ? -r : r;
}
static inline float byoc_sigmoid(float x) { return 1.0f / (1.0f + byoc_expf(-x)); }
static inline float byoc_leaky(float x, float alpha) { return x >= 0.0f ? x : alpha * x; }
static inline float byoc_hardsigmoid(float x, float alpha, float beta) {
  return byoc_maxf(0.0f, byoc_minf(1.0f, alpha * x + beta));
}
static inline float byoc_gelu(float x) {
  return 0.5f * x * (1.0f + byoc_erff(x * 0.7071067811865476f));
}
static inline float byoc_gelu_tanh(float x) {
  return 0.5f * x * (1.0f + byoc_tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* IEEE half and bfloat16 bit patterns to float. */
static inline float byoc_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu, bits;
  if (exponent == 0x1fu) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    exponent = 113u;
    while (!(mantissa & 0x400u)) { mantissa <<= 1; --exponent; }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
static inline float byoc_bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* 64-byte aligned memory (never NULL for a zero-byte request that succeeds). */
static void* byoc_alloc(size_t bytes) {
  return aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
}

@TENSOR_CHECK@"""


#: The entry functions' check that an argument is the tensor the module was made for
#: (shared with the cuda prelude).
TENSOR_CHECK = r"""
/* Whether a tensor is what the module was generated for. */
static int byoc_check(const byoc_tensor* t, int32_t dtype, int32_t rank,
                      const int64_t* shape) {
  if (t->data == NULL || t->dtype != dtype || t->rank != rank) return 0;
  for (int32_t i = 0; i < rank; ++i) {
    if (t->shape[i] != shape[i]) return 0;
  }
  if (t->strides != NULL) {
    int64_t step = 1;
    for (int32_t i = rank - 1; i >= 0; --i) {
      if (shape[i] != 1 && t->strides[i] != step) return 0;
      step *= shape[i];
    }
  }
  return 1;
}
"""


def prelude(vector_width: int) -> str:
    """The prelude for vectors of ``vector_width`` floats."""
    text = PRELUDE.replace("@VECTOR_BYTES@", str(4 * vector_width))
    return text.replace("@TENSOR_CHECK@", TENSOR_CHECK.strip("\n") + "\n").lstrip("\n")
