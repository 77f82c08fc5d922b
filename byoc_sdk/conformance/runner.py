"""``byoc conformance``: the conformance suite from the command line, through pytest.

It runs pytest on the suite module with the plugin's options, in a configuration of its
own (the current folder's pytest settings, conftest files and tests stay out of it), and
returns pytest's exit code: 0 when the target conforms.

The tests run in one pytest-xdist worker process, not in this one: a vendor module that
segfaults or a codegen that aborts kills the worker, not the run. xdist reports the test
the worker died in as failed (the plugin names the signal) and starts a new worker for
the rest, so the summary and the JSON and JUnit reports still cover every test. A test
that runs past the time limit (``timeout``) ends its worker the same way and is reported
as timed out (see :mod:`byoc_sdk.conformance.timeout`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from byoc_sdk.conformance.timeout import DEFAULT_TIMEOUT
from byoc_sdk.errors import TargetError

EXIT_NO_TESTS = 5
AUTOLOAD = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
#: Worker restarts allowed: no limit in effect. Every restart follows a crash in a test,
#: which does not run again, so the tests bound them; a worker that dies before it has
#: collected the tests ends the run instead (the plugin sees to it).
MAX_WORKER_RESTARTS = sys.maxsize
#: pytest's exit codes -> byoc's: 0 conformant, 1 not (or nothing selected), 2 the suite
#: could not run (a usage error, or an error while collecting it).
_EXIT_CODES = {0: 0, 1: 1, 2: 2, 3: 1, 4: 2, EXIT_NO_TESTS: 1}


def pytest_args(
    target: str,
    *,
    config_dir: Path,
    report: str | None = None,
    junit: str | None = None,
    keyword: str | None = None,
    xfail_file: str | None = None,
    verbose: bool = False,
    models: Sequence[str] = (),
    timeout: float | None = None,
) -> list[str]:
    """The pytest command line running the suite on ``target``."""
    from byoc_sdk.conformance.plugin import SELECTED_SUITE

    args = [str(SELECTED_SUITE), "--byoc-target", target,
            "-c", str(config_dir / "pytest.ini"), "--rootdir", str(SELECTED_SUITE.parent),
            "--confcutdir", str(SELECTED_SUITE.parent), "--import-mode=importlib",
            "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "-rN",
            "-v" if verbose else "-q",
            "-n", "1", "--max-worker-restart", str(MAX_WORKER_RESTARTS),
            # Plugin autoload is off for the run (see run_conformance): what it needs, named.
            "-p", "byoc_sdk.conformance.plugin", "-p", "xdist.plugin"]
    if report:
        args += ["--byoc-report", report]
    if junit:
        args += [f"--junitxml={junit}", "-o", "junit_family=xunit2",
                 "-o", f"junit_suite_name=byoc-conformance-{target}"]
    if keyword:
        args += ["-k", keyword]
    if xfail_file:
        args += ["--byoc-xfail-file", xfail_file]
    for model in models:
        args += ["--byoc-model", model]
    if timeout:
        args += ["--byoc-timeout", repr(float(timeout))]
    return args


def run_conformance(
    target: str,
    *,
    report: str | None = None,
    junit: str | None = None,
    keyword: str | None = None,
    xfail_file: str | None = None,
    verbose: bool = False,
    models: Sequence[str] = (),
    timeout: float | None = DEFAULT_TIMEOUT,
    extra: Sequence[str] = (),
) -> int:
    """Run the suite on installed target ``target``; 0 when it conforms, 1 when it does not,
    2 for a usage error (such as a malformed expected-failures file). A test running longer
    than ``timeout`` seconds (``None``: no limit) fails as timed out.

    Raises :class:`~byoc_sdk.errors.TargetError` when no target of that name is
    installed (a target that is installed but fails to load is a conformance failure).
    """
    import pytest

    from byoc_sdk.registry import target_names

    if target not in target_names():
        known = ", ".join(target_names()) or "none"
        raise TargetError(f"unknown target; installed targets: {known}", target=target)
    _check_expectations(xfail_file, target)
    from byoc_sdk.conformance.context import vendor_models

    vendor_models(tuple(models))  # one that cannot take part: one line now, not a failed run
    with tempfile.TemporaryDirectory(prefix="byoc-conformance-") as work:
        config_dir = Path(work)
        (config_dir / "pytest.ini").write_text("[pytest]\n")
        args = pytest_args(target, config_dir=config_dir, report=report, junit=junit,
                           keyword=keyword, xfail_file=xfail_file, verbose=verbose,
                           models=models, timeout=timeout)
        with _no_plugin_autoload():
            code = int(pytest.main([*args, *extra]))
    if code == EXIT_NO_TESTS:
        print("byoc: no conformance test was selected (check -k)")
    return _EXIT_CODES.get(code, 1)


@contextmanager
def _no_plugin_autoload() -> Iterator[None]:
    """Keep the pytest plugins installed beside the target out of the run, in this process
    and in the workers it starts (they inherit the environment): a stray plugin could
    change or break the suite, and loading them all costs seconds (`byoc
    conformance --target cpu`: 14.5 s -> 12.0 s, median of 3). pytest reads it when a run
    starts; it is put back after."""
    before = os.environ.get(AUTOLOAD)
    os.environ[AUTOLOAD] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(AUTOLOAD, None)
        else:
            os.environ[AUTOLOAD] = before


def _check_expectations(xfail_file: str | None, target: str) -> None:
    """Refuse a missing or malformed expected-failures file before anything runs: the
    one given, or the target's own (read inside pytest, a malformed one would end the
    run in pytest's traceback instead of one line)."""
    from byoc_sdk.conformance.context import default_xfail_path
    from byoc_sdk.conformance.expectations import ExpectationError, read_expectations

    if xfail_file:
        path = Path(xfail_file)
        if not path.is_file():
            raise TargetError(f"expected-failures file {path} does not exist", target=target)
    else:
        path = default_xfail_path(target)
        if path is None or not path.is_file():
            return
    try:
        read_expectations(path)
    except ExpectationError as exc:
        raise TargetError(str(exc), target=target) from exc
