"""Helpers for checking a transformed model against the original with onnxruntime.

Used by byoc's own tests and by the conformance suite: the reference is always
onnxruntime on the original model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from byoc_sdk import versions

Feeds = Mapping[str, np.ndarray]

_HEADER = '<ir_version: 10, opset_import: ["" : 21]>\n'


def onnx_text(text: str) -> onnx.ModelProto:
    """Parse a model written in ONNX's text format; a default header is added if absent."""
    body = text.strip()
    if not body.startswith("<"):
        body = _HEADER + body
    model = onnx.parser.parse_model(body)
    onnx.checker.check_model(model)
    return model


def float_model(nodes: Sequence[onnx.NodeProto], inputs: Mapping[str, Sequence[int]],
                outputs: Sequence[str], constants: Mapping[str, np.ndarray] | None = None,
                opset: int = 18) -> onnx.ModelProto:
    """A float32 model of ``nodes``: ``inputs`` by shape, ``outputs`` by name (their types
    inferred, strictly), ``constants`` as initializers; the IR version pinned."""
    graph = helper.make_graph(
        list(nodes), "regression",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v, n) for n, v in (constants or {}).items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = versions.pinned_ir_version()
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


#: Products with an empty operand or result, by name, for :func:`empty_product`.
EMPTY_PRODUCTS = ("matmul_no_rows", "matmul_no_batches", "gemm_no_rows", "gemm_no_columns",
                  "conv_no_images", "matmul_empty_reduction")


def empty_product(case: str) -> onnx.ModelProto:
    """A product of :data:`EMPTY_PRODUCTS` (a batch of 0, a GEMM of no columns, a reduction
    over nothing) writing ``y``, then ``z = Relu(y)``: backends must build these and give
    onnxruntime's (empty, or zero) results, launching no kernel for an empty output."""
    rng = np.random.default_rng(2)
    weights = {"w": rng.standard_normal((4, 3)).astype(np.float32)}
    product = helper.make_node("MatMul", ["x", "w"], ["y"])
    if case == "matmul_no_rows":
        inputs: dict[str, tuple[int, ...]] = {"x": (0, 4)}
    elif case == "matmul_no_batches":
        inputs = {"x": (0, 2, 4)}
    elif case == "gemm_no_rows":
        product = helper.make_node("Gemm", ["x", "w", "b"], ["y"])
        inputs, weights["b"] = {"x": (0, 4)}, np.ones(3, np.float32)
    elif case == "gemm_no_columns":
        product = helper.make_node("Gemm", ["x", "v"], ["y"])
        inputs, weights = {"x": (2, 4), "v": (4, 0)}, {}
    elif case == "conv_no_images":
        product = helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1])
        inputs = {"x": (0, 2, 3, 3)}
        weights = {"k": rng.standard_normal((5, 2, 3, 3)).astype(np.float32)}
    elif case == "matmul_empty_reduction":
        inputs, weights = {"x": (3, 0)}, {"w": np.zeros((0, 4), np.float32)}
    else:
        raise ValueError(f"no empty product named {case!r}")
    return float_model([product, helper.make_node("Relu", ["y"], ["z"])], inputs, ["y", "z"],
                       weights)


def as_proto(model: onnx.ModelProto | ir.Model) -> onnx.ModelProto:
    """A ``ModelProto`` pinned to the IR version onnxruntime accepts."""
    if isinstance(model, ir.Model):
        versions.pin(model)
        return ir.to_proto(model)
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    proto.ir_version = min(proto.ir_version, versions.pinned_ir_version())
    return proto


def run_onnxruntime(model: onnx.ModelProto | ir.Model, feeds: Feeds) -> dict[str, np.ndarray]:
    """Outputs by name, from one single-threaded CPU session."""
    import onnxruntime as ort

    from byoc_sdk.modules import session_options

    proto = as_proto(model)
    session = ort.InferenceSession(
        proto.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds)), strict=True))


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for the graph inputs that are not initializers (static shapes)."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for info in model.graph.input:
        if info.name in initializers:
            continue
        tensor = info.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        feeds[info.name] = random_array(rng, dtype, shape)
    return feeds


def random_array(
    rng: np.random.Generator,
    dtype: np.dtype,
    shape,
    integers: tuple[int, int] | None = (0, 4),
) -> np.ndarray:
    """Random values of ``dtype``: standard normal floats, fair-coin bools, integers drawn
    from the half-open range ``integers`` (small: safe as indices), or zeros if ``None``."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if np.issubdtype(dtype, np.integer):
        if integers is None:
            return np.zeros(shape, dtype=dtype)
        return rng.integers(*integers, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def assert_equivalent(
    original: onnx.ModelProto,
    transformed: onnx.ModelProto | ir.Model,
    feeds: Feeds | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Both models give the same outputs (by name) on ``feeds`` (random if omitted)."""
    feeds = feeds if feeds is not None else random_feeds(original)
    assert_outputs_close(
        run_onnxruntime(transformed, feeds), run_onnxruntime(original, feeds), rtol=rtol, atol=atol
    )


def assert_outputs_close(
    actual: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """The same output names, dtypes and shapes, and values within tolerance (see
    :func:`close_elements`)."""
    assert set(actual) == set(expected), f"outputs differ: {sorted(actual)} vs {sorted(expected)}"
    for name, want in expected.items():
        got = np.asarray(actual[name])
        assert got.dtype == want.dtype, f"{name}: {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        close = close_elements(got, want, rtol=rtol, atol=atol)
        assert close.all(), (
            f"{name}: {int((~close).sum())} of {close.size} elements out of tolerance, max abs "
            f"error {max_error(got, want):.3g} (rtol {rtol:g}, atol {atol:g} x "
            f"{reference_scale(want):.3g})")


def reference_scale(expected: np.ndarray) -> float:
    """What the absolute tolerance of a comparison with ``expected`` is multiplied by: its
    largest finite magnitude, and at least 1.

    float32 rounding errors follow the magnitudes a result is summed from, not each
    element: in 64x1024 @ 1024x512 of standard normals (values up to 128), numpy and
    onnxruntime, both right, differ by up to 7e-5, and by 2e-5 on values below 0.1 that
    their 1024 terms cancel to. So the absolute tolerance grows with the result's scale,
    while an error of 1e-3 of every value still fails, at the largest value. Below 1 the
    tolerance stays as given, so that small results (probabilities) are held as tightly.
    """
    magnitude = np.abs(_wide(expected))
    magnitude = magnitude[np.isfinite(magnitude)]
    return max(1.0, float(magnitude.max())) if magnitude.size else 1.0


def close_elements(actual: np.ndarray, expected: np.ndarray, *, rtol: float,
                   atol: float) -> np.ndarray:
    """Which elements of ``actual`` match ``expected`` (the reference, of the same shape):
    ``|actual - expected| <= atol * reference_scale(expected) + rtol * |expected|``, where a
    NaN matches only a NaN and an infinity only the same infinity. Strings match when equal."""
    if np.asarray(expected).dtype.kind in "OSU":
        return np.asarray(np.asarray(actual) == np.asarray(expected), bool)
    return np.isclose(_wide(actual), _wide(expected), rtol=rtol,
                      atol=atol * reference_scale(expected), equal_nan=True)


def max_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """The largest absolute difference: 0 where both are NaN or equal infinities, infinite
    where only one side is NaN (a NaN beside a number is as wrong as a result can be)."""
    if np.asarray(expected).size == 0:
        return 0.0
    a, e = _wide(actual), _wide(expected)
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore"):  # inf - inf where only one side is infinite
        diff = np.where(same, 0.0, np.abs(a - e))
    return float(np.nan_to_num(diff, nan=np.inf).max())


def _wide(values: np.ndarray) -> np.ndarray:
    """``values`` as float64 (complex128 if complex), so that differences neither wrap
    (integers), fail (bool) nor round (float16, bfloat16)."""
    values = np.asarray(values)
    return values.astype(np.complex128 if np.iscomplexobj(values) else np.float64)


class ModelBuilder:
    """A test model under construction: random inputs and weights, any ops.

    ``op`` adds a node whose output is named after it; ``out`` (or ``output=True``)
    makes values graph outputs; ``model`` returns the model with inferred shapes (IR
    version 8, the opset given) and ``feeds`` the inputs' random values.
    """

    def __init__(self, opset: int = 17, seed: int = 0) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[str] = []
        self.feeds: dict[str, np.ndarray] = {}
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def input(self, shape: Sequence[int], *, positive: bool = False,
              array: np.ndarray | None = None) -> str:
        """A graph input fed with standard-normal values (``|x| + 0.1`` if positive)."""
        if array is None:
            array = self.rng.standard_normal(shape).astype(np.float32)
            if positive:
                array = np.asarray(np.abs(array) + np.float32(0.1), np.float32)
        name = self._name("in")
        dtype = helper.np_dtype_to_tensor_dtype(array.dtype)
        self.inputs.append(helper.make_tensor_value_info(name, dtype, array.shape))
        self.feeds[name] = array
        return name

    def const(self, array: np.ndarray) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, shape: Sequence[int], fan_in: int | None = None) -> str:
        """A constant float32 weight scaled by ``1 / sqrt(fan_in)``."""
        scale = 1.0 / math.sqrt(fan_in or max(1, int(np.prod(shape[1:]))))
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type: str, inputs: Sequence[str], output: bool = False, **attrs) -> str:
        name = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        if output:
            self.outputs.append(name)
        return name

    def out(self, *names: str) -> None:
        self.outputs.extend(names)

    def model(self) -> onnx.ModelProto:
        outputs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None)
                   for n in self.outputs]
        graph = helper.make_graph(self.nodes, "test", self.inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8  # pinned: onnxruntime reads up to IR 13
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)


#: 2-D convolutions for code generator tests: (N, C, H, W), (OC, kh, kw), attributes.
#: Groups, depthwise with and without a channel multiplier, strides, dilations, every
#: auto_pad, 1x1, asymmetric pads and kernels.
CONV_CASES: list[tuple[tuple[int, ...], tuple[int, int, int], dict]] = [
    ((2, 3, 9, 9), (5, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 4, 10, 11), (6, 3, 3), {"strides": [2, 2], "pads": [0, 1, 1, 0]}),
    ((1, 3, 12, 12), (4, 5, 5), {"dilations": [2, 2], "pads": [4, 4, 4, 4]}),
    ((1, 8, 7, 7), (6, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 8, 9, 9), (8, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
    ((1, 6, 11, 11), (6, 3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 4, 8, 8), (8, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),  # channel multiplier 2
    ((2, 16, 5, 7), (40, 1, 1), {}),  # 1x1 read in place, partial panel
    ((1, 8, 9, 9), (4, 1, 1), {"strides": [2, 2]}),
    ((1, 3, 10, 9), (4, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 10, 9), (4, 4, 4), {"auto_pad": "SAME_LOWER"}),
    ((1, 3, 10, 9), (4, 3, 2), {"auto_pad": "VALID", "strides": [2, 1]}),
    ((1, 2, 6, 30), (3, 1, 3), {"pads": [0, 2, 0, 2], "dilations": [1, 3]}),
    ((1, 12, 3, 3), (24, 3, 3), {"pads": [1, 1, 1, 1], "group": 3}),
]

#: 2-D pooling windows for code generator tests: (N, C, H, W), attributes. Strides,
#: pads, ceil_mode, asymmetric windows, auto_pad, a global-sized window over more
#: channels than one vector chunk.
POOL_CASES: list[tuple[tuple[int, ...], dict]] = [
    ((1, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 2, 9, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 10, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 9, 9), {"kernel_shape": [3, 2], "pads": [1, 0, 2, 1]}),
    ((1, 2, 11, 10), {"kernel_shape": [3, 3], "strides": [3, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 70, 7, 7), {"kernel_shape": [7, 7]}),
]
