"""The example targets' op set, as numpy functions: what the vendor runtimes execute.

This is the *runtime* half of the examples' op definitions; it imports numpy only, so a
machine that runs packages needs nothing of the codegens. The codegen half, which
decides what a target accepts, is :mod:`examples.targets.ops`.

Every function takes and returns float32 arrays. Binary ops rely on numpy broadcasting,
which covers the cases the targets accept (equal shapes, a scalar or a row vector).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Unary = Callable[[np.ndarray], np.ndarray]
Binary = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-x) overflows to inf for very negative x; 1 / (1 + inf) is the right limit, 0.
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


def _exp(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp of a large input is inf, as in onnxruntime
        return np.exp(x)


#: Elementwise ops of one input.
UNARY: dict[str, Unary] = {
    "Relu": lambda x: np.maximum(x, np.float32(0)),
    "Sigmoid": _sigmoid,
    "Tanh": np.tanh,
    "Abs": np.abs,
    "Neg": np.negative,
    "Exp": _exp,
}

#: Elementwise ops of two inputs (the targets accept them on two inputs only).
BINARY: dict[str, Binary] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Max": np.maximum,
    "Min": np.minimum,
}

#: The compute-heavy op: ``x @ w`` with ``w`` a constant matrix.
MATMUL = "MatMul"

#: The one composite the targets fuse: ``x @ w + b`` with ``w`` and ``b`` constants.
MATMUL_ADD = "matmul_add"


def matmul_add(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The fused composite, for runtimes that keep it as one op."""
    return np.matmul(x, w) + b
