"""Elementwise ops: their C expressions, the epilogue that fuses them, and the map kernel.

An :class:`Epilogue` is a chain of elementwise steps applied to each value a kernel
produces before it is stored: ``Relu(Add(conv, residual))`` costs one extra load and a
compare per output element and no intermediate buffer. Every kernel stores through its
epilogue; a kernel whose epilogue is empty just stores.

Elementwise ops that no producer could absorb (both inputs computed elsewhere, or a
region input) become a :class:`MapKernel`: a loop nest over the output whose first step
reads all its operands, and which absorbs the ops after it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reference_backends.cpu.cwriter import CWriter, float_literal
from reference_backends.cpu.graph import Op, Tensor, UnsupportedError
from reference_backends.cpu.kernels.base import (
    Coords,
    Kernel,
    KernelContext,
    loop_nest,
    loop_schedule,
    operand_index,
    stored_groups,
)
from reference_backends.cpu.params import LoopSchedule

Expr = Callable[[Sequence[str], Op], str]


def _f(op: Op, name: str, default: float) -> str:
    return float_literal(float(op.attr(name, default)))


#: Clip's bounds when omitted: the float range (numeric_limits<float>::lowest() and
#: max(), as the ONNX spec and onnxruntime have it), so infinities are clamped too.
_FLOAT_MAX = 3.4028234663852886e38


def _clip(args: Sequence[str], op: Op) -> str:
    x = args[0]
    if op.opset < 11:
        lo, hi = _f(op, "min", -_FLOAT_MAX), _f(op, "max", _FLOAT_MAX)
    else:
        lo = args[1] if len(args) > 1 and args[1] else float_literal(-_FLOAT_MAX)
        hi = args[2] if len(args) > 2 and args[2] else float_literal(_FLOAT_MAX)
    return f"byoc_minf(byoc_maxf({x}, {lo}), {hi})"


def _gelu(args: Sequence[str], op: Op) -> str:
    kind = op.attr("approximate", "none")
    if kind == "tanh":
        return f"byoc_gelu_tanh({args[0]})"
    if kind == "none":
        return f"byoc_gelu({args[0]})"
    raise UnsupportedError(f"Gelu {op.name!r}: approximate={kind!r} is not supported")


def _fold(function: str) -> Expr:
    """A variadic op as nested calls of a binary C function."""

    def expr(args: Sequence[str], op: Op) -> str:
        result = args[0]
        for arg in args[1:]:
            result = f"{function}({result}, {arg})"
        return result

    return expr


def _pow(args: Sequence[str], op: Op) -> str:
    exponent = op.const_input(1)
    base = args[0]
    if exponent is not None and exponent.size == 1:
        value = float(exponent.reshape(-1)[0])
        # pow(x, 0.5) is sqrt(x) except at -inf (+inf, where sqrt gives NaN) and at -0
        # (+0, where sqrt gives -0); fabsf keeps NaN a NaN.
        special = {1.0: base, 2.0: f"{base} * {base}", 3.0: f"{base} * {base} * {base}",
                   0.5: f"({base} == (-INFINITY) ? INFINITY : fabsf(sqrtf({base})))",
                   -1.0: f"1.0f / {base}"}
        if value in special:
            return special[value]
    return f"powf({base}, (float){args[1]})"


def _batchnorm(args: Sequence[str], op: Op) -> str:
    x, scale, bias, mean, var = args
    eps = _f(op, "epsilon", 1e-5)
    return f"({x} - {mean}) * ({scale} / sqrtf({var} + {eps})) + {bias}"


#: op type -> C expression of the arguments (the running value first).
EXPRESSIONS: dict[str, Expr] = {
    "Add": lambda a, op: f"{a[0]} + {a[1]}",
    "Sub": lambda a, op: f"{a[0]} - {a[1]}",
    "Mul": lambda a, op: f"{a[0]} * {a[1]}",
    "Div": lambda a, op: f"{a[0]} / {a[1]}",
    "Pow": _pow,
    "Max": _fold("byoc_maxf"),
    "Min": _fold("byoc_minf"),
    # Zero first: on a tie byoc_maxf gives its second operand, so -0.0 stays -0.0 as in
    # onnxruntime (and a NaN still comes through).
    "Relu": lambda a, op: f"byoc_maxf(0.0f, {a[0]})",
    "LeakyRelu": lambda a, op: f"byoc_leaky({a[0]}, {_f(op, 'alpha', 0.01)})",
    "Clip": _clip,
    "Sigmoid": lambda a, op: f"byoc_sigmoid({a[0]})",
    "Tanh": lambda a, op: f"byoc_tanhf({a[0]})",
    "Erf": lambda a, op: f"byoc_erff({a[0]})",
    "Exp": lambda a, op: f"byoc_expf({a[0]})",
    "Log": lambda a, op: f"logf({a[0]})",
    "Sqrt": lambda a, op: f"sqrtf({a[0]})",
    "HardSigmoid": lambda a, op: (
        f"byoc_hardsigmoid({a[0]}, {_f(op, 'alpha', 0.2)}, {_f(op, 'beta', 0.5)})"),
    "HardSwish": lambda a, op: f"{a[0]} * byoc_hardsigmoid({a[0]}, {float_literal(1 / 6)}, 0.5f)",
    "Gelu": _gelu,
    "BatchNormalization": _batchnorm,
    # Gemm's ``beta * C`` term, made by the Gemm lowering (not an ONNX op).
    "byoc.AddScaled": lambda a, op: f"{a[0]} + {_f(op, 'beta', 1.0)} * {a[1]}",
}

#: The ONNX ops among them.
ELEMENTWISE_OPS = frozenset(name for name in EXPRESSIONS if "." not in name)


@dataclass(frozen=True)
class Operand:
    """A tensor an elementwise step reads, with the shape it broadcasts from."""

    tensor: Tensor
    shape: tuple[int, ...]

    @property
    def storage_axes(self) -> tuple[int, ...] | None:
        """The tensor's storage order; a reshaped view of it (a bias read as (C, 1, 1))
        is only ever taken of 1-D or constant tensors, which are row-major."""
        return self.tensor.storage_axes if self.shape == self.tensor.shape else None


#: An omitted optional input (Clip without a min, say).
ABSENT = Operand(Tensor("<absent>", (), "float32"), ())


@dataclass
class Step:
    """One elementwise op; ``args[i]`` is ``None`` where it reads the running value."""

    op: Op
    args: list[Operand | None]

    def expression(self, ctx: KernelContext, value: str | None, out_shape: Sequence[int],
                   coords: Coords) -> str:
        texts = []
        for arg in self.args:
            if arg is ABSENT:
                texts.append("")
            elif arg is None:
                if value is None:
                    raise AssertionError(f"{self.op.name}: no running value to read")
                texts.append(value)
            else:
                load = ctx.load(arg.tensor, operand_index(arg.shape, out_shape, coords,
                                                          arg.storage_axes))
                floating = arg.tensor.dtype == "float32" or arg.tensor.is_scalar_const
                texts.append(load if floating else f"(float){load}")
        return EXPRESSIONS[self.op.op_type](texts, self.op)


def operands_of(op: Op, chain: Tensor | None) -> list[Operand | None]:
    """The step arguments of elementwise ``op``: ``None`` where it reads ``chain``.

    BatchNormalization's per-channel inputs broadcast along axis 1, not from the right,
    so they get the shape (C, 1, ..., 1).
    """
    rank = op.output.rank
    args: list[Operand | None] = []
    for index, tensor in enumerate(op.inputs):
        if tensor is None:
            args.append(ABSENT)
            continue
        if chain is not None and tensor is chain:
            args.append(None)
            continue
        shape = tensor.shape
        if op.op_type == "BatchNormalization" and index > 0 and rank >= 2:
            shape = (tensor.size,) + (1,) * (rank - 2)
        args.append(Operand(tensor, shape))
    return args


@dataclass
class Epilogue:
    """The elementwise steps between a kernel's result and memory, and the output."""

    output: Tensor
    steps: list[Step] = field(default_factory=list)

    def operands(self) -> list[Tensor]:
        return [a.tensor for s in self.steps for a in s.args if a is not None and a is not ABSENT]

    def describe(self) -> str:
        return ", ".join(f"{s.op.op_type} {s.op.name!r}" for s in self.steps)

    def extend(self, op: Op, chain: Tensor) -> None:
        """Fuse ``op``, which reads the running value ``chain``; it now writes ``op``'s output."""
        self.steps.append(Step(op, operands_of(op, chain)))
        self.output = op.output

    def store(self, w: CWriter, ctx: KernelContext, value: str | None, coords: Coords) -> None:
        """Write ``value`` (``None``: the first step reads only operands) through the steps
        to the output at ``coords``."""
        out = self.output
        index = operand_index(out.shape, out.shape, coords, out.storage_axes)
        target = f"{ctx.ptr(out, write=True)}[{index}]"
        if not self.steps:
            w.line(f"{target} = {value};")
            return
        with w.block():
            declared = value is not None
            if declared:  # the kernel's value may be any expression: evaluate it first
                w.line(f"float e = {value};")
            for step in self.steps:
                expr = step.expression(ctx, "e" if declared else None, out.shape, coords)
                w.line(f"{'' if declared else 'float '}e = {expr};")
                declared = True
            w.line(f"{target} = e;")


@dataclass(eq=False)
class MapKernel(Kernel):
    """A loop nest over the output of an elementwise op that no producer absorbed."""

    def emit(self, w: CWriter, ctx: KernelContext) -> None:
        params: LoopSchedule = loop_schedule(self.params)
        out = self.output
        shapes = [a.shape for s in self.epilogue.steps for a in s.args
                  if a is not None and a is not ABSENT]
        groups = stored_groups(out.shape, shapes, out.storage_axes)
        extents = [_extent(out.shape, g) for g in groups]
        names = [f"i{n}" for n in range(len(groups))]
        coords = [(start, stop, name) for (start, stop), name in zip(groups, names, strict=True)]
        if not extents:  # a scalar
            self.store(w, ctx, None, [])
            return
        parallel = ctx.parallel(out.size, params.parallel_min)
        with loop_nest(w, extents, names, parallel=parallel, simd=params.simd,
                       unroll=params.unroll):
            self.store(w, ctx, None, coords)


def _extent(shape: Sequence[int], group: tuple[int, int]) -> int:
    start, stop = group
    size = 1
    for dim in shape[start:stop]:
        size *= dim
    return size


def map_kernel(op: Op, params: LoopSchedule) -> MapKernel:
    """The map kernel of elementwise ``op`` (every argument read from memory)."""
    if op.op_type == "BatchNormalization" and op.input(0).rank < 2:
        raise UnsupportedError(f"BatchNormalization {op.name!r} of a rank-1 tensor")
    epilogue = Epilogue(op.output, [Step(op, operands_of(op, None))])
    return MapKernel(op, epilogue, params)


def fusable(op: Op, chain: Tensor) -> bool:
    """Whether elementwise ``op`` can be applied to the running value ``chain`` in the
    producer's store: same output shape (no broadcasting *of* the chain), float32."""
    return (
        op.op_type in ELEMENTWISE_OPS
        and op.output.shape == chain.shape
        and op.output.dtype == "float32"
        and chain.dtype == "float32"
        and not (op.op_type == "BatchNormalization" and chain.rank < 2)
        and not (op.op_type == "BatchNormalization" and op.input(0) is not chain)
    )
