"""Test cases generated from a target's own declarations.

For every op a target declares, the catalogue's samples of that op are instantiated over
the element types the op's schema allows, with variants (weights passed at run time, a
dynamic batch dimension), and each instance is shown to the target's check:

* instances it accepts are **claimed** cases: the suite partitions, builds, runs and
  compares them with onnxruntime;
* some it declines are **host** cases: the suite checks that they stay on the host.

For every pattern, instances are grown from the pattern tree itself (ops chosen among
its alternatives, shapes from the catalogue) and sorted the same way by the pattern's
check. A few of each kind are kept, chosen to cover as many distinct samples, element
types and variants (or, for declined ones, reasons) as possible.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from byoc_sdk.conformance.catalogue import (
    GENERIC,
    OPSET,
    Input,
    Sample,
    Shape,
    samples_for,
)
from byoc_sdk.errors import describe_exception
from byoc_sdk.node_info import NodeInfo
from byoc_sdk.patterns import AnyInput, ConstInput, OpPattern, OptionalInput, Pattern
from byoc_sdk.target import CompositePattern, OpSupport, Target

#: Cases of each kind kept per op or pattern (the suite must stay quick).
MAX_CLAIMED = 6
MAX_DECLINED = 3
#: Random pattern instances tried per pattern and element type.
PATTERN_ATTEMPTS = 40

#: The IR version of generated models (what model_zoo uses; onnxruntime accepts it).
IR_VERSION = 10

#: Element types tried when a target does not constrain them, most common first.
PRACTICAL_DTYPES = ("float32", "float16", "float64", "int32", "int64", "int8", "uint8", "bool")
#: Element types pattern instances are grown in.
PATTERN_DTYPES = ("float32", "float16")
#: Data shapes of a pattern's first input when nothing else fixes them.
PATTERN_SHAPES: tuple[Shape, ...] = ((2, 16), (1, 4, 6, 6))

_SHORT = {"float32": "f32", "float16": "f16", "float64": "f64", "bfloat16": "bf16",
          "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "uint8": "u8",
          "uint16": "u16", "uint32": "u32", "uint64": "u64", "bool": "bool"}
_ONNX_TYPES = {"float": "float32", "float16": "float16", "double": "float64",
               "bfloat16": "bfloat16", "int8": "int8", "int16": "int16", "int32": "int32",
               "int64": "int64", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
               "uint64": "uint64", "bool": "bool"}


class CaseError(ValueError):
    """A candidate instance could not be made into a valid model (it is dropped)."""


@dataclass(eq=False)
class Case:
    """One single-op or pattern model and what the target is expected to do with it.

    ``category`` is "op" or "pattern" for claimed cases, "host" or "pattern_declined"
    for declined ones; ``subject`` the op type or pattern name; ``reason`` why the
    target declines it; ``tolerance`` scales the element type's tolerance; ``raised``
    what the target's check raised on it (such a case is claimed, and fails saying so).
    """

    category: str
    subject: str
    id: str
    model: onnx.ModelProto = field(repr=False)
    feeds: dict[str, np.ndarray] = field(repr=False)
    dtype: str
    tolerance: float = 1.0
    reason: str = ""
    #: What distinguishes this case from its siblings, for choosing which to keep.
    features: frozenset[str] = frozenset()
    raised: str = ""

    @property
    def nodes(self) -> int:
        return len(self.model.graph.node)


@dataclass
class GeneratedCases:
    """Everything generated for one target."""

    claimed_ops: list[Case] = field(default_factory=list)
    host_ops: list[Case] = field(default_factory=list)
    claimed_patterns: list[Case] = field(default_factory=list)
    declined_patterns: list[Case] = field(default_factory=list)
    #: Declared ops the catalogue has no sample of (op type -> why).
    uncovered: dict[str, str] = field(default_factory=dict)


def generate(target: Target) -> GeneratedCases:
    """All op and pattern cases of ``target``."""
    out = GeneratedCases()
    for (domain, op_type), rules in sorted(target.ops.items()):
        label = f"{domain}::{op_type}" if domain else op_type
        claimed, declined = op_cases(target, domain, op_type, rules)
        if not claimed and not declined:
            out.uncovered[label] = "the SDK's op catalogue has no sample of this op"
        out.claimed_ops += claimed
        out.host_ops += declined
    for composite in target.patterns:
        claimed, declined = pattern_cases(target, composite)
        out.claimed_patterns += claimed
        out.declined_patterns += declined
    return out


# --- element types ------------------------------------------------------------------


def short(dtype: str) -> str:
    """A short name for ids: float32 -> f32."""
    return _SHORT.get(dtype, dtype)


def numpy_dtype(name: str) -> np.dtype:
    """numpy's dtype for a type name, bfloat16 included (from ml_dtypes, as onnx uses)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _elem_type(name: str) -> int:
    return helper.np_dtype_to_tensor_dtype(numpy_dtype(name))


@functools.cache
def schema_dtypes(op_type: str, opset: int, domain: str = "") -> tuple[str, ...] | None:
    """Element types the op's schema allows for its first type-parametrised input
    (``None`` when the op does not exist at that opset)."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None
    constraints = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    for formal in schema.inputs:
        allowed = constraints.get(formal.type_str)
        if allowed is None:
            continue
        names = [_ONNX_TYPES.get(t.removeprefix("tensor(").removesuffix(")")) for t in allowed]
        return tuple(n for n in names if n is not None)
    return ()


def _case_dtypes(sample: Sample, rule: OpSupport, opset: int) -> list[str]:
    """Element types to try a sample in: those the rule declares (the schema allowing),
    then one it does not, to see it declined; or, with no declaration, the common ones."""
    allowed = schema_dtypes(sample.op_type, opset, rule.domain)
    if allowed is None:
        return []
    if all(i is None or i.dtype is not None for i in sample.inputs):
        return ["float32"]  # no input takes the case's type; one case is enough
    if rule.dtypes is None:
        return [d for d in PRACTICAL_DTYPES if d in allowed][:3]
    declared = sorted((d for d in rule.dtypes if d in allowed), key=_dtype_order)
    other = [d for d in PRACTICAL_DTYPES if d in allowed and d not in rule.dtypes][:1]
    return declared + other


def _dtype_order(name: str) -> tuple[int, str]:
    return (PRACTICAL_DTYPES.index(name) if name in PRACTICAL_DTYPES else 99, name)


def _opset_for(rule: OpSupport, since: int) -> int | None:
    """The opset to build a sample at: the catalogue's, moved into the rule's range and
    kept within what onnxruntime runs (``None`` when nothing fits)."""
    from byoc_sdk.versions import runtime_limits

    first, last = rule.opsets
    newest = runtime_limits().max_opset
    low = max(since, first or 1)
    high = min(last if last is not None else newest, newest)
    if low > high:
        return None
    return min(max(OPSET, low), high)


# --- values and models --------------------------------------------------------------


def draw(rng: np.random.Generator, spec: Input, shape: Shape, dtype: str) -> np.ndarray:
    """Values for one input, in the range its sample asks for."""
    np_type = numpy_dtype(spec.dtype or dtype)
    if spec.fixed is not None:
        return np.asarray(spec.fixed, dtype=np_type).reshape(shape)
    if np_type == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if spec.high is not None:
        return rng.integers(0, spec.high, shape).astype(np_type)
    if np.issubdtype(np_type, np.integer):
        return _draw_integers(rng, spec, shape).astype(np_type)
    return _draw_floats(rng, spec, shape).astype(np_type)


def _draw_integers(rng: np.random.Generator, spec: Input, shape: Shape) -> np.ndarray:
    magnitude = rng.integers(1, 5, shape)
    sign = np.where(rng.random(shape) < 0.5, -1, 1)
    match spec.values:
        case "positive":
            return magnitude
        case "nonzero":
            return magnitude * sign
        case "exponent":
            return rng.integers(0, 3, shape)
        case _:
            return rng.integers(-4, 5, shape)


def _draw_floats(rng: np.random.Generator, spec: Input, shape: Shape) -> np.ndarray:
    match spec.values:
        case "positive":
            return rng.uniform(0.5, 2.0, shape)
        case "nonzero":
            return rng.uniform(0.5, 2.0, shape) * np.where(rng.random(shape) < 0.5, -1, 1)
        case "exponent":
            return rng.uniform(-2.0, 2.0, shape)
        case "special":
            values = rng.standard_normal(shape)
            flat = values.reshape(-1)  # a view: writes land in values
            places = rng.permutation(flat.size)[:max(3, flat.size // 4)]
            flat[places] = np.resize([np.nan, np.inf, -np.inf], len(places))
            return values
        case _:
            return rng.standard_normal(shape)


def seed_of(text: str) -> int:
    """A stable seed for a case id (Python's hash() changes between processes)."""
    return zlib.crc32(text.encode())


@dataclass
class _Leaf:
    """A value a model reads from outside its nodes: a graph input or an initializer."""

    name: str
    spec: Input
    shape: Shape
    dtype: str
    as_input: bool
    dynamic: bool = False


def _finish_model(
    nodes: Sequence[onnx.NodeProto], leaves: Sequence[_Leaf], outputs: Sequence[str],
    opset: int, seed: int,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A checked, shape-inferred model of ``nodes`` and random feeds for its inputs."""
    rng = np.random.default_rng(seed)
    inputs, initializers, feeds = [], [], {}
    for leaf in leaves:
        value = draw(rng, leaf.spec, leaf.shape, leaf.dtype)
        if leaf.as_input:
            shape: list[int | str] = list(leaf.shape)
            if leaf.dynamic and shape:
                shape[0] = "N"
            inputs.append(helper.make_tensor_value_info(leaf.name, _elem_type(
                leaf.spec.dtype or leaf.dtype), shape))
            feeds[leaf.name] = value
        else:
            initializers.append(numpy_helper.from_array(value, leaf.name))
    graph = helper.make_graph(list(nodes), "case", inputs,
                              [onnx.ValueInfoProto(name=name) for name in outputs],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=IR_VERSION, producer_name="byoc conformance")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CaseError(str(exc).splitlines()[0]) from exc
    for output in model.graph.output:
        if not output.type.tensor_type.elem_type:
            raise CaseError(f"no type inferred for output {output.name}")
    return model, feeds


def sample_model(
    sample: Sample, dtype: str, opset: int, *, weights_as_inputs: bool = False,
    dynamic: bool = False, seed: int = 0,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model of ``sample`` in element type ``dtype``.

    ``weights_as_inputs`` passes the weights at run time; ``dynamic`` makes the first
    data input's leading dimension symbolic.
    """
    leaves, names = [], []
    first_data = True
    for slot, spec in enumerate(sample.inputs):
        if spec is None:
            names.append("")
            continue
        kind = "x" if spec.role == "data" else ("w" if spec.role == "weight" else "p")
        name = f"{kind}{slot}"
        as_input = spec.role == "data" or (spec.role == "weight" and weights_as_inputs)
        leaf = _Leaf(name, spec, spec.shape, dtype, as_input,
                     dynamic=dynamic and spec.role == "data" and first_data)
        first_data = first_data and spec.role != "data"
        leaves.append(leaf)
        names.append(name)
    outputs = ["y"] + [f"y{i}" for i in range(1, sample.outputs)]
    node = helper.make_node(sample.op_type, _trim(names), outputs, name=sample.op_type,
                            **sample.attrs)
    return _finish_model([node], leaves, outputs, opset, seed)


def _trim(names: list[str]) -> list[str]:
    """Input names without trailing omitted ones ("" in the middle stays)."""
    while names and not names[-1]:
        names.pop()
    return names


# --- op cases -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Variant:
    suffix: str
    weights_as_inputs: bool = False
    dynamic: bool = False


_BASE = _Variant("")
_WEIGHTS_AS_INPUTS = _Variant("-weights-as-inputs", weights_as_inputs=True)
_DYNAMIC = _Variant("-dynamic", dynamic=True)


def _variants(sample: Sample) -> list[_Variant]:
    variants = [_BASE]
    if any(i is not None and i.role == "weight" for i in sample.inputs):
        variants.append(_WEIGHTS_AS_INPUTS)
    if any(i is not None and i.role == "data" and i.shape for i in sample.inputs):
        variants.append(_DYNAMIC)
    return variants


def op_cases(
    target: Target, domain: str, op_type: str, rules: Sequence[OpSupport]
) -> tuple[list[Case], list[Case]]:
    """Claimed and declined cases of one declared op."""
    accepted: list[Case] = []
    refused: list[Case] = []
    seen: set[str] = set()
    for rule in rules:
        for sample in samples_for(op_type, domain):
            opset = _opset_for(rule, sample.since)
            if opset is None:
                continue
            for dtype in _case_dtypes(sample, rule, opset):
                for variant in _variants(sample):
                    case_id = _op_case_id(sample, dtype, opset, variant)
                    if case_id in seen:
                        continue
                    seen.add(case_id)
                    case = _classify_op(target, sample, dtype, opset, variant, case_id)
                    if case is not None:
                        (accepted if case.category == "op" else refused).append(case)
    return _pick(accepted, MAX_CLAIMED), _pick(refused, MAX_DECLINED)


def _op_case_id(sample: Sample, dtype: str, opset: int, variant: _Variant) -> str:
    at = "" if opset == OPSET else f"-opset{opset}"
    return f"{sample.op_type}-{sample.label}-{short(dtype)}{variant.suffix}{at}"


def _classify_op(
    target: Target, sample: Sample, dtype: str, opset: int, variant: _Variant, case_id: str
) -> Case | None:
    """The case, claimed or declined by ``target``; ``None`` when it makes no valid model
    (or a dynamic variant is accepted: the build needs static shapes to compile it)."""
    try:
        model, feeds = sample_model(sample, dtype, opset, weights_as_inputs=
                                    variant.weights_as_inputs, dynamic=variant.dynamic,
                                    seed=seed_of(case_id))
    except CaseError:
        return None
    reason, raised = _op_verdict(target, model)
    if reason is None and variant.dynamic:
        return None
    features = {f"sample:{sample.label}", f"dtype:{dtype}", f"variant:{variant.suffix}"}
    if reason is not None:
        features = {f"reason:{reason}"}
    return Case("op" if reason is None else "host", sample.op_type, case_id, model, feeds,
                dtype, sample.tolerance, reason or "", frozenset(features), raised)


def _op_verdict(target: Target, model: onnx.ModelProto) -> tuple[str | None, str]:
    """What ``target``'s check says of the model's one node: (``None``, "") when it
    accepts it, (reason, "") when it declines it.

    A check that raises gives (``None``, the error): its case is claimed, so that it
    fails naming the error rather than the suite hiding it.
    """
    from byoc_sdk.loader import load_model

    ir_model = load_model(model)
    node = next(iter(ir_model.graph))
    opset = ir_model.opset_imports.get(node.domain or "")
    try:
        return target.check(NodeInfo(node, opset)), ""
    except Exception as exc:  # a vendor check can fail in any way
        return None, describe_exception(exc)


def _pick(cases: Sequence[Case], limit: int) -> list[Case]:
    """Up to ``limit`` cases, each chosen to add the most features not yet covered
    (the earliest wins a tie), so that few cases cover many samples, types and reasons."""
    chosen: list[Case] = []
    covered: set[str] = set()
    remaining = list(cases)
    while remaining and len(chosen) < limit:
        best = max(remaining, key=lambda c: len(c.features - covered))
        if chosen and not best.features - covered:
            break
        chosen.append(best)
        covered |= best.features
        remaining.remove(best)
    return chosen


# --- pattern cases ------------------------------------------------------------------


class _DeadEnd(Exception):
    """The random choices made so far cannot complete an instance of the pattern."""


class _Grower:
    """Grows one instance of a pattern: ops picked among its alternatives, shapes and
    inputs taken from catalogue samples, random where the pattern leaves a choice."""

    def __init__(self, rng: random.Random, dtype: str) -> None:
        self.rng = rng
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.leaves: list[_Leaf] = []
        self.shapes: dict[str, Shape] = {}
        self.bound: dict[str, str] = {}  # named pattern inputs -> value names
        self.labels: list[str] = []
        self.tolerance = 1.0

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{len(self.shapes) + len(self.nodes)}"

    def grow(self, pattern: OpPattern, want: Shape | None = None) -> str:
        """Add nodes for ``pattern``; returns its output's name (shaped ``want`` if set)."""
        op_type = self.rng.choice(pattern.op_types)
        # A shape-generic op takes its shape from its data input, which arrives in the
        # first slot holding a sub-pattern ("anchor"); that one is grown first.
        anchor = next((i for i, p in enumerate(pattern.inputs)
                       if isinstance(_unwrap(p), OpPattern)), 0)
        grown: dict[int, str] = {}
        if op_type in GENERIC:
            shape = want
            if shape is None and anchor < len(pattern.inputs) and isinstance(
                    sub := _unwrap(pattern.inputs[anchor]), OpPattern):
                grown[anchor] = self.grow(sub)
                shape = self.shapes[grown[anchor]]
            shape = shape or self.rng.choice(PATTERN_SHAPES)
            options = [s for s in GENERIC[op_type](shape, anchor) if _fits(s, pattern)]
        else:
            options = [s for s in samples_for(op_type) if _fits(s, pattern)
                       and (want is None or _output_shape(s, self.dtype) == want)]
        if not options:
            raise _DeadEnd(op_type)
        sample = self.rng.choice(options)
        out_shape = shape if op_type in GENERIC else _output_shape(sample, self.dtype)
        if out_shape is None:
            raise _DeadEnd(op_type)
        names = []
        for slot, sub_pattern in enumerate(pattern.inputs):
            spec = sample.inputs[slot] if slot < len(sample.inputs) else None
            names.append(grown.get(slot) or self.value(sub_pattern, spec, op_type, slot) or "")
        output = self.fresh("t")
        attrs = {**sample.attrs, **pattern.attrs}
        self.nodes.append(helper.make_node(op_type, _trim(names), [output],
                                           name=f"{op_type}_{len(self.nodes)}", **attrs))
        self.shapes[output] = out_shape
        self.labels.append(_label(pattern, op_type, sample))
        self.tolerance = max(self.tolerance, sample.tolerance)
        return output

    def value(self, pattern: Pattern, spec: Input | None, op_type: str, slot: int) -> str | None:
        """The value feeding ``slot``: a leaf, a sub-pattern's output, or omitted (``None``)."""
        if isinstance(pattern, OptionalInput):
            if spec is None or (_optional(op_type, slot) and self.rng.random() < 0.35):
                return None
            pattern = pattern.inner
        if spec is None:
            raise _DeadEnd(f"{op_type} slot {slot}")
        if isinstance(pattern, OpPattern):
            return self.grow(pattern, spec.shape)
        if isinstance(pattern, AnyInput) and pattern.name in self.bound:
            name = self.bound[pattern.name]
            if self.shapes[name] != spec.shape:
                raise _DeadEnd(f"input {pattern.name} bound with another shape")
            return name
        as_input = isinstance(pattern, AnyInput) and spec.role == "data"
        leaf = _Leaf(self.fresh("x" if as_input else "c"), spec, spec.shape, self.dtype, as_input)
        self.leaves.append(leaf)
        self.shapes[leaf.name] = spec.shape
        if isinstance(pattern, AnyInput | ConstInput) and pattern.name:
            self.bound[pattern.name] = leaf.name
        return leaf.name


def _unwrap(pattern: Pattern) -> Pattern:
    return pattern.inner if isinstance(pattern, OptionalInput) else pattern


def _fits(sample: Sample, pattern: OpPattern) -> bool:
    """Whether the pattern's inputs can be laid onto the sample's: the sample's inputs
    beyond the pattern's must be omissible, and where either side leaves an input out
    the pattern must say ``optional`` (variadic ops take any number)."""
    variadic = _optional(sample.op_type, len(sample.inputs))
    for slot in range(max(len(sample.inputs), len(pattern.inputs))):
        spec = sample.inputs[slot] if slot < len(sample.inputs) else None
        if slot >= len(pattern.inputs):
            if spec is not None and not _optional(sample.op_type, slot):
                return False
        elif spec is None and not variadic and not isinstance(pattern.inputs[slot],
                                                               OptionalInput):
            return False
    return True


@functools.cache
def _optional(op_type: str, slot: int) -> bool:
    """Whether the op's schema lets input ``slot`` be omitted."""
    try:
        schema = onnx.defs.get_schema(op_type, OPSET)
    except onnx.defs.SchemaError:
        return False
    if slot >= len(schema.inputs):
        return schema.inputs[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    return schema.inputs[slot].option == onnx.defs.OpSchema.FormalParameterOption.Optional


_OUTPUT_SHAPES: dict[tuple[str, str, str], Shape | None] = {}


def _output_shape(sample: Sample, dtype: str) -> Shape | None:
    """The output shape of a sample standing alone (by ONNX shape inference; cached)."""
    key = (sample.op_type, sample.label, dtype)
    if key not in _OUTPUT_SHAPES:
        try:
            model, _ = sample_model(sample, dtype, max(OPSET, sample.since))
            dims = model.graph.output[0].type.tensor_type.shape.dim
            _OUTPUT_SHAPES[key] = tuple(d.dim_value for d in dims)
        except CaseError:
            _OUTPUT_SHAPES[key] = None
    return _OUTPUT_SHAPES[key]


def _label(pattern: OpPattern, op_type: str, sample: Sample) -> str:
    """The part of a pattern case's id this node contributes."""
    parts = []
    if len(pattern.op_types) > 1:
        parts.append(op_type)
    if op_type in GENERIC:
        # Under a pattern, whether an operand is an input or a weight is the pattern's
        # call; the variant still says how it broadcasts.
        variant = sample.variant.replace("-input", "").strip("-+")
        if variant and variant != "w":
            parts.append(variant)
    else:
        parts.append(sample.label)
    return "-".join(parts)


def pattern_instances(
    pattern: OpPattern, dtype: str, seed: int, attempts: int = PATTERN_ATTEMPTS
) -> Iterator[tuple[str, onnx.ModelProto, dict[str, np.ndarray], float]]:
    """Distinct random instances of ``pattern``: (label, model, feeds, tolerance)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    for attempt in range(attempts):
        grower = _Grower(rng, dtype)
        try:
            output = grower.grow(pattern)
        except _DeadEnd:
            continue
        signature = _signature(grower)
        if signature in seen:
            continue
        seen.add(signature)
        try:
            model, feeds = _finish_model(grower.nodes, grower.leaves, [output], OPSET,
                                         seed + attempt)
        except CaseError:
            continue
        yield "-".join(p for p in grower.labels if p), model, feeds, grower.tolerance


def _signature(grower: _Grower) -> str:
    """What makes two instances the same: their ops, attributes, inputs and shapes."""
    nodes = [(n.op_type, list(n.input), str(n.attribute)) for n in grower.nodes]
    leaves = [(leaf.name, leaf.shape, leaf.as_input, leaf.spec.values, leaf.spec.fixed,
               leaf.spec.dtype) for leaf in grower.leaves]
    return repr((nodes, leaves))


def pattern_cases(target: Target, composite: CompositePattern) -> tuple[list[Case], list[Case]]:
    """Claimed and declined instances of one of ``target``'s patterns."""
    accepted: list[Case] = []
    refused: list[Case] = []
    ids: set[str] = set()
    for dtype in PATTERN_DTYPES:
        seed = seed_of(f"{target.name}/{composite.name}/{dtype}")
        for label, model, feeds, tolerance in pattern_instances(composite.pattern, dtype, seed):
            verdict, reason = _pattern_verdict(target, composite, model)
            if verdict == "other":
                continue
            case_id = _unique(f"{composite.name}-{label}-{short(dtype)}".replace("--", "-"), ids)
            claimed = verdict != "declined"
            features = ({f"node:{p}" for p in label.split("-")} | {f"dtype:{dtype}"}
                        if claimed else {f"reason:{reason}"})
            case = Case("pattern" if claimed else "pattern_declined", composite.name, case_id,
                        model, feeds, dtype, tolerance * 2, "" if claimed else reason,
                        frozenset(features), reason if verdict == "raised" else "")
            (accepted if claimed else refused).append(case)
    return _pick(accepted, MAX_CLAIMED), _pick(refused, MAX_DECLINED - 1)


def _unique(case_id: str, taken: set[str]) -> str:
    candidate, number = case_id, 2
    while candidate in taken:
        candidate = f"{case_id}-{number}"
        number += 1
    taken.add(candidate)
    return candidate


def _pattern_verdict(
    target: Target, composite: CompositePattern, model: onnx.ModelProto
) -> tuple[str, str]:
    """("claimed", ""), ("declined", why) or ("other", why): whether the partitioner
    would fuse this instance into ``composite``, as MergeComposite decides it; or
    ("raised", the error) when ``composite``'s check raises (a claimed case that fails
    saying so)."""
    from byoc_sdk.loader import load_model
    from byoc_sdk.patterns import Matcher
    from partition.prepare import PrepareGraphPass
    from partition.support import opset_of

    ir_model = load_model(model)
    PrepareGraphPass()(ir_model)
    nodes = list(ir_model.graph)
    matcher = Matcher(ir_model.graph, {n: i for i, n in enumerate(nodes)}, set(),
                      lambda n: opset_of(ir_model, n))
    root = nodes[-1]
    for other in target.patterns:
        match = matcher.match(other.pattern, root)
        if match is None:
            continue
        try:
            reason = other.evaluate(match)
        except Exception as exc:  # a vendor check can fail in any way
            if other is composite:
                return "raised", describe_exception(exc)
            reason = None
        if other is composite:
            if len(match.nodes) != len(nodes):
                return "other", "the match does not cover the instance"
            return ("claimed", "") if reason is None else ("declined", reason)
        if reason is None:
            return "other", f"pattern {other.name} fuses it first"
    return "other", "the pattern does not match"
