"""A vendor's expected conformance failures: one test-id pattern and its reason a line.

The file (``conformance_xfail.txt`` beside the target's module, or ``--byoc-xfail-file``)
reads::

    # comments and blank lines are ignored
    backend[test_matmul_4d]: 4-D batched MatMul waits for the v2 firmware
    op[Conv-dilated-*]: dilation is emulated and off by one ULP
    package[runtime-only]: our runtime still imports the compiler

An id is what the report shows (``op[...]``, ``backend[...]``, ``model[...]``...); ``*``
matches any characters, nothing else is special. Every entry needs a reason: an
expected failure nobody can explain is a failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


class ExpectationError(ValueError):
    """The expected-failures file is malformed (its path and line are in the message)."""


@dataclass
class Expectation:
    pattern: str
    reason: str
    line: int
    regex: re.Pattern[str] = field(repr=False, default=re.compile(""))
    used: bool = False

    def matches(self, test_id: str) -> bool:
        return self.regex.fullmatch(test_id) is not None


def read_expectations(path: Path) -> list[Expectation]:
    """The entries of an expected-failures file; raises :class:`ExpectationError`."""
    found = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # The id ends at the first "]: " (ids contain ':' and ']' only as "...]").
        head, sep, reason = line.partition("]:")
        if not sep or "[" not in head:
            raise ExpectationError(f"{path}:{number}: expected 'KIND[ID]: reason', got {raw!r}")
        pattern, reason = head.strip() + "]", reason.strip()
        if not reason:
            raise ExpectationError(f"{path}:{number}: {pattern} needs a reason")
        regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
        found.append(Expectation(pattern, reason, number, regex))
    return found


def expectation_for(expectations: list[Expectation], test_id: str) -> Expectation | None:
    """The first entry matching ``test_id`` (marked used), or ``None``."""
    for entry in expectations:
        if entry.matches(test_id):
            entry.used = True
            return entry
    return None
