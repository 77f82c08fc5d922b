"""The byoc conformance pytest plugin (entry point ``pytest11``: ``byoc_conformance``).

Dormant unless asked: it adds the options below, and does nothing else until a run
passes ``--byoc-target NAME`` (which adds the suite for that target to the collection)
or collects a :class:`~byoc_sdk.conformance.ConformanceSuite` subclass. When suite tests
ran it prints the conformance summary and, with ``--byoc-report``, writes it as JSON.

Under pytest-xdist (``byoc conformance`` runs the suite in one xdist worker) the results
and the summary are the controller's; a worker that dies in a test (a vendor module
that segfaults, a codegen that aborts) is reported as that test's failure, naming the
signal, and replaced, and the rest of the suite goes on. With ``--byoc-timeout`` a check
that runs longer than that ends its worker the same way, and is reported as timed out
(see :mod:`.timeout`).

It imports nothing heavy at start-up: every pytest run on a machine with byoc loads it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from byoc_sdk.conformance.timeout import (
    COLLECTION_FLOOR,
    DUMP_KEY,
    CaseTimer,
    activate,
    seconds_option,
    shown,
)

#: The module holding the suite class for the target named on the command line.
SELECTED_SUITE = Path(__file__).with_name("selected.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("byoc", "byoc conformance suite")
    group.addoption("--byoc-target", metavar="NAME", default=None,
                    help="run the byoc conformance suite on installed target NAME")
    group.addoption("--byoc-xfail-file", metavar="FILE", default=None,
                    help="expected failures (default: conformance_xfail.txt beside the target)")
    group.addoption("--byoc-model", metavar="FILE.onnx", action="append", default=None,
                    help="a model of your own to run beside the bundled ones (repeatable)")
    group.addoption("--byoc-report", metavar="FILE.json", default=None,
                    help="write the conformance report as JSON")
    group.addoption("--byoc-timeout", metavar="SECONDS", type=seconds_option, default=None,
                    help="time limit of each check (default, or 0: none); a check that runs "
                    "longer ends the process it runs in: with -n 1 (pytest-xdist) it is one "
                    "failed check and the rest run")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("byoc_target"):
        suite = str(SELECTED_SUITE)
        if not any(_same_file(arg, suite) for arg in config.args):
            config.args.append(suite)
    config.pluginmanager.register(Recorder(config), "byoc-conformance-recorder")
    seconds = config.getoption("byoc_timeout")
    if seconds:
        if float(config.getini("faulthandler_timeout") or 0) > 0:
            raise pytest.UsageError("--byoc-timeout and the faulthandler_timeout setting use "
                                    "the same timer (faulthandler's): set one of them")
        config.pluginmanager.register(Limiter(config, seconds), "byoc-conformance-limiter")


class Limiter:
    """Times each suite check in the process that runs it (see :mod:`.timeout`)."""

    def __init__(self, config: pytest.Config, seconds: float) -> None:
        dump = getattr(config, "workerinput", {}).get(DUMP_KEY)
        # In a worker the stack goes where the controller will read it; in a lone pytest
        # process, which the limit ends with no report, to stderr (a copy of it: capture
        # replaces the descriptor during tests). Open for the process's life: the timer's
        # close() closes it.
        stream = (open(dump, "w", encoding="utf-8") if dump  # noqa: SIM115
                  else os.fdopen(os.dup(_stderr_fileno()), "w"))
        self.timer = CaseTimer(seconds, stream)
        self.worker = _is_worker(config)
        activate(self.timer)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        if not self.worker:  # there the limit would end the run, and not for a check
            return (yield)
        with self.timer.limit(max(self.timer.seconds, COLLECTION_FLOOR)):
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if _suite_target(item) is None:  # the vendor's own tests keep their own limits
            return (yield)
        with self.timer.limit():
            return (yield)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        activate(None)
        self.timer.close()


def _stderr_fileno() -> int:
    try:
        fileno = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        fileno = -1
    # Something replaced sys.stderr with an object that is not a file: the process's own.
    return fileno if fileno >= 0 else sys.__stderr__.fileno()


def _same_file(arg: str, path: str) -> bool:
    try:
        return Path(arg.split("::", 1)[0]).resolve() == Path(path).resolve()
    except OSError:
        return False


class Recorder:
    """Collects the suite's results and reports them at the end of the session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list = []
        #: Setup reports of the suite tests not yet torn down: the report of a test
        #: whose worker died carries neither its properties nor its name.
        self.running: dict[str, pytest.TestReport] = {}
        #: Tests whose worker died: their teardown report is still to be sent.
        self.crashed: set[str] = set()
        #: xdist workers that collected the suite, and the notes the last to finish sent.
        self.collected: set[Any] = set()
        self.worker_notes: dict[str, list[str]] | None = None
        #: Where workers write their stack when the time limit ends them (made on demand).
        self.dumps: Path | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Run a target's suite once: drop the ``--byoc-target`` copy when a test module's
        own suite class already covers that target."""
        covered = {_suite_target(i) for i in items if not _is_selected(i)} - {None}
        if covered:
            items[:] = [i for i in items if not (_is_selected(i) and
                                                 _suite_target(i) in covered)]

    # Last, so that JUnit XML has taken a crash report before the teardown that closes it.
    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if any(key == "byoc.category" for key, _ in report.user_properties):
            from byoc_sdk.conformance.report import result_from

            if report.when == "setup":
                self.running[report.nodeid] = report
            elif report.when == "teardown":
                self.running.pop(report.nodeid, None)
            result = result_from(report)
            if result is not None:
                self.results.append(result)
        if report.nodeid in self.crashed:
            self.crashed.remove(report.nodeid)
            self.config.hook.pytest_runtest_logreport(report=_teardown_after(report))

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport,
                               sched: Any) -> None:
        """xdist's report of a worker that died running ``crashitem``: make it the test's
        failure, filed and worded like the suite's others."""
        setup = self.running.pop(crashitem, None)
        name = crashitem.rpartition("::")[2]
        if setup is not None:
            report.location, report.keywords = setup.location, setup.keywords
            report.user_properties = list(setup.user_properties)
            name = str(dict(report.user_properties)["byoc.id"])
        report.when = "call"  # xdist says "???": the test died in its call, not its setup
        stack = _timeout_stack(report.node)
        if stack:
            target = dict(report.user_properties).get("byoc.target") or self._target()
            report.longrepr = (f"timed out after {shown(self.config.getoption('byoc_timeout'))}"
                               f" while running {name} on target {target}")
            report.sections.append(("stack when the time limit struck", stack))
            _death(report.node)  # reap it, as a crash's is
        else:
            report.longrepr = _crash(report.node, f"running {name}")
        expected = dict(report.user_properties).get("byoc.xfail")
        if expected is not None:  # listed as an expected failure: a crash is one too
            report.outcome = "skipped"
            report.wasxfail = f"{expected} ({report.longrepr})"  # type: ignore[attr-defined]
        self.crashed.add(crashitem)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell a worker about to start where its stack goes if the time limit ends it."""
        if not self.config.getoption("byoc_timeout"):
            return
        if self.dumps is None:
            self.dumps = Path(tempfile.mkdtemp(prefix="byoc-conformance-stacks-"))
        # A replacement worker gets an id of its own: one file each, nothing overwritten.
        node.workerinput[DUMP_KEY] = str(self.dumps / f"{node.gateway.id}.txt")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.dumps is not None:
            shutil.rmtree(self.dumps, ignore_errors=True)

    def _target(self) -> str:
        return self.config.getoption("byoc_target") or "the target"

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.collected.add(node)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """Keep a finished worker's notes; end the run when a worker died before it had
        collected the suite (loading the target crashed): a replacement would too."""
        notes = getattr(node, "workeroutput", {}).get("byoc_notes")
        if notes is not None:
            self.worker_notes = notes
        if error is not None and node not in self.collected:
            during = f"collecting the suite of {self._target()}"
            stack = _timeout_stack(node)
            if stack:
                sys.stderr.write(stack)
                seconds = shown(max(self.config.getoption("byoc_timeout"), COLLECTION_FLOOR))
                pytest.exit(f"byoc: the conformance process timed out after {seconds} while "
                            f"{during} (its stack is above)", returncode=2)
            pytest.exit(f"byoc: the conformance process {_crash(node, during)}", returncode=2)

    def notes(self, name: str) -> list[str]:
        """Expected failures of target ``name`` that matched no test (known where the
        suite was collected: in this process, or in the xdist workers)."""
        if self.worker_notes is not None:
            return self.worker_notes.get(name, [])
        from byoc_sdk.conformance.context import expectations_of

        return [f"expected failure '{e.pattern}' (line {e.line}) matched no test"
                for e in expectations_of(name) if not e.used]

    def reports(self) -> list:
        from byoc_sdk.conformance.report import ConformanceReport, metadata

        reports = []
        for name in dict.fromkeys(r.target for r in self.results):
            results = [r for r in self.results if r.target == name]
            reports.append(ConformanceReport(name, results, metadata(name), self.notes(name)))
        return reports

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.results or _is_worker(self.config):
            return
        for report in self.reports():
            terminalreporter.section(f"byoc conformance: {report.target}")
            terminalreporter.write_line(report.render())

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if _is_worker(self.config):
            # The controller reports; what only the collecting process knows goes to it.
            self.config.workeroutput["byoc_notes"] = {  # type: ignore[attr-defined]
                name: self.notes(name) for name in dict.fromkeys(r.target for r in self.results)}
            return
        path = self.config.getoption("byoc_report")
        if path and self.results:
            from byoc_sdk.conformance.report import write_json

            write_json(self.reports(), Path(path))


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _timeout_stack(node: Any) -> str:
    """The stack a worker wrote when the time limit ended it; "" when it did not (it
    crashed, or no limit was set)."""
    dump = getattr(node, "workerinput", {}).get(DUMP_KEY)
    try:
        return Path(dump).read_text(encoding="utf-8", errors="replace") if dump else ""
    except OSError:
        return ""


def _crash(node: Any, during: str) -> str:
    """``"crashed: SIGSEGV while <during>"``, for an xdist worker that died."""
    cause = _death(node)
    return f"crashed: {cause} while {during}" if cause else f"crashed while {during}"


def _death(node: Any) -> str | None:
    """What ended an xdist worker's process ("SIGSEGV", "exit status 3"); ``None`` where
    that cannot be learnt."""
    # execnet keeps the worker's Popen private; without it the crash is still reported.
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    if not isinstance(popen, subprocess.Popen):
        return None
    try:
        status = popen.wait(timeout=2)  # a crashed process is gone; another may linger
    except subprocess.TimeoutExpired:
        return None
    if status >= 0:
        return f"exit status {status}"
    try:
        return signal.Signals(-status).name
    except ValueError:
        return f"signal {-status}"


def _teardown_after(crash: pytest.TestReport) -> pytest.TestReport:
    """The teardown report a dead worker did not send: JUnit XML closes a test on it and
    only then writes the test's properties."""
    teardown = pytest.TestReport(crash.nodeid, crash.location, crash.keywords, "passed", None,
                                 "teardown", user_properties=crash.user_properties)
    teardown.node = crash.node  # type: ignore[attr-defined]  # JUnit XML pairs reports by it
    return teardown


def _is_selected(item: pytest.Item) -> bool:
    return getattr(item, "path", None) is not None and _same_file(str(item.path),
                                                                  str(SELECTED_SUITE))


def _suite_target(item: pytest.Item) -> str | None:
    """The target a suite test runs on (``None`` for other tests)."""
    cls = getattr(item, "cls", None)
    if cls is None or not any(c.__name__ == "ConformanceSuite" for c in cls.__mro__):
        return None
    return cls.target or item.config.getoption("byoc_target")
