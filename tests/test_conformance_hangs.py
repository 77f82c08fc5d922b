"""``byoc conformance --timeout``: a check that hangs is one failed check, and the rest run.

The target hangs for real, in the places a vendor's can: its compiled module spins in C
(the runtime releases the GIL around it), and its codegen blocks in C with the GIL held,
where no Python thread or signal handler can run. Made visible to a subprocess the way
an installed package is, as in test_conformance_run.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BYOC = [sys.executable, "-m", "byoc_sdk.cli"]
LIMIT = "2"


def _conformance(folder: Path, target: str, *args: str,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    """``byoc conformance`` in a session of its own: past ``timeout`` the whole session —
    the worker that hangs too, which would spin on orphaned — is killed, and
    ``TimeoutExpired`` raised."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with subprocess.Popen([*BYOC, "conformance", "--target", target, *args], cwd=folder,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def hanging(tmp_path_factory: pytest.TempPathFactory, sabotaged_template) -> Path:
    """The c_source template as generated, but its compiled module loops for good on a
    Relu of six elements, and its codegen waits for good, in C and holding the GIL, on an
    Add of two 2x3 data inputs (the case op[Add-2x3-f32]): ctypes.pythonapi calls keep
    the GIL, and pause() returns only for a caught signal."""
    return sabotaged_template(tmp_path_factory.mktemp("hanging"), "hangacc",
                              "  for (volatile int s = 1; s;) {}",
                              "__import__('ctypes').pythonapi.pause()")


def test_a_hanging_case_is_one_failed_case_and_the_rest_still_run(hanging: Path) -> None:
    report, junit = hanging / "report.json", hanging / "conformance.xml"
    xfail = hanging / "xfail.txt"
    xfail.write_text("op[Add-2x3-f32]: the adder's compiler hangs until version 2\n")
    started = time.monotonic()
    done = _conformance(hanging, "hangacc", "-k", "test_op and (Relu or Add)", "--timeout",
                        LIMIT, "--report", str(report), "--junit", str(junit),
                        "--xfail-file", str(xfail))
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(report.read_text())
    outcomes = {t["id"]: (t["outcome"], t["message"]) for t in data["tests"]}
    assert outcomes.pop("op[Relu-2x3-f32]") == (
        "failed", "timed out after 2 s while running op[Relu-2x3-f32] on target hangacc")
    # A hang listed as an expected failure is one.
    assert outcomes.pop("op[Add-2x3-f32]") == (
        "xfailed", "the adder's compiler hangs until version 2 "
                   "(timed out after 2 s while running op[Add-2x3-f32] on target hangacc)")
    # Every other case ran after the hangs, in replaced processes, and passed.
    assert len(outcomes) >= 5 and {o for o, _ in outcomes.values()} == {"passed"}, outcomes
    assert data["ops"]["Relu"]["failed"] == 1 and data["ops"]["Relu"]["passed"] >= 2
    assert "NOT CONFORMANT" in done.stdout
    assert ("op[Relu-2x3-f32]: timed out after 2 s while running op[Relu-2x3-f32] on target "
            "hangacc") in done.stdout
    # Where it hung is shown under the failure: the innermost frame is the runtime's call
    # into the module.
    section = done.stdout[done.stdout.index("stack when the time limit struck"):]
    assert "Timeout (0:00:02)!" in section and "byoc_sdk/runtime.py" in section
    assert "crashed" not in done.stdout
    xml = junit.read_text()
    case = xml[xml.index('name="test_op[Relu-2x3-f32]"'):]
    case = case[:case.index("</testcase>")]
    assert '<failure message="timed out after 2 s while running op[Relu-2x3-f32]' in case
    assert '<property name="byoc.category" value="op"' in case
    assert took < 60, took  # two limits and two new workers, not a hung run


def test_without_a_limit_the_suite_really_hangs(hanging: Path) -> None:
    # What the limit is for: "--timeout 0" (no limit) sits in the hang until killed.
    with pytest.raises(subprocess.TimeoutExpired):
        _conformance(hanging, "hangacc", "-k", "test_op and Relu-2x3-f32", "--timeout", "0",
                     timeout=8)


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "argument --timeout: must be a number of seconds of at least 0 (0: no limit), "
           "not -1"),
    ("soon", "argument --timeout: expected a number of seconds (0: no limit), got 'soon'"),
    ("nan", "argument --timeout: must be a number of seconds of at least 0 (0: no limit), "
            "not nan"),
])
def test_a_bad_timeout_is_a_usage_error(tmp_path: Path, value: str, message: str) -> None:
    done = subprocess.run([*BYOC, "conformance", "--target", "cpu", "--timeout", value],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(message), done.stderr


def test_a_child_process_of_a_check_is_stopped_before_the_checks_limit() -> None:
    # The check must stop it itself: the limit ends the check's process, not its children.
    from byoc_sdk.conformance.timeout import CaseTimer, activate, time_for

    assert time_for(300) == (300, False)
    timer = CaseTimer(20, open(os.devnull, "w"))  # noqa: SIM115  (close() closes it)
    activate(timer)
    try:
        with timer.limit():
            seconds, limited = time_for(300)
            assert limited and 14 < seconds < 15.1  # 20 s, less a margin of 5
            assert time_for(3) == (3, False)
        assert time_for(300) == (300, False)  # between checks: no limit
    finally:
        activate(None)
        timer.close()
