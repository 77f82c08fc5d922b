"""Exception types of the SDK.

Every error a user can cause derives from :class:`ByocError` and renders as one line
that names what went wrong and where: the file, the model node, the target and the
region, whichever apply. The command line prints that line and exits with code 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ErrorContext:
    """Where an error happened. Empty fields are left out of the message."""

    file: str | None = None
    node: str | None = None
    target: str | None = None
    region: str | None = None

    def describe(self) -> str:
        parts = []
        if self.file:
            parts.append(f"file {self.file}")
        if self.node:
            parts.append(f"node {self.node}")
        if self.target:
            parts.append(f"target {self.target}")
        if self.region:
            parts.append(f"region {self.region}")
        return ", ".join(parts)


class ByocError(Exception):
    """Base class of every error the SDK raises on bad input."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        node: str | None = None,
        target: str | None = None,
        region: str | None = None,
    ) -> None:
        self.reason = message
        self.context = ErrorContext(file=file, node=node, target=target, region=region)
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.context.describe()
        return f"{where}: {self.reason}" if where else self.reason


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` (or ``Type`` alone when it has no message), for reports."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ModelLoadError(ByocError):
    """The model could not be read or is not a valid ONNX model."""


class ModelNotFoundError(ModelLoadError):
    """The model file does not exist."""


class NotOnnxError(ModelLoadError):
    """The bytes are not an ONNX model at all."""


class TruncatedModelError(ModelLoadError):
    """The file starts like an ONNX model but ends early."""


class InvalidGraphError(ModelLoadError):
    """The graph is not well formed: a cycle, an input nobody produces, a failed check."""


class GraphCycleError(InvalidGraphError):
    """The graph's nodes depend on each other in a loop."""


class DanglingInputError(InvalidGraphError):
    """A node reads a value that no node, graph input or initializer produces."""


class UnsupportedVersionError(ModelLoadError):
    """The model's IR version or opset is newer than the installed onnxruntime runs."""


class TargetError(ByocError):
    """A target is unknown, fails to load, or declares its support inconsistently."""


class PatternError(ByocError):
    """A composite pattern is malformed."""


class PartitionError(ByocError):
    """A pass could not produce a valid partitioned model."""
