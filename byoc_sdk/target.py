"""``Target``: everything a vendor declares about its chip's support.

A target says which ops it runs (with a check function for the cases it cannot), which
patterns it fuses into composites, how its regions should be shaped, and — later, in
the build step — how its regions are turned into code::

    from byoc_sdk import Target, op, any_input, const, optional

    myaccel = Target("myaccel", version="1.0", priority=10)
    myaccel.support("Relu", "Add", dtypes={"float32"})

    @myaccel.support("Conv", dtypes={"float32"}, const_inputs=(1, 2), static_shapes=True)
    def _conv(node):
        if node.attr("group", 1) != 1:
            return "grouped convolution is not supported"
        return True

    myaccel.pattern("conv_relu", op("Relu", op("Conv", any_input(), const(), optional(const()))))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import onnx_ir as ir

from byoc_sdk.errors import TargetError
from byoc_sdk.node_info import NodeInfo, dtype_name, is_constant
from byoc_sdk.patterns import Match, OpPattern
from partition.policy import DEFAULT_COMPUTE_HEAVY_OPS, RegionPolicy

#: What a check returns: ``True``/``None`` to accept, a string saying why not to decline.
CheckResult = bool | str | None
OpCheck = Callable[[NodeInfo], CheckResult]
PatternCheck = Callable[[Match], CheckResult]

MergeStyle = Literal["regions", "per-op"]
ConstantMode = Literal["bind", "inputs"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Reports call what no target runs "host"; a target of that name would be read as it.
RESERVED_NAMES = frozenset({"host"})


def check_target_name(name: str) -> None:
    """Raise :class:`TargetError` unless ``name`` can name a target."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TargetError(f"target name {name!r} must be lowercase letters, digits and '_', "
                          "starting with a letter")
    if name in RESERVED_NAMES:
        raise TargetError(f"target name {name!r} is reserved: reports use it for what no "
                          "target runs")


@dataclass(frozen=True)
class OpSupport:
    """One op a target runs, and the conditions under which it does.

    ``opsets`` is an inclusive (first, last) range of the op's domain version, ``None``
    for open ends. ``dtypes`` constrains input 0, the data input. ``const_inputs`` must
    be build-time constants (weights); ``static_shapes`` requires every input and output
    shape to be fully known. ``check`` sees the node and returns yes or a reason.
    """

    op_type: str
    domain: str = ""
    opsets: tuple[int | None, int | None] = (None, None)
    dtypes: frozenset[str] | None = None
    const_inputs: tuple[int, ...] = ()
    static_shapes: bool = False
    check: OpCheck | None = None
    note: str = ""

    def covers(self, opset: int | None) -> bool:
        first, last = self.opsets
        if opset is None:
            return True
        return (first is None or opset >= first) and (last is None or opset <= last)

    def evaluate(self, node: NodeInfo, target: str) -> str | None:
        """``None`` if ``node`` is supported, else the reason it is not.

        Reasons name the op, not the tensor, so that reports can group them.
        """
        # Read the IR values directly: this runs for every node of every model.
        values = node.node.inputs
        if self.dtypes is not None:
            dtype = dtype_name(values[0].dtype) if values and values[0] is not None else None
            if dtype not in self.dtypes:
                allowed = ", ".join(sorted(self.dtypes))
                return f"{target} runs {node.op_type} on {allowed}, not {dtype or 'unknown types'}"
        for index in self.const_inputs:
            if index < len(values) and values[index] is not None and not is_constant(values[index]):
                return f"{target} needs input {index} of {node.op_type} to be a constant"
        if self.static_shapes:
            outputs = node.node.outputs
            # The common case (all static) in one pass; say which one is not only on failure.
            if not (_all_static(values) and _all_static(outputs)):
                return _dynamic_reason(target, node.op_type, values, outputs)
        if self.check is None:
            return None
        return _verdict(self.check(node), node.op_type, "check")


def _all_static(values: Sequence[ir.Value | None]) -> bool:
    """True when every present value has a fully known shape."""
    for value in values:
        if value is not None:
            shape = value.shape
            if shape is None or not shape.is_static():
                return False
    return True


#: The words of every reason that declines a node for a dynamic shape: the report counts
#: them to suggest fixing the model's input shapes.
NEEDS_STATIC_SHAPES = "needs static shapes"


def _dynamic_reason(
    target: str, op_type: str, inputs: Sequence[ir.Value | None], outputs: Sequence[ir.Value]
) -> str:
    """The reason naming the first input or output of ``op_type`` without a static shape."""
    for kind, group in (("input", inputs), ("output", outputs)):
        for index, value in enumerate(group):
            if not _all_static((value,)):
                return (f"{target} {NEEDS_STATIC_SHAPES} ({kind} {index} of {op_type} "
                        "is dynamic)")
    raise AssertionError("every shape is static")


@dataclass(frozen=True)
class CompositePattern:
    """A pattern a target fuses into one composite node, with an optional check.

    ``structural`` promises that ``check`` decides from a match's structure alone: its
    ops, wiring and attributes, and the element types, shapes and constness of the values
    it reads and makes, never constant contents or names. Structurally identical
    instances then get one check, whose verdict the others reuse.
    """

    name: str
    pattern: OpPattern
    check: PatternCheck | None = None
    note: str = ""
    structural: bool = False

    def evaluate(self, match: Match) -> str | None:
        if self.check is None:
            return None
        return _verdict(self.check(match), f"pattern {self.name}", "check")


def _verdict(result: CheckResult, subject: str, kind: str) -> str | None:
    """A check's result as a reason (``None`` to accept). ``subject`` and ``kind`` name the
    check in messages; they are joined only when needed, since checks mostly accept."""
    if result is True or result is None:
        return None
    if isinstance(result, str) and result:
        return result
    if result is False:
        return f"{subject} {kind} declined"
    raise TargetError(
        f"{subject} {kind} returned {result!r}; return True, None or a reason string"
    )


@dataclass
class Target:
    """A backend's declaration of what it runs and how its regions are shaped.

    ``priority`` decides between targets that both support a node (higher wins).
    ``merge_style`` "regions" merges supported nodes into large regions (engines such
    as TensorRT), "per-op" makes one region per op or composite (kernel libraries such
    as cuDNN). ``constants`` "bind" puts constant inputs inside the region, "inputs"
    passes them in from the main graph. ``policy`` overrides the default region policy.
    ``codegen`` turns each region into an artifact at build time; ``options`` are its
    defaults.
    """

    name: str
    version: str = "0.0.0"
    description: str = ""
    vendor: str = ""
    priority: int = 0
    merge_style: MergeStyle = "regions"
    constants: ConstantMode = "bind"
    policy: RegionPolicy | None = None
    compute_heavy_ops: frozenset[str] = DEFAULT_COMPUTE_HEAVY_OPS
    ops: dict[tuple[str, str], list[OpSupport]] = field(default_factory=dict)
    patterns: list[CompositePattern] = field(default_factory=list)
    #: Turns a region into an artifact (see byoc_sdk.codegen); None: partition only.
    codegen: Callable[..., object] | None = None
    #: Codegen options (layouts, tile sizes...), overridable per build and per region.
    options: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_target_name(self.name)
        if self.merge_style not in ("regions", "per-op"):
            raise TargetError(
                f"merge_style must be 'regions' or 'per-op', not {self.merge_style!r}",
                target=self.name,
            )
        if self.constants not in ("bind", "inputs"):
            raise TargetError(
                f"constants must be 'bind' or 'inputs', not {self.constants!r}", target=self.name
            )

    @property
    def domain(self) -> str:
        """The ONNX domain of this target's region functions and call nodes."""
        return f"byoc.{self.name}"

    @property
    def composite_domain(self) -> str:
        """The ONNX domain of this target's composite functions."""
        return f"byoc.{self.name}.composite"

    def support(
        self,
        *op_types: str,
        domain: str = "",
        opsets: tuple[int | None, int | None] = (None, None),
        dtypes: Iterable[str] | None = None,
        const_inputs: Iterable[int] = (),
        static_shapes: bool = False,
        check: OpCheck | None = None,
        note: str = "",
    ) -> Callable[[OpCheck], OpCheck]:
        """Declare ops this target runs, optionally with a ``check``.

        Returns a decorator that sets the check instead, so both read well::

            target.support("Relu", "Add", dtypes={"float32"})

            @target.support("Conv", const_inputs=(1,))
            def _conv(node): ...
        """
        if not op_types:
            raise TargetError("support() needs at least one op type", target=self.name)
        if isinstance(dtypes, str):
            raise TargetError(
                f"dtypes must be a collection of type names such as {{{dtypes!r}}}, "
                f"not the string {dtypes!r}",
                target=self.name,
            )
        rules = [
            OpSupport(
                op_type, domain, opsets, frozenset(dtypes) if dtypes is not None else None,
                tuple(const_inputs), static_shapes, check, note,
            )
            for op_type in op_types
        ]
        for rule in rules:
            self.ops.setdefault((rule.domain, rule.op_type), []).append(rule)

        def attach(check: OpCheck) -> OpCheck:
            for rule in rules:
                entries = self.ops[(rule.domain, rule.op_type)]
                # By identity: two declarations may be equal yet distinct rules.
                index = next(i for i, entry in enumerate(entries) if entry is rule)
                entries[index] = replace(rule, check=check)
            return check

        return attach

    def pattern(
        self,
        name: str,
        pattern: OpPattern,
        check: PatternCheck | None = None,
        note: str = "",
        *,
        structural: bool = False,
    ) -> CompositePattern:
        """Declare a composite. Larger patterns are tried first, then in declaration order.

        ``structural=True`` says ``check`` looks only at the match's structure (see
        :class:`CompositePattern`), so its verdict may be reused across instances.
        """
        if not _NAME.match(name):
            raise TargetError(
                f"pattern name {name!r} must be lowercase letters, digits and '_', starting "
                "with a letter", target=self.name,
            )
        if any(p.name == name for p in self.patterns):
            raise TargetError(f"pattern {name!r} is declared twice", target=self.name)
        if not isinstance(pattern, OpPattern):
            raise TargetError(f"pattern {name!r} must be rooted at op(...)", target=self.name)
        composite = CompositePattern(name, pattern, check, note, structural)
        self.patterns.append(composite)
        self.patterns.sort(key=lambda p: -p.pattern.op_count())
        return composite

    def rule_for(self, domain: str, op_type: str, opset: int | None) -> OpSupport | None:
        """The support rule covering this op at this opset, if any."""
        for rule in self.ops.get((domain, op_type), ()):
            if rule.covers(opset):
                return rule
        return None

    def check(self, node: NodeInfo) -> str | None:
        """``None`` if this target runs ``node``, else the reason it does not."""
        rule = self.rule_for(node.domain, node.op_type, node.opset)
        if rule is None:
            known = self.ops.get((node.domain, node.op_type))
            if known:
                return f"{self.name} supports {node.op_type} only at opsets " + ", ".join(
                    _range(r.opsets) for r in known
                )
            return f"{node.op_type} is not supported by {self.name}"
        return rule.evaluate(node, self.name)

    def effective_policy(self, override: RegionPolicy | None) -> RegionPolicy:
        return override or self.policy or RegionPolicy()

    def support_table(self) -> list[Mapping[str, str]]:
        """Rows describing every declared op and pattern, for docs and ``byoc targets``."""
        rows: list[Mapping[str, str]] = []
        for (domain, op_type), rules in sorted(self.ops.items()):
            for rule in rules:
                rows.append(
                    {
                        "kind": "op",
                        "name": f"{domain}::{op_type}" if domain else op_type,
                        "opsets": _range(rule.opsets),
                        "dtypes": ", ".join(sorted(rule.dtypes)) if rule.dtypes else "any",
                        "conditions": _conditions(rule),
                    }
                )
        for composite in self.patterns:
            rows.append(
                {
                    "kind": "pattern",
                    "name": composite.name,
                    "opsets": "",
                    "dtypes": "",
                    "conditions": composite.note or describe_pattern(composite.pattern),
                }
            )
        return rows


def _range(opsets: tuple[int | None, int | None]) -> str:
    first, last = opsets
    if first is None and last is None:
        return "all"
    return f"{first or 1}-{last if last is not None else ''}"


def _conditions(rule: OpSupport) -> str:
    parts = []
    if rule.const_inputs:
        parts.append("constant input " + ", ".join(map(str, rule.const_inputs)))
    if rule.static_shapes:
        parts.append("static shapes")
    if rule.check is not None:
        parts.append(rule.note or "checked")
    elif rule.note:
        parts.append(rule.note)
    return "; ".join(parts)


def describe_pattern(pattern: OpPattern) -> str:
    """A one-line rendering such as ``Relu(Conv(*, const, const?))``."""
    from byoc_sdk.patterns import AnyInput, ConstInput, OptionalInput

    def render(p: object) -> str:
        if isinstance(p, OpPattern):
            inner = ", ".join(render(i) for i in p.inputs)
            return f"{'|'.join(p.op_types)}({inner})"
        if isinstance(p, OptionalInput):
            return render(p.inner) + "?"
        if isinstance(p, ConstInput):
            return p.name or "const"
        if isinstance(p, AnyInput):
            return p.name or "*"
        return "?"

    return render(pattern)
