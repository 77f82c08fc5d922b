"""A small pattern language for composites: sub-graphs a target runs as one fused unit.

A pattern is a tree rooted at the node whose output the composite produces::

    x, w, b = any_input("x"), const("w"), const("b")
    conv_relu = op("Relu", op("Conv", x, w, optional(b)))
    act = op(("Relu", "Clip", "Sigmoid"), any_input())      # alternatives
    swish = op("Mul", x, op("Sigmoid", x), commutative=True)  # a named input used twice

Rules a match obeys:

* an op node matches when its type is one of the alternatives, its domain matches, its
  ``attrs`` are equal and its ``where`` predicate holds;
* the node must have no more inputs than the pattern lists (omitted inputs only where
  the pattern says ``optional``);
* a named input binds once: every use of the name must see the same value;
* multi-use rule: an inner node's outputs may not be used outside the match, since the
  composite would hide them (and a user feeding back into the composite would make a
  cycle). ``allow_external_uses=True`` on that op exports the value instead, and the
  matcher still refuses any match that would close a cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from byoc_sdk.errors import PatternError
from byoc_sdk.node_info import NodeInfo, is_constant
from partition.outline import boundary


class Pattern:
    """Base of pattern elements; build them with :func:`op`, :func:`any_input`,
    :func:`const` and :func:`optional`."""

    def op_count(self) -> int:
        return 0

    def walk(self) -> Iterator[Pattern]:
        yield self


@dataclass(frozen=True, eq=False)
class AnyInput(Pattern):
    """Any value: a graph input, a constant, or the output of any node."""

    name: str | None = None


@dataclass(frozen=True, eq=False)
class ConstInput(Pattern):
    """A value known at build time (an initializer), optionally with a predicate on it."""

    name: str | None = None
    where: Callable[[np.ndarray], bool] | None = None


@dataclass(frozen=True, eq=False)
class OptionalInput(Pattern):
    """An input the node may omit; when present it must match ``inner``."""

    inner: Pattern

    def op_count(self) -> int:
        return self.inner.op_count()

    def walk(self) -> Iterator[Pattern]:
        yield self
        yield from self.inner.walk()


@dataclass(frozen=True, eq=False)
class OpPattern(Pattern):
    """A node of one of ``op_types`` whose inputs match ``inputs`` in order."""

    op_types: tuple[str, ...]
    inputs: tuple[Pattern, ...]
    domain: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    where: Callable[[NodeInfo], bool] | None = None
    commutative: bool = False
    allow_external_uses: bool = False
    name: str | None = None

    def op_count(self) -> int:
        return 1 + sum(p.op_count() for p in self.inputs)

    def walk(self) -> Iterator[Pattern]:
        yield self
        for pattern in self.inputs:
            yield from pattern.walk()


def op(
    op_types: str | Sequence[str],
    *inputs: Pattern,
    domain: str = "",
    attrs: Mapping[str, Any] | None = None,
    where: Callable[[NodeInfo], bool] | None = None,
    commutative: bool = False,
    allow_external_uses: bool = False,
    name: str | None = None,
) -> OpPattern:
    """A node pattern. ``op_types`` is one type or a sequence of alternatives.

    ``attrs`` are required attribute values; ``where`` is any predicate on the node;
    ``commutative`` also tries the two inputs of a binary op swapped; ``name`` lets a
    pattern check find the node in the match.
    """
    types = (op_types,) if isinstance(op_types, str) else tuple(op_types)
    if not types or not all(isinstance(t, str) and t for t in types):
        raise PatternError(f"op types must be non-empty strings, got {op_types!r}")
    if commutative and len(inputs) != 2:
        raise PatternError(f"commutative needs exactly two inputs, {types} has {len(inputs)}")
    for pattern in inputs:
        if not isinstance(pattern, Pattern):
            raise PatternError(f"inputs of {types} must be patterns, got {pattern!r}")
    return OpPattern(
        types,
        tuple(inputs),
        domain,
        dict(attrs or {}),
        where,
        commutative,
        allow_external_uses,
        name,
    )


def any_input(name: str | None = None) -> AnyInput:
    """Any value. Named inputs must bind to the same value wherever the name appears."""
    return AnyInput(name)


def const(name: str | None = None, where: Callable[[np.ndarray], bool] | None = None) -> ConstInput:
    """A constant (initializer) input, optionally with a predicate on its numpy value."""
    return ConstInput(name, where)


def optional(inner: Pattern) -> OptionalInput:
    """An input the node may leave out (such as Conv's bias)."""
    return OptionalInput(inner)


@dataclass
class Match:
    """One place a pattern matched.

    ``nodes`` are in the graph's order (the root last); ``inputs`` are the values
    flowing in, in first-use order; ``outputs`` the values the composite must produce,
    in node order.
    """

    pattern: OpPattern
    root: ir.Node
    nodes: list[ir.Node]
    inputs: list[ir.Value]
    outputs: list[ir.Value]
    bindings: dict[str, ir.Value | ir.Node]
    opset_of: Callable[[ir.Node], int | None] = lambda _node: None

    def info(self, name: str) -> NodeInfo:
        """The :class:`~byoc_sdk.node_info.NodeInfo` of the op pattern named ``name``,
        with its opset, as a target's op checks expect."""
        node = self.node(name)
        return NodeInfo(node, self.opset_of(node))

    def node(self, name: str) -> ir.Node:
        """The node bound to an op pattern's ``name``."""
        found = self.bindings.get(name)
        if not isinstance(found, ir.Node):
            raise KeyError(f"no op pattern named {name!r} in this match")
        return found

    def value(self, name: str) -> ir.Value:
        """The value bound to an input pattern's ``name``."""
        found = self.bindings.get(name)
        if not isinstance(found, ir.Value):
            raise KeyError(f"no input pattern named {name!r} in this match")
        return found


class _Attempt:
    """State of one match attempt; copied on branches the matcher may undo."""

    __slots__ = ("bindings", "external", "nodes")

    def __init__(self) -> None:
        self.nodes: dict[ir.Node, OpPattern] = {}  # each matched node, and by which element
        self.bindings: dict[str, ir.Value | ir.Node] = {}
        self.external: set[ir.Node] = set()  # inner nodes allowed to export their outputs

    def copy(self) -> _Attempt:
        other = _Attempt()
        other.nodes = dict(self.nodes)
        other.bindings = dict(self.bindings)
        other.external = set(self.external)
        return other

    def restore(self, other: _Attempt) -> None:
        """Take over the state of ``other`` (a copy that took another branch)."""
        self.nodes, self.bindings, self.external = other.nodes, other.bindings, other.external


class Matcher:
    """Matches patterns rooted at nodes of one graph.

    ``claimed`` nodes (already inside another composite) never match again;
    ``position`` gives each node's place in topological order, to bound cycle checks;
    ``opset_of`` resolves a node's opset for ``where`` predicates.
    """

    def __init__(
        self,
        graph: ir.Graph,
        position: Mapping[ir.Node, int],
        claimed: set[ir.Node],
        opset_of: Callable[[ir.Node], int | None],
    ) -> None:
        self.graph = graph
        self.position = position
        self.claimed = claimed
        self.opset_of = opset_of

    def match(self, pattern: OpPattern, root: ir.Node) -> Match | None:
        attempt = _Attempt()
        if not self._match_node(pattern, root, attempt):
            return None
        nodes = sorted(attempt.nodes, key=self.position.__getitem__)
        inputs, outputs = boundary(nodes)
        exported = [v for v in outputs if v.producer() is not root]
        if any(v.producer() not in attempt.external for v in exported):
            return None
        if exported and self._closes_cycle(nodes, attempt.nodes):
            return None
        return Match(pattern, root, nodes, inputs, outputs, attempt.bindings, self.opset_of)

    def _match_node(self, pattern: OpPattern, node: ir.Node, attempt: _Attempt) -> bool:
        seen = attempt.nodes.get(node)
        if seen is pattern:
            return True  # the same pattern element, reached again through another branch
        # The op type first: it is what rejects most candidates.
        if (
            node.op_type not in pattern.op_types
            or node.domain != pattern.domain
            or node in self.claimed
            or node.graph is not self.graph
        ):
            return False
        for key, expected in pattern.attrs.items():
            value = _attribute(node, key, self.opset_of(node))
            if value is _MISSING or _plain(value) != _plain(expected):
                return False
        if pattern.where is not None and not pattern.where(NodeInfo(node, self.opset_of(node))):
            return False
        values = node.inputs
        given = len(values)  # not counting omitted trailing inputs
        while given and values[given - 1] is None:
            given -= 1
        if given > len(pattern.inputs):
            return False
        if seen is None:
            attempt.nodes[node] = pattern
            if pattern.allow_external_uses:
                attempt.external.add(node)
        # else: another pattern element matched this node already; it must fit this one
        # as well, inputs included, or the match would claim a structure that is not there.
        if pattern.name is not None:
            attempt.bindings[pattern.name] = node
        # Only a commutative op backtracks, so only it pays for a copy of the state; a
        # failed attempt may leave bindings behind, which its caller then discards.
        swapped = attempt.copy() if pattern.commutative else None
        if self._match_inputs(pattern.inputs, values, attempt):
            return True
        if swapped is not None and self._match_inputs(pattern.inputs[::-1], values, swapped):
            attempt.restore(swapped)
            return True
        return False

    def _match_inputs(
        self, patterns: Sequence[Pattern], values: Sequence[ir.Value | None], attempt: _Attempt
    ) -> bool:
        for index, pattern in enumerate(patterns):
            value = values[index] if index < len(values) else None
            if isinstance(pattern, OptionalInput):
                if value is None:
                    continue
                pattern = pattern.inner
            if value is None or not self._match_value(pattern, value, attempt):
                return False
        return True

    def _match_value(self, pattern: Pattern, value: ir.Value, attempt: _Attempt) -> bool:
        if isinstance(pattern, OpPattern):
            producer = value.producer()
            return producer is not None and self._match_node(pattern, producer, attempt)
        if isinstance(pattern, ConstInput):
            if not is_constant(value):
                return False
            if pattern.where is not None and not pattern.where(value.const_value.numpy()):
                return False
        name = getattr(pattern, "name", None)
        if name is not None:
            bound = attempt.bindings.setdefault(name, value)
            return bound is value
        return True

    def _closes_cycle(self, nodes: list[ir.Node], inside: Mapping[ir.Node, None]) -> bool:
        """True if some path leaves the match and comes back into it.

        Only nodes placed before the match's last node can lead back into it, which
        bounds the search.
        """
        limit = self.position[nodes[-1]]
        frontier = [
            user
            for node in nodes
            for value in node.outputs
            for user, _ in value.uses()
            if user not in inside and user.graph is self.graph
        ]
        seen: set[ir.Node] = set()
        while frontier:
            node = frontier.pop()
            if node in seen or self.position.get(node, limit) >= limit:
                continue
            seen.add(node)
            for value in node.outputs:
                for user, _ in value.uses():
                    if user in inside:
                        return True
                    frontier.append(user)
        return False


_MISSING = object()


def _attribute(node: ir.Node, name: str, opset: int | None) -> Any:
    """An attribute's value, or the default its op's schema gives, else ``_MISSING``."""
    attr = node.attributes.get(name)
    if attr is not None:
        return attr.value
    return _schema_default(node.op_type, node.domain, opset, name)


@functools.cache
def _schema_default(op_type: str, domain: str, opset: int | None, name: str) -> Any:
    try:
        schema = onnx.defs.get_schema(
            op_type, opset if opset is not None else onnx.defs.onnx_opset_version(), domain
        )
    except onnx.defs.SchemaError:
        return _MISSING
    attribute = schema.attributes.get(name)
    if attribute is None or attribute.default_value.type == onnx.AttributeProto.UNDEFINED:
        return _MISSING
    value = onnx.helper.get_attribute_value(attribute.default_value)
    # Protobuf keeps strings as bytes; onnx_ir (and patterns) use str.
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def _plain(value: Any) -> Any:
    """Attribute values compare by content: sequences as tuples, tensors as lists."""
    if isinstance(value, ir.TensorProtocol):
        return value.numpy().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return tuple(value)
    return value
