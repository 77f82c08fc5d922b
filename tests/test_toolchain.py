"""The toolchain: compiling regions' C and CUDA sources into modules, cached by content.

Several tests compile through a wrapper script standing in for ``cc``: it logs each
real compilation (the ones making a shared library) with its start and end time, so a
test can count compilations and see whether they overlapped.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from byoc_sdk import CSource, Toolchain, ToolchainError, _native
from byoc_sdk.toolchain import CompileJob

GOOD = """
#include "byoc/abi.h"
BYOC_DEFINE_ABI_VERSION
BYOC_EXPORT int32_t {entry}(const byoc_tensor* inputs, int32_t num_inputs,
                            const byoc_tensor* outputs, int32_t num_outputs,
                            char* error, size_t error_size) {{
  const float* x = (const float*)inputs[0].data;
  float* y = (float*)outputs[0].data;
  for (int64_t i = 0; i < byoc_numel(&inputs[0]); ++i) y[i] = x[i] + {value}f;
  return BYOC_OK;
}}
"""


def good_job(region: str = "r0", value: float = 1.0, **fields) -> CompileJob:
    source = GOOD.format(entry=region, value=value)
    return CompileJob(region, "demo", CSource({f"{region}.c": source}, region, **fields))


def broken_job(region: str = "bad") -> CompileJob:
    source = '#include "byoc/abi.h"\nint32_t broken(void) {\n  return undeclared_name;\n}\n'
    return CompileJob(region, "demo", CSource({"broken.c": source}, "broken"))


@pytest.fixture
def counting_cc(tmp_path):
    """A ``cc`` wrapper logging each shared-library compile, sleeping ``delay`` in it.
    Returns (path of the wrapper, function reading the log as [(start, end)])."""
    log = tmp_path / "cc.log"
    real = shutil.which(os.environ.get("CC", "cc")) or "cc"

    def make(delay: float = 0.0) -> tuple[str, Callable[[], list]]:
        wrapper = tmp_path / f"cc-wrapper-{delay}"
        wrapper.write_text(f"""#!/bin/sh
case " $* " in
  *" -shared "*)
    start=$(date +%s.%N)
    sleep {delay}
    "{real}" "$@"; status=$?
    echo "$start $(date +%s.%N)" >> "{log}"
    exit $status;;
esac
exec "{real}" "$@"
""")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)

        def runs() -> list[tuple[float, float]]:
            if not log.exists():
                return []
            return [tuple(map(float, line.split())) for line in log.read_text().splitlines()]

        return str(wrapper), runs

    return make


def test_compile_is_cached_by_content(tmp_path, counting_cc):
    cc, runs = counting_cc()
    toolchain = Toolchain(cc=cc, cache=tmp_path / "cache")
    job = good_job()
    first = toolchain.compile(job)
    assert first.is_file() and first.parent == tmp_path / "cache" / "modules"
    assert len(runs()) == 1
    mtime = first.stat().st_mtime_ns

    again = toolchain.compile(good_job())  # an equal job: same sources, same flags
    assert again == first
    assert len(runs()) == 1  # the compiler did not run
    assert first.stat().st_mtime_ns == mtime

    # A fresh Toolchain on the same cache folder finds it too.
    assert Toolchain(cc=cc, cache=tmp_path / "cache").compile(job) == first
    assert len(runs()) == 1

    changed = toolchain.compile(good_job(value=2.0))
    assert changed != first and len(runs()) == 2
    # No leftovers of the builds next to the modules.
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, changed.name])


def test_key_covers_flags_and_sources(tmp_path):
    toolchain = Toolchain(cache=tmp_path)
    plain = good_job().artifact
    keys = {
        toolchain.key(plain),
        toolchain.key(good_job(flags=["-DFAST=1"]).artifact),
        toolchain.key(good_job(flags=["-DFAST=2"]).artifact),
        toolchain.key(good_job(value=3.0).artifact),
        Toolchain(cache=tmp_path, portable=True).key(plain),
    }
    assert len(keys) == 5
    assert toolchain.key(good_job().artifact) == toolchain.key(plain)  # deterministic
    assert Toolchain(cache=tmp_path / "elsewhere").key(plain) == toolchain.key(plain)

    with_flag = toolchain.compile(good_job(flags=["-DFAST=1"]))
    without = toolchain.compile(good_job())
    assert with_flag != without and with_flag.is_file() and without.is_file()


def test_portable_build_leaves_out_march_native(tmp_path):
    sources = [Path("r0.c")]
    artifact = good_job().artifact
    portable = Toolchain(cache=tmp_path, portable=True).command(artifact, sources, Path("o"))
    assert "-march=native" not in portable
    assert {"-O3", "-shared", "-fPIC"} <= set(portable)


def test_compiler_error_names_region_target_and_cause(tmp_path):
    toolchain = Toolchain(cache=tmp_path)
    with pytest.raises(ToolchainError) as raised:
        toolchain.compile(broken_job("region_7"))
    error = raised.value
    assert error.context.region == "region_7" and error.context.target == "demo"
    message = str(error)
    assert "region region_7" in message and "target demo" in message
    # The compiler's own diagnostic: file, line, and what it did not like.
    assert "broken.c:3" in message and "undeclared_name" in message
    assert not list(tmp_path.glob("modules/*.so"))  # a failure caches nothing
    # The build folder is gone; the diagnostic's file is the kept copy, which exists.
    (kept,) = tmp_path.glob("failed/*/broken.c")
    assert f"{kept}:3" in message and "undeclared_name" in kept.read_text()


def test_compiler_error_is_one_line_with_the_first_error_and_the_output_apart(tmp_path):
    # Before: the whole compiler output in the message, its line breaks escaped as "\n"
    # (1000+ characters on one error line).
    source = ('#include "byoc/abi.h"\nint32_t broken(void) {\n  int a = first_name;\n'
              "  int b = second_name;\n  return a + b;\n}\n")
    job = CompileJob("r1", "demo", CSource({"broken.c": source}, "broken"))
    with pytest.raises(ToolchainError) as raised:
        Toolchain(cache=tmp_path).compile(job)
    error = raised.value
    (kept,) = tmp_path.glob("failed/*")
    assert "\n" not in error.reason
    first, rest = error.reason.split(": ", 1)
    assert first == Path(Toolchain(cache=tmp_path).cc).name + " failed"
    assert rest.startswith(f"{kept}/broken.c:3:") and "first_name" in rest
    assert "second_name" not in rest and "(and 1 more error)" in rest
    assert rest.endswith(f"; sources kept in {kept}")
    # The compiler's own words, for the build report and --debug.
    assert "first_name" in error.output and "second_name" in error.output


def test_only_the_newest_rejected_builds_are_kept(tmp_path, monkeypatch):
    from byoc_sdk import toolchain as toolchain_module

    monkeypatch.setattr(toolchain_module, "KEEP_FAILED", 2)
    toolchain = Toolchain(cache=tmp_path)
    for n in range(3):  # three different sources: three keys
        source = f'#include "byoc/abi.h"\nint32_t broken{n}(void) {{ return nope{n}; }}\n'
        with pytest.raises(ToolchainError):
            toolchain.compile(CompileJob(f"r{n}", "demo", CSource({"b.c": source}, "broken")))
    kept = sorted(p.read_text() for p in tmp_path.glob("failed/*/b.c"))
    assert len(kept) == 2 and not any("nope0" in text for text in kept)


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    missing = str(tmp_path / "bin" / "no-such-cc")
    monkeypatch.setenv("CC", missing)
    toolchain = Toolchain(cache=tmp_path)
    assert toolchain.cc == missing
    with pytest.raises(ToolchainError) as raised:
        toolchain.compile(good_job("r9"))
    message = str(raised.value)
    assert f"compiler '{missing}' not found" in message and "set CC" in message
    assert raised.value.context.region == "r9"


def test_missing_cxx_compiler_names_cxx(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    job = CompileJob("r1", "demo", CSource({"r1.cc": "int x;"}, "r1"))
    with pytest.raises(ToolchainError, match="set CXX"):
        Toolchain(cache=tmp_path).compile(job)


def test_compile_all_runs_in_parallel_and_reports_per_region(tmp_path, counting_cc):
    cc, runs = counting_cc(delay=0.4)
    toolchain = Toolchain(cc=cc, cache=tmp_path / "cache")
    jobs = [good_job(f"r{i}", value=float(i)) for i in range(4)] + [broken_job("bad")]
    results = toolchain.compile_all(jobs, workers=5)

    assert set(results) == {"r0", "r1", "r2", "r3", "bad"}
    for name in ("r0", "r1", "r2", "r3"):
        assert isinstance(results[name], Path) and results[name].is_file()
    assert isinstance(results["bad"], ToolchainError)
    assert results["bad"].context.region == "bad"
    assert "undeclared_name" in str(results["bad"])

    spans = runs()
    assert len(spans) == 5
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap >= 2, spans  # at least two compilers ran at the same time

    assert toolchain.compile_all([]) == {}


def test_compiled_module_loads_and_runs(tmp_path):
    import numpy as np

    path = Toolchain(cache=tmp_path).compile(good_job("plus_one"))
    library = _native.Library(str(path))
    assert library.abi_version == _native.ABI_VERSION == 1
    function = _native.Function(library, "plus_one", [(np.float32, (3,))], [(np.float32, (3,))])
    (out,) = function([np.array([1, 2, 3], np.float32)])
    assert out.tolist() == [2, 3, 4]


CUDA_SOURCE = """
#include <cuda_runtime.h>
#include "byoc/abi.h"

extern "C" {
BYOC_DEFINE_ABI_VERSION
}

__global__ void add_one(float* y, const float* x, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] + 1.0f;
}

extern "C" BYOC_EXPORT int32_t cuda_region(const byoc_tensor* inputs, int32_t num_inputs,
                                           const byoc_tensor* outputs, int32_t num_outputs,
                                           char* error, size_t error_size) {
  int64_t n = byoc_numel(&inputs[0]);
  size_t bytes = (size_t)n * sizeof(float);
  float *x = NULL, *y = NULL;
  if (cudaMalloc(&x, bytes) != cudaSuccess || cudaMalloc(&y, bytes) != cudaSuccess) {
    cudaFree(x);
    return byoc_fail(error, error_size, BYOC_DEVICE_ERROR, "cudaMalloc failed");
  }
  cudaMemcpy(x, inputs[0].data, bytes, cudaMemcpyHostToDevice);
  add_one<<<(unsigned)((n + 255) / 256), 256>>>(y, x, n);
  cudaError_t status = cudaMemcpy(outputs[0].data, y, bytes, cudaMemcpyDeviceToHost);
  cudaFree(x);
  cudaFree(y);
  if (status != cudaSuccess) {
    return byoc_fail(error, error_size, BYOC_DEVICE_ERROR, cudaGetErrorString(status));
  }
  return BYOC_OK;
}
"""


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_nvcc_compiles_a_cuda_region(tmp_path):
    job = CompileJob("cuda_region", "demo",
                     CSource({"region.cu": CUDA_SOURCE}, "cuda_region", language="cuda"))
    toolchain = Toolchain(cache=tmp_path)
    assert toolchain.command(job.artifact, [Path("region.cu")], Path("o"))[0] == "nvcc"
    path = toolchain.compile(job)
    assert path.is_file()
    library = _native.Library(str(path))  # loading needs no GPU; calling would
    assert library.abi_version == 1
    assert library.has_symbol("cuda_region")
    assert toolchain.compile(job) == path  # cached like C


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_nvcc_error_is_reported(tmp_path):
    job = CompileJob("cuda_bad", "demo",
                     CSource({"bad.cu": "__global__ void k( {}\n"}, "cuda_bad",
                             language="cuda"))
    with pytest.raises(ToolchainError, match=r"nvcc failed: .*bad\.cu.*error") as raised:
        Toolchain(cache=tmp_path).compile(job)
    assert raised.value.context.region == "cuda_bad"


def test_a_compile_that_runs_past_the_limit_is_stopped_with_its_children(tmp_path):
    # A compiler that never finishes (here: one whose child sleeps) must not hold the
    # build: it is stopped at the limit, with every process it started.
    child_pid = tmp_path / "child.pid"
    hanging = tmp_path / "hanging-cc"
    hanging.write_text(f"""#!/bin/sh
case " $* " in
  *" -shared "*) sleep 60 & echo $! > "{child_pid}"; wait;;
esac
exit 1
""")
    hanging.chmod(hanging.stat().st_mode | stat.S_IEXEC)
    toolchain = Toolchain(cc=str(hanging), cache=tmp_path / "cache", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ToolchainError) as raised:
        toolchain.compile(good_job("r3"))
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert "still compiling after 0.5 s" in message and "BYOC_COMPILE_TIMEOUT" in message
    assert "sources kept in" in message and raised.value.context.region == "r3"
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), "the compiler's child was left running"


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped by init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize(("setting", "expected"), [("", 600.0), ("2.5", 2.5), ("0", None)])
def test_compile_timeout_comes_from_the_environment(monkeypatch, setting, expected):
    monkeypatch.setenv("BYOC_COMPILE_TIMEOUT", setting)
    assert Toolchain().timeout == expected


@pytest.mark.parametrize("setting", ["soon", "-1", "inf", "nan"])
def test_a_bad_compile_timeout_is_one_clear_error(monkeypatch, setting):
    monkeypatch.setenv("BYOC_COMPILE_TIMEOUT", setting)
    with pytest.raises(ToolchainError, match="BYOC_COMPILE_TIMEOUT must be a number of seconds"):
        Toolchain()
