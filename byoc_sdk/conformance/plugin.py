"""The byoc conformance pytest plugin (entry point ``pytest11``: ``byoc_conformance``).

Dormant unless asked: it adds the options below, and does nothing else until a run
passes ``--byoc-target NAME`` (which adds the suite for that target to the collection)
or collects a :class:`~byoc_sdk.conformance.ConformanceSuite` subclass. When suite tests
ran it prints the conformance summary and, with ``--byoc-report``, writes it as JSON.

It imports nothing heavy at start-up: every pytest run on a machine with byoc loads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("byoc_target"):
        suite = str(SELECTED_SUITE)
        if not any(_same_file(arg, suite) for arg in config.args):
            config.args.append(suite)
    config.pluginmanager.register(Recorder(config), "byoc-conformance-recorder")


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

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Run a target's suite once: drop the ``--byoc-target`` copy when a test module's
        own suite class already covers that target."""
        covered = {_suite_target(i) for i in items if not _is_selected(i)} - {None}
        if covered:
            items[:] = [i for i in items if not (_is_selected(i) and
                                                 _suite_target(i) in covered)]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not any(key == "byoc.category" for key, _ in report.user_properties):
            return
        from byoc_sdk.conformance.report import result_from

        result = result_from(report)
        if result is not None:
            self.results.append(result)

    def reports(self) -> list:
        from byoc_sdk.conformance.context import expectations_of
        from byoc_sdk.conformance.report import ConformanceReport, metadata

        reports = []
        for name in dict.fromkeys(r.target for r in self.results):
            results = [r for r in self.results if r.target == name]
            notes = [f"expected failure '{e.pattern}' (line {e.line}) matched no test"
                     for e in expectations_of(name) if not e.used]
            reports.append(ConformanceReport(name, results, metadata(name), notes))
        return reports

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.results:
            return
        for report in self.reports():
            terminalreporter.section(f"byoc conformance: {report.target}")
            terminalreporter.write_line(report.render())

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("byoc_report")
        if path and self.results:
            from byoc_sdk.conformance.report import write_json

            write_json(self.reports(), Path(path))


def _is_selected(item: pytest.Item) -> bool:
    return getattr(item, "path", None) is not None and _same_file(str(item.path),
                                                                  str(SELECTED_SUITE))


def _suite_target(item: pytest.Item) -> str | None:
    """The target a suite test runs on (``None`` for other tests)."""
    cls = getattr(item, "cls", None)
    if cls is None or not any(c.__name__ == "ConformanceSuite" for c in cls.__mro__):
        return None
    return cls.target or item.config.getoption("byoc_target")
