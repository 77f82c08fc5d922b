"""Helpers for checking a transformed model against the original with onnxruntime.

Used by byoc's own tests and by the conformance suite: the reference is always
onnxruntime on the original model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir

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

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    proto = as_proto(model)
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
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
    """The same output names, dtypes, and values within tolerance."""
    assert set(actual) == set(expected), f"outputs differ: {sorted(actual)} vs {sorted(expected)}"
    for name, want in expected.items():
        assert actual[name].dtype == want.dtype, f"{name}: {actual[name].dtype} != {want.dtype}"
        np.testing.assert_allclose(actual[name], want, rtol=rtol, atol=atol, err_msg=name)
