"""From a region to a program: kernels in order, fusion, BN folding, and memory.

:func:`plan` reads the region, folds each BatchNormalization that follows a Conv with
constant weights into that Conv (the per-channel factors are computed here, at build
time, and applied while the weights are packed), makes one kernel per remaining op and
lets each kernel absorb the chain of elementwise ops after it (after the layout pass
of ``layout.py`` chose how 4-D activations are stored), then places every
intermediate tensor in one workspace, reusing memory between tensors whose lifetimes do
not overlap.

A kernel absorbs the op after it when that op is elementwise on the kernel's result,
keeps its shape, is the result's only reader, and reads nothing that is computed later;
the result is then never stored, only the chain's end is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from byoc_sdk.codegen import Region
from reference_backends.cpu.graph import Op, RegionGraph, Tensor, is_folded, read_region
from reference_backends.cpu.kernels import lower_op
from reference_backends.cpu.kernels.base import Kernel
from reference_backends.cpu.kernels.elementwise import fusable
from reference_backends.cpu.layout import assign_layouts
from reference_backends.cpu.params import RegionParams, as_record, region_params

_ALIGN = 64


@dataclass
class Program:
    """What the C writer needs: kernels in execution order and where tensors live."""

    graph: RegionGraph
    kernels: list[Kernel]
    region: RegionParams
    #: Workspace byte offset of every tensor (by root) that lives in the workspace.
    offsets: dict[Tensor, int] = field(default_factory=dict)
    workspace_bytes: int = 0
    #: Region output -> the tensor whose storage is its output buffer; outputs missing
    #: here are copied into their buffers after the last kernel.
    output_roots: dict[Tensor, Tensor] = field(default_factory=dict)

    def kernel_params(self) -> dict[str, dict]:
        """Each kernel's schedule as a tuning record entry, by kernel name: what a tuner
        starts from, and what ``{"kernels": ...}`` in a record overrides. Outside NCHW
        every entry also names the region's layout."""
        layout = {} if self.region.layout == "NCHW" else {"layout": self.region.layout}
        return {k.name: {**layout, **as_record(k.params)} for k in self.kernels}


def plan(region: Region) -> Program:
    """Read, fuse and lay out ``region``."""
    params = region_params(region.options)
    graph = read_region(region)
    fold_batchnorms(graph)
    assign_layouts(graph, params.layout)
    kernels = make_kernels(graph, lambda op: lower_op(op, params))
    program = Program(graph, kernels, params)
    place_tensors(program)
    return program


# --- BatchNormalization folding ------------------------------------------------------


def fold_batchnorms(graph: RegionGraph) -> None:
    """Fold each BatchNormalization that reads only a Conv with constant weights into it.

    The Conv gets ``byoc.scale`` (per output channel, applied to its weights when they
    are packed) and ``byoc.bias`` (the folded bias), and writes the BN's output.
    """
    for bn in [op for op in graph.ops if op.op_type == "BatchNormalization"]:
        conv = bn.inputs[0].producer
        if not _foldable(conv, bn):
            continue
        scale, beta, mean, var = (bn.const_input(i).astype(np.float64) for i in range(1, 5))
        factor = scale / np.sqrt(var + float(bn.attr("epsilon", 1e-5)))
        bias = conv.const_input(2)
        bias = np.zeros_like(mean) if bias is None else bias.astype(np.float64)
        conv.attrs["byoc.scale"] = factor.astype(np.float32)
        conv.attrs["byoc.bias"] = ((bias - mean) * factor + beta).astype(np.float32)
        conv.attrs["byoc.folded"] = bn.name
        conv.outputs[0] = bn.output
        bn.output.producer = conv
        graph.ops.remove(bn)


def _foldable(conv: Op | None, bn: Op) -> bool:
    if conv is None or conv.op_type != "Conv":
        return False
    value = conv.output
    return (
        conv.input(1).is_const
        and (conv.input(2) is None or conv.input(2).is_const)
        and all(bn.input(i) is not None and bn.input(i).is_const for i in range(1, 5))
        and value.consumers == [bn]
        and value.output_index is None
        and "byoc.scale" not in conv.attrs
    )


# --- kernels and fusion --------------------------------------------------------------


def make_kernels(graph: RegionGraph, lower: Callable[[Op], Kernel]) -> list[Kernel]:
    """One kernel per op that needs code (made by ``lower``), each with its fused
    elementwise chain. The cuda generator shares this with its own ``lower``."""
    kernels: list[Kernel] = []
    made: set[Tensor] = set()
    absorbed: set[Op] = set()
    for op in graph.ops:
        if op in absorbed or is_folded(op):
            continue
        kernel = lower(op)
        _absorb_chain(kernel, made, absorbed)
        kernels.append(kernel)
        made.add(kernel.output)
    return kernels


def _absorb_chain(kernel: Kernel, made: set[Tensor], absorbed: set[Op]) -> None:
    while True:
        value = kernel.output
        if value.output_index is not None or len(value.consumers) != 1:
            return
        consumer = value.consumers[0]
        if consumer in absorbed or not fusable(consumer, value):
            return
        others = [t for t in consumer.inputs if t is not None and t is not value]
        if not all(_available(t, made) for t in others):
            return
        kernel.epilogue.extend(consumer, value)
        absorbed.add(consumer)


def _available(tensor: Tensor, made: set[Tensor]) -> bool:
    """Whether ``tensor`` is in memory before the kernel being built runs."""
    return tensor.is_const or tensor.input_index is not None or tensor.root() in made


# --- memory ----------------------------------------------------------------------------


def place_tensors(program: Program) -> None:
    """Give region outputs their buffers and pack the rest into one workspace."""
    graph, kernels = program.graph, program.kernels
    produced = {k.output.root(): index for index, k in enumerate(kernels)}
    for output in graph.outputs:
        root = output.root()
        if root in produced and root not in program.output_roots.values():
            program.output_roots[output] = root
    in_outputs = set(program.output_roots.values())
    last_use: dict[Tensor, int] = {}
    for index, kernel in enumerate(kernels):
        for tensor in [*kernel.reads(), *kernel.temporaries()]:
            last_use[tensor.root()] = index
    for output in graph.outputs:  # copied into output buffers after the last kernel
        if output not in program.output_roots:
            last_use[output.root()] = len(kernels)
    lifetimes: list[tuple[Tensor, int, int]] = []
    for index, kernel in enumerate(kernels):
        root = kernel.output.root()
        if root not in in_outputs:
            lifetimes.append((root, index, max(index, last_use.get(root, index))))
        for temporary in kernel.temporaries():
            lifetimes.append((temporary, index, index))
    program.offsets, program.workspace_bytes = pack_lifetimes(lifetimes)


def pack_lifetimes(lifetimes: list[tuple[Tensor, int, int]]) -> tuple[dict[Tensor, int], int]:
    """Offsets for tensors alive over ``[first, last]`` kernels: largest first, each at
    the lowest offset that overlaps no tensor alive at the same time."""
    placed: list[tuple[int, int, int, int]] = []  # offset, end, first, last
    offsets: dict[Tensor, int] = {}
    for tensor, first, last in sorted(lifetimes, key=lambda t: -_nbytes(t[0])):
        size = _nbytes(tensor)
        offset = 0
        for start, end, other_first, other_last in sorted(placed):
            if other_last < first or other_first > last:
                continue
            if offset + size <= start:
                break
            offset = max(offset, end)
        placed.append((offset, offset + size, first, last))
        offsets[tensor] = offset
    total = max((end for _, end, _, _ in placed), default=0)
    return offsets, total


def _nbytes(tensor: Tensor) -> int:
    size = tensor.size * np.dtype(tensor.dtype).itemsize
    return -(-max(size, 1) // _ALIGN) * _ALIGN
