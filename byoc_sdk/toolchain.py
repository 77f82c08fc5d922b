"""Compiling C and CUDA sources into shared libraries, cached by content.

C sources compile with the system C compiler (``CC``, default ``cc``; C++ files with
``CXX``, default ``c++``) at ``-O3``, with ``-march=native`` unless a portable build is
asked for and OpenMP where the compiler has it; CUDA sources with ``nvcc`` (``NVCC``).
Each library lands in the cache folder (``BYOC_CACHE_DIR``, else the platform's user
cache) under the hash of everything that determines it — compiler, flags, ABI header
and sources — so an unchanged region never compiles twice. Regions compile in
parallel; a compiler error is raised with the compiler's own message and the region
and target named.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from byoc_sdk.codegen import CSource
from byoc_sdk.errors import ByocError, describe_exception

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
_CXX_SUFFIXES = (".cc", ".cpp", ".cxx")
_MAX_MESSAGE_LINES = 40
#: Rejected builds kept in ``<cache>/failed`` for reading; older ones are removed.
KEEP_FAILED = 20
#: Seconds one region's compile may take unless ``BYOC_COMPILE_TIMEOUT`` says otherwise:
#: far beyond any region the bundled codegens emit (seconds), so only a compiler that
#: hangs, or a source it cannot finish, meets it.
DEFAULT_COMPILE_TIMEOUT = 600.0


class ToolchainError(ByocError):
    """A compiler is missing or rejected a region's sources.

    The message is one line; for rejected sources it holds the compiler's first error
    and where the sources were kept, and ``output`` the compiler's own message (its
    first lines), for the build report and ``--debug``.
    """

    def __init__(self, message: str, *, output: str = "", target: str | None = None,
                 region: str | None = None) -> None:
        self.output = output
        super().__init__(message, target=target, region=region)


def cache_dir() -> Path:
    """Where compiled modules are cached: ``BYOC_CACHE_DIR`` or the user cache."""
    configured = os.environ.get("BYOC_CACHE_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("byoc"))


def compile_timeout() -> float | None:
    """Seconds one compile may take: ``BYOC_COMPILE_TIMEOUT`` (0: no limit) or
    :data:`DEFAULT_COMPILE_TIMEOUT`."""
    configured = os.environ.get("BYOC_COMPILE_TIMEOUT")
    if configured is None or not configured.strip():
        return DEFAULT_COMPILE_TIMEOUT
    try:
        seconds = float(configured)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ToolchainError(f"BYOC_COMPILE_TIMEOUT must be a number of seconds (0: no "
                             f"limit), not {configured!r}")
    return seconds or None


def _run(command: list[str], timeout: float | None) -> subprocess.CompletedProcess[str]:
    """Run a compiler, stopping it and every process it started (cc1, as, ld, nvcc's
    stages) when it takes longer than ``timeout`` seconds or this process is interrupted:
    ``subprocess.run`` would stop the driver alone and leave its children compiling."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:  # the time limit, or Ctrl-C, which the new session no longer sees
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass(frozen=True)
class CompileJob:
    """One region's sources to compile."""

    region: str
    target: str
    artifact: CSource


@dataclass
class Toolchain:
    """Compilers and the cache. ``portable`` leaves out ``-march=native``."""

    cc: str = field(default_factory=lambda: os.environ.get("CC", "cc"))
    cxx: str = field(default_factory=lambda: os.environ.get("CXX", "c++"))
    nvcc: str = field(default_factory=lambda: os.environ.get("NVCC", "nvcc"))
    cache: Path = field(default_factory=cache_dir)
    portable: bool = False
    #: Seconds one compile may take (``None``: no limit).
    timeout: float | None = field(default_factory=compile_timeout)

    def command(self, artifact: CSource, sources: Sequence[Path], output: Path) -> list[str]:
        """The compiler command line for ``artifact``'s sources."""
        include = ["-I", str(INCLUDE_DIR)]
        if artifact.language == "cuda":
            return [
                self.nvcc, "-O3", "-shared", "-Xcompiler", "-fPIC", "-std=c++17", *include,
                *artifact.flags, *map(str, sources), "-o", str(output),
            ]
        cxx = any(s.suffix in _CXX_SUFFIXES for s in sources)
        compiler = self.cxx if cxx else self.cc
        native = ["-march=native"]
        if self.portable or not _accepts(compiler, native[0]):
            native = []
        openmp = ["-fopenmp"] if _accepts(compiler, "-fopenmp") else []
        return [
            compiler, "-O3", "-shared", "-fPIC", "-std=c++17" if cxx else "-std=gnu11",
            *native, *openmp, *include, *artifact.flags, *map(str, sources),
            "-o", str(output), "-lm",
        ]

    def key(self, artifact: CSource) -> str:
        """The cache key: everything that determines the compiled library."""
        digest = hashlib.sha256()
        probe = self.command(artifact, [Path(n) for n in sorted(artifact.sources)], Path("out"))
        digest.update(_compiler_identity(probe[0]).encode())
        digest.update("\0".join(probe[1:]).encode())
        for header in sorted((INCLUDE_DIR / "byoc").glob("*.h")):  # abi.h, cuda.h...
            digest.update(header.name.encode() + b"\0" + header.read_bytes())
        for name in sorted(artifact.sources):
            digest.update(name.encode() + b"\0" + artifact.sources[name].encode() + b"\0")
        return digest.hexdigest()

    def compile(self, job: CompileJob) -> Path:
        """The shared library for ``job``, compiled now or found in the cache."""
        key = self.key(job.artifact)
        output = self.cache / "modules" / f"{key}.so"
        if output.is_file():
            return output
        try:
            self._build(job, key, output)
        except OSError as exc:  # the compiler's own absence is a ToolchainError already
            raise ToolchainError(
                f"cannot write the module cache {self.cache} ({describe_exception(exc)}); "
                "set BYOC_CACHE_DIR to a writable folder",
                target=job.target, region=job.region,
            ) from exc
        return output

    def _build(self, job: CompileJob, key: str, output: Path) -> None:
        """Compile ``job`` into ``output`` (``key`` names a rejected build's sources)."""
        artifact = job.artifact
        output.parent.mkdir(parents=True, exist_ok=True)
        # Build next to the cache so the final rename is atomic: a concurrent build of
        # the same key never sees half a file.
        with tempfile.TemporaryDirectory(prefix=".build-", dir=output.parent) as work:
            sources = []
            for name, text in artifact.sources.items():
                path = Path(work) / name
                path.write_text(text)
                sources.append(path)
            partial = Path(work) / "module.so"
            command = self.command(artifact, sources, partial)
            try:
                done = _run(command, self.timeout)
            except subprocess.TimeoutExpired as exc:
                kept = self._keep_failed(key, sources)
                raise ToolchainError(
                    f"{Path(command[0]).name} was still compiling after {self.timeout:g} s "
                    f"and was stopped (BYOC_COMPILE_TIMEOUT sets the limit); sources kept in "
                    f"{kept}", target=job.target, region=job.region,
                ) from exc
            except OSError as exc:  # not found, not executable: not the cache's fault
                problem = ("not found" if isinstance(exc, FileNotFoundError)
                           else f"cannot be run ({describe_exception(exc)})")
                raise ToolchainError(
                    f"compiler '{command[0]}' {problem} (set {_env_of(artifact)} to another)",
                    target=job.target, region=job.region,
                ) from exc
            if done.returncode != 0:
                kept = self._keep_failed(key, sources)
                # The build folder goes away; point the compiler's file:line at the copy.
                message = (done.stderr or done.stdout).replace(f"{work}/", f"{kept}/")
                raise ToolchainError(
                    f"{Path(command[0]).name} failed: {_first_error(message)}; sources kept "
                    f"in {kept}", output=_trim(message), target=job.target, region=job.region,
                )
            os.replace(partial, output)

    def _keep_failed(self, key: str, sources: Sequence[Path]) -> Path:
        """Copy sources the compiler rejected to ``<cache>/failed/<key>``, where the
        error message points, so they can be read and compiled by hand."""
        kept = self.cache / "failed" / key[:16]  # enough to tell builds apart, short to read
        kept.mkdir(parents=True, exist_ok=True)
        for source in sources:
            shutil.copy2(source, kept / source.name)
        kept.touch()  # the newest, whatever it held before
        # Failures are for reading now, not for keeping: the folder must not grow forever.
        older = sorted((d for d in kept.parent.iterdir() if d.is_dir()),
                       key=lambda d: d.stat().st_mtime, reverse=True)[KEEP_FAILED:]
        for folder in older:
            shutil.rmtree(folder, ignore_errors=True)  # another process may remove it too
        return kept

    def compile_all(
        self, jobs: Sequence[CompileJob], *, workers: int | None = None, progress: bool = False
    ) -> dict[str, Path | ToolchainError]:
        """Compile ``jobs`` in parallel; per region, the library or the error."""
        results: dict[str, Path | ToolchainError] = {}
        if not jobs:
            return results
        workers = workers or min(len(jobs), os.cpu_count() or 1)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="compiling regions", unit="region", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(self.compile, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    results[job.region] = future.result()
                except ToolchainError as exc:
                    results[job.region] = exc
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        return results


def cuda_emulation_requested() -> bool:
    """Whether the ``BYOC_CUDA_EMULATE`` environment variable asks for CUDA sources to be
    built for the host emulation (``byoc/cuda_emulation.h``) rather than with nvcc."""
    return os.environ.get("BYOC_CUDA_EMULATE", "").strip().lower() in ("1", "true", "yes")


def _env_of(artifact: CSource) -> str:
    if artifact.language == "cuda":
        return "NVCC"
    return "CXX" if any(n.endswith(_CXX_SUFFIXES) for n in artifact.sources) else "CC"


def _first_error(message: str) -> str:
    """The line of a compiler's ``message`` that says what is wrong: the first
    ``error:`` line (gcc, clang and nvcc all write one, after context lines such as
    "In function ..."), else its first line, with how many more errors follow."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    if not errors:
        return lines[0] if lines else "no message"
    more = len(errors) - 1
    return errors[0] + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def _trim(text: str) -> str:
    lines = text.strip().splitlines()
    if len(lines) > _MAX_MESSAGE_LINES:
        lines = [*lines[:_MAX_MESSAGE_LINES], f"... ({len(lines) - _MAX_MESSAGE_LINES} more lines)"]
    return "\n".join(lines)


@functools.cache
def _compiler_identity(compiler: str) -> str:
    """Path and version banner: a compiler upgrade must not reuse old libraries."""
    path = shutil.which(compiler) or compiler
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        return f"{path}\n{done.stdout.strip()}"
    except (OSError, subprocess.TimeoutExpired):
        return path


@functools.cache
def _accepts(compiler: str, flag: str) -> bool:
    """Whether ``compiler`` compiles and links a trivial program with ``flag``."""
    source = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n" \
        if flag == "-fopenmp" else "int main(void){return 0;}\n"
    with tempfile.TemporaryDirectory(prefix="byoc-probe-") as work:
        src = Path(work) / "probe.c"
        src.write_text(source)
        language = ["-x", "c"]
        try:
            done = subprocess.run(
                [compiler, *language, str(src), flag, "-o", str(Path(work) / "probe")],
                capture_output=True, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0
