/*
 * byoc/cuda_emulation.h -- run byoc's generated CUDA C++ on the CPU.
 *
 * What: a header-only stand-in for the part of CUDA that byoc's generated kernels use,
 * so that the very same .cu source, compiled by the host compiler as C++17 with
 * BYOC_CUDA_EMULATION defined, runs on a machine without a GPU. byoc/cuda.h includes it;
 * generated code never includes it directly.
 *
 * Why: CI machines have no GPU, yet the numbers the generated kernels produce must be
 * tested everywhere. Emulating the source (rather than testing a CPU rewrite of it)
 * checks the indexing, the tiling and the barriers the GPU will run.
 *
 * How it runs a launch: BYOC_LAUNCH(kernel, grid, block, stream, args...) runs the whole
 * grid synchronously on the calling OS thread, one block after the other. Every CUDA
 * thread of a block is a fiber (a small stack of its own) on that OS thread, switched
 * cooperatively: __syncthreads() parks the fiber and runs the next one, and once every
 * fiber of the block has arrived they all go on. So:
 *  - __shared__ is `static thread_local`: the fibers of a block share their OS thread,
 *    hence the variable, and blocks on one OS thread run one at a time, so each block
 *    sees the array alone. Host threads launching at the same time each get their own.
 *  - all scheduler state is thread_local, so several host threads may launch at once.
 *  - a thread that returns counts as arrived at every later barrier. CUDA leaves a
 *    barrier that not all threads reach undefined, but GPUs let the remaining threads
 *    through, and kernels that return early for out-of-range threads rely on it.
 *  - the stream of a launch or of an async copy is ignored: everything has finished
 *    when the call returns, so synchronising is a no-op and events time the host clock.
 *  - "device" memory is host memory (cudaMalloc is a 256-byte aligned malloc), and
 *    every cudaMemcpy kind is a plain memmove.
 *
 * The contract generated code may rely on:
 *  - qualifiers __global__ __device__ __host__ __constant__ __forceinline__ __restrict__
 *    __launch_bounds__(...) __align__(n) and __shared__ (static sizes only);
 *  - threadIdx, blockIdx (uint3), blockDim, gridDim (dim3), warpSize, dim3, uint3,
 *    __syncthreads(), __threadfence(), __threadfence_block(), __ldg();
 *  - the runtime API subset below (devices, memory, streams, events, errors), with
 *    CUDA's names, signatures and error codes;
 *  - <cmath>/<cfloat> (so INFINITY, FLT_MAX, sqrtf, expf, ...) plus the intrinsics
 *    rsqrtf, rsqrt, __expf, __logf, __powf, __sinf, __cosf, __fdividef, __frcp_rn,
 *    __fsqrt_rn, __saturatef, __int_as_float, __float_as_int, __uint_as_float,
 *    __float_as_uint, and CUDA's integer and floating min/max overloads;
 *  - BYOC_CUDA_EMULATED, defined to 1 here (byoc/cuda.h defines it to 0 under nvcc).
 *
 * Limits (the generator avoids all of these):
 *  - no warp-level operations (__shfl*, __ballot*, __syncwarp, warp votes), no atomics,
 *    cooperative groups only as a single-block grid (cooperative_groups::this_grid()
 *    and grid_group::sync(), launched by cudaLaunchCooperativeKernel with the grid that
 *    cudaOccupancyMaxActiveBlocksPerMultiprocessor times multiProcessorCount allows:
 *    one block), no dynamic shared memory (extern __shared__), no texture or
 *    surface memory, no dynamic parallelism (launching from a kernel fails with
 *    cudaErrorNotSupported), no <<<...>>> syntax (use BYOC_LAUNCH);
 *  - fiber stacks are BYOC_EMU_STACK_SIZE bytes (64 KiB unless defined otherwise), next
 *    to each other in one mapping with a single guard page below the lowest, so a
 *    kernel with large local arrays must raise it (an overflow may go unnoticed);
 *  - a C++ exception must not leave a kernel (it calls std::terminate);
 *  - __shared__ arrays start zeroed on each OS thread and keep their contents between
 *    blocks (CUDA leaves them undefined: do not rely on either);
 *  - each fiber switch is a few instructions on x86-64; elsewhere (or with
 *    BYOC_EMU_USE_UCONTEXT defined, e.g. where x86 shadow stacks are enforced) fibers
 *    switch with swapcontext, which is correct but costs a system call per switch;
 *  - address and thread sanitizers do not follow the stack switches.
 *
 * Everything here is inline and, on GCC and Clang, of hidden visibility: each compiled
 * module carries its own copy of the emulator and exports none of it, so two modules
 * loaded into one process never share or clash over its state.
 */
#ifndef BYOC_CUDA_EMULATION_H_
#define BYOC_CUDA_EMULATION_H_

#if defined(__CUDACC__)
#error "byoc/cuda_emulation.h stands in for CUDA on the CPU; under nvcc include byoc/cuda.h, which uses the real CUDA runtime"
#endif
#if !defined(__cplusplus) || __cplusplus < 201703L
#error "byoc/cuda_emulation.h needs C++17: compile the .cu source with c++ -x c++ -std=c++17"
#endif

/* The standard headers come first, before the CUDA qualifier macros below exist. */
#include <cfloat>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

/* The fast fiber switch is hand-written for the x86-64 System V ABI; any other
 * platform uses the portable (slower) ucontext switch. */
#if !defined(BYOC_EMU_USE_UCONTEXT)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(_WIN32)
#define BYOC_EMU_USE_UCONTEXT 0
#else
#define BYOC_EMU_USE_UCONTEXT 1
#endif
#endif
#if BYOC_EMU_USE_UCONTEXT
#if defined(__APPLE__) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700 /* macOS hides ucontext without it */
#endif
#include <ucontext.h>
#endif

#ifndef BYOC_EMU_STACK_SIZE
#define BYOC_EMU_STACK_SIZE (64 * 1024)
#endif

#define BYOC_CUDA_EMULATED 1

/* Hidden visibility keeps the emulator's inline functions and thread_local state
 * private to the module that compiled them (see the top of this file). */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* ---- CUDA qualifiers ----------------------------------------------------------------
 * Host code needs no address-space qualifiers. __global__ and __device__ expand to
 * nothing rather than `inline` so that they combine with `static`, `inline` and each
 * other as freely as under nvcc. __restrict__ is already a GCC/Clang keyword. */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

/* ---- Built-in types and variables --------------------------------------------------- */

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

/* Per OS thread: the scheduler rewrites threadIdx on every fiber switch and the others
 * once per block or launch. All are constant-initialised, so reading them costs no
 * thread_local initialisation check. */
inline thread_local uint3 threadIdx = {0, 0, 0};
inline thread_local uint3 blockIdx = {0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

/* ---- Runtime API types -------------------------------------------------------------- */

/* The numbers are CUDA's, so codes logged by emulated and real runs read the same. */
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorCooperativeLaunchTooLarge = 720,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02

struct CUstream_st {
  unsigned int flags;
};
typedef struct CUstream_st *cudaStream_t;

struct CUevent_st {
  unsigned int flags;
  bool recorded;
  std::chrono::steady_clock::time_point at;
};
typedef struct CUevent_st *cudaEvent_t;

/* The fields of CUDA's cudaDeviceProp that describe the emulated device. */
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int multiProcessorCount;
  int major;
  int minor;
};

/* ---- The scheduler -------------------------------------------------------------------- */

namespace byoc_emu {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kStackAlignment = 64;

inline thread_local cudaError_t last_error = cudaSuccess;

/* Records a failure the way the CUDA runtime does: returned now, and kept for
 * cudaGetLastError/cudaPeekAtLastError. */
inline cudaError_t fail(cudaError_t error) {
  last_error = error;
  return error;
}

/* Where a suspended fiber (or the launching thread, while its block runs) resumes. */
#if BYOC_EMU_USE_UCONTEXT
struct Context {
  ucontext_t uc;
};
#else
struct Context {
  void *sp;
};
#endif

struct Fiber {
  Context context;
  char *stack;         // lowest usable address of its stack
  uint3 index;         // its threadIdx
  unsigned next, prev; // ring of the fibers still running, in switching order
};

/* The block running on this OS thread. It lives on the launching thread's stack. */
struct Block {
  Fiber *fibers;
  unsigned live;       // fibers that have not returned yet
  unsigned arrived;    // live fibers parked at the current barrier
  unsigned generation; // barriers completed; a parked fiber waits for it to change
  unsigned current;    // the running fiber
  Context home;        // the launching thread, resumed once every fiber has returned
  void (*body)(void *);
  void *body_arg;
};

inline thread_local Block *current_block = nullptr;

[[noreturn]] inline void fiber_exit() noexcept;

/* Every fiber starts here, on its own stack. Exceptions cannot cross the stack switch,
 * hence noexcept: one escaping a kernel terminates the process with a clear message. */
inline void fiber_main() noexcept {
  Block &block = *current_block;
  block.body(block.body_arg);
  fiber_exit();
}

#if BYOC_EMU_USE_UCONTEXT

inline void context_init(Context &context, char *stack, std::size_t size) {
  getcontext(&context.uc);
  context.uc.uc_stack.ss_sp = stack;
  context.uc.uc_stack.ss_size = size;
  context.uc.uc_link = nullptr; // fiber_main never returns
  makecontext(&context.uc, &fiber_main, 0);
}

inline void context_switch(Context &from, Context &to) { swapcontext(&from.uc, &to.uc); }

[[noreturn]] inline void context_jump(Context &to) {
  setcontext(&to.uc);
  std::abort(); // setcontext returns only on failure
}

#else

/* Saves the callee-saved registers on the current stack, stores the stack pointer in
 * *save, switches to the stack `load` and restores what a previous switch (or
 * context_init) left there. Naked, so the compiler adds no frame of its own; noipa, so
 * GCC assumes this call may read and write any memory, like any opaque call: values
 * cached across a __syncthreads() are reloaded after it. */
#if defined(__clang__)
__attribute__((naked, noinline))
#else
__attribute__((naked, noinline, noipa))
#endif
inline void switch_stacks(void ** /*save*/, void * /*load*/) {
  __asm__(
      "pushq %rbp\n\t"
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "movq %rsp, (%rdi)\n\t"
      "movq %rsi, %rsp\n\t"
      "popq %r15\n\t"
      "popq %r14\n\t"
      "popq %r13\n\t"
      "popq %r12\n\t"
      "popq %rbx\n\t"
      "popq %rbp\n\t"
      "ret\n\t");
}

/* Lays out a new stack as if switch_stacks had suspended a call about to enter
 * fiber_main: six zeroed callee-saved registers, then fiber_main as the return address,
 * then a null return address for fiber_main itself, which puts the stack pointer where
 * the ABI wants it on function entry (8 below a 16-byte boundary). The zero frame
 * pointer also ends debugger backtraces cleanly at the fiber's start. */
inline void context_init(Context &context, char *stack, std::size_t size) {
  auto *sp = reinterpret_cast<std::uintptr_t *>(stack + size);
  *--sp = 0;
  *--sp = reinterpret_cast<std::uintptr_t>(&fiber_main);
  for (int i = 0; i < 6; ++i) *--sp = 0;
  context.sp = sp;
}

inline void context_switch(Context &from, Context &to) { switch_stacks(&from.sp, to.sp); }

[[noreturn]] inline void context_jump(Context &to) {
  void *abandoned;
  switch_stacks(&abandoned, to.sp);
  __builtin_unreachable();
}

#endif

/* Switches from the running fiber to `next`, which must be live. */
inline void switch_to(Block &block, unsigned next) {
  Fiber &self = block.fibers[block.current];
  block.current = next;
  threadIdx = block.fibers[next].index;
  context_switch(self.context, block.fibers[next].context);
}

/* __syncthreads(). The last fiber to arrive opens the barrier and runs on; the others
 * pass control round the ring until it has opened. Visiting fibers in ring order means
 * the fiber resumed next is almost always one the opened barrier has released, so each
 * barrier costs about one switch per thread. */
inline void barrier() {
  Block *block = current_block;
  if (block == nullptr) return; // called outside a kernel: nobody to wait for
  const unsigned generation = block->generation;
  if (++block->arrived == block->live) {
    block->arrived = 0;
    ++block->generation;
    return;
  }
  do {
    switch_to(*block, block->fibers[block->current].next);
  } while (block->generation == generation);
}

/* A fiber's kernel call returned. It leaves the ring for good and counts as arrived at
 * whatever barrier the others are parked at, so an early `return` cannot deadlock the
 * block. Its stack is simply abandoned (nothing on it needs unwinding any more). */
[[noreturn]] inline void fiber_exit() noexcept {
  Block &block = *current_block;
  Fiber *fibers = block.fibers;
  const unsigned self = block.current;
  if (--block.live == 0) context_jump(block.home);
  const unsigned next = fibers[self].next;
  fibers[fibers[self].prev].next = next;
  fibers[next].prev = fibers[self].prev;
  if (block.arrived != 0 && block.arrived == block.live) {
    block.arrived = 0;
    ++block.generation;
  }
  block.current = next;
  threadIdx = fibers[next].index;
  context_jump(fibers[next].context);
}

/* Fiber stacks and records, kept per OS thread so a launch allocates nothing once the
 * thread has run a block as large. All stacks of a thread live in ONE mapping with one
 * guard page at its bottom: a process holds a limited number of mappings
 * (vm.max_map_count, often 65530), and every compiled module carries its own emulator,
 * so a guard page per stack (two mappings each) ran a test process that loads hundreds
 * of modules out of mappings. An overflowing stack therefore runs into its neighbour
 * (only the lowest one faults): BYOC_EMU_STACK_SIZE must be generous. After each launch
 * the pages the stacks touched are handed back to the kernel (the mapping stays), so
 * idle modules hold no memory. */
struct ThreadFibers {
  std::vector<Fiber> fibers;
  char *base = nullptr;    // the mapping: guard page, then `capacity` stacks
  std::size_t capacity = 0;
  std::size_t stack_size = 0;
  std::size_t guard_size = 0;

  ThreadFibers() {
    const long page = sysconf(_SC_PAGESIZE);
    guard_size = page > 0 ? static_cast<std::size_t>(page) : 4096;
    const std::size_t wanted = BYOC_EMU_STACK_SIZE;
    stack_size = (wanted + guard_size - 1) / guard_size * guard_size;
  }
  ThreadFibers(const ThreadFibers &) = delete;
  ThreadFibers &operator=(const ThreadFibers &) = delete;
  ~ThreadFibers() { unmap(); }

  void unmap() {
    if (base != nullptr) munmap(base, guard_size + capacity * stack_size);
    base = nullptr;
    capacity = 0;
  }

  /* Makes sure `count` fibers have stacks; false when memory ran out. */
  bool reserve(unsigned count) {
    if (fibers.size() < count) fibers.resize(count);
    if (capacity >= count) return true;
    unmap();
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#if defined(MAP_NORESERVE)
    flags |= MAP_NORESERVE; // only the pages a fiber touches cost memory
#endif
#if defined(MAP_STACK)
    flags |= MAP_STACK;
#endif
    const std::size_t bytes = guard_size + count * stack_size;
    void *memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (memory == MAP_FAILED) return false;
    base = static_cast<char *>(memory);
    if (mprotect(base, guard_size, PROT_NONE) != 0) {
      munmap(memory, bytes);
      base = nullptr;
      return false;
    }
    capacity = count;
    for (std::size_t i = 0; i < count; ++i) fibers[i].stack = base + guard_size + i * stack_size;
    return true;
  }

  /* Drops the stacks' pages (they read as zeros when touched again). */
  void release_pages() {
#if defined(MADV_DONTNEED)
    if (base != nullptr) madvise(base + guard_size, capacity * stack_size, MADV_DONTNEED);
#endif
  }
};

inline ThreadFibers &thread_fibers() {
  static thread_local ThreadFibers resources;
  return resources;
}

inline bool valid_configuration(const dim3 &grid, const dim3 &block) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return false;
  if (grid.x > 0x7fffffffu || grid.y > 65535u || grid.z > 65535u) return false;
  if (block.x == 0 || block.y == 0 || block.z == 0) return false;
  if (block.x > 1024u || block.y > 1024u || block.z > 64u) return false;
  const unsigned long long threads =
      static_cast<unsigned long long>(block.x) * block.y * block.z;
  return threads <= kMaxThreadsPerBlock;
}

/* Runs body(arg) once per CUDA thread of every block of the grid, on this OS thread. */
inline void run_grid(const dim3 &grid, const dim3 &block_dim, void (*body)(void *), void *arg) {
  if (current_block != nullptr) {
    fail(cudaErrorNotSupported); // a launch from inside a kernel (dynamic parallelism)
    return;
  }
  if (!valid_configuration(grid, block_dim)) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  const unsigned threads = block_dim.x * block_dim.y * block_dim.z;
  ThreadFibers &resources = thread_fibers();
  if (!resources.reserve(threads)) {
    fail(cudaErrorLaunchOutOfResources);
    return;
  }
  Fiber *fibers = resources.fibers.data();
  for (unsigned i = 0; i < threads; ++i) {
    fibers[i].index = uint3{i % block_dim.x, (i / block_dim.x) % block_dim.y,
                            i / (block_dim.x * block_dim.y)};
  }

  Block block{};
  block.fibers = fibers;
  block.body = body;
  block.body_arg = arg;
  gridDim = grid;
  blockDim = block_dim;
  current_block = &block;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = uint3{x, y, z};
        for (unsigned i = 0; i < threads; ++i) {
          context_init(fibers[i].context, fibers[i].stack, resources.stack_size);
          fibers[i].next = i + 1 == threads ? 0 : i + 1;
          fibers[i].prev = i == 0 ? threads - 1 : i - 1;
        }
        block.live = threads;
        block.arrived = 0;
        block.current = 0;
        threadIdx = fibers[0].index;
        context_switch(block.home, fibers[0].context);
      }
    }
  }
  current_block = nullptr;
  resources.release_pages();
}

/* What BYOC_LAUNCH builds: the launch configuration and the kernel, called with the
 * kernel arguments. The arguments are converted to the kernel's parameter types once,
 * at launch, as CUDA does; every thread then gets its own copy of them. */
template <class... Params>
struct Launch {
  dim3 grid;
  dim3 block;
  void (*kernel)(Params...);

  template <class... Args>
  void operator()(Args &&...args) const {
    static_assert(sizeof...(Args) == sizeof...(Params),
                  "BYOC_LAUNCH: the kernel takes a different number of arguments");
    struct Call {
      void (*kernel)(Params...);
      std::tuple<std::decay_t<Params>...> params;
      static void run(void *self) {
        Call &call = *static_cast<Call *>(self);
        std::apply(call.kernel, call.params);
      }
    };
    Call call{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    run_grid(grid, block, &Call::run, &call);
  }
};

template <class... Params>
inline Launch<Params...> launcher(dim3 grid, dim3 block, cudaStream_t /*stream*/,
                                  void (*kernel)(Params...)) {
  return Launch<Params...>{grid, block, kernel};
}

inline void *allocate(std::size_t size) {
  const std::size_t alignment = 256; // what cudaMalloc guarantees
  if (size > SIZE_MAX - alignment) return nullptr;
  return std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

inline bool valid_kind(cudaMemcpyKind kind) {
  return static_cast<int>(kind) >= cudaMemcpyHostToHost &&
         static_cast<int>(kind) <= cudaMemcpyDefault;
}

template <class To, class From>
inline To bit_cast(From value) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between different sizes");
  To result;
  std::memcpy(&result, &value, sizeof result);
  return result;
}

} // namespace byoc_emu

/* Runs the whole grid before returning. The stream is evaluated but otherwise unused. */
#define BYOC_LAUNCH(kernel, grid, block, stream, ...) \
  ::byoc_emu::launcher((grid), (block), (stream), (kernel))(__VA_ARGS__)

/* ---- Device functions ------------------------------------------------------------------ */

inline void __syncthreads() { byoc_emu::barrier(); }
/* One OS thread runs a whole block, so memory is always coherent between its threads. */
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
inline T __ldg(const T *address) {
  return *address;
}

/* ---- Cooperative launches ---------------------------------------------------------------
 * The emulated device has one multiprocessor that holds one block at a time (see
 * cudaGetDeviceProperties and cudaOccupancyMaxActiveBlocksPerMultiprocessor), so a
 * cooperative grid -- every block resident at once -- is a single block, and a grid-wide
 * barrier is that block's barrier. A larger cooperative launch fails as it does on a GPU
 * too small for it, with cudaErrorCooperativeLaunchTooLarge. */

namespace cooperative_groups {
class grid_group {
 public:
  void sync() const { __syncthreads(); }
  unsigned long long size() const {
    return 1ull * gridDim.x * gridDim.y * gridDim.z * blockDim.x * blockDim.y * blockDim.z;
  }
  unsigned long long thread_rank() const {
    const unsigned long long block =
        blockIdx.x + 1ull * gridDim.x * (blockIdx.y + 1ull * gridDim.y * blockIdx.z);
    const unsigned long long thread =
        threadIdx.x + 1ull * blockDim.x * (threadIdx.y + 1ull * blockDim.y * threadIdx.z);
    return block * blockDim.x * blockDim.y * blockDim.z + thread;
  }
};
inline grid_group this_grid() { return grid_group(); }
} // namespace cooperative_groups

template <class... Params>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks,
                                                                 void (*/*kernel*/)(Params...),
                                                                 int block_size,
                                                                 size_t dynamic_shared) {
  if (blocks == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  const bool fits = block_size > 0 &&
                    static_cast<unsigned>(block_size) <= byoc_emu::kMaxThreadsPerBlock &&
                    dynamic_shared == 0;
  *blocks = fits ? 1 : 0;
  return cudaSuccess;
}

namespace byoc_emu {
template <class... Params, std::size_t... I>
inline cudaError_t launch_packed(void (*kernel)(Params...), dim3 grid, dim3 block, void **args,
                                 std::index_sequence<I...>) {
  const cudaError_t before = last_error;
  last_error = cudaSuccess;
  launcher(grid, block, nullptr, kernel)(*static_cast<std::decay_t<Params> *>(args[I])...);
  const cudaError_t result = last_error;
  if (result == cudaSuccess) last_error = before;
  return result;
}
} // namespace byoc_emu

/* The kernel is passed as itself, not cast to void*: the arguments are unpacked by its
 * parameter types (nvcc's cuda_runtime.h has the same typed overload). */
template <class... Params>
inline cudaError_t cudaLaunchCooperativeKernel(void (*kernel)(Params...), dim3 grid, dim3 block,
                                               void **args, size_t shared = 0,
                                               cudaStream_t /*stream*/ = nullptr) {
  if (shared != 0 || (sizeof...(Params) > 0 && args == nullptr)) {
    return byoc_emu::fail(cudaErrorInvalidValue);
  }
  if (1ull * grid.x * grid.y * grid.z > 1) {
    return byoc_emu::fail(cudaErrorCooperativeLaunchTooLarge);
  }
  return byoc_emu::launch_packed(kernel, grid, block, args, std::index_sequence_for<Params...>{});
}

/* ---- Runtime API: devices and errors --------------------------------------------------- */

inline cudaError_t cudaGetDeviceCount(int *count) {
  if (count == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

inline cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : byoc_emu::fail(cudaErrorInvalidDevice);
}

inline cudaError_t cudaGetDevice(int *device) {
  if (device == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
  if (prop == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  if (device != 0) return byoc_emu::fail(cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "byoc CUDA emulation (CPU)");
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  prop->totalGlobalMem =
      pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = warpSize;
  prop->maxThreadsPerBlock = static_cast<int>(byoc_emu::kMaxThreadsPerBlock);
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}

inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaDeviceReset() { return cudaSuccess; }

inline cudaError_t cudaGetLastError() {
  const cudaError_t error = byoc_emu::last_error;
  byoc_emu::last_error = cudaSuccess;
  return error;
}

inline cudaError_t cudaPeekAtLastError() { return byoc_emu::last_error; }

inline const char *cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorUnknown: return "cudaErrorUnknown";
  }
  return "cudaErrorUnknown";
}

inline const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorCooperativeLaunchTooLarge:
      return "too many blocks in cooperative launch";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
  }
  return "unrecognized error code";
}

/* ---- Runtime API: memory ------------------------------------------------------------ */

inline cudaError_t cudaMalloc(void **pointer, size_t size) {
  if (pointer == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  *pointer = nullptr;
  if (size == 0) return cudaSuccess;
  void *memory = byoc_emu::allocate(size);
  if (memory == nullptr) return byoc_emu::fail(cudaErrorMemoryAllocation);
  *pointer = memory;
  return cudaSuccess;
}

/* As in cuda_runtime.h, typed pointers need no cast to void**. */
template <class T>
inline cudaError_t cudaMalloc(T **pointer, size_t size) {
  return cudaMalloc(reinterpret_cast<void **>(pointer), size);
}

inline cudaError_t cudaFree(void *pointer) {
  std::free(pointer);
  return cudaSuccess;
}

inline cudaError_t cudaMallocHost(void **pointer, size_t size) { return cudaMalloc(pointer, size); }

template <class T>
inline cudaError_t cudaMallocHost(T **pointer, size_t size, unsigned int /*flags*/ = 0) {
  return cudaMalloc(reinterpret_cast<void **>(pointer), size);
}

inline cudaError_t cudaFreeHost(void *pointer) { return cudaFree(pointer); }

inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  if (!byoc_emu::valid_kind(kind)) return byoc_emu::fail(cudaErrorInvalidMemcpyDirection);
  if (count == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  std::memmove(dst, src, count);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                                   cudaStream_t /*stream*/ = nullptr) {
  return cudaMemcpy(dst, src, count, kind);
}

inline cudaError_t cudaMemset(void *pointer, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  if (pointer == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  std::memset(pointer, value, count);
  return cudaSuccess;
}

inline cudaError_t cudaMemsetAsync(void *pointer, int value, size_t count,
                                   cudaStream_t /*stream*/ = nullptr) {
  return cudaMemset(pointer, value, count);
}

/* __constant__ and __device__ variables are ordinary globals here. */
template <class T>
inline cudaError_t cudaMemcpyToSymbol(T &symbol, const void *src, size_t count, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  if (offset > sizeof(T) || count > sizeof(T) - offset) return byoc_emu::fail(cudaErrorInvalidValue);
  return cudaMemcpy(reinterpret_cast<char *>(&symbol) + offset, src, count, kind);
}

template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void *dst, const T &symbol, size_t count, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
  if (offset > sizeof(T) || count > sizeof(T) - offset) return byoc_emu::fail(cudaErrorInvalidValue);
  return cudaMemcpy(dst, reinterpret_cast<const char *>(&symbol) + offset, count, kind);
}

/* ---- Runtime API: streams and events -------------------------------------------------- */

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
  if (stream == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  *stream = new (std::nothrow) CUstream_st{flags};
  return *stream != nullptr ? cudaSuccess : byoc_emu::fail(cudaErrorMemoryAllocation);
}

inline cudaError_t cudaStreamCreate(cudaStream_t *stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return byoc_emu::fail(cudaErrorInvalidResourceHandle);
  delete stream;
  return cudaSuccess;
}

/* Work on a stream has finished by the time the call that queued it returns. */
inline cudaError_t cudaStreamSynchronize(cudaStream_t /*stream*/) { return cudaSuccess; }
inline cudaError_t cudaStreamQuery(cudaStream_t /*stream*/) { return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t /*stream*/, cudaEvent_t /*event*/,
                                       unsigned int /*flags*/ = 0) {
  return cudaSuccess;
}

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
  if (event == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  *event = new (std::nothrow) CUevent_st{flags, false, {}};
  return *event != nullptr ? cudaSuccess : byoc_emu::fail(cudaErrorMemoryAllocation);
}

inline cudaError_t cudaEventCreate(cudaEvent_t *event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t /*stream*/ = nullptr) {
  if (event == nullptr) return byoc_emu::fail(cudaErrorInvalidResourceHandle);
  event->at = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}

inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event != nullptr ? cudaSuccess : byoc_emu::fail(cudaErrorInvalidResourceHandle);
}

inline cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return byoc_emu::fail(cudaErrorInvalidValue);
  if (start == nullptr || end == nullptr) return byoc_emu::fail(cudaErrorInvalidResourceHandle);
  if ((start->flags | end->flags) & cudaEventDisableTiming)
    return byoc_emu::fail(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return byoc_emu::fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return byoc_emu::fail(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

/* ---- Math ----------------------------------------------------------------------------
 * The intrinsics are function-like macros rather than functions: glibc's <math.h>
 * already declares __expf and __logf (its internal names) as C functions, and C23 adds
 * rsqrtf, so C++ functions of those names would clash. The fast intrinsics compute
 * the accurate result, which is within the error CUDA allows for them. */

namespace byoc_emu {
inline float rsqrtf_(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt_(double x) { return 1.0 / std::sqrt(x); }
inline float saturate(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; } // NaN -> 0
} // namespace byoc_emu

#define rsqrtf(x) (::byoc_emu::rsqrtf_(static_cast<float>(x)))
#define rsqrt(x) (::byoc_emu::rsqrt_(static_cast<double>(x)))
#define __expf(x) (::std::exp(static_cast<float>(x)))
#define __logf(x) (::std::log(static_cast<float>(x)))
#define __powf(x, y) (::std::pow(static_cast<float>(x), static_cast<float>(y)))
#define __sinf(x) (::std::sin(static_cast<float>(x)))
#define __cosf(x) (::std::cos(static_cast<float>(x)))
#define __fdividef(x, y) (static_cast<float>(x) / static_cast<float>(y))
#define __frcp_rn(x) (1.0f / static_cast<float>(x))
#define __fsqrt_rn(x) (::std::sqrt(static_cast<float>(x)))
#define __saturatef(x) (::byoc_emu::saturate(static_cast<float>(x)))
#define __int_as_float(x) (::byoc_emu::bit_cast<float, int>(x))
#define __float_as_int(x) (::byoc_emu::bit_cast<int, float>(x))
#define __uint_as_float(x) (::byoc_emu::bit_cast<float, unsigned int>(x))
#define __float_as_uint(x) (::byoc_emu::bit_cast<unsigned int, float>(x))

/* CUDA's global min/max overloads: same-type ones, plus the signed/unsigned and
 * float/double mixes CUDA defines (converting to the unsigned or the wider type).
 * Non-template, so with `using namespace std` they win over std::min/std::max instead
 * of being ambiguous. */
#define BYOC_EMU_MIN_MAX(R, A, B)                        \
  inline R min(A a, B b) {                              \
    const R x = static_cast<R>(a), y = static_cast<R>(b); \
    return x < y ? x : y;                               \
  }                                                     \
  inline R max(A a, B b) {                              \
    const R x = static_cast<R>(a), y = static_cast<R>(b); \
    return x > y ? x : y;                               \
  }
BYOC_EMU_MIN_MAX(int, int, int)
BYOC_EMU_MIN_MAX(unsigned int, unsigned int, unsigned int)
BYOC_EMU_MIN_MAX(unsigned int, int, unsigned int)
BYOC_EMU_MIN_MAX(unsigned int, unsigned int, int)
BYOC_EMU_MIN_MAX(long, long, long)
BYOC_EMU_MIN_MAX(unsigned long, unsigned long, unsigned long)
BYOC_EMU_MIN_MAX(unsigned long, long, unsigned long)
BYOC_EMU_MIN_MAX(unsigned long, unsigned long, long)
BYOC_EMU_MIN_MAX(long long, long long, long long)
BYOC_EMU_MIN_MAX(unsigned long long, unsigned long long, unsigned long long)
BYOC_EMU_MIN_MAX(unsigned long long, long long, unsigned long long)
BYOC_EMU_MIN_MAX(unsigned long long, unsigned long long, long long)
#undef BYOC_EMU_MIN_MAX
/* Floating ones follow fminf/fmaxf: a NaN operand yields the other operand. */
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(static_cast<double>(a), b); }
inline double max(float a, double b) { return std::fmax(static_cast<double>(a), b); }
inline double min(double a, float b) { return std::fmin(a, static_cast<double>(b)); }
inline double max(double a, float b) { return std::fmax(a, static_cast<double>(b)); }

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif /* BYOC_CUDA_EMULATION_H_ */
