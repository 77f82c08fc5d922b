"""Where each node goes and why: the record every pass reads and extends.

Nothing is silent: every node of the main graph carries a :class:`Decision` in its
``meta`` from annotation on, and the partitioned model keeps it in ``metadata_props``
so Netron and ``byoc partition --explain`` can show it.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

DECISION_KEY = "byoc.decision"
COMPOSITE_KEY = "byoc.composite"
#: ``metadata_props`` key naming the pattern a composite call node instantiates.
PATTERN_KEY = "byoc.pattern"
#: ``metadata_props`` key listing (comma-separated) the original nodes a composite replaced.
MEMBERS_KEY = "byoc.members"
HOST = "host"


@dataclass
class Decision:
    """``target`` is ``None`` for the host. ``reason`` explains the choice; for a host
    node it lists why each target declined.

    ``fallbacks`` are the other targets that accept the node, next in priority order:
    where the node goes if its target's region policy drops it; ``dropped`` says, for
    each time that happened, which target and rule dropped it.
    """

    target: str | None
    reason: str
    region: str | None = None
    fallbacks: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompositeInfo:
    """What a composite call node stands for: the original nodes it fused."""

    target: str
    pattern: str
    nodes: tuple[ir.Node, ...]

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(n.name or n.op_type for n in self.nodes)

    @property
    def member_ops(self) -> tuple[str, ...]:
        return tuple(n.op_type for n in self.nodes)


# Both read ``node.meta.data`` directly: the store is a ``collections.UserDict``, whose
# ``get`` finds a missing key by raising and catching ``KeyError``, and every pass asks
# every node.


def decision_of(node: ir.Node) -> Decision | None:
    return node.meta.data.get(DECISION_KEY)


def composite_of(node: ir.Node) -> CompositeInfo | None:
    return node.meta.data.get(COMPOSITE_KEY)


def placed_on(node: ir.Node) -> str | None:
    """The target a node was annotated with; ``None`` for the host or unannotated."""
    decision = decision_of(node)
    return decision.target if decision else None
