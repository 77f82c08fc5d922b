"""byoc: a bring-your-own-codegen SDK for deep-learning accelerators.

Vendors declare what their chip runs with :class:`Target`; byoc loads the model,
fuses patterns, annotates, merges and partitions the graph, and (in later stages)
builds and runs it.
"""

from byoc_sdk.build import BuildError, build
from byoc_sdk.codegen import (
    Binary,
    Codegen,
    Constant,
    CSource,
    JsonGraph,
    Op,
    OpValue,
    Region,
    TensorSpec,
)
from byoc_sdk.errors import (
    ByocError,
    DanglingInputError,
    GraphCycleError,
    InvalidGraphError,
    ModelLoadError,
    ModelNotFoundError,
    ModuleError,
    NotOnnxError,
    OnnxRuntimeError,
    PartitionError,
    PatternError,
    TargetError,
    TruncatedModelError,
    UnsupportedVersionError,
)
from byoc_sdk.loader import load_model
from byoc_sdk.node_info import NodeInfo, TensorInfo
from byoc_sdk.options import merge_options
from byoc_sdk.package import BuildReport, PackageError
from byoc_sdk.patterns import Match, any_input, const, op, optional
from byoc_sdk.registry import get_target, register_target, target_names, unregister_target
from byoc_sdk.report import PartitionReport
from byoc_sdk.runtime import CompiledModel, InputError, Profile, StepError
from byoc_sdk.target import CheckResult, OpSupport, Target
from byoc_sdk.toolchain import Toolchain, ToolchainError
from byoc_sdk.vendor_runtime import (
    RegionSignature,
    RuntimeNotFoundError,
    VendorRuntime,
    get_runtime,
    register_runtime,
)
from partition.pipeline import PartitionResult, partition_model
from partition.policy import RegionPolicy

__version__ = "0.1.0"

__all__ = [
    "Binary",
    "BuildError",
    "BuildReport",
    "ByocError",
    "CSource",
    "CheckResult",
    "Codegen",
    "CompiledModel",
    "Constant",
    "DanglingInputError",
    "GraphCycleError",
    "InputError",
    "InvalidGraphError",
    "JsonGraph",
    "Match",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModuleError",
    "NodeInfo",
    "NotOnnxError",
    "OnnxRuntimeError",
    "Op",
    "OpSupport",
    "OpValue",
    "PackageError",
    "PartitionError",
    "PartitionReport",
    "PartitionResult",
    "PatternError",
    "Profile",
    "Region",
    "RegionPolicy",
    "RegionSignature",
    "RuntimeNotFoundError",
    "StepError",
    "Target",
    "TargetError",
    "TensorInfo",
    "TensorSpec",
    "Toolchain",
    "ToolchainError",
    "TruncatedModelError",
    "UnsupportedVersionError",
    "VendorRuntime",
    "__version__",
    "any_input",
    "build",
    "const",
    "get_runtime",
    "get_target",
    "load_model",
    "merge_options",
    "op",
    "optional",
    "partition_model",
    "register_runtime",
    "register_target",
    "target_names",
    "unregister_target",
]
