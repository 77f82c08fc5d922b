"""Shared fixtures. Test modules are imported in importlib mode and cannot import each
other, so anything shared lives here as a fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from byoc_sdk import Target


@pytest.fixture
def make_target() -> Callable[..., Target]:
    """``make_target(name, ops, priority=0, **target_fields)``: a target that supports
    ``ops`` (op types, float32) with no further conditions."""

    def make(name: str, ops: Iterable[str], priority: int = 0, **fields) -> Target:
        target = Target(name, priority=priority, **fields)
        ops = list(ops)
        if ops:
            target.support(*ops)
        return target

    return make
