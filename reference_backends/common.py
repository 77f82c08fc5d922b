"""Support checks and composite patterns shared by the bundled targets.

The check factories return functions for ``Target.support`` (they see a
:class:`~byoc_sdk.node_info.NodeInfo` and return ``True`` or a reason); their parameters
are a chip's limits, so cpu and cuda use them with generous defaults and simaccel with
its tight ones. Reasons are short and free of tensor names: reports group nodes by them.

The pattern builders return the composites the targets fuse. Named parts (``conv``,
``bn``, ``act``, ``x``, ``w``, ``b``...) let pattern checks and, later, codegen find the
nodes and values of a match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import onnx_ir as ir

from byoc_sdk.node_info import Dim, NodeInfo, TensorInfo, dtype_name
from byoc_sdk.patterns import Match, OpPattern, any_input, const, op, optional
from byoc_sdk.target import CheckResult, OpCheck, PatternCheck, Target

FLOAT32 = frozenset({"float32"})

#: Numeric element types a Cast may read (everything but bool, strings and exotic floats).
NUMERIC_DTYPES = frozenset({
    "float16", "bfloat16", "float32", "float64",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
})

#: Elementwise ops of two (Max/Min: one or more) inputs with numpy broadcasting.
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min")

#: Activations a composite may end in (Clip only with constant min/max).
ACTIVATIONS = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSwish", "Gelu")

#: Unary elementwise ops a general code generator runs.
UNARY_OPS = (*ACTIVATIONS, "HardSigmoid", "Erf", "Exp", "Log", "Sqrt")

#: Reductions whose axes come as an attribute or (newer opsets) as constant input 1.
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax")

GroupRule = Literal["any", "depthwise", "none"]


# --- combinators -------------------------------------------------------------------


def all_of(*checks: OpCheck) -> OpCheck:
    """A check that runs ``checks`` in order and returns the first reason."""

    def check(node: NodeInfo) -> CheckResult:
        for inner in checks:
            result = inner(node)
            if result is not True and result is not None:
                return result
        return True

    return check


# --- small helpers -----------------------------------------------------------------


def _ints(value: Any, rank: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * rank
    return tuple(int(v) for v in value)


# The helpers below read the IR values behind a NodeInfo directly rather than through
# TensorInfo views: every check runs once per node of every model, and building views of
# all inputs and outputs cost more than the rest of a check.


def _value_rank(value: ir.Value | None) -> int | None:
    """The rank of a value, ``None`` when the value is absent or its rank unknown."""
    if value is None:
        return None
    shape = value.shape
    return None if shape is None else len(shape)


def _input_rank(node: NodeInfo, index: int) -> int | None:
    """The rank of input ``index`` (``None`` when omitted, beyond the inputs or unknown)."""
    inputs = node.node.inputs
    return _value_rank(inputs[index]) if index < len(inputs) else None


def _input_dim(node: NodeInfo, index: int, axis: int) -> Dim:
    """Dimension ``axis`` of input ``index`` as ``TensorInfo.shape`` gives it (an int, a
    name or ``None``); ``None`` when the input is missing or has no dimensions."""
    inputs = node.node.inputs
    value = inputs[index] if index < len(inputs) else None
    if value is None or not value.shape:
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else dim.value


def _kernel(node: NodeInfo) -> tuple[int, ...] | None:
    """``kernel_shape``, or the weight's spatial dims when a Conv leaves it out."""
    kernel = node.attr("kernel_shape")
    if kernel is not None:
        return tuple(int(k) for k in kernel)
    weight = node.input(1)
    if weight is not None and weight.is_static and weight.shape is not None:
        return tuple(int(d) for d in weight.shape[2:] if isinstance(d, int))
    return None


def _is_used(tensor: TensorInfo) -> bool:
    value = tensor.value
    return bool(tensor.name) and (value.is_graph_output() or bool(list(value.uses())))


def extra_outputs_used(node: NodeInfo) -> bool:
    """True when an optional output after the first one feeds anything."""
    return any(_is_used(t) for t in node.outputs[1:])


def _spatial_rank_reason(node: NodeInfo, spatial: int, what: str) -> str | None:
    rank = _input_rank(node, 0)
    if rank is None or rank == spatial + 2:
        return None
    if rank > 2:
        return f"{rank - 2}-D {what} is not supported"
    return f"{what} of a rank-{rank} tensor is not supported"


def _kernel_reason(kernel: Sequence[int] | None, max_kernel: int | None, owner: str) -> str | None:
    if max_kernel is None or kernel is None or all(k <= max_kernel for k in kernel):
        return None
    size = "x".join(map(str, kernel))
    limit = "x".join([str(max_kernel)] * len(kernel))
    return f"kernel {size} exceeds {owner}'s {limit} limit"


# --- op checks ---------------------------------------------------------------------


def spatial_rank_check(spatial: int = 2, what: str = "pooling") -> OpCheck:
    """Input 0 must be ``spatial``-D data in N, C, spatial... layout."""

    def check(node: NodeInfo) -> CheckResult:
        return _spatial_rank_reason(node, spatial, what) or True

    return check


def _zero_channels_reason(node: NodeInfo) -> str | None:
    """onnxruntime's pooling kernels refuse an empty input unless it holds no images
    ("Only N can be zero"): a kernel would quietly return an empty result where the
    model, left on the host, fails in onnxruntime's words."""
    batch, channels = _input_dim(node, 0, 0), _input_dim(node, 0, 1)
    if channels == 0 and batch != 0:
        return "pooling over 0 channels is refused by onnxruntime (only N can be zero)"
    return None


def global_pool_check(node: NodeInfo) -> CheckResult:
    """A 2-D global pooling whose window is not empty: the average of no elements is
    0 / 0, which onnxruntime refuses to compute ("Only N can be zero") where a kernel
    would quietly give 0; left on the host, the model fails in onnxruntime's words.
    Zero channels with N > 0 are refused by onnxruntime alike."""
    reason = _spatial_rank_reason(node, 2, "pooling") or _zero_channels_reason(node)
    if reason is not None:
        return reason
    value = node.node.inputs[0]
    spatial = [] if value is None or value.shape is None else list(value.shape.dims)[2:]
    if 0 in spatial:
        return (f"pooling over an empty window ({'x'.join(map(str, spatial))}) is undefined "
                "(onnxruntime refuses it)")
    return True


def reduced_axes(axes: Sequence[int] | None, rank: int, noop_with_empty_axes: int = 0
                 ) -> tuple[int, ...] | None:
    """The axes a Reduce* op reduces, normalized and sorted; ``None`` when it reduces
    none. No axes reduce every axis, unless ``noop_with_empty_axes`` makes the op the
    identity: the attribute only matters when the axes are empty."""
    if not axes:
        return None if noop_with_empty_axes else tuple(range(rank))
    if any(not -rank <= int(a) < rank for a in axes):
        raise ValueError(f"axes {list(axes)} out of range for a rank-{rank} tensor")
    return tuple(sorted({int(a) % rank for a in axes}))


def _reduce_axes_of(node: NodeInfo) -> list[int] | None:
    """The axes a Reduce* node lists: constant input 1 (ReduceMean from opset 18) or the
    ``axes`` attribute (before); ``None`` when input 1 is not a build-time constant."""
    axes = node.input(1)
    if axes is None:
        return [int(a) for a in node.attr("axes") or ()]
    if not axes.is_constant:
        return None
    return [int(a) for a in axes.numpy().reshape(-1)]


def spatial_mean_check(node: NodeInfo) -> CheckResult:
    """ReduceMean over exactly the spatial axes (2 and 3) of a 4-D tensor, keepdims either
    way: the global average pooling that PyTorch's exporter writes for ``x.mean((2, 3))``
    and ``adaptive_avg_pool2d(x, 1)``. Any other ReduceMean is declined."""
    rank = _input_rank(node, 0)
    if rank != 4:
        return (f"ReduceMean of a rank-{rank} tensor is not supported (only over the "
                "spatial axes of 4-D data: global average pooling)")
    axes = _reduce_axes_of(node)
    if axes is None:
        return "ReduceMean axes must be a constant"
    try:
        reduced = reduced_axes(axes, rank, int(node.attr("noop_with_empty_axes", 0)))
    except ValueError as exc:
        return f"ReduceMean {exc}"
    if reduced == (2, 3):
        return True
    if reduced is None:
        return "ReduceMean with no axes and noop_with_empty_axes=1 (the identity) is not supported"
    listed = "every axis" if not axes else f"axes {axes}"
    return (f"ReduceMean over {listed} is not supported (only over axes 2 and 3 of 4-D "
            "data: global average pooling)")


def max_rank_check(max_rank: int, owner: str) -> OpCheck:
    """No input or output may have more than ``max_rank`` dims."""

    def check(node: NodeInfo) -> CheckResult:
        for value in (*node.node.inputs, *node.node.outputs):
            rank = _value_rank(value)
            if rank is not None and rank > max_rank:
                return f"rank-{rank} tensors exceed {owner}'s rank-{max_rank} limit"
        return True

    return check


def conv2d_check(
    *,
    owner: str = "this target",
    max_kernel: int | None = None,
    max_channels: int | None = None,
    allow_dilation: bool = True,
    groups: GroupRule = "any",
) -> OpCheck:
    """A 2-D Conv (4-D tensors) within the given limits.

    ``groups`` is "any" (grouped and depthwise), "depthwise" (group 1, or one group per
    channel with as many outputs as inputs) or "none" (group 1 only). Every ``auto_pad``
    mode is accepted: with static shapes the pads are known at build time.
    """

    def check(node: NodeInfo) -> CheckResult:
        reason = _spatial_rank_reason(node, 2, "convolution")
        if reason:
            return reason
        reason = _kernel_reason(_kernel(node), max_kernel, owner)
        if reason:
            return reason
        if not allow_dilation and any(d != 1 for d in _ints(node.attr("dilations"), 2, 1)):
            return "dilation is not supported"
        in_channels, out_channels = _input_dim(node, 0, 1), _input_dim(node, 1, 0)
        group = int(node.attr("group", 1))
        if group != 1 and groups == "none":
            return "grouped convolution is not supported"
        if group != 1 and groups == "depthwise" and not group == in_channels == out_channels:
            return "grouped convolution is not supported (only group 1 or depthwise)"
        if max_channels is not None:
            for label, count in (("input", in_channels), ("output", out_channels)):
                if isinstance(count, int) and count > max_channels:
                    return f"{count} {label} channels exceed {owner}'s {max_channels} limit"
        return True

    return check


def conv_transpose2d_check(node: NodeInfo) -> CheckResult:
    """A 2-D ConvTranspose with group 1, no dilation and explicit pads."""
    reason = _spatial_rank_reason(node, 2, "transposed convolution")
    if reason:
        return reason
    if int(node.attr("group", 1)) != 1:
        return "grouped ConvTranspose is not supported"
    if any(d != 1 for d in _ints(node.attr("dilations"), 2, 1)):
        return "dilated ConvTranspose is not supported"
    if node.attr("auto_pad", "NOTSET") != "NOTSET":
        return "auto_pad on ConvTranspose is not supported (give explicit pads)"
    if node.attr("output_shape") is not None:
        return "output_shape on ConvTranspose is not supported (give explicit pads)"
    return True


def pool2d_check(
    *,
    owner: str = "this target",
    max_kernel: int | None = None,
    allow_dilation: bool = True,
    allow_ceil_mode: bool = True,
    allow_count_include_pad: bool = True,
) -> OpCheck:
    """A 2-D MaxPool or AveragePool within the given limits; never MaxPool's indices."""

    def check(node: NodeInfo) -> CheckResult:
        reason = _spatial_rank_reason(node, 2, "pooling") or _zero_channels_reason(node)
        if reason:
            return reason
        if extra_outputs_used(node):
            return "MaxPool indices output is not supported"
        reason = _kernel_reason(_kernel(node), max_kernel, owner)
        if reason:
            return reason
        if not allow_dilation and any(d != 1 for d in _ints(node.attr("dilations"), 2, 1)):
            return "dilation is not supported"
        if not allow_ceil_mode and node.attr("ceil_mode", 0):
            return "ceil_mode is not supported"
        if not allow_count_include_pad and node.attr("count_include_pad", 0):
            return "count_include_pad is not supported"
        return True

    return check


def gemm_check(*, allow_trans_a: bool = True, allow_scaling: bool = True) -> OpCheck:
    """Gemm, optionally without transposed A or alpha/beta scaling."""

    def check(node: NodeInfo) -> CheckResult:
        if not allow_trans_a and node.attr("transA", 0):
            return "Gemm with transA=1 is not supported"
        if not allow_scaling and (node.attr("alpha", 1.0) != 1.0 or node.attr("beta", 1.0) != 1.0):
            return "Gemm alpha/beta scaling is not supported"
        return True

    return check


def matmul_check(*, owner: str = "this target", max_rank: int | None = None) -> OpCheck:
    """MatMul of 2-D or batched operands (no 1-D vectors), at most ``max_rank`` dims."""
    rank_limit = max_rank_check(max_rank, owner) if max_rank is not None else None

    def check(node: NodeInfo) -> CheckResult:
        if any((r := _value_rank(v)) is not None and r < 2 for v in node.node.inputs):
            return "MatMul of 1-D vectors is not supported"
        return rank_limit(node) if rank_limit is not None else True

    return check


def batchnorm_inference_check(node: NodeInfo) -> CheckResult:
    """BatchNormalization in inference mode: one output, per-channel statistics."""
    if node.attr("training_mode", 0) or extra_outputs_used(node):
        return "training-mode BatchNormalization is not supported"
    if node.attr("spatial", 1) != 1:
        return "non-spatial BatchNormalization is not supported"
    return True


def layernorm_check(node: NodeInfo) -> CheckResult:
    """LayerNormalization producing only its normalized output."""
    if extra_outputs_used(node):
        return "LayerNormalization mean/inv-std outputs are not supported"
    return True


def cast_check(*, sources: Iterable[str] = NUMERIC_DTYPES, to: str = "float32") -> OpCheck:
    """Cast from any of ``sources`` to ``to``."""
    sources = frozenset(sources)

    def check(node: NodeInfo) -> CheckResult:
        data = node.input(0)
        source = data.dtype if data is not None else None
        if source not in sources:
            return f"Cast from {source} is not supported"
        target = node.attr("to")
        target_name = dtype_name(ir.DataType(target)) if target is not None else None
        if target_name != to:
            return f"Cast to {target_name} is not supported (only to {to})"
        return True

    return check


# --- patterns ----------------------------------------------------------------------


def activation(inner: OpPattern, activations: Sequence[str] = ACTIVATIONS) -> OpPattern:
    """``Act(inner)``; Clip's optional min and max must be constants."""
    return op(activations, inner, optional(const("act_min")), optional(const("act_max")),
              name="act")


def conv() -> OpPattern:
    """Conv with constant weights and an optional constant bias."""
    return op("Conv", any_input("x"), const("w"), optional(const("b")), name="conv")


def conv_act_pattern(activations: Sequence[str] = ACTIVATIONS) -> OpPattern:
    """``Act(Conv(x, w, b?))``."""
    return activation(conv(), activations)


def conv_bn_act_pattern(activations: Sequence[str] = ACTIVATIONS) -> OpPattern:
    """``Act(BatchNormalization(Conv(x, w, b?), scale, bias, mean, var))``."""
    bn = op("BatchNormalization", conv(), const("bn_scale"), const("bn_bias"),
            const("bn_mean"), const("bn_var"), name="bn")
    return activation(bn, activations)


def conv_add_bias_act_pattern(activations: Sequence[str] = ACTIVATIONS) -> OpPattern:
    """``Act(Add(Conv(x, w), b))``: a bias added after a bias-less Conv."""
    bare = op("Conv", any_input("x"), const("w"), name="conv")
    return activation(op("Add", bare, const("b"), commutative=True, name="add"), activations)


def gemm_act_pattern(activations: Sequence[str] = ACTIVATIONS) -> OpPattern:
    """``Act(Gemm(x, w, b?))``."""
    gemm = op("Gemm", any_input("x"), const("w"), optional(const("b")), name="gemm")
    return activation(gemm, activations)


def matmul_add_pattern() -> OpPattern:
    """``Add(MatMul(x, w), b)`` with constant ``w`` and ``b``, either Add operand order."""
    matmul = op("MatMul", any_input("x"), const("w"), name="matmul")
    return op("Add", matmul, const("b"), commutative=True, name="add")


def matmul_add_act_pattern(activations: Sequence[str] = ACTIVATIONS) -> OpPattern:
    """``Act(Add(MatMul(x, w), b))``."""
    return activation(matmul_add_pattern(), activations)


# --- pattern checks ----------------------------------------------------------------


MatchCheck = Callable[[Match], CheckResult]


def members_supported(target: Target, *extra: MatchCheck) -> PatternCheck:
    """A pattern check: every node of the match passes ``target``'s own op check
    (so a composite never lifts a Conv or Gemm limit), then each of ``extra``."""

    def check(match: Match) -> CheckResult:
        for node in match.nodes:
            reason = target.check(NodeInfo(node, match.opset_of(node)))
            if reason is not None:
                return reason
        for inner in extra:
            result = inner(match)
            if result is not True and result is not None:
                return result
        return True

    return check


def bias_along(producer: str, axis: int, bias: str = "b") -> MatchCheck:
    """The constant ``bias`` broadcasts along one ``axis`` of ``producer``'s output.

    Channel bias of a Conv is ``axis=1`` (shape (C, 1, 1) or (1, C, 1, 1)); row bias of
    a MatMul is ``axis=-1`` (shape (N,) or (1, N)). A scalar bias also qualifies.
    """

    def check(match: Match) -> CheckResult:
        out = TensorInfo(match.node(producer).outputs[0]).shape
        value = match.value(bias)
        shape = tuple(value.const_value.shape) if value.const_value is not None else None
        if not out or shape is None or len(shape) > len(out):
            return "bias does not broadcast along one axis"
        padded = (1,) * (len(out) - len(shape)) + tuple(shape)
        along = axis % len(out)
        for index, dim in enumerate(padded):
            if dim != 1 and not (index == along and dim == out[index]):
                return "bias does not broadcast along one axis"
        return True

    return check


def declare_composites(target: Target, activations: Sequence[str] = ACTIVATIONS) -> None:
    """The composites every bundled target fuses: conv_bn_act, conv_act, gemm_act and
    matmul_add_act, each ending in one of ``activations``.

    Every member must pass ``target``'s own op check, so no composite lifts a limit.
    The checks are declared structural: the bundled op checks read attributes, types,
    shapes and constness, never constant contents.
    """
    act = "|".join(activations)
    supported = members_supported(target)
    row_bias = members_supported(target, bias_along("matmul", axis=-1))
    target.pattern("conv_bn_act", conv_bn_act_pattern(activations), supported,
                   note=f"Conv (+bias) -> BatchNormalization (folded) -> {act}",
                   structural=True)
    target.pattern("conv_act", conv_act_pattern(activations), supported,
                   note=f"Conv (+bias) -> {act}", structural=True)
    target.pattern("gemm_act", gemm_act_pattern(activations), supported,
                   note=f"Gemm (+bias) -> {act}", structural=True)
    target.pattern("matmul_add_act", matmul_add_act_pattern(activations), row_bias,
                   note=f"MatMul(x, constant) -> Add(row constant) -> {act}",
                   structural=True)


def nonempty_check(node: NodeInfo) -> CheckResult:
    """Declines tensors with a zero dimension: nothing to compute, and layouts and tile
    loops assume at least one element."""
    # The IR values rather than TensorInfo views, as the helpers above: simaccel asks it
    # of every node.
    for values in (node.node.inputs, node.node.outputs):
        for value in values:
            shape = None if value is None else value.shape
            if shape is not None and 0 in shape.dims:
                return "empty tensors (a zero dimension) are not supported"
    return True


def declare_float_kernels(target: Target) -> None:
    """The support the source-codegen targets (cpu, cuda) share, on float32 tensors of
    static shape: convolution, GEMM, elementwise ops, pooling, reductions, Softmax,
    LayerNormalization, the metadata-only reshapes, and the standard composites."""
    f = FLOAT32
    target.support("Conv", dtypes=f, static_shapes=True,
                   note="2-D; groups, depthwise, pads, strides, dilations, any auto_pad",
                   )(conv2d_check())
    target.support("Gemm", "MatMul", dtypes=f, static_shapes=True)
    target.support("BatchNormalization", dtypes=f, static_shapes=True,
                   note="inference mode")(batchnorm_inference_check)
    target.support(*BINARY_OPS, *UNARY_OPS, dtypes=f, static_shapes=True)
    target.support("MaxPool", "AveragePool", dtypes=f, static_shapes=True,
                   note="2-D, no indices output")(pool2d_check())
    target.support("GlobalAveragePool", dtypes=f, static_shapes=True,
                   note="2-D, non-empty window")(global_pool_check)
    target.support(*REDUCE_OPS, dtypes=f, const_inputs=(1,), static_shapes=True)
    target.support("Softmax", dtypes=f, static_shapes=True)
    target.support("LayerNormalization", dtypes=f, static_shapes=True,
                   note="normalized output only")(layernorm_check)
    # Metadata only: they change no data, so their shape inputs must be constants.
    target.support("Reshape", "Squeeze", "Unsqueeze", dtypes=f, const_inputs=(1,),
                   static_shapes=True)
    target.support("Flatten", dtypes=f, static_shapes=True)
    declare_composites(target)
