/*
 * byoc module ABI, version 1.
 *
 * A compiled byoc module is a shared library that exports:
 *
 *   int32_t byoc_abi_version(void);            -- returns BYOC_ABI_VERSION it was built with
 *   int32_t <entry>(inputs, n_in, outputs, n_out, error, error_size);
 *                                              -- one per region, named by the artifact
 *   int32_t <entry>_init(constants, n, error, error_size);   -- optional
 *   void    <entry>_release(void);                           -- optional
 *   int32_t <entry>_stats(char* text, size_t size);          -- optional
 *
 * The loader refuses a module whose byoc_abi_version() differs from its own.
 *
 * Calling convention:
 *  - Tensors are described by byoc_tensor; the caller owns all memory. Inputs are
 *    read-only. Outputs are allocated by the caller with the shapes the artifact
 *    declared, and the entry function writes them.
 *  - An entry function returns BYOC_OK (0) on success. On failure it returns another
 *    status and writes a NUL-terminated message of at most error_size bytes (including
 *    the NUL) into error; it must leave no state behind that breaks the next call.
 *  - Entry functions may be called from several threads at once, on different buffers:
 *    they must not keep mutable global state (read-only state set up by _init is fine).
 *  - _init is called once, after loading and before any entry call, with the region's
 *    constants in the order the artifact lists them. The constant buffers stay valid
 *    until _release (if any) has run.
 *  - _stats writes a NUL-terminated JSON object of counters about the module's calls so
 *    far (copies, bytes, kernel time...) into text and returns BYOC_OK, or BYOC_ERROR
 *    when size is too small. Profiles show these numbers per region.
 */
#ifndef BYOC_ABI_H_
#define BYOC_ABI_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BYOC_ABI_VERSION 1

/* Element types: the numbers of ONNX's TensorProto.DataType. */
enum byoc_dtype {
  BYOC_FLOAT32 = 1,
  BYOC_UINT8 = 2,
  BYOC_INT8 = 3,
  BYOC_UINT16 = 4,
  BYOC_INT16 = 5,
  BYOC_INT32 = 6,
  BYOC_INT64 = 7,
  BYOC_BOOL = 9,
  BYOC_FLOAT16 = 10,
  BYOC_FLOAT64 = 11,
  BYOC_UINT32 = 12,
  BYOC_UINT64 = 13,
  BYOC_BFLOAT16 = 16
};

/* Status codes returned by entry and init functions. */
enum byoc_status {
  BYOC_OK = 0,
  BYOC_ERROR = 1,            /* any failure; the message says what */
  BYOC_INVALID_ARGUMENT = 2, /* tensors not as the artifact declared */
  BYOC_OUT_OF_MEMORY = 3,
  BYOC_DEVICE_ERROR = 4      /* an accelerator (e.g. CUDA) call failed */
};

/* A tensor view. strides are in elements; NULL strides mean contiguous row-major. */
typedef struct byoc_tensor {
  void* data;
  int32_t dtype; /* enum byoc_dtype */
  int32_t rank;
  const int64_t* shape;
  const int64_t* strides;
} byoc_tensor;

typedef int32_t (*byoc_abi_version_fn)(void);
typedef int32_t (*byoc_entry_fn)(const byoc_tensor* inputs, int32_t num_inputs,
                                 const byoc_tensor* outputs, int32_t num_outputs,
                                 char* error, size_t error_size);
typedef int32_t (*byoc_init_fn)(const byoc_tensor* constants, int32_t num_constants,
                                char* error, size_t error_size);
typedef void (*byoc_release_fn)(void);
typedef int32_t (*byoc_stats_fn)(char* text, size_t size);

#if defined(_WIN32)
#define BYOC_EXPORT __declspec(dllexport)
#else
#define BYOC_EXPORT __attribute__((visibility("default")))
#endif

/* Modules define the version function with this macro, once. */
#define BYOC_DEFINE_ABI_VERSION \
  BYOC_EXPORT int32_t byoc_abi_version(void) { return BYOC_ABI_VERSION; }

/* Write a failure message and return its status, for `return byoc_fail(...)`. */
static inline int32_t byoc_fail(char* error, size_t error_size, int32_t status,
                                const char* message) {
  if (error != NULL && error_size > 0) {
    snprintf(error, error_size, "%s", message);
  }
  return status;
}

/* Number of elements of a tensor. */
static inline int64_t byoc_numel(const byoc_tensor* t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; ++i) n *= t->shape[i];
  return n;
}

#ifdef __cplusplus
}
#endif

#endif /* BYOC_ABI_H_ */
