"""Vendor runtimes: the classes that load JSON and binary artifacts and run them.

A vendor runtime is the run-time half of a target. It is registered apart from the
target (entry-point group ``byoc.runtimes``), so a package runs where only the runtime
is installed, not the codegen::

    class MyAccelRuntime(VendorRuntime):
        name = "myaccel"

        def __init__(self, artifact, constants, signature):   # load once
            self.program = compile_for_device(artifact.data, constants)

        def run(self, inputs):                                 # run many times
            return self.program.execute(inputs)

The constructor receives the artifact (:class:`~byoc_sdk.codegen.JsonGraph` or
:class:`~byoc_sdk.codegen.Binary`), the constants it listed (name -> numpy array) and
the region's :class:`RegionSignature`. ``run`` takes the inputs as numpy arrays in the
signature's order and returns the outputs likewise. Runtimes that may run from several
threads at once set ``thread_safe = True``; byoc serialises calls to the others.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

from byoc_sdk.codegen import Binary, JsonGraph, TensorSpec
from byoc_sdk.errors import ByocError

ENTRY_POINT_GROUP = "byoc.runtimes"


class RuntimeNotFoundError(ByocError):
    """No vendor runtime of the name an artifact asks for is installed."""


@dataclass(frozen=True)
class RegionSignature:
    """What a runtime knows of a region without its codegen: names, inputs, outputs."""

    region: str
    target: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class VendorRuntime(ABC):
    """Base class of vendor runtimes; see the module documentation."""

    name: ClassVar[str]
    thread_safe: ClassVar[bool] = False

    @abstractmethod
    def __init__(
        self,
        artifact: JsonGraph | Binary,
        constants: Mapping[str, np.ndarray],
        signature: RegionSignature,
    ) -> None: ...

    @abstractmethod
    def run(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]: ...

    def stats(self) -> Mapping[str, Any]:
        """Statistics of the last run (cycles, bytes moved...), shown in profiles."""
        return {}


_lock = threading.Lock()
_registered: dict[str, type[VendorRuntime]] = {}


def register_runtime(cls: type[VendorRuntime], *, replace: bool = False) -> type[VendorRuntime]:
    """Make a runtime class available in this process (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, VendorRuntime)):
        raise TypeError(f"{cls!r} is not a VendorRuntime subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    with _lock:
        if not replace and name in _registered and _registered[name] is not cls:
            raise ByocError(f"a runtime named '{name}' is already registered")
        _registered[name] = cls
    return cls


def get_runtime(name: str) -> type[VendorRuntime]:
    """The runtime class called ``name``: registered in-process, else by entry point."""
    with _lock:
        if name in _registered:
            return _registered[name]
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        known = sorted(set(found) | set(_registered)) or ["none"]
        raise RuntimeNotFoundError(
            f"no vendor runtime '{name}' is installed (installed: {', '.join(known)}); "
            "install the target's runtime package"
        )
    try:
        cls = found[name].load()
    except Exception as exc:  # a vendor package can fail in any way while importing
        raise RuntimeNotFoundError(
            f"runtime '{name}' failed to load from '{found[name].value}': "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return register_runtime(cls, replace=True)
