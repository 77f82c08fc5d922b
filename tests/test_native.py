"""The native core, ``byoc_sdk._native``, against hand-written C modules.

The modules are compiled here with the Toolchain. Their C reads back what the core
handed them (dtype codes, shapes, strides), so the tests see the ABI from both sides;
counters a module keeps are read through an entry of the same loaded instance.
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from byoc_sdk import CSource, Toolchain, _native
from byoc_sdk.toolchain import CompileJob

AFFINE = r"""
#include <string.h>
#include "byoc/abi.h"

BYOC_DEFINE_ABI_VERSION

/* Set by affine_init: the caller keeps these buffers alive (abi.h). */
static const float* scale;
static const float* shift;
static int64_t width;
static int32_t init_calls, release_calls, entry_calls;

/* Writes (init, release, entry) call counts: how the tests watch this instance. */
BYOC_EXPORT int32_t affine_counters(const byoc_tensor* inputs, int32_t num_inputs,
                                    const byoc_tensor* outputs, int32_t num_outputs,
                                    char* error, size_t error_size) {
  int32_t* counts = (int32_t*)outputs[0].data;
  counts[0] = init_calls;
  counts[1] = release_calls;
  counts[2] = entry_calls;
  return BYOC_OK;
}

BYOC_EXPORT int32_t affine_init(const byoc_tensor* constants, int32_t num_constants,
                                char* error, size_t error_size) {
  if (num_constants != 2) {
    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "affine_init wants 2 constants");
  }
  if (constants[0].dtype != BYOC_FLOAT32 || constants[0].rank != 1 ||
      constants[0].strides != NULL) {
    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT,
                     "scale must be a contiguous float32 vector");
  }
  scale = (const float*)constants[0].data;
  shift = (const float*)constants[1].data;
  width = constants[0].shape[0];
  __atomic_add_fetch(&init_calls, 1, __ATOMIC_SEQ_CST);
  return BYOC_OK;
}

BYOC_EXPORT void affine_release(void) { __atomic_add_fetch(&release_calls, 1, __ATOMIC_SEQ_CST); }

/* y = x * scale + shift (row-wise), and each row's sum in float64. Refuses x[0] < 0. */
BYOC_EXPORT int32_t affine(const byoc_tensor* inputs, int32_t num_inputs,
                           const byoc_tensor* outputs, int32_t num_outputs,
                           char* error, size_t error_size) {
  __atomic_add_fetch(&entry_calls, 1, __ATOMIC_SEQ_CST);
  if (scale == NULL) {
    return byoc_fail(error, error_size, BYOC_ERROR, "affine: not initialized");
  }
  if (inputs[0].strides != NULL) {
    return byoc_fail(error, error_size, BYOC_INVALID_ARGUMENT, "affine: strided input");
  }
  const float* x = (const float*)inputs[0].data;
  if (x[0] < 0) {
    snprintf(error, error_size, "affine: x[0] = %g is negative", x[0]);
    return BYOC_INVALID_ARGUMENT;
  }
  float* y = (float*)outputs[0].data;
  double* sums = (double*)outputs[1].data;
  int64_t rows = inputs[0].shape[0];
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < width; ++j) {
      y[r * width + j] = x[r * width + j] * scale[j] + shift[j];
      sum += x[r * width + j];
    }
    sums[r] = sum;
  }
  return BYOC_OK;
}

/* What the module was handed: dtype, rank, dims, whether strides is NULL, counts. */
BYOC_EXPORT int32_t describe(const byoc_tensor* inputs, int32_t num_inputs,
                             const byoc_tensor* outputs, int32_t num_outputs,
                             char* error, size_t error_size) {
  int64_t* out = (int64_t*)outputs[0].data;
  memset(out, 0, 8 * sizeof(int64_t));
  out[0] = inputs[0].dtype;
  out[1] = inputs[0].rank;
  for (int32_t d = 0; d < inputs[0].rank && d < 3; ++d) out[2 + d] = inputs[0].shape[d];
  out[5] = inputs[0].strides == NULL;
  out[6] = num_inputs;
  out[7] = num_outputs;
  return BYOC_OK;
}

BYOC_EXPORT int32_t silent_failure(const byoc_tensor* inputs, int32_t num_inputs,
                                   const byoc_tensor* outputs, int32_t num_outputs,
                                   char* error, size_t error_size) {
  return BYOC_DEVICE_ERROR;
}

BYOC_EXPORT int32_t long_failure(const byoc_tensor* inputs, int32_t num_inputs,
                                 const byoc_tensor* outputs, int32_t num_outputs,
                                 char* error, size_t error_size) {
  static char message[20000];
  memset(message, 'x', sizeof(message) - 1);
  return byoc_fail(error, error_size, BYOC_ERROR, message);
}
"""

NO_VERSION = r"""
#include "byoc/abi.h"
BYOC_EXPORT int32_t entry(const byoc_tensor* i, int32_t ni, const byoc_tensor* o, int32_t no,
                          char* e, size_t es) { return BYOC_OK; }
"""

VERSION_99 = r"""
#include "byoc/abi.h"
BYOC_EXPORT int32_t byoc_abi_version(void) { return 99; }
BYOC_EXPORT int32_t entry(const byoc_tensor* i, int32_t ni, const byoc_tensor* o, int32_t no,
                          char* e, size_t es) { return BYOC_OK; }
"""

F32 = np.dtype(np.float32)
ROWS, WIDTH = 3, 4


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> dict[str, Path]:
    toolchain = Toolchain(cache=tmp_path_factory.mktemp("native-cache"))
    jobs = [CompileJob(name, "native", CSource({f"{name}.c": source}, "entry"))
            for name, source in (("affine", AFFINE), ("no_version", NO_VERSION),
                                 ("version_99", VERSION_99))]
    results = toolchain.compile_all(jobs)
    assert all(isinstance(p, Path) for p in results.values()), results
    return results


@pytest.fixture
def affine_library(modules):
    """The affine module (each Library is a private instance, so its static state —
    pointers and counters — is this test's alone) and a reader of its counters."""
    library = _native.Library(str(modules["affine"]))
    read = _native.Function(library, "affine_counters", [], [(np.int32, (3,))])
    return library, lambda: dict(zip(("init", "release", "entry"),
                                     (int(c) for c in read([])[0]), strict=True))


def affine_function(library) -> _native.Function:
    return _native.Function(library, "affine", [(F32, (ROWS, WIDTH))],
                            [(F32, (ROWS, WIDTH)), (np.float64, (ROWS,))])


def constants() -> tuple[np.ndarray, np.ndarray]:
    return (np.arange(1, WIDTH + 1, dtype=np.float32),
            np.full(WIDTH, 0.5, dtype=np.float32))


def expected(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale, shift = constants()
    return x * scale + shift, x.astype(np.float64).sum(axis=1)


def sample(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).random((ROWS, WIDTH)).astype(np.float32)
    x[0, 0] = abs(x[0, 0])
    return x


@pytest.fixture
def affine(affine_library):
    library, _counters = affine_library
    function = affine_function(library)
    function.init(list(constants()))
    return function


# --- calls --------------------------------------------------------------------------------


def test_library_properties(affine_library, modules):
    library, _counters = affine_library
    assert library.abi_version == _native.ABI_VERSION == 1
    assert library.path == str(modules["affine"])  # the path given, not the private copy
    assert library.has_symbol("affine") and library.has_symbol("affine_init")
    assert not library.has_symbol("nope")
    function = affine_function(library)
    assert function.entry == "affine" and function.has_init
    described = _native.Function(library, "describe", [(F32, (1,))], [(np.int64, (8,))])
    assert not described.has_init


def test_call_returns_fresh_outputs(affine, affine_library):
    _library, counters = affine_library
    x = sample()
    y, sums = affine([x])
    want_y, want_sums = expected(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-6)
    assert y.dtype == np.float32 and sums.dtype == np.float64
    assert y.flags.c_contiguous and y.flags.writeable
    y2, _ = affine([x])
    assert y2 is not y and not np.shares_memory(y, y2)
    assert counters()["entry"] == 2


def test_call_into_writes_caller_buffers(affine):
    x = sample(1)
    y = np.zeros((ROWS, WIDTH), np.float32)
    sums = np.zeros(ROWS, np.float64)
    assert affine.call_into([x], [y, sums]) is None
    want_y, want_sums = expected(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-6)


def test_bound_call_reads_and_writes_the_run_table(affine):
    # Bound like a runtime frame binds it: the input comes from the run's values by name
    # and the sums output is fresh each call; y is a fixed buffer written in place.
    y = np.zeros((ROWS, WIDTH), np.float32)
    bound = affine.bind([None], [y, None], ["x"], ["y", "sums"])
    for seed in (2, 3):
        x = sample(seed)
        values = {"x": x}
        assert bound(values) is None
        want_y, want_sums = expected(x)
        np.testing.assert_allclose(y, want_y, rtol=1e-6)
        np.testing.assert_allclose(values["sums"], want_sums, rtol=1e-6)
        assert "y" not in values  # bound outputs stay in their buffer
    first = {"x": sample(4)}
    second = {"x": sample(5)}
    bound(first)
    bound(second)
    assert not np.shares_memory(first["sums"], second["sums"])


def test_bound_call_with_every_array_fixed(affine):
    x, y, sums = sample(6), np.zeros((ROWS, WIDTH), np.float32), np.zeros(ROWS)
    bound = affine.bind([x], [y, sums], ["x"], ["y", "sums"])
    bound({})
    x[0, 1] += 1  # the bound input is read again, not a copy made at bind time
    bound({})
    want_y, want_sums = expected(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-6)


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        (lambda f: f.bind([np.zeros((2, 2), np.float32)], [None, None], ["x"], ["y", "s"]),
         r"affine: input 0 has shape \(2, 2\), expected \(3, 4\)"),
        (lambda f: f.bind([None], [np.zeros((ROWS, WIDTH)), None], ["x"], ["y", "s"]),
         "affine: output 0 is float64, expected float32"),
        (lambda f: f.bind([None], [None], ["x"], ["y"]),
         "bind takes one array or None and one name per input and per output"),
        # A copy made at bind time would not see later writes: such inputs are refused.
        (lambda f: f.bind([np.zeros((WIDTH, ROWS), np.float32).T], [None, None], ["x"],
                          ["y", "s"]),
         "affine: input 0 must be C-contiguous"),
        (lambda f: f.bind([np.zeros((ROWS, WIDTH), ">f4")], [None, None], ["x"], ["y", "s"]),
         "affine: input 0 is >f4, expected float32"),
    ],
    ids=["input shape", "output dtype", "counts", "strided input", "swapped input"],
)
def test_bad_bindings_are_refused(affine, bind, message):
    with pytest.raises(ValueError, match=message):
        bind(affine)


def test_bound_call_without_its_value_names_it(affine, affine_library):
    _library, counters = affine_library
    bound = affine.bind([None], [None, None], ["x"], ["y", "sums"])
    with pytest.raises(ValueError, match="affine: the run has no value 'x' for input 0"):
        bound({"z": sample()})
    with pytest.raises(ValueError, match=r"affine: input 0 has shape \(12,\)"):
        bound({"x": sample().ravel()})
    assert counters()["entry"] == 0


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (lambda x: [x.astype(np.float64)], "affine: input 0 is float64, expected float32"),
        (lambda x: [x.astype(np.int32)], "affine: input 0 is int32, expected float32"),
        (lambda x: [x.T.copy()], r"affine: input 0 has shape \(4, 3\), expected \(3, 4\)"),
        (lambda x: [x[None]], r"has shape \(1, 3, 4\), expected \(3, 4\)"),
        (lambda x: [x.ravel()], r"has shape \(12,\), expected \(3, 4\)"),
        (lambda x: [], "affine takes 1 inputs, got 0"),
        (lambda x: [x, x], "affine takes 1 inputs, got 2"),
        (lambda x: [x.tolist()], "affine: input 0 is not a numpy array"),
    ],
    ids=["float64", "int32", "transposed", "rank 3", "rank 1", "none", "two", "list"],
)
def test_bad_inputs_are_rejected_before_the_module_runs(affine, affine_library, inputs,
                                                        message):
    _library, counters = affine_library
    with pytest.raises(ValueError, match=message):
        affine(inputs(sample()))
    assert counters()["entry"] == 0


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (lambda: [np.zeros((ROWS, WIDTH), np.float32)], "affine takes 2 outputs, got 1"),
        (lambda: [np.zeros((ROWS, WIDTH), np.float32), np.zeros(ROWS, np.float32)],
         "output 1 is float32, expected float64"),
        (lambda: [np.zeros((ROWS, WIDTH * 2), np.float32)[:, ::2], np.zeros(ROWS)],
         "output 0 must be C-contiguous"),
        (lambda: [np.zeros((ROWS, WIDTH), np.float32), _read_only(np.zeros(ROWS))],
         "output 1 is read-only"),
    ],
    ids=["count", "dtype", "strided", "read-only"],
)
def test_bad_outputs_are_rejected(affine, outputs, message):
    with pytest.raises(ValueError, match=message):
        affine.call_into([sample()], outputs())


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("layout", ["strided", "fortran", "negative stride", "read-only"])
def test_non_contiguous_inputs_are_copied(affine, layout):
    x = sample(2)
    if layout == "strided":
        wide = np.zeros((ROWS, WIDTH * 3), np.float32)
        wide[:, ::3] = x
        view = wide[:, ::3]
    elif layout == "fortran":
        view = np.asfortranarray(x)
    elif layout == "negative stride":
        view = x[::-1].copy()[::-1]
    else:
        view = _read_only(x.copy())
    assert layout == "read-only" or not view.flags.c_contiguous
    # The module refuses non-NULL strides, so passing means it saw a contiguous copy.
    y, sums = affine([view])
    want_y, want_sums = expected(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(sums, want_sums, rtol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "code"),
    [(np.float32, 1), (np.uint8, 2), (np.int8, 3), (np.uint16, 4), (np.int16, 5),
     (np.int32, 6), (np.int64, 7), (np.bool_, 9), (np.float16, 10), (np.float64, 11),
     (np.uint32, 12), (np.uint64, 13)],
)
def test_tensors_carry_onnx_dtype_codes_and_shapes(affine_library, dtype, code):
    library, _ = affine_library
    describe = _native.Function(library, "describe", [(dtype, (2, 5))], [(np.int64, (8,))])
    (seen,) = describe([np.zeros((2, 5), dtype)])
    assert seen.tolist() == [code, 2, 2, 5, 0, 1, 1, 1]


def test_scalar_tensors(affine_library):
    library, _ = affine_library
    describe = _native.Function(library, "describe", [(F32, ())], [(np.int64, (8,))])
    (seen,) = describe([np.array(3.0, np.float32)])
    assert seen.tolist() == [1, 0, 0, 0, 0, 1, 1, 1]


def test_dtype_without_abi_code_is_refused(affine_library):
    library, _ = affine_library
    with pytest.raises(ValueError, match="no element type for numpy dtype complex64"):
        _native.Function(library, "describe", [(np.complex64, (2,))], [(np.int64, (8,))])


def test_non_native_byte_order_is_not_passed_through(affine):
    x = sample(3)
    try:
        y, _ = affine([x.astype(">f4")])
    except ValueError:
        return  # refused: fine
    np.testing.assert_allclose(y, expected(x)[0], rtol=1e-6)  # or converted: fine too


@pytest.mark.skipif(np.dtype("q").num == np.dtype(np.int64).num,
                    reason="long long and int64 are one numpy type number here")
def test_equal_dtypes_of_another_type_number_are_accepted(affine_library):
    library, _ = affine_library
    describe = _native.Function(library, "describe", [(np.int64, (2,))], [(np.int64, (8,))])
    long_long = np.zeros(2, np.dtype("q"))
    assert long_long.dtype == np.int64
    (seen,) = describe([long_long])
    assert seen[0] == 7


# --- module failures --------------------------------------------------------------------------


def test_module_error_carries_status_and_message(affine):
    x = sample()
    x[0, 0] = -2.0
    with pytest.raises(_native.ModuleError) as raised:
        affine([x])
    error = raised.value
    assert isinstance(error, RuntimeError)
    assert error.status == 2  # BYOC_INVALID_ARGUMENT
    assert str(error) == "affine: x[0] = -2 is negative"
    good = sample()
    np.testing.assert_allclose(affine([good])[0], expected(good)[0], rtol=1e-6)


def test_module_error_without_a_message(affine_library):
    library, _ = affine_library
    function = _native.Function(library, "silent_failure", [], [])
    with pytest.raises(_native.ModuleError, match="failed without a message") as raised:
        function([])
    assert raised.value.status == 4  # BYOC_DEVICE_ERROR


def test_overlong_module_message_is_cut_safely(affine_library):
    library, _ = affine_library
    function = _native.Function(library, "long_failure", [], [])
    with pytest.raises(_native.ModuleError) as raised:
        function([])
    assert 1000 < len(str(raised.value)) < 4096
    assert set(str(raised.value)) == {"x"}


# --- loading ------------------------------------------------------------------------------


def test_module_without_abi_version_is_refused(modules):
    with pytest.raises(_native.LoadError, match="does not export byoc_abi_version") as raised:
        _native.Library(str(modules["no_version"]))
    assert str(modules["no_version"]) in str(raised.value)
    assert isinstance(raised.value, RuntimeError)


def test_module_of_another_abi_version_is_refused(modules):
    with pytest.raises(_native.LoadError,
                       match="built for byoc ABI version 99, this runtime speaks version 1"):
        _native.Library(str(modules["version_99"]))


def test_missing_entry_symbol(affine_library):
    library, _ = affine_library
    with pytest.raises(_native.LoadError, match="does not export 'no_such_region'"):
        _native.Function(library, "no_such_region", [], [])


def test_unloadable_files(tmp_path):
    with pytest.raises(_native.LoadError, match="cannot load module"):
        _native.Library(str(tmp_path / "absent.so"))
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF not really")
    with pytest.raises(_native.LoadError, match="cannot load module"):
        _native.Library(str(junk))


# --- constants -----------------------------------------------------------------------------


def test_init_constants_stay_valid_across_calls(affine_library):
    library, counters = affine_library
    function = affine_function(library)
    scale, shift = constants()
    strided = np.zeros(WIDTH * 2, np.float32)
    strided[::2] = shift
    function.init([scale.copy(), strided[::2]])  # the strided one is copied, and kept
    del strided
    gc.collect()
    # Churn the allocator: freed constant buffers would be reused by now.
    junk = [np.full(WIDTH, 1e9, np.float32) for _ in range(1000)]
    del junk
    for seed in range(20):
        x = sample(seed)
        np.testing.assert_allclose(function([x])[0], expected(x)[0], rtol=1e-6)
    assert counters()["init"] == 1 and counters()["entry"] == 20


def test_init_errors(affine_library):
    library, counters = affine_library
    function = affine_function(library)
    with pytest.raises(_native.ModuleError, match="affine_init wants 2 constants") as raised:
        function.init([constants()[0]])
    assert raised.value.status == 2
    with pytest.raises(_native.ModuleError, match="contiguous float32 vector"):
        function.init([constants()[0].astype(np.float64), constants()[1]])
    with pytest.raises(ValueError, match="constants must be numpy arrays"):
        function.init([[1.0, 2.0], constants()[1]])
    function.init(list(constants()))  # the failed attempts left it uninitialized
    with pytest.raises(RuntimeError, match="already initialized"):
        function.init(list(constants()))
    assert counters()["init"] == 1


def test_release_runs_once_when_the_function_goes(affine_library):
    library, counters = affine_library
    function = affine_function(library)
    assert counters()["release"] == 0
    del function  # never initialized: nothing to release
    gc.collect()
    assert counters()["release"] == 0
    function = affine_function(library)
    function.init(list(constants()))
    del library  # the function keeps the library open
    x = sample()
    np.testing.assert_allclose(function([x])[0], expected(x)[0], rtol=1e-6)
    del function
    gc.collect()
    assert counters()["release"] == 1


def test_calls_from_many_threads(affine):
    cases = [sample(seed) for seed in range(8)]
    start = threading.Barrier(len(cases))

    def work(x: np.ndarray) -> bool:
        start.wait()
        for _ in range(200):
            y, sums = affine([x])
            np.testing.assert_allclose(y, expected(x)[0], rtol=1e-6)
            np.testing.assert_allclose(sums, expected(x)[1], rtol=1e-6)
        return True

    with ThreadPoolExecutor(len(cases)) as pool:
        assert all(pool.map(work, cases))
