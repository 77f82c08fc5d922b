"""Exception types of the SDK.

Every error a user can cause derives from :class:`ByocError` and renders as one line
that names what went wrong and where: the file, the model node, the target and the
region, whichever apply. The command line prints that line and exits with code 2.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

#: Where the tracebacks of vendor code that byoc turns into a reason and goes on from (a
#: check or a codegen that raised) are logged, at DEBUG: the report keeps one line, and
#: ``byoc --debug`` shows the whole story on stderr.
vendor_log = logging.getLogger("byoc.vendor")


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
        return one_line(f"{where}: {self.reason}" if where else self.reason)


#: Control characters: a line break in a node name (names are any string) would split
#: an error line or a report line in two.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped as Python writes them (``\\n``)."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` (or ``Type`` alone when it has no message), for reports: one line,
    since reports and errors keep to one a node, step or region. A message of several
    lines (pybind11's argument lists, a vendor's own) keeps its first and says how many
    follow; ``--debug`` and the ``byoc.vendor`` log show them all."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    rest = len(lines) - 1
    more = f" (and {rest} more line{'s' if rest > 1 else ''})" if rest else ""
    return f"{type(exc).__name__}: {lines[0]}{more}"


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


class ModuleError(ByocError):
    """A region's compiled module or vendor runtime failed to load: the library does not
    open or keep the contract its artifact states (a region that lists constants but
    whose library exports no ``<entry>_init`` to take them), or the vendor runtime
    refuses its artifact. A build falls back to the host for it; loading a package
    raises it, naming the region and target."""


class OnnxRuntimeError(ByocError):
    """onnxruntime refused a model that byoc's checks (onnx's) accepted: the host step it
    was to run, or a reference model to check against; or it failed running a host step
    (the cause of that step's ``StepError``)."""


#: onnxruntime's status prefix, "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : ".
_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
#: A C++ source location and the function signature after it, which onnxruntime puts
#: in front of a kernel's own words ("/onnxruntime_src/.../upsamplebase.h:370
#: onnxruntime::UpsampleMode onnxruntime::UpsampleBase::StringToUpsampleMode(const
#: std::string&) mode attribute is bogus..."); left in place if the signature is odd.
_CXX_WHERE = re.compile(
    r"/\S+\.(?:h|hpp|cc|cpp|cu|cuh):\d+ (?:[^()\s][^()]*\([^()]*\)(?: const)? )?"
)


def onnxruntime_reason(exc: BaseException) -> str:
    """The reason onnxruntime gave in ``exc``, for an error line: its first non-empty
    line, without the status prefix or the C++ source location (``--debug`` still shows
    the whole message in the traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return describe_exception(exc)
    return _CXX_WHERE.sub("", _ORT_STATUS.sub("", lines[0])).strip() or lines[0]
