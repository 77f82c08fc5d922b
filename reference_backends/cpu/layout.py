"""The layout pass: which 4-D activations of a region are stored channels-last (NHWC).

Tensors keep their logical NCHW shapes; a tensor marked ``layout = "NHWC"`` is only
*stored* with its channels innermost, and every index the kernels compute goes through
the tensor's storage order (``base.operand_index``). So any kernel can write any layout
(its epilogue's store does the conversion for free), and the only layout a kernel
depends on is the one its main input is *read* in:

* Conv (constant weights), MaxPool, AveragePool and GlobalAveragePool have NHWC
  kernels (products with pixels as rows and channels as columns, windows vectorized
  over channels) and read either layout;
* elementwise ops read each operand in its own layout;
* everything else (views such as Reshape and Flatten, Softmax, reductions over other
  axes, Concat, Transpose, Slice, Gather, MatMul...) reads NCHW: an NHWC input gets a
  ``byoc.Relayout`` copy first.

The region's inputs and outputs are NCHW (the runtime's contract). A tensor becomes
NHWC when a Conv or a pool produces it, or an elementwise op of an NHWC operand, and
some consumer reads NHWC natively; so along Conv/pool/elementwise chains no conversion
kernel runs at all: the last kernel reads NHWC and writes the NCHW output. A region
input of at least ``ENTRY_CHANNELS`` channels that a Conv or pool reads is copied to
NHWC by one relayout kernel first; a shallower one (an RGB image) is read NCHW by the
first kernel, which writes NHWC.
"""

from __future__ import annotations

from reference_backends.cpu.graph import Op, RegionGraph, Tensor, is_folded
from reference_backends.cpu.kernels.elementwise import ELEMENTWISE_OPS

#: Ops whose result may be stored NHWC (their kernels write through the layout-aware
#: store; other producers keep NCHW so that a following kernel reads them as made).
_PRODUCERS = frozenset({"Conv", "MaxPool", "AveragePool"})


def assign_layouts(graph: RegionGraph, layout: str) -> None:
    """Mark the tensors of ``graph`` stored in ``layout`` and insert the conversions the
    NCHW-only consumers need. NCHW regions are left exactly as read."""
    if layout == "NCHW":
        return
    for op in graph.ops:
        if not is_folded(op) and _stores_channels_last(op):
            op.output.layout = layout
    for tensor in graph.inputs:
        if _converted_on_entry(tensor):
            uses = _uses(tensor)
            copy = _insert_relayout(graph, tensor, layout)
            for op, index in uses:
                if reads_channels_last(op, index):
                    _rewire(op, index, tensor, copy)
    converted: dict[Tensor, Tensor] = {}
    for op in list(graph.ops):
        for index, tensor in enumerate(op.inputs):
            if tensor is None or tensor.layout == "NCHW" or reads_channels_last(op, index):
                continue
            if tensor not in converted:
                converted[tensor] = _insert_relayout(graph, tensor, "NCHW")
            _rewire(op, index, tensor, converted[tensor])


def reads_channels_last(op: Op, index: int) -> bool:
    """Whether ``op`` has a kernel that reads its input ``index`` stored NHWC."""
    if op.op_type in ELEMENTWISE_OPS or op.op_type == "byoc.Relayout":
        return True
    if index != 0:
        return False
    if op.op_type == "Conv":
        weights = op.input(1)
        return weights is not None and weights.is_const and weights.rank == 4
    if op.op_type in ("MaxPool", "AveragePool"):
        return len(op.attr("kernel_shape") or ()) == 2
    return op.op_type == "GlobalAveragePool"


#: Input channels from which a region input that a window op (Conv, pool) reads is
#: copied to NHWC on entry; shallower inputs (an RGB image) are read NCHW by the first
#: kernel, which writes NHWC (an NCHW stem convolution has no im2col to speak of).
ENTRY_CHANNELS = 8


def _converted_on_entry(tensor: Tensor) -> bool:
    """Whether region input ``tensor`` gets one relayout kernel at the region's start."""
    return (_distinct_layouts(tensor) and tensor.shape[1] >= ENTRY_CHANNELS
            and any(op.op_type not in ELEMENTWISE_OPS and reads_channels_last(op, index)
                    for op, index in _uses(tensor)))


def _uses(tensor: Tensor) -> list[tuple[Op, int]]:
    """Every (consumer, input index) reading ``tensor``."""
    return [(op, index) for op in dict.fromkeys(tensor.consumers)
            for index, read in enumerate(op.inputs) if read is tensor]


def _stores_channels_last(op: Op) -> bool:
    tensor = op.output
    if not _distinct_layouts(tensor) or tensor.output_index is not None:
        return False
    if op.op_type in ELEMENTWISE_OPS:
        made = any(t is not None and t.layout != "NCHW" and t.shape == tensor.shape
                   for t in op.inputs)
    else:
        made = op.op_type in _PRODUCERS
    return made and any(reads_channels_last(consumer, index)
                        for consumer, index in _uses(tensor))


def _distinct_layouts(tensor: Tensor) -> bool:
    """A computed 4-D float tensor (or region input) whose NHWC storage differs from its
    NCHW storage (one channel or one pixel is the same memory either way; NCHW then)."""
    return (tensor.rank == 4 and tensor.dtype == "float32" and not tensor.is_const
            and tensor.alias_of is None and tensor.shape[1] > 1
            and tensor.shape[2] * tensor.shape[3] > 1)


def _insert_relayout(graph: RegionGraph, tensor: Tensor, layout: str) -> Tensor:
    """A ``byoc.Relayout`` op copying ``tensor`` to ``layout``, right after its producer
    (first, for a region input)."""
    suffix = layout.lower()
    copy = Tensor(f"{tensor.name}/{suffix}", tensor.shape, tensor.dtype, layout=layout)
    producer = tensor.producer
    name = producer.name if producer is not None else tensor.name
    opset = producer.opset if producer is not None else graph.ops[0].opset
    op = Op(f"{name}/to_{suffix}", "byoc.Relayout", [tensor], [copy], {}, opset)
    copy.producer = op
    tensor.consumers.append(op)
    position = graph.ops.index(producer) + 1 if producer is not None else 0
    graph.ops.insert(position, op)
    return copy


def _rewire(op: Op, index: int, old: Tensor, new: Tensor) -> None:
    """Make input ``index`` of ``op`` read ``new`` instead of ``old``; a view of ``old``
    becomes a view of ``new``."""
    op.inputs[index] = new
    if old not in op.inputs:
        old.consumers = [c for c in old.consumers if c is not op]
    if op not in new.consumers:
        new.consumers.append(op)
    for output in op.outputs:
        if output.alias_of is old:
            output.alias_of = new
