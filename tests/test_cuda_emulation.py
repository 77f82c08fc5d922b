"""The CUDA emulation header (byoc/cuda.h with BYOC_CUDA_EMULATION): the same CUDA source
compiles with nvcc and, as C++17 through byoc/cuda_emulation.h, with the host compiler,
and the emulated build computes what the kernels say.

One test program holds every kernel. It is compiled with nvcc (a compile check, where
nvcc is installed) and twice for the CPU: with the default fiber switch and with the
portable ucontext one. Each check runs on both CPU builds, and on the nvcc build too
where a GPU is present (marked ``gpu``).
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from byoc_sdk.toolchain import INCLUDE_DIR

PROGRAM = r"""
#include "byoc/cuda.h"

#include <cstddef>
#include <cstring>

#define CHECK(call)                          \
  do {                                       \
    const cudaError_t status_ = (call);      \
    if (status_ != cudaSuccess) return status_; \
  } while (0)

extern "C" int emulated() { return BYOC_CUDA_EMULATED; }

extern "C" int device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

extern "C" int device_name(char *name, int size) {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  strncpy(name, prop.name, size - 1);
  name[size - 1] = 0;
  return 0;
}

extern "C" const char *error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

/* Copies n floats to a new device buffer. */
static cudaError_t upload(float **device, const float *host, size_t n) {
  CHECK(cudaMalloc(device, n * sizeof(float)));
  return cudaMemcpy(*device, host, n * sizeof(float), cudaMemcpyHostToDevice);
}

/* ---- 1. elementwise, grid-stride, no barrier ---- */

__global__ void axpy_kernel(const float *__restrict__ x, const float *__restrict__ y,
                            float *__restrict__ out, int n, float a) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    out[i] = a * x[i] + y[i];
}

extern "C" int axpy(const float *x, const float *y, float *out, int n, float a) {
  float *dx, *dy, *dout;
  CHECK(upload(&dx, x, n));
  CHECK(upload(&dy, y, n));
  CHECK(cudaMalloc(&dout, n * sizeof(float)));
  BYOC_LAUNCH(axpy_kernel, 8, 128, 0, dx, dy, dout, n, a);  // 1024 threads: several strides
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(out, dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaFree(dx));
  CHECK(cudaFree(dy));
  CHECK(cudaFree(dout));
  return 0;
}

/* ---- 2. tiled matrix multiply, two barriers per k-step ---- */

#define TILE 16

__global__ void __launch_bounds__(TILE * TILE)
matmul_kernel(const float *__restrict__ a, const float *__restrict__ b, float *__restrict__ c,
              int m, int k, int n) {
  __shared__ float ta[TILE][TILE];
  __shared__ float tb[TILE][TILE + 1];
  const int row = blockIdx.y * TILE + threadIdx.y;
  const int col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0.0f;
  for (int k0 = 0; k0 < k; k0 += TILE) {
    const int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    ta[threadIdx.y][threadIdx.x] = row < m && ka < k ? a[row * k + ka] : 0.0f;
    tb[threadIdx.y][threadIdx.x] = kb < k && col < n ? b[kb * n + col] : 0.0f;
    __syncthreads();
    for (int j = 0; j < TILE; ++j) acc = fmaf(ta[threadIdx.y][j], tb[j][threadIdx.x], acc);
    __syncthreads();
  }
  if (row < m && col < n) c[row * n + col] = acc;
}

extern "C" int matmul(const float *a, const float *b, float *c, int m, int k, int n) {
  float *da, *db, *dc;
  CHECK(upload(&da, a, (size_t)m * k));
  CHECK(upload(&db, b, (size_t)k * n));
  CHECK(cudaMalloc(&dc, (size_t)m * n * sizeof(float)));
  const dim3 block(TILE, TILE);
  const dim3 grid((n + TILE - 1) / TILE, (m + TILE - 1) / TILE);
  BYOC_LAUNCH(matmul_kernel, grid, block, 0, da, db, dc, m, k, n);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(c, dc, (size_t)m * n * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaFree(da));
  CHECK(cudaFree(db));
  CHECK(cudaFree(dc));
  return 0;
}

/* ---- 3. block reduction: a shared-memory tree, a barrier per level ---- */

#define REDUCE_THREADS 128

__global__ void row_sum_kernel(const float *__restrict__ x, float *__restrict__ out, int cols) {
  __shared__ float partial[REDUCE_THREADS];
  const float *row = x + (size_t)blockIdx.x * cols;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

extern "C" int row_sums(const float *x, float *out, int rows, int cols) {
  float *dx, *dout;
  CHECK(upload(&dx, x, (size_t)rows * cols));
  CHECK(cudaMalloc(&dout, rows * sizeof(float)));
  BYOC_LAUNCH(row_sum_kernel, rows, REDUCE_THREADS, 0, dx, dout, cols);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(out, dout, rows * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaFree(dx));
  CHECK(cudaFree(dout));
  return 0;
}

/* ---- 4. threads returning early around barriers the others still hit ---- */

#define EXIT_THREADS 256

__global__ void early_exit_kernel(int *out, int first_exit, int second_exit) {
  __shared__ int slots[EXIT_THREADS];
  const int t = threadIdx.x;
  int *o = out + blockIdx.x * EXIT_THREADS;
  if (t >= first_exit) {  // before any barrier
    o[t] = -1;
    return;
  }
  slots[t] = 2 * t;
  __syncthreads();
  const int mirrored = slots[first_exit - 1 - t];
  if (t >= second_exit) {  // between two barriers
    o[t] = mirrored;
    return;
  }
  __syncthreads();
  slots[t] = mirrored + 1;
  __syncthreads();
  o[t] = slots[second_exit - 1 - t];
}

extern "C" int early_exit(int *out, int blocks, int first_exit, int second_exit) {
  int *dout;
  const size_t bytes = (size_t)blocks * EXIT_THREADS * sizeof(int);
  CHECK(cudaMalloc(&dout, bytes));
  BYOC_LAUNCH(early_exit_kernel, blocks, EXIT_THREADS, 0, dout, first_exit, second_exit);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost));
  CHECK(cudaFree(dout));
  return 0;
}

/* ---- 3-D blocks and grids: each thread records its indices and dimensions ---- */

__global__ void index_kernel(int *out) {
  const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  int *o = out + 9 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
  const uint3 t = threadIdx, b = blockIdx;
  const dim3 bd = blockDim, gd = gridDim;
  o[0] = t.x; o[1] = t.y; o[2] = t.z;
  o[3] = b.x; o[4] = b.y; o[5] = b.z;
  o[6] = bd.x * 100 + bd.y * 10 + bd.z;
  o[7] = gd.x * 100 + gd.y * 10 + gd.z;
  o[8] = warpSize;
}

extern "C" int index_map(int *out, int gx, int gy, int gz, int bx, int by, int bz) {
  const size_t bytes = (size_t)gx * gy * gz * bx * by * bz * 9 * sizeof(int);
  int *dout;
  CHECK(cudaMalloc(&dout, bytes));
  BYOC_LAUNCH(index_kernel, dim3(gx, gy, gz), dim3(bx, by, bz), 0, dout);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost));
  CHECK(cudaFree(dout));
  return 0;
}

/* ---- math intrinsics and CUDA's min/max ---- */

__host__ __device__ __forceinline__ float twice(float x) { return 2.0f * x; }

__global__ void intrinsics_kernel(float *f, int *i) {
  f[0] = rsqrtf(4.0f);
  f[1] = __expf(1.0f);
  f[2] = __logf(2.0f);
  f[3] = __fdividef(1.0f, 4.0f);
  f[4] = fmaf(2.0f, 3.0f, 1.0f);
  f[5] = __int_as_float(0x3f800000);
  f[6] = twice(min(1.5f, 2.5f));
  f[7] = max(-INFINITY, -FLT_MAX);
  f[8] = tanhf(0.5f) + erff(0.5f) + fmaxf(0.0f, -1.0f) + fabsf(-2.0f) + floorf(1.5f);
  i[0] = __float_as_int(1.0f);
  i[1] = min(3, -2);
  i[2] = max(3u, 7u);
  i[3] = (int)min(-1, 5u);  // CUDA compares an int and an unsigned as unsigned
}

extern "C" int intrinsics(float *f, int *i) {
  float *df;
  int *di;
  CHECK(cudaMalloc(&df, 9 * sizeof(float)));
  CHECK(cudaMalloc(&di, 4 * sizeof(int)));
  BYOC_LAUNCH(intrinsics_kernel, 1, 1, 0, df, di);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(f, df, 9 * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(i, di, 4 * sizeof(int), cudaMemcpyDeviceToHost));
  CHECK(cudaFree(df));
  CHECK(cudaFree(di));
  return 0;
}

/* ---- 6. the runtime API ---- */

static __constant__ float blend_offset[2];

__global__ void blend_kernel(float *dst, const float *src, int n, float a) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    dst[i] = a * dst[i] + src[i] + blend_offset[1];
}

/* out[i] = 3 in[i] + 0.5 for the first half, in[i] + 0.5 for the second; filled[] the
 * bytes 0x7f. */
extern "C" int runtime_roundtrip(const float *in, float *out, unsigned char *filled, int n,
                                 float *elapsed_ms) {
  int count = 0, device = -1;
  CHECK(cudaGetDeviceCount(&count));
  if (count < 1) return -1;
  CHECK(cudaSetDevice(0));
  CHECK(cudaGetDevice(&device));
  if (device != 0) return -2;
  cudaStream_t stream;
  cudaEvent_t start, stop;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  const size_t bytes = n * sizeof(float);
  float *da, *db, *pinned;
  CHECK(cudaMalloc(&da, bytes));
  CHECK(cudaMalloc(&db, bytes));
  CHECK(cudaMallocHost(&pinned, bytes));
  const float half = 0.5f;
  CHECK(cudaMemcpyToSymbol(blend_offset, &half, sizeof half, sizeof(float)));
  CHECK(cudaEventRecord(start, stream));
  CHECK(cudaMemcpyAsync(da, in, bytes, cudaMemcpyHostToDevice, stream));
  CHECK(cudaMemsetAsync(db, 0, bytes, stream));
  CHECK(cudaMemcpyAsync(db, da, (n / 2) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  BYOC_LAUNCH(blend_kernel, 4, 64, stream, db, da, n, 2.0f);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpyAsync(pinned, db, bytes, cudaMemcpyDeviceToHost, stream));
  CHECK(cudaEventRecord(stop, stream));
  CHECK(cudaStreamSynchronize(stream));
  CHECK(cudaEventSynchronize(stop));
  CHECK(cudaEventElapsedTime(elapsed_ms, start, stop));
  CHECK(cudaMemcpy(out, pinned, bytes, cudaMemcpyHostToHost));
  CHECK(cudaMemset(da, 0x7f, n));
  CHECK(cudaMemcpy(filled, da, n, cudaMemcpyDefault));
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaFree(da));
  CHECK(cudaFree(db));
  CHECK(cudaFreeHost(pinned));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  CHECK(cudaStreamDestroy(stream));
  return 0;
}

/* ---- cooperative launch: a grid-wide barrier between two phases ---- */

__global__ void rotate_kernel(float *a, float *out, int n) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) a[i] = 2.0f * i;
  grid.sync();  // every element is written before any is read, whichever thread wrote it
  for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = a[(i + 1) % n] + 1.0f;
}

/* out[i] = 2 * ((i + 1) % n) + 1 through a persistent grid as large as the device holds;
   blocks[0] gets that grid's size, and status[0] what one block more gets. */
extern "C" int rotate(float *out, int n, int *blocks, int *status) {
  int device = 0, per_sm = 0;
  cudaDeviceProp prop;
  CHECK(cudaGetDevice(&device));
  CHECK(cudaGetDeviceProperties(&prop, device));
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, rotate_kernel, 128, 0));
  float *da, *dout;
  CHECK(cudaMalloc(&da, n * sizeof(float)));
  CHECK(cudaMalloc(&dout, n * sizeof(float)));
  blocks[0] = prop.multiProcessorCount * per_sm;
  void *args[] = {&da, &dout, &n};
  CHECK(cudaLaunchCooperativeKernel(rotate_kernel, dim3(blocks[0]), dim3(128), args, 0, 0));
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemcpy(out, dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  status[0] = cudaLaunchCooperativeKernel(rotate_kernel, dim3(blocks[0] + 1), dim3(128), args,
                                          0, 0);
  status[1] = cudaGetLastError();
  CHECK(cudaFree(da));
  CHECK(cudaFree(dout));
  return 0;
}

/* The status of calls that fail, and what cudaGetLastError/PeekAtLastError say after. */
extern "C" int error_codes(int *codes) {
  codes[0] = cudaGetLastError();
  BYOC_LAUNCH(blend_kernel, 1, 2048, 0, nullptr, nullptr, 0, 1.0f);  // > 1024 threads
  codes[1] = cudaPeekAtLastError();
  codes[2] = cudaGetLastError();
  codes[3] = cudaGetLastError();
  void *huge = nullptr;
  codes[4] = cudaMalloc(&huge, (size_t)1 << 62);
  codes[5] = cudaGetLastError();
  codes[6] = cudaSetDevice(12345);
  codes[7] = cudaGetLastError();
  return 0;
}
"""

ERROR_CODES = [0, 9, 9, 0, 2, 2, 101, 101]

EMULATED_BUILDS = {
    "emulated": [],
    "emulated-ucontext": ["-DBYOC_EMU_USE_UCONTEXT=1"],
}


def _emulated_command(source, output, flags=()):
    return [
        "c++", "-x", "c++", "-O2", "-std=c++17", "-DBYOC_CUDA_EMULATION", "-fPIC", "-shared",
        "-I", str(INCLUDE_DIR), *flags, str(source), "-o", str(output),
    ]


def _nvcc_command(source, output):
    return [
        "nvcc", "-O2", "-shared", "-Xcompiler", "-fPIC", "-std=c++17", "-I", str(INCLUDE_DIR),
        str(source), "-o", str(output),
    ]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The test program compiled every way, all compilers running at once:
    {name: (returncode, compiler output, library path)}."""
    folder = tmp_path_factory.mktemp("cuda-emulation")
    source = folder / "kernels.cu"
    source.write_text(PROGRAM)
    commands = {
        name: _emulated_command(source, folder / f"{name}.so", flags)
        for name, flags in EMULATED_BUILDS.items()
    }
    if shutil.which("nvcc"):
        commands["nvcc"] = _nvcc_command(source, folder / "nvcc.so")
    running = {
        name: subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in commands.items()
    }
    results = {}
    for name, process in running.items():
        output, _ = process.communicate(timeout=300)
        results[name] = (process.returncode, output, folder / f"{name}.so")
    return results


def _load(builds, name):
    returncode, output, path = builds[name]
    if returncode != 0:
        pytest.fail(f"{name} build failed:\n{output}")
    library = ctypes.CDLL(str(path))
    library.error_string.restype = ctypes.c_char_p
    library.build = name
    return library


@pytest.fixture(
    scope="module",
    params=[*EMULATED_BUILDS, pytest.param("nvcc", marks=pytest.mark.gpu)],
)
def lib(request, builds):
    """The test program, loaded: each CPU build, and the nvcc one where a GPU runs it."""
    if request.param == "nvcc":
        if "nvcc" not in builds:
            pytest.skip("nvcc is not installed")
        if builds["nvcc"][0] != 0:
            pytest.skip("the nvcc build failed (test_compiles_with_nvcc says why)")
        library = _load(builds, "nvcc")
        if library.device_count() < 1:
            pytest.skip("no CUDA device")
        return library
    return _load(builds, request.param)


def _ptr(array, ctype=ctypes.c_float):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def _matmul(lib, a, b):
    c = np.full((a.shape[0], b.shape[1]), np.nan, dtype=np.float32)
    status = lib.matmul(_ptr(a), _ptr(b), _ptr(c), a.shape[0], a.shape[1], b.shape[1])
    assert status == 0, lib.error_string(status)
    return c


def _row_sums(lib, x):
    out = np.full(x.shape[0], np.nan, dtype=np.float32)
    status = lib.row_sums(_ptr(x), _ptr(out), x.shape[0], x.shape[1])
    assert status == 0, lib.error_string(status)
    return out


def test_compiles_with_nvcc(builds):
    if "nvcc" not in builds:
        pytest.skip("nvcc is not installed")
    returncode, output, _ = builds["nvcc"]
    assert returncode == 0, output


def test_cuda_header_without_emulation_or_nvcc_stops_with_a_clear_error(tmp_path):
    source = tmp_path / "plain.cu"
    source.write_text('#include "byoc/cuda.h"\n')
    result = subprocess.run(
        ["c++", "-x", "c++", "-std=c++17", "-fsyntax-only", "-I", str(INCLUDE_DIR), str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "#error" in result.stderr
    assert "define BYOC_CUDA_EMULATION" in result.stderr


def test_reports_whether_it_is_emulated(lib):
    assert lib.emulated() == (0 if lib.build == "nvcc" else 1)
    assert lib.device_count() >= 1
    name = ctypes.create_string_buffer(256)
    assert lib.device_name(name, len(name)) == 0
    assert name.value
    if lib.build != "nvcc":
        assert b"emulation" in name.value


def test_elementwise_grid_stride(lib):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 10_000), dtype=np.float32)
    out = np.full_like(x, np.nan)
    status = lib.axpy(_ptr(x), _ptr(y), _ptr(out), x.size, ctypes.c_float(1.5))
    assert status == 0, lib.error_string(status)
    np.testing.assert_allclose(out, 1.5 * x + y, rtol=1e-6, atol=1e-6)


def test_tiled_matmul_with_shared_memory(lib):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((37, 53), dtype=np.float32)
    b = rng.standard_normal((53, 29), dtype=np.float32)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(_matmul(lib, a, b), expected, rtol=1e-5, atol=1e-5)


def test_block_reduction(lib):
    x = np.random.default_rng(2).standard_normal((5, 1000), dtype=np.float32)
    expected = x.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(_row_sums(lib, x), expected, rtol=1e-5, atol=1e-4)


def test_threads_returning_early_around_barriers(lib):
    if lib.emulated() == 0:
        pytest.skip("CUDA leaves a barrier some threads skip undefined; this is the emulator's")
    blocks, first_exit, second_exit = 3, 200, 77
    out = np.zeros((blocks, 256), dtype=np.int32)
    # A deadlocked block spins forever: run it on a daemon thread to fail, not hang.
    result = []
    call = threading.Thread(
        target=lambda: result.append(
            lib.early_exit(_ptr(out, ctypes.c_int), blocks, first_exit, second_exit)
        ),
        daemon=True,
    )
    call.start()
    call.join(timeout=60)
    assert result, "the launch did not finish: the barrier deadlocked"
    assert result[0] == 0, lib.error_string(result[0])
    t = np.arange(256)
    expected = np.where(t >= first_exit, -1, 2 * (first_exit - 1 - t))
    inner = t < second_exit
    expected[inner] = 2 * (first_exit - 1 - (second_exit - 1 - t[inner])) + 1
    np.testing.assert_array_equal(out, np.broadcast_to(expected, out.shape))


def test_three_dimensional_indices(lib):
    grid, block = (2, 3, 2), (4, 2, 3)
    out = np.zeros((*grid[::-1], *block[::-1], 9), dtype=np.int32)
    status = lib.index_map(_ptr(out, ctypes.c_int), *grid, *block)
    assert status == 0, lib.error_string(status)
    bz, by, bx, tz, ty, tx = np.indices((*grid[::-1], *block[::-1]))
    for column, expected in enumerate([tx, ty, tz, bx, by, bz]):
        np.testing.assert_array_equal(out[..., column], expected)
    assert (out[..., 6] == 423).all() and (out[..., 7] == 232).all()
    assert (out[..., 8] == 32).all()


def test_math_intrinsics_and_min_max(lib):
    f = np.zeros(9, dtype=np.float32)
    i = np.zeros(4, dtype=np.int32)
    status = lib.intrinsics(_ptr(f), _ptr(i, ctypes.c_int))
    assert status == 0, lib.error_string(status)
    finite = np.finfo(np.float32).max
    extra = np.tanh(0.5) + math.erf(0.5) + 0.0 + 2.0 + 1.0
    expected = [0.5, math.e, math.log(2), 0.25, 7.0, 1.0, 3.0, -finite, extra]
    np.testing.assert_allclose(f, np.array(expected, dtype=np.float32), rtol=1e-5)
    assert i.tolist() == [0x3F800000, -2, 7, 5]


def test_concurrent_launches_from_host_threads(lib):
    rng = np.random.default_rng(3)
    tasks = []
    for i in range(8):
        a = rng.standard_normal((20 + i, 40), dtype=np.float32)
        b = rng.standard_normal((40, 33 - i), dtype=np.float32)
        x = rng.standard_normal((3 + i, 700), dtype=np.float32)
        tasks.append((a, b, x))

    def run(task):
        a, b, x = task
        return _matmul(lib, a, b), _row_sums(lib, x)

    # ctypes releases the GIL for the call, so the launches really overlap.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, tasks))
    for (a, b, x), (product, sums) in zip(tasks, results, strict=True):
        np.testing.assert_allclose(product, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sums, x.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-4)


def test_runtime_api_round_trip(lib):
    n = 1000
    data = np.random.default_rng(4).standard_normal(n, dtype=np.float32)
    out = np.full(n, np.nan, dtype=np.float32)
    filled = np.zeros(n, dtype=np.uint8)
    elapsed = ctypes.c_float(-1.0)
    status = lib.runtime_roundtrip(
        _ptr(data), _ptr(out), _ptr(filled, ctypes.c_ubyte), n, ctypes.byref(elapsed)
    )
    assert status == 0, lib.error_string(status) if status > 0 else status
    half = n // 2
    np.testing.assert_allclose(out[:half], 3 * data[:half] + 0.5, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[half:], data[half:] + 0.5, rtol=1e-6, atol=1e-6)
    assert (filled == 0x7F).all()
    assert elapsed.value >= 0.0


def test_cooperative_launch_syncs_the_grid(lib):
    n = 3000  # more elements than threads: each thread writes and reads several
    out = np.full(n, np.nan, dtype=np.float32)
    blocks = np.zeros(1, dtype=np.int32)
    status = np.full(2, -1, dtype=np.int32)
    code = lib.rotate(_ptr(out), n, _ptr(blocks, ctypes.c_int), _ptr(status, ctypes.c_int))
    assert code == 0, lib.error_string(code)
    np.testing.assert_array_equal(out, 2.0 * ((np.arange(n) + 1) % n) + 1.0)
    if lib.build != "nvcc":
        assert blocks[0] == 1  # the emulated device holds one block at a time
    assert status.tolist() == [720, 720]  # cudaErrorCooperativeLaunchTooLarge


def test_errors_are_reported_and_described(lib):
    codes = np.full(len(ERROR_CODES), -1, dtype=np.int32)
    assert lib.error_codes(_ptr(codes, ctypes.c_int)) == 0
    assert codes.tolist() == ERROR_CODES
    for code in {0, *ERROR_CODES}:
        assert lib.error_string(code), code


def test_emulator_exports_nothing_of_its_own(builds):
    """Each module keeps its emulator private, so modules never clash in one process."""
    if not shutil.which("nm"):
        pytest.skip("nm is not installed")
    _load(builds, "emulated")
    exported = subprocess.run(
        ["nm", "-D", "--defined-only", str(builds["emulated"][2])],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ("byoc_emu", "cuda", "threadIdx", "blockIdx", "blockDim", "gridDim"):
        assert name not in exported, exported
    assert " T axpy" in exported
