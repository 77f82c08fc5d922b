"""simaccel: the bundled simulated accelerator target, with its compiler and runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_backends.simaccel.limits import LIMITS, SimAccelLimits
from reference_backends.simaccel.target import target

if TYPE_CHECKING:
    from byoc_sdk.codegen import Binary, Region


def compile_region(region: Region) -> Binary:
    """simaccel's codegen (:func:`reference_backends.simaccel.compiler.compile_region`),
    imported on first use so that loading the runtime alone never loads the compiler."""
    from reference_backends.simaccel.compiler import compile_region as compile_

    return compile_(region)


target.codegen = compile_region

__all__ = ["LIMITS", "SimAccelLimits", "compile_region", "target"]
