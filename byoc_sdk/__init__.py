"""byoc: a bring-your-own-codegen SDK for deep-learning accelerators.

Vendors declare what their chip runs with :class:`Target`; byoc loads the model,
fuses patterns, annotates, merges and partitions the graph, and (in later stages)
builds and runs it.
"""

from byoc_sdk.errors import (
    ByocError,
    DanglingInputError,
    GraphCycleError,
    InvalidGraphError,
    ModelLoadError,
    ModelNotFoundError,
    NotOnnxError,
    PartitionError,
    PatternError,
    TargetError,
    TruncatedModelError,
    UnsupportedVersionError,
)
from byoc_sdk.loader import load_model
from byoc_sdk.node_info import NodeInfo, TensorInfo
from byoc_sdk.patterns import Match, any_input, const, op, optional
from byoc_sdk.registry import get_target, register_target, target_names, unregister_target
from byoc_sdk.report import PartitionReport
from byoc_sdk.target import CheckResult, OpSupport, Target
from partition.pipeline import PartitionResult, partition_model
from partition.policy import RegionPolicy

__version__ = "0.1.0"

__all__ = [
    "ByocError",
    "CheckResult",
    "DanglingInputError",
    "GraphCycleError",
    "InvalidGraphError",
    "Match",
    "ModelLoadError",
    "ModelNotFoundError",
    "NodeInfo",
    "NotOnnxError",
    "OpSupport",
    "PartitionError",
    "PartitionReport",
    "PartitionResult",
    "PatternError",
    "RegionPolicy",
    "Target",
    "TargetError",
    "TensorInfo",
    "TruncatedModelError",
    "UnsupportedVersionError",
    "__version__",
    "any_input",
    "const",
    "get_target",
    "load_model",
    "op",
    "optional",
    "partition_model",
    "register_target",
    "target_names",
    "unregister_target",
]
