"""The per-check time limit: ``byoc conformance --timeout SECONDS`` (``--byoc-timeout``).

A check that hangs (a compiled module stuck in a loop, a deadlocked vendor runtime, a
codegen that never returns) must become one failed check, not a CI job killed with no
report. The limit is enforced by ending the process the check runs in — an xdist worker
under ``byoc conformance`` — which the crash handling then reports and replaces.

How the process ends it, and why not pytest-timeout:

* Python code cannot stop a C loop that never returns to the interpreter, so a
  ``SIGALRM`` handler (pytest-timeout's "signal" method) never runs in exactly the case
  this is for.
* A Python timer thread (pytest-timeout's "thread" method, which then calls
  ``os._exit``) needs the GIL to run, and a vendor module that loops or waits with the
  GIL held (a pybind11 or ``ctypes.PyDLL`` call that does not release it, a deadlock on
  a lock taken under it) never lets it have it. Its ``os._exit(1)`` would also look, to
  the controller, like a vendor module calling ``exit(1)``.
* :func:`faulthandler.dump_traceback_later` runs a C thread that needs no GIL: at the
  limit it writes every thread's Python stack and calls ``_exit(1)``. Written to a file
  of the worker's own (named by the controller), the stack tells the controller that the
  worker timed out, not crashed, and where it was; the controller files the check as
  "timed out after N s while running op[...] on target T" and shows the stack under it.

The limit covers each suite check's set-up, call and tear-down. In a worker the
collection is timed too (a target whose import never returns), with at least
:data:`COLLECTION_FLOOR` seconds: it imports onnxruntime and the target and generates every
case, which takes seconds, far more than one check. faulthandler has one such timer
per process: pytest's ``faulthandler_timeout`` uses the same one, so the two cannot be
combined.
"""

from __future__ import annotations

import argparse
import faulthandler
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

#: ``byoc conformance``'s limit. Generous, for it is there to catch hangs, not slow
#: checks (a reference target's take well under a second each), and longer than the
#: fresh-process check's own limit, which then reports its hang with its own words.
DEFAULT_TIMEOUT = 600.0
#: The least time the collection gets, whatever the limit of a check.
COLLECTION_FLOOR = 60.0
#: The key of an xdist worker's ``workerinput`` naming the file its stack goes to.
DUMP_KEY = "byoc_timeout_dump"
#: The shortest limit faulthandler's timer is given (it rounds to microseconds, and 0
#: would mean "no limit" to nobody's benefit).
SHORTEST = 0.001


def seconds_option(text: str) -> float | None:
    """A ``--timeout`` value: a number of seconds, at least 0; 0 means no limit (``None``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds (0: no limit), got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds of at least 0 (0: no limit), not {text}")
    return value or None


def shown(seconds: float) -> str:
    """``2`` -> ``"2 s"``, ``1.5`` -> ``"1.5 s"``."""
    return f"{seconds:g} s"


@dataclass
class CaseTimer:
    """Ends the process it runs in, after writing its stack to ``dump``, when what runs
    under :meth:`limit` takes longer than ``seconds``."""

    seconds: float
    dump: IO[str]
    #: When the check running now must end (``time.monotonic()``); ``None`` between checks.
    deadline: float | None = field(default=None, init=False)

    @contextmanager
    def limit(self, seconds: float | None = None) -> Iterator[None]:
        """Time what runs inside: ``seconds``, by default the timer's own."""
        seconds = self.seconds if seconds is None else seconds
        self.deadline = time.monotonic() + seconds
        faulthandler.dump_traceback_later(max(seconds, SHORTEST), exit=True, file=self.dump)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.deadline = None

    def left(self) -> float | None:
        """Seconds left to the check running now (``None``: no check is timed)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def close(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        self.dump.close()


#: The timer of this process, while one is in effect (see :func:`time_for`).
_ACTIVE: list[CaseTimer] = []


def activate(timer: CaseTimer | None) -> None:
    _ACTIVE[:] = [timer] if timer is not None else []


def time_for(wanted: float) -> tuple[float, bool]:
    """How long a child process the check starts may run: ``wanted`` seconds, or less
    where the check's time limit comes first (then ``True``). The check must stop the
    child itself: once the limit ends this process, nobody would, and the child would
    run on, orphaned, for good."""
    left = _ACTIVE[0].left() if _ACTIVE else None
    if left is None:
        return wanted, False
    # Leave the check a moment to stop the child and report before the limit strikes.
    margin = min(5.0, left / 4)
    if left - margin < wanted:
        return max(left - margin, SHORTEST), True
    return wanted, False
