"""Policies that decide which merged regions are worth offloading.

Crossing into an accelerator costs a launch and a copy; a region that holds only a
Reshape or a lone Relu rarely earns that back. Regions that fail the policy go back to
the host, and the report says which rule sent them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Ops whose work grows faster than their output size: the reason to offload at all.
DEFAULT_COMPUTE_HEAVY_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "ConvInteger",
        "QLinearConv",
        "Gemm",
        "MatMul",
        "MatMulInteger",
        "QLinearMatMul",
        "Einsum",
        "LSTM",
        "GRU",
        "RNN",
        "Attention",
        "MultiHeadAttention",
    }
)


@dataclass(frozen=True)
class RegionPolicy:
    """What a region needs to stay offloaded.

    ``min_nodes`` counts original model nodes (a composite counts its members) and
    applies to the "regions" merge style only: "per-op" targets want single ops.
    ``require_compute`` keeps only regions holding at least one compute-heavy op.
    """

    min_nodes: int = 2
    require_compute: bool = True

    @classmethod
    def keep_all(cls) -> RegionPolicy:
        """Offload every region a target claims, however small (used by conformance)."""
        return cls(min_nodes=1, require_compute=False)

    def rejects(self, *, nodes: int, compute_heavy: bool, per_op: bool) -> str | None:
        """Why a region fails this policy, or ``None`` if it stays offloaded."""
        if self.require_compute and not compute_heavy:
            return "its region holds no compute-heavy op (policy require_compute)"
        if not per_op and nodes < self.min_nodes:
            return (
                f"its region has {nodes} node{'s' if nodes != 1 else ''}, "
                f"fewer than min_nodes={self.min_nodes}"
            )
        return None
