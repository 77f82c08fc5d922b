/*
 * byoc/cuda.h -- the one header every generated CUDA source (.cu) includes.
 *
 * The cuda target's generated sources are meant to run in two places:
 *
 *  - on an NVIDIA GPU, compiled by nvcc: this header then pulls in the real CUDA
 *    runtime (<cuda_runtime.h>);
 *  - on the CPU, compiled by the host C++ compiler as C++17 with BYOC_CUDA_EMULATION
 *    defined (c++ -x c++ -std=c++17 -DBYOC_CUDA_EMULATION ...): this header then pulls
 *    in byoc/cuda_emulation.h, which runs the same kernels on the calling thread. That
 *    is how machines without a GPU (CI) test the numbers the generated kernels produce.
 *
 * Generated code must stay inside what both provide; see cuda_emulation.h for that
 * contract. In particular it launches kernels only through
 *
 *   BYOC_LAUNCH(kernel, grid, block, stream, args...);
 *
 * (no dynamic shared memory), since the <<<...>>> syntax exists only under nvcc, and it
 * can tell where it runs from BYOC_CUDA_EMULATED (1 when emulated, 0 under nvcc).
 */
#ifndef BYOC_CUDA_H_
#define BYOC_CUDA_H_

#if defined(__CUDACC__)

#include <cuda_runtime.h>
/* Persistent kernels sync their grid through cooperative groups; the emulation provides
 * the single-block form of it. */
#include <cooperative_groups.h>

/* The emulation provides these too; including them here keeps FLT_MAX, INFINITY and
 * friends available to generated code on both sides. */
#include <cfloat>
#include <cmath>

#define BYOC_CUDA_EMULATED 0
#define BYOC_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)

#elif defined(BYOC_CUDA_EMULATION)

#include "cuda_emulation.h"

#else

#error "byoc/cuda.h: this CUDA source needs nvcc, or define BYOC_CUDA_EMULATION to run it on the CPU through byoc/cuda_emulation.h (c++ -x c++ -std=c++17 -DBYOC_CUDA_EMULATION ...)"

#endif

#endif /* BYOC_CUDA_H_ */
