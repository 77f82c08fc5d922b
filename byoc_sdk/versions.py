"""The IR version and opsets the installed onnxruntime accepts, and pinning models to them.

onnx writes models with its newest IR version and opset, which an onnxruntime of the
same season often refuses (onnx 1.23 writes IR 14; onnxruntime 1.31 runs IR 13 at most).
Rather than keep a table that goes stale with every release, the limits are probed
once per process by asking onnxruntime to load tiny models.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

#: Opset of the domains byoc creates (regions and composites); bumped on format changes.
BYOC_DOMAIN_VERSION = 1

#: The first IR version that allowed each data type newer than IR 9's float8 types.
_DTYPE_MIN_IR = {
    TensorProto.UINT4: 10,
    TensorProto.INT4: 10,
    TensorProto.FLOAT4E2M1: 11,
    TensorProto.FLOAT8E8M0: 12,
    TensorProto.UINT2: 13,
    TensorProto.INT2: 13,
    TensorProto.FLOAT6E2M3: 14,
    TensorProto.FLOAT6E3M2: 14,
}


@dataclass(frozen=True)
class RuntimeLimits:
    """What the installed onnxruntime accepts."""

    onnxruntime_version: str
    max_ir_version: int
    max_opset: int


def _loads(ir_version: int, opset: int) -> bool:
    import onnxruntime as ort

    node = helper.make_node("Identity", ["x"], ["y"])
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([node], "probe", info[:1], info[1:])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )
    from byoc_sdk.modules import session_options

    try:  # refusals are what the probe looks for: no log lines for them
        ort.InferenceSession(model.SerializeToString(), session_options(),
                             providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own untyped errors for a refused model
        return False
    return True


def _highest(accepts, low: int, high: int) -> int:
    """Largest value in [low, high] that ``accepts``, assuming a prefix of accepted values."""
    while low < high:
        mid = (low + high + 1) // 2
        if accepts(mid):
            low = mid
        else:
            high = mid - 1
    return low


@functools.cache
def runtime_limits() -> RuntimeLimits:
    """Probe (once per process) the newest IR version and opset onnxruntime runs."""
    import onnxruntime as ort

    max_ir = _highest(lambda v: _loads(v, 13), 7, onnx.IR_VERSION)
    max_opset = _highest(lambda v: _loads(min(max_ir, 10), v), 13, onnx.defs.onnx_opset_version())
    return RuntimeLimits(ort.__version__, max_ir, max_opset)


def min_ir_for_dtype(dtype: int) -> int:
    """The first IR version that allows the ONNX data type ``dtype``."""
    return _DTYPE_MIN_IR.get(dtype, 3)


def pinned_ir_version() -> int:
    """The IR version every model byoc writes carries: the newest onnxruntime runs.

    Node ``metadata_props`` (where byoc records its decisions) need IR 10; pyproject.toml
    asks for an onnxruntime new enough to guarantee that.
    """
    return runtime_limits().max_ir_version


def pin(model) -> None:
    """Stamp an ``onnx_ir`` model with the IR version onnxruntime accepts.

    Opsets are left as they are: the loader already refused any newer than onnxruntime
    runs, and byoc's own domains are pinned when they are added.
    """
    model.ir_version = pinned_ir_version()
