"""Codegen options in layers: the target's defaults, the build's, a region's tuning.

Options are nested mappings (``{"ops": {"Conv": {"mr": 8}}}``), and each layer refines
the ones before it, so they merge deeply: a tuning record that sets one parameter of one
kernel keeps every other parameter the target or the build chose. A value that is not a
mapping replaces what was there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """``layers`` merged, later ones winning key by key at every depth (``None`` skipped).
    The inputs are never modified; the result shares no mapping with them."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            current = result.get(key)
            if isinstance(value, Mapping) and isinstance(current, Mapping):
                result[key] = merge_options(current, value)
            elif isinstance(value, Mapping):
                result[key] = merge_options(value)
            else:
                result[key] = value
    return result
