"""The SDK's knowledge of ONNX ops, as data: sample instances to test a target's claims on.

Each :class:`Sample` is one node the conformance suite can build: its inputs (shape,
role and value range), its attributes and the opset its form needs. The element type is
left open (``dtype=None`` inputs take the case's type) so one sample serves every type
the op's schema allows; the suite asks the target's own check which ones it claims.

Elementwise, normalisation and softmax ops are *shape-generic*: their samples come from
a function of the data shape (:data:`GENERIC`), which is also how pattern instances are
grown around another op's output. The other ops list fixed samples (:data:`FIXED`).

Adding an op is adding data here: a new entry in one of the tables below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Shape = tuple[int, ...]

#: How input values are drawn: "normal" (standard normal; small integers), "positive"
#: (away from zero, above it), "nonzero" (away from zero, either sign), "exponent"
#: (for Pow: small, non-negative for integers), "special" (standard normal with NaN, +inf
#: and -inf among the values: they must come out where onnxruntime puts them; integers
#: draw as "normal").
Values = Literal["normal", "positive", "nonzero", "exponent", "special"]

#: Where an input comes from: "data" is a graph input; "weight" an initializer that a
#: variant may turn into a graph input (a run-time weight); "param" an initializer that is
#: part of the op's structure (a shape, axes, pads) and always stays one.
Role = Literal["data", "weight", "param"]

#: The opset fixed samples are written for (the forms of ops at this version).
OPSET = 21


@dataclass(frozen=True)
class Input:
    """One input of a sample.

    ``dtype`` ``None`` takes the case's element type; ``fixed`` gives exact values
    (shape, axes, bounds); ``high`` bounds integer index values to ``[0, high)``.
    """

    shape: Shape
    role: Role = "data"
    dtype: str | None = None
    values: Values = "normal"
    fixed: tuple[Any, ...] | None = None
    high: int | None = None


@dataclass(frozen=True)
class Sample:
    """One instance of an op: inputs in ONNX order (``None`` for an omitted one)."""

    op_type: str
    label: str
    inputs: tuple[Input | None, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    #: The first opset at which this form of the op (inputs vs attributes) exists.
    since: int = 1
    outputs: int = 1
    #: Multiplies the dtype's tolerance (transcendental functions, long reductions).
    tolerance: float = 1.0
    #: What sets a shape-generic sample apart from its siblings ("+row", "-alpha0.2"),
    #: without the data shape: pattern case ids name it.
    variant: str = ""


# --- building blocks ------------------------------------------------------------------


def x(*shape: int, values: Values = "normal") -> Input:
    """A data input of the case's element type."""
    return Input(tuple(shape), "data", None, values)


def w(*shape: int, values: Values = "normal", fixed: tuple[Any, ...] | None = None) -> Input:
    """A weight of the case's element type (an initializer; a variant passes it at run time)."""
    return Input(tuple(shape), "weight", None, values, fixed)


def ints(*values: int) -> Input:
    """A structural int64 parameter (shape, axes, pads, perm...), always an initializer."""
    return Input((len(values),), "param", "int64", fixed=tuple(values))


def index(*shape: int, high: int, role: Role = "data") -> Input:
    """Integer indices in ``[0, high)``."""
    return Input(tuple(shape), role, "int64", high=high)


def dims(shape: Shape) -> str:
    """``(1, 3, 8, 8)`` -> ``"1x3x8x8"`` (``"scalar"`` for rank 0)."""
    return "x".join(map(str, shape)) or "scalar"


# --- shape-generic ops --------------------------------------------------------------
# Each function takes the data shape and the slot the data arrives in ("anchor": 0 unless
# a pattern grows the op around another op's output in a later slot) and returns samples
# whose output has the data shape.

#: Unary elementwise ops: name -> (attribute variants, value range, tolerance, since).
_UNARY: dict[str, tuple[tuple[Mapping[str, Any], ...], Values, float, int]] = {
    "Relu": (({},), "normal", 1, 14),
    "LeakyRelu": (({}, {"alpha": 0.2}), "normal", 1, 16),
    "Sigmoid": (({},), "normal", 4, 13),
    "Tanh": (({},), "normal", 4, 13),
    "HardSigmoid": (({}, {"alpha": 0.3, "beta": 0.4}), "normal", 1, 6),
    "HardSwish": (({},), "normal", 1, 14),
    "Gelu": (({}, {"approximate": "tanh"}), "normal", 10, 20),
    "Elu": (({}, {"alpha": 0.5}), "normal", 4, 6),
    "Selu": (({},), "normal", 4, 6),
    "Softplus": (({},), "normal", 4, 1),
    "Softsign": (({},), "normal", 1, 1),
    "Abs": (({},), "normal", 1, 13),
    "Neg": (({},), "normal", 1, 13),
    "Exp": (({},), "normal", 4, 13),
    "Log": (({},), "positive", 4, 13),
    "Sqrt": (({},), "positive", 4, 13),
    "Reciprocal": (({},), "nonzero", 1, 13),
    "Erf": (({},), "normal", 4, 13),
    "Sin": (({},), "normal", 4, 7),
    "Cos": (({},), "normal", 4, 7),
    "Floor": (({},), "normal", 1, 13),
    "Ceil": (({},), "normal", 1, 13),
    "Sign": (({},), "normal", 1, 13),
    "Identity": (({},), "normal", 1, 21),
    "Not": (({},), "normal", 1, 1),
}

#: Binary elementwise ops: name -> (value range of the second operand, since).
_BINARY: dict[str, tuple[Values, int]] = {
    "Add": ("normal", 14),
    "Sub": ("normal", 14),
    "Mul": ("normal", 14),
    "Div": ("nonzero", 14),
    "Pow": ("exponent", 15),
    "Max": ("normal", 13),
    "Min": ("normal", 13),
    "Sum": ("normal", 13),
    "Mean": ("normal", 13),
    "And": ("normal", 7),
    "Or": ("normal", 7),
    "Xor": ("normal", 7),
    "Equal": ("normal", 19),
    "Less": ("normal", 13),
    "Greater": ("normal", 13),
    "LessOrEqual": ("normal", 16),
    "GreaterOrEqual": ("normal", 16),
}


def _unary(op_type: str) -> Callable[[Shape, int], list[Sample]]:
    variants, values, tolerance, since = _UNARY[op_type]

    def samples(shape: Shape, anchor: int = 0) -> list[Sample]:
        if anchor != 0:
            return []
        out = []
        for attrs in variants:
            variant = "".join(f"-{k}{v}" for k, v in attrs.items())
            out.append(Sample(op_type, dims(shape) + variant, (x(*shape, values=values),),
                              attrs, since, tolerance=tolerance, variant=variant))
        return out

    return samples


def _binary_others(shape: Shape, values: Values) -> list[tuple[str, Input]]:
    """The second operand of a binary op on ``shape``: full, broadcast, weight or input."""
    others = [("", Input(shape, "data", None, values)),
              ("+w", Input(shape, "weight", None, values))]
    if shape:
        row = (shape[-1],)
        others += [("+row", Input(row, "weight", None, values)),
                   ("+row-input", Input(row, "data", None, values))]
    if len(shape) >= 3:
        channel = (shape[1],) + (1,) * (len(shape) - 2)
        others.append(("+chan", Input(channel, "weight", None, values)))
    others.append(("+scalar", Input((), "weight", None, values)))
    return others


def _binary(op_type: str) -> Callable[[Shape, int], list[Sample]]:
    values, since = _BINARY[op_type]

    def samples(shape: Shape, anchor: int = 0) -> list[Sample]:
        first_values: Values = "positive" if op_type == "Pow" else "normal"
        data = Input(shape, "data", None, first_values)
        out = []
        for suffix, other in _binary_others(shape, values):
            pair = (data, other) if anchor == 0 else (other, data)
            variant = suffix if anchor == 0 else f"{suffix}-swapped"
            out.append(Sample(op_type, dims(shape) + variant, pair, {}, since,
                              tolerance=10 if op_type == "Pow" else 1, variant=variant))
        return out

    return samples


def _clip(shape: Shape, anchor: int = 0) -> list[Sample]:
    if anchor != 0:
        return []
    low, high = w(fixed=(0.0,)), w(fixed=(6.0,))
    data = x(*shape)
    forms = (("-0..6", (data, low, high)), ("-min0", (data, low)), ("-unbounded", (data,)))
    return [Sample("Clip", dims(shape) + variant, inputs, {}, 13, variant=variant)
            for variant, inputs in forms]


def _prelu(shape: Shape, anchor: int = 0) -> list[Sample]:
    if anchor != 0 or len(shape) < 2:
        return []
    channel = (shape[1],) + (1,) * (len(shape) - 2)
    forms = (("-chan", w(*channel)), ("-scalar", w(1)))
    return [Sample("PRelu", dims(shape) + variant, (x(*shape), slope), {}, 16, variant=variant)
            for variant, slope in forms]


def _where(shape: Shape, anchor: int = 0) -> list[Sample]:
    # The data arrives as X (slot 1) unless a pattern grows Where around Y (slot 2).
    cond = Input(shape, "data", "bool")
    pair = (w(*shape), x(*shape)) if anchor == 2 else (x(*shape), w(*shape))
    return [Sample("Where", dims(shape), (cond, *pair), {}, 16)]


def _batch_norm(shape: Shape, anchor: int = 0) -> list[Sample]:
    if anchor != 0 or len(shape) < 2:
        return []
    c = shape[1]
    stats = (w(c), w(c), w(c), w(c, values="positive"))
    return [Sample("BatchNormalization", dims(shape), (x(*shape), *stats), {"epsilon": 1e-5}, 15)]


def _layer_norm(shape: Shape, anchor: int = 0) -> list[Sample]:
    if anchor != 0 or not shape:
        return []
    last, tail = shape[-1], shape[1:]
    forms = [("-axis-1", (w(last), w(last)), -1), ("-nobias", (w(last),), -1)]
    if len(shape) >= 3:
        forms.append(("-axis1", (w(*tail), w(*tail)), 1))
    return [Sample("LayerNormalization", dims(shape) + variant, (x(*shape), *params),
                   {"axis": axis}, 17, tolerance=10, variant=variant)
            for variant, params, axis in forms]


def _softmax(op_type: str) -> Callable[[Shape, int], list[Sample]]:
    def samples(shape: Shape, anchor: int = 0) -> list[Sample]:
        if anchor != 0 or not shape:
            return []
        axes = [("", -1)] + ([("-axis1", 1)] if len(shape) >= 3 else [])
        return [Sample(op_type, dims(shape) + variant, (x(*shape),), {"axis": axis}, 13,
                       tolerance=4, variant=variant)
                for variant, axis in axes]

    return samples


#: Shape-generic ops: op type -> samples(data shape, anchor slot).
GENERIC: dict[str, Callable[[Shape, int], list[Sample]]] = {
    **{op: _unary(op) for op in _UNARY},
    **{op: _binary(op) for op in _BINARY},
    "Clip": _clip,
    "PRelu": _prelu,
    "Where": _where,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "Softmax": _softmax("Softmax"),
    "LogSoftmax": _softmax("LogSoftmax"),
}

#: The data shapes generic ops are sampled on when they stand alone.
GENERIC_SHAPES: tuple[Shape, ...] = ((2, 3), (1, 3, 4, 4), (7,))



# --- fixed samples ------------------------------------------------------------------


def _conv() -> list[Sample]:
    s = "Conv"
    return [
        Sample(s, "3x3-pads1", (x(1, 3, 8, 8), w(4, 3, 3, 3), w(4)),
               {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 11, tolerance=4),
        Sample(s, "1x1-nobias", (x(1, 4, 6, 6), w(8, 4, 1, 1)), {}, 11, tolerance=4),
        Sample(s, "3x3-stride2", (x(1, 3, 9, 9), w(4, 3, 3, 3), w(4)),
               {"strides": [2, 2]}, 11, tolerance=4),
        Sample(s, "depthwise", (x(1, 4, 8, 8), w(4, 1, 3, 3), w(4)),
               {"group": 4, "pads": [1, 1, 1, 1]}, 11, tolerance=4),
        Sample(s, "grouped", (x(1, 4, 6, 6), w(6, 2, 3, 3)), {"group": 2}, 11, tolerance=4),
        Sample(s, "dilated", (x(1, 2, 9, 9), w(3, 2, 3, 3)), {"dilations": [2, 2]}, 11,
               tolerance=4),
        Sample(s, "5x5-same", (x(1, 2, 7, 7), w(3, 2, 5, 5), w(3)),
               {"auto_pad": "SAME_UPPER"}, 11, tolerance=4),
        Sample(s, "9x9", (x(1, 2, 12, 12), w(2, 2, 9, 9)), {}, 11, tolerance=8),
        Sample(s, "1d", (x(1, 3, 16), w(4, 3, 3), w(4)), {}, 11, tolerance=4),
    ]


def _conv_transpose() -> list[Sample]:
    s = "ConvTranspose"
    return [
        Sample(s, "3x3-stride2", (x(1, 4, 4, 4), w(4, 2, 3, 3), w(2)),
               {"strides": [2, 2]}, 11, tolerance=4),
        Sample(s, "2x2-pads", (x(1, 3, 5, 5), w(3, 2, 2, 2)),
               {"strides": [2, 2], "pads": [0, 0, 1, 1]}, 11, tolerance=4),
        Sample(s, "grouped", (x(1, 4, 4, 4), w(4, 1, 3, 3)), {"group": 2}, 11, tolerance=4),
    ]


def _matmul() -> list[Sample]:
    s = "MatMul"
    return [
        # First, so that case picking keeps it: a reduction longer than the usual tile
        # or unroll (256), and sizes that are multiples of no vector width, find blocking
        # bugs the small samples cannot.
        Sample(s, "5x300@300x70", (x(5, 300), w(300, 70)), {}, 13, tolerance=16),
        Sample(s, "2x8@8x16", (x(2, 8), w(8, 16)), {}, 13, tolerance=4),
        Sample(s, "1x4x8@8x16", (x(1, 4, 8), w(8, 16)), {}, 13, tolerance=4),
        Sample(s, "2x3x4@2x4x5", (x(2, 3, 4), x(2, 4, 5)), {}, 13, tolerance=4),
        Sample(s, "8@8x4", (x(8), w(8, 4)), {}, 13, tolerance=4),
        Sample(s, "3x8@8", (x(3, 8), w(8)), {}, 13, tolerance=4),
    ]


def _gemm() -> list[Sample]:
    s = "Gemm"
    return [
        Sample(s, "4x8@8x16+16", (x(4, 8), w(8, 16), w(16)), {}, 13, tolerance=4),
        Sample(s, "transB", (x(4, 8), w(16, 8), w(16)), {"transB": 1}, 13, tolerance=4),
        Sample(s, "no-bias", (x(3, 5), w(5, 6)), {}, 13, tolerance=4),
        Sample(s, "alpha-beta", (x(4, 8), w(8, 16), w(16)), {"alpha": 0.5, "beta": 2.0}, 13,
               tolerance=4),
        Sample(s, "transA", (x(8, 4), w(8, 16), w(16)), {"transA": 1}, 13, tolerance=4),
    ]


def _pools() -> list[Sample]:
    out = []
    for op in ("MaxPool", "AveragePool"):
        out += [
            Sample(op, "2x2-stride2", (x(1, 3, 8, 8),), {"kernel_shape": [2, 2],
                                                          "strides": [2, 2]}, 11),
            Sample(op, "3x3-pads1", (x(1, 3, 7, 7),), {"kernel_shape": [3, 3],
                                                       "pads": [1, 1, 1, 1]}, 11),
            Sample(op, "3x3-stride2-ceil", (x(1, 2, 8, 8),),
                   {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 11),
            Sample(op, "1d", (x(1, 3, 10),), {"kernel_shape": [3]}, 11),
        ]
    out.append(Sample("AveragePool", "3x3-pads1-count-pad", (x(1, 3, 7, 7),),
                      {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
                      11))
    out.append(Sample("MaxPool", "2x2-dilated", (x(1, 2, 9, 9),),
                      {"kernel_shape": [2, 2], "dilations": [2, 2]}, 11))
    for op in ("GlobalAveragePool", "GlobalMaxPool"):
        out += [Sample(op, "1x3x4x4", (x(1, 3, 4, 4),), {}, 1),
                Sample(op, "1d", (x(1, 3, 5),), {}, 1)]
    return out


def _reductions() -> list[Sample]:
    out = []
    for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"):
        since = 13 if op == "ReduceSum" else 18
        out += [
            Sample(op, "2x3x4-axis1", (x(2, 3, 4), ints(1)), {}, since),
            Sample(op, "2x3x4-last-nokeep", (x(2, 3, 4), ints(-1)), {"keepdims": 0}, since),
            Sample(op, "2x3x4-all", (x(2, 3, 4),), {}, since),
        ]
    for op in ("ArgMax", "ArgMin"):
        out += [Sample(op, "3x4-axis1", (x(3, 4),), {"axis": 1}, 13),
                Sample(op, "3x4-axis0-nokeep", (x(3, 4),), {"axis": 0, "keepdims": 0}, 13)]
    return out


def _layout() -> list[Sample]:
    return [
        Sample("Reshape", "2x3x4-to-6x4", (x(2, 3, 4), ints(6, 4)), {}, 14),
        Sample("Reshape", "2x3x4-to-2x-1", (x(2, 3, 4), ints(2, -1)), {}, 14),
        Sample("Flatten", "2x3x4-axis1", (x(2, 3, 4),), {"axis": 1}, 13),
        Sample("Flatten", "2x3x4-axis2", (x(2, 3, 4),), {"axis": 2}, 13),
        Sample("Squeeze", "1x3x1x4-axes0,2", (x(1, 3, 1, 4), ints(0, 2)), {}, 13),
        Sample("Squeeze", "1x3x1x4-all", (x(1, 3, 1, 4),), {}, 13),
        Sample("Unsqueeze", "3x4-axis0", (x(3, 4), ints(0)), {}, 13),
        Sample("Unsqueeze", "3x4-axes1,-1", (x(3, 4), ints(1, -1)), {}, 13),
        Sample("Transpose", "1x2x3x4-nhwc", (x(1, 2, 3, 4),), {"perm": [0, 2, 3, 1]}, 13),
        Sample("Transpose", "2x3-default", (x(2, 3),), {}, 13),
        Sample("Concat", "2x3+2x5-axis1", (x(2, 3), x(2, 5)), {"axis": 1}, 13),
        Sample("Concat", "three-axis0", (x(1, 3), x(2, 3), x(3, 3)), {"axis": 0}, 13),
        Sample("Concat", "2x3+w-axis0", (x(2, 3), w(1, 3)), {"axis": 0}, 13),
        Sample("Slice", "4x6-rows1..3", (x(4, 6), ints(1), ints(3), ints(0)), {}, 13),
        Sample("Slice", "4x6-step2", (x(4, 6), ints(0, 0), ints(4, 6), ints(0, 1), ints(1, 2)),
               {}, 13),
        Sample("Slice", "4x6-negative", (x(4, 6), ints(-3), ints(-1), ints(1)), {}, 13),
        Sample("Gather", "5x4-axis0", (x(5, 4), index(3, high=5)), {"axis": 0}, 13),
        Sample("Gather", "5x4-axis1-2x2", (x(5, 4), index(2, 2, high=4)), {"axis": 1}, 13),
        Sample("Gather", "5x4-const-indices", (x(5, 4), index(3, high=5, role="weight")),
               {"axis": 0}, 13),
        Sample("Pad", "1x3x4x4-constant", (x(1, 3, 4, 4), ints(0, 0, 1, 1, 0, 0, 1, 1)), {}, 19),
        Sample("Pad", "1x3x4x4-reflect", (x(1, 3, 4, 4), ints(0, 0, 1, 2, 0, 0, 1, 2)),
               {"mode": "reflect"}, 19),
        Sample("Expand", "3x1-to-3x4", (x(3, 1), ints(3, 4)), {}, 13),
        Sample("Tile", "2x3-by-2x2", (x(2, 3), ints(2, 2)), {}, 13),
        Sample("Split", "4x6-axis1", (x(4, 6), ints(2, 4)), {"axis": 1}, 18, outputs=2),
        Sample("Shape", "2x3x4", (x(2, 3, 4),), {}, 21),
    ]


def _casts() -> list[Sample]:
    # Cast's output type is its "to" attribute (ONNX TensorProto numbers).
    return [Sample("Cast", "to-float32", (x(2, 3),), {"to": 1}, 21),
            Sample("Cast", "to-float16", (x(2, 3),), {"to": 10}, 21),
            Sample("Cast", "to-int32", (x(2, 3),), {"to": 6}, 21)]


def _fixed() -> dict[str, list[Sample]]:
    table: dict[str, list[Sample]] = {}
    for sample in (*_conv(), *_conv_transpose(), *_matmul(), *_gemm(), *_pools(),
                   *_reductions(), *_layout(), *_casts()):
        table.setdefault(sample.op_type, []).append(sample)
    return table


#: Ops with fixed samples: op type -> samples.
FIXED: dict[str, list[Sample]] = _fixed()


#: Ops whose answers for NaN and infinities onnxruntime gives consistently (NaN in, NaN
#: out; Relu, Max and Min included), tried on such values first: a kernel that
#: computes max as ``a > b ? a : b`` or with ``fmaxf`` turns a NaN into a number and
#: hides it.
SPECIAL_VALUES_OPS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid",
                                "HardSwish", "Abs", "Neg", "Exp", "Clip", "Max", "Min",
                                "Add", "Mul"})
SPECIAL_SHAPE: Shape = (2, 8)


def _special(op_type: str) -> Sample:
    """``op_type`` on a first input holding NaN and both infinities."""
    rest: tuple[Input | None, ...] = ()
    since = 13  # Clip with its bounds as inputs
    if op_type == "Clip":
        rest = (w(fixed=(-1.0,)), w(fixed=(1.0,)))
    elif op_type in _BINARY:
        rest, since = (x(*SPECIAL_SHAPE),), _BINARY[op_type][1]
    else:
        since = _UNARY[op_type][3]
    return Sample(op_type, dims(SPECIAL_SHAPE) + "-special",
                  (x(*SPECIAL_SHAPE, values="special"), *rest), {}, since, variant="-special")


def samples_for(op_type: str, domain: str = "") -> list[Sample]:
    """Every sample of an op standing alone (empty for ops the catalogue lacks); the
    special-values one first, so that the case picking keeps it."""
    if domain not in ("", "ai.onnx"):
        return []
    if op_type in FIXED:
        return list(FIXED[op_type])
    make = GENERIC.get(op_type)
    if make is None:
        return []
    special = [_special(op_type)] if op_type in SPECIAL_VALUES_OPS else []
    return special + [sample for shape in GENERIC_SHAPES for sample in make(shape, 0)]
