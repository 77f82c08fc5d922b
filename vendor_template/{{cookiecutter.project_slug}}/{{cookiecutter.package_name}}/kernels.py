"""The device, in numpy: what the runtime executes for each op.

This is the part to replace with calls into your driver or simulator. Every kernel takes
and returns float32 arrays; binary ops broadcast as numpy does, which covers what the
target accepts (equal shapes, or a constant scalar or row).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .about import DENSE_RELU

Kernel = Callable[..., np.ndarray]

_ZERO = np.float32(0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(1) / (np.float32(1) + np.exp(-x))


def dense_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The fused composite: ``Relu(x @ w + b)``."""
    return np.maximum(np.matmul(x, w) + b, _ZERO)


#: op name -> (number of inputs, kernel)
KERNELS: dict[str, tuple[int, Kernel]] = {
    "Relu": (1, lambda x: np.maximum(x, _ZERO)),
    "Sigmoid": (1, _sigmoid),
    "Tanh": (1, np.tanh),
    "Abs": (1, np.abs),
    "Neg": (1, np.negative),
    "Exp": (1, np.exp),
    "Add": (2, np.add),
    "Sub": (2, np.subtract),
    "Mul": (2, np.multiply),
    "Div": (2, np.divide),
    "Max": (2, np.maximum),
    "Min": (2, np.minimum),
    "MatMul": (2, np.matmul),
    DENSE_RELU: (3, dense_relu),
}


def execute(op: str, args: list[np.ndarray]) -> np.ndarray:
    """Run one op. Overflow to infinity (Exp, Div by zero) is what ONNX gives too."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return np.asarray(KERNELS[op][1](*args), dtype=np.float32)
