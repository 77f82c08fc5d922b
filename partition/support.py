"""Asking a target whether it runs one node.

MergeComposite and AnnotateTarget both ask: annotation to place plain nodes, and
MergeComposite to keep a lower-priority target's pattern off nodes that a
higher-priority target accepts on their own (priority decides between targets that
both accept a node, fused or not).
"""

from __future__ import annotations

import onnx_ir as ir

from byoc_sdk.errors import ByocError, describe_exception, vendor_log
from byoc_sdk.node_info import NodeInfo
from byoc_sdk.target import Target


def opset_of(model: ir.Model, node: ir.Node) -> int | None:
    """The opset a node runs at: its domain's version in the model."""
    domain = node.domain or ""
    version = model.opset_imports.get(domain)
    if version is None and domain in ("", "ai.onnx"):
        version = model.opset_imports.get("ai.onnx" if domain == "" else "")
    return version


def verdict(target: Target, info: NodeInfo) -> str | None:
    """``target``'s verdict on a node: ``None`` (yes) or the reason why not.

    A check that raises or answers something else than yes or a reason declines the
    node, saying so: one vendor bug must not stop the partitioning of a whole model, and
    the report shows it.
    """
    try:
        return target.check(info)
    except Exception as exc:  # a vendor check can fail in any way
        vendor_log.debug("target %s: the check of %s node %r raised", target.name,
                         info.op_type, info.name, exc_info=True)
        text = exc.reason if isinstance(exc, ByocError) else describe_exception(exc)
        return f"{target.name}'s check of {info.op_type} failed ({text})"
