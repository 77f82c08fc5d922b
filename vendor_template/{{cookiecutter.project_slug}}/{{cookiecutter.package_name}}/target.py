"""The {{ cookiecutter.target_name }} target: which ops and patterns the device runs, and its codegen.

byoc finds it through the ``byoc.targets`` entry point in pyproject.toml. Each rule below
is a promise: a node its check accepts must build and compute what onnxruntime computes,
and the conformance suite holds the target to it (``byoc conformance --target
{{ cookiecutter.target_name }}``). Decline what the device cannot do — with a reason, which reports show.
"""

from __future__ import annotations

from byoc_sdk import NodeInfo, RegionPolicy, Target, any_input, const, op
from byoc_sdk.patterns import Match
from byoc_sdk.target import CheckResult

from .about import DENSE_RELU, OPS, TARGET, VENDOR, VERSION
from .codegen import codegen
from .lowering import BINARY, MATMUL, MAX_RANK, UNARY, broadcast_kind

FLOAT32 = {"float32"}

target = Target(
    TARGET,
    version=VERSION,
    vendor=VENDOR,
    description=f"{VENDOR} {TARGET} ({{ cookiecutter.codegen_kind }} codegen; float32, static shapes)",
    # Above the bundled targets (simaccel 10, cuda 5, cpu 0): given together, the device
    # takes what it supports and they run the rest.
    priority=20,
    # Offload a region only when it holds a MatMul (or the fused layer): crossing to the
    # device costs more than a lone elementwise op saves. RegionPolicy.keep_all() offloads all.
    policy=RegionPolicy(min_nodes=1, require_compute=True),
    codegen=codegen,
)


def _shape(tensor) -> tuple[int, ...]:
    # The rules ask for static shapes first, so every dimension is an int here.
    return tuple(tensor.shape)


def rank_check(node: NodeInfo) -> CheckResult:
    """No tensor of more than MAX_RANK dimensions."""
    for tensor in (*node.inputs, *node.outputs):
        if tensor is not None and (tensor.rank or 0) > MAX_RANK:
            return f"rank-{tensor.rank} tensors exceed {TARGET}'s rank-{MAX_RANK} limit"
    return True


def binary_check(node: NodeInfo) -> CheckResult:
    """Two operands of the output's shape, or one of them a constant scalar or row."""
    if len(node.inputs) != 2 or any(t is None for t in node.inputs):
        return f"{node.op_type} is supported on two inputs only"
    out = _shape(node.outputs[0])
    kinds = []
    for tensor in node.inputs:
        kind = broadcast_kind(_shape(tensor), out)
        if kind is None:
            return f"{node.op_type} broadcasting {_shape(tensor)} to {out} is not supported"
        if kind != "full" and not tensor.is_constant:
            return f"{node.op_type} broadcasts only constants, not run-time inputs"
        kinds.append(kind)
    if "full" not in kinds:
        return f"{node.op_type} where neither operand has the output's shape"
    return rank_check(node)


def matmul_check(node: NodeInfo) -> CheckResult:
    """``x @ w`` with ``w`` a constant matrix."""
    x, w = node.input(0), node.input(1)
    if w is None or w.rank != 2 or x is None or not x.rank:
        return "MatMul needs a 2-D constant weight and an input of rank >= 1"
    if _shape(x)[-1] != _shape(w)[0]:
        return "MatMul with mismatched inner dimensions"
    return rank_check(node)


def dense_relu_check(match: Match) -> CheckResult:
    """The fused layer: its MatMul passes matmul_check, its bias is a scalar or a row."""
    for name in ("matmul", "add", "relu"):
        info = match.info(name)
        if info.input(0) is None or info.input(0).dtype != "float32":
            return f"{TARGET} runs {DENSE_RELU} on float32 only"
        if not all(t is not None and t.is_static for t in (*info.inputs, *info.outputs)):
            return f"{TARGET} needs static shapes"
    reason = matmul_check(match.info("matmul"))
    if reason is not True:
        return reason
    out = _shape(match.info("matmul").outputs[0])
    bias = tuple(match.value("b").const_value.shape)
    if broadcast_kind(bias, out) not in ("scalar", "row"):
        return f"{DENSE_RELU} needs a scalar or row bias, not {bias} for {out}"
    return True


# --- the ops to start with (about.OPS) ----------------------------------------------

_unary = [o for o in OPS if o in UNARY]
_binary = [o for o in OPS if o in BINARY]
if _unary:
    target.support(*_unary, dtypes=FLOAT32, static_shapes=True)(rank_check)
if _binary:
    target.support(*_binary, dtypes=FLOAT32, static_shapes=True,
                   note="equal shapes, or a constant scalar or row")(binary_check)
if MATMUL in OPS:
    target.support(MATMUL, dtypes=FLOAT32, const_inputs=(1,), static_shapes=True,
                   note="constant 2-D weight")(matmul_check)

# --- the composite: Relu(x @ w + b), one fused step on the device --------------------

target.pattern(
    DENSE_RELU,
    op("Relu", op("Add", op(MATMUL, any_input("x"), const("w"), name="matmul"), const("b"),
                  commutative=True, name="add"), name="relu"),
    check=dense_relu_check,
    note="Relu(x @ w + b), w a constant matrix, b a constant scalar or row",
)
