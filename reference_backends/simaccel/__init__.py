"""simaccel: the bundled simulated accelerator target, with its compiler and runtime.

Importing this package imports nothing else: the runtime (``.runtime``, what a package
needs to run) must load without the target's declarations or its compiler. Names are
resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# The target itself is `reference_backends.simaccel.target.target`: a package attribute
# of that name would be shadowed by the submodule once it is imported.
_LAZY = {
    "compile_region": "reference_backends.simaccel.target",
    "LIMITS": "reference_backends.simaccel.limits",
    "SimAccelLimits": "reference_backends.simaccel.limits",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
