"""A tiny C writer: lines, indented blocks, loops and literals.

The kernels emit C through this class only, so indentation, pragma placement and the
spelling of numbers are the same everywhere and no kernel formats braces by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_INDENT = "  "


class CWriter:
    """Accumulates C source text with indentation."""

    def __init__(self, depth: int = 0) -> None:
        self._lines: list[str] = []
        self._depth = depth

    def line(self, text: str = "") -> None:
        """One line at the current indentation (``""`` for an empty line)."""
        self._lines.append(f"{_INDENT * self._depth}{text}" if text else "")

    def lines(self, text: str) -> None:
        """Several lines, each indented (a block of text written as one string)."""
        for line in text.strip("\n").splitlines():
            self.line(line)

    def comment(self, text: str) -> None:
        """``/* text */``, one per line; a ``*/`` inside (from a node name) is defused."""
        for line in text.replace("*/", "* /").splitlines():
            self.line(f"/* {line} */" if line else "")

    def pragma(self, text: str) -> None:
        """A pragma; empty text writes nothing (so callers can pass optional pragmas)."""
        if text:
            self.line(f"#pragma {text}")

    @contextmanager
    def block(self, header: str = "", end: str = "}") -> Iterator[None]:
        """``header {`` ... ``}``; a bare ``{`` ... ``}`` scope when header is empty."""
        self.line(f"{header} {{" if header else "{")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.line(end)

    @contextmanager
    def loop(
        self,
        var: str,
        stop: int | str,
        *,
        start: int | str = 0,
        step: int | str = 1,
        pragma: str = "",
        ctype: str = "long",
    ) -> Iterator[None]:
        """``for (ctype var = start; var < stop; var += step)`` with an optional pragma."""
        self.pragma(pragma)
        increment = f"++{var}" if str(step) == "1" else f"{var} += {step}"
        with self.block(f"for ({ctype} {var} = {start}; {var} < {stop}; {increment})"):
            yield

    def extend(self, other: CWriter) -> None:
        """Append another writer's lines, re-indented to this writer's depth."""
        for line in other._lines:
            self._lines.append(f"{_INDENT * self._depth}{line}" if line else "")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def float_literal(value: float) -> str:
    """A C float literal that is exactly ``value`` rounded to float32."""
    single = float(np.float32(value))
    if math.isnan(single):
        return "NAN"
    if math.isinf(single):
        return "INFINITY" if single > 0 else "(-INFINITY)"
    text = str(np.float32(single))  # the shortest decimal that reads back exactly
    if not any(ch in text for ch in ".en"):
        text += ".0"
    text += "f"
    return f"({text})" if single < 0 else text


def c_identifier(name: str, prefix: str = "v") -> str:
    """A C identifier derived from an ONNX name (letters, digits and '_' only)."""
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name)
    if not cleaned or not (cleaned[0].isalpha() or cleaned[0] == "_"):
        cleaned = f"{prefix}_{cleaned}"
    return cleaned


def int_list(values: list[int] | tuple[int, ...]) -> str:
    """``{1, 2, 3}`` for a C initializer."""
    return "{" + ", ".join(str(int(v)) for v in values) + "}"
