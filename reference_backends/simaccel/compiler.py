"""simaccel's codegen: a region in, a validated program for the simulated chip out.

``compile_region`` lowers the region to layers (:mod:`.frontend`), places every tensor in
a DRAM slot, tiles and schedules each layer (:mod:`.matrix`, :mod:`.vector`,
:mod:`.pipeline`), encodes the program (:mod:`.isa`) and runs the simulator's own
validator on it, so a program the chip would refuse — one that does not fit SRAM, reads
out of bounds or races — is never emitted: the region falls back to the host instead,
with the reason in the build report.

Layers run one after another, each from DRAM to DRAM; inside a layer DMA, the systolic
array and the vector unit overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from byoc_sdk.codegen import Binary, Region
from reference_backends.simaccel import isa
from reference_backends.simaccel.frontend import (
    NO_ACTIVATION,
    AliasLayer,
    CompileError,
    ConvLayer,
    ElementwiseLayer,
    Epilogue,
    Layer,
    LoweredRegion,
    MatMulLayer,
    PoolLayer,
    lower_region,
)
from reference_backends.simaccel.isa import Slot, SlotKind, VecOp
from reference_backends.simaccel.limits import SimAccelLimits, describe_bytes
from reference_backends.simaccel.matrix import (
    ConvGeometry,
    GemmGeometry,
    Product,
    matrix_steps,
    plan,
)
from reference_backends.simaccel.pipeline import DoesNotFit, Pipeline, Semaphores, SramPlan
from reference_backends.simaccel.tiles import FeatureMap
from reference_backends.simaccel.vector import (
    Operand,
    broadcast_strides,
    depthwise_layout,
    elementwise_layout,
    pool_layout,
)

RUNTIME = "simaccel"


def compile_region(region: Region) -> Binary:
    """The codegen of the simaccel target (``Callable[[Region], Artifact]``).

    Codegen option ``machine`` (a mapping of :class:`SimAccelLimits` fields) compiles for
    a chip other than the default one.
    """
    try:
        machine = SimAccelLimits.from_options(region.options)
    except (TypeError, ValueError) as exc:
        raise CompileError(f"bad machine option: {exc}") from exc
    data, constants = compile_layers(lower_region(region), machine)
    return Binary(data, runtime=RUNTIME, constants=constants)


def compile_layers(lowered: LoweredRegion, machine: SimAccelLimits) -> tuple[bytes, list[str]]:
    """The program's bytes and the constants it reads (in slot order), validated by the
    simulator."""
    from byoc_sdk import _native

    builder = ProgramBuilder(lowered, machine)
    data = builder.build()
    try:
        _native.simaccel.validate(data)
    except _native.simaccel.ProgramError as exc:  # a compiler bug: say so, never emit it
        raise CompileError(f"internal error, the simulator refuses the program: {exc}") from exc
    return data, builder.constant_names


class ProgramBuilder:
    """Places tensors in DRAM slots and emits every layer's instructions."""

    def __init__(self, lowered: LoweredRegion, machine: SimAccelLimits) -> None:
        self.lowered = lowered
        self.machine = machine
        self.slots: list[Slot] = []
        self.dram_bytes = 0
        self.code: list[isa.Instruction] = []
        self.data = bytearray()
        self.semaphores = Semaphores(self.code)
        self.by_name: dict[str, int] = {}
        self.constant_names: list[str] = []
        self.aliases: dict[str, str] = {}
        for index, name in enumerate(lowered.inputs):
            self.by_name[name] = self._slot(SlotKind.INPUT, index, name)
        # Outputs by their own names; one that is also an input (or repeats another output)
        # gets a fresh name, and _with_copies fills it with a copy.
        self.outputs: list[str] = []
        self.copy_of: dict[str, str] = {}
        for index, name in enumerate(lowered.outputs):
            out = name
            if name in self.by_name:
                out = f"{name}/simaccel.output{index}"
                self.lowered.shapes[out] = self.shape(name)
                self.lowered.dtypes[out] = self.lowered.dtypes[name]
                self.copy_of[out] = name
            self.outputs.append(out)
            self.by_name[out] = self._slot(SlotKind.OUTPUT, index, out)

    # --- DRAM slots ------------------------------------------------------------------

    def _slot(self, kind: SlotKind, index: int, name: str, data_offset: int = 0) -> int:
        dtype = self.lowered.dtypes.get(name, "float32")
        if dtype != "float32":
            raise CompileError(f"'{name}' is {dtype}: simaccel's compiler handles float32 only "
                               "(int8 is declared by the chip, not compiled yet)")
        elements = max(1, int(np.prod(self.lowered.shapes[name], dtype=np.int64)))
        # Refused as the slots are placed, before a layer that cannot be in DRAM is tiled:
        # one clear reason, not minutes of tiling and then a field that overflows.
        self.dram_bytes += 4 * elements
        if self.dram_bytes > self.machine.dram_bytes:
            raise CompileError(f"the region's tensors take more than simaccel's "
                               f"{describe_bytes(self.machine.dram_bytes)} of DRAM "
                               f"({describe_bytes(self.dram_bytes)} once '{name}' is placed)")
        self.slots.append(Slot(kind, index, elements, data_offset))
        return len(self.slots) - 1

    def slot_of(self, name: str) -> int:
        """The slot holding tensor ``name`` (created on first use)."""
        name = self.resolve(name)
        if name in self.by_name:
            return self.by_name[name]
        if name in self.lowered.constants:
            self.constant_names.append(name)
            slot = self._slot(SlotKind.CONSTANT, len(self.constant_names) - 1, name)
        elif name in self.lowered.derived:
            slot = self.data_slot(name, self.lowered.derived[name])
        else:
            slot = self._slot(SlotKind.SCRATCH, 0, name)
        self.by_name[name] = slot
        return slot

    def data_slot(self, name: str, array: np.ndarray) -> int:
        """A slot in the data section holding ``array`` (computed by the compiler)."""
        self.lowered.shapes.setdefault(name, tuple(array.shape))
        offset = len(self.data)
        self.data += np.ascontiguousarray(array, dtype="<f4").tobytes()
        return self._slot(SlotKind.DATA, 0, name, offset)

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.lowered.shapes[name]

    def feature_map(self, name: str) -> FeatureMap:
        shape = self.shape(name)
        if len(shape) != 4:
            raise CompileError(f"'{name}' is not a 4-D feature map")
        return FeatureMap(self.slot_of(name), *shape)

    # --- the program -----------------------------------------------------------------

    def build(self) -> bytes:
        for layer in self._with_copies(self.lowered.layers):
            try:
                self.emit(layer)
            except DoesNotFit as exc:
                raise CompileError(f"{describe(layer)} does not fit simaccel's SRAM: {exc}"
                                   ) from exc
        program = isa.Program(self.machine, self.slots, self.code, bytes(self.data),
                              inputs=len(self.lowered.inputs), outputs=len(self.lowered.outputs),
                              constants=len(self.constant_names))
        return program.encode()

    def _with_copies(self, layers: Sequence[Layer]) -> list[Layer]:
        """Aliases resolved; a copy wherever a region output would otherwise share its
        data with an input, a constant or another output."""
        result: list[Layer] = []
        outputs = set(self.outputs)
        produced = set()
        for layer in layers:
            if isinstance(layer, AliasLayer):
                source = self.resolve(layer.x)
                if layer.out not in outputs:
                    self.aliases[layer.out] = layer.x
                    continue
                if source in produced and source not in self.by_name:
                    # Computed here and stored nowhere yet: compute it into the output.
                    self.by_name[source] = self.by_name[layer.out]
                    produced.add(layer.out)
                    continue
                layer = ElementwiseLayer(VecOp.COPY, [self.view(layer.x, layer.out)], layer.out)
            result.append(layer)
            produced.add(layer.out)
        for name in self.outputs:
            if name not in produced:  # an input, a constant, an alias of one, or a repeat
                source = self.resolve(self.copy_of.get(name, name))
                result.append(ElementwiseLayer(VecOp.COPY, [self.view(source, name)], name))
        return result

    def view(self, source: str, like: str) -> str:
        """A name for ``source``'s data in ``like``'s shape (what a copy reads)."""
        name = f"{like}/simaccel.view"
        self.aliases[name] = source
        self.lowered.shapes[name] = self.shape(like)
        self.lowered.dtypes[name] = self.lowered.dtypes[like]
        return name

    def emit(self, layer: Layer) -> None:
        sram = SramPlan(self.machine)
        if isinstance(layer, ConvLayer) and not layer.depthwise:
            buffers, acc, steps = self.conv(layer, sram)
        elif isinstance(layer, ConvLayer):
            buffers, acc, steps = self.depthwise(layer, sram)
        elif isinstance(layer, MatMulLayer):
            buffers, acc, steps = self.matmul(layer, sram)
        elif isinstance(layer, PoolLayer):
            buffers, acc, steps = pool_layout(
                self.machine, sram, layer.kind, self.feature_map(layer.x),
                self.feature_map(layer.out), layer.kernel, layer.strides, layer.pads)
        else:
            buffers, acc, steps = self.elementwise(layer, sram)
        Pipeline(self.code, self.semaphores, buffers, acc).run(steps)

    # --- layers ----------------------------------------------------------------------

    def params_slot(self, layer: Layer, epilogue: Epilogue, channels: int) -> int | None:
        """A data slot with the per-channel scale (ones if none) then shift (zeros)."""
        if epilogue.scale is None and epilogue.shift is None:
            return None
        scale = epilogue.scale if epilogue.scale is not None else np.ones(channels)
        shift = epilogue.shift if epilogue.shift is not None else np.zeros(channels)
        return self.data_slot(f"{layer.out}/params", np.concatenate([scale, shift]))

    def residual_slot(self, epilogue: Epilogue) -> int | None:
        return self.slot_of(epilogue.residual) if epilogue.residual else None

    def conv(self, layer: ConvLayer, sram: SramPlan):
        x, out = self.feature_map(layer.x), self.feature_map(layer.out)
        geometry = ConvGeometry(self.machine, x, out, self.slot_of(layer.weight), layer.kernel,
                                layer.strides, layer.pads, layer.epilogue)
        tiling = plan(geometry)
        return matrix_steps(geometry, tiling, sram,
                            params_slot=self.params_slot(layer, layer.epilogue, out.c),
                            residual_slot=self.residual_slot(layer.epilogue))

    def depthwise(self, layer: ConvLayer, sram: SramPlan):
        """Depthwise convolution on the vector unit; the scale folds into the weights
        here, at compile time, the shift starts the accumulation."""
        x, out = self.feature_map(layer.x), self.feature_map(layer.out)
        epilogue = layer.epilogue
        weights = self.lowered.constants[layer.weight].astype(np.float64).reshape(x.c, -1)
        if epilogue.scale is not None:
            weights = weights * epilogue.scale[:, None]
        shift = epilogue.shift if epilogue.shift is not None else np.zeros(x.c)
        params = self.data_slot(f"{layer.out}/depthwise",
                                np.concatenate([weights.reshape(-1), shift]))
        residual = self.feature_map(epilogue.residual) if epilogue.residual else None
        return depthwise_layout(self.machine, sram, x, out, params, layer.kernel, layer.strides,
                                layer.pads, epilogue.act, residual)

    def matmul(self, layer: MatMulLayer, sram: SramPlan):
        x_shape, w_shape, out_shape = (self.shape(layer.x), self.shape(layer.weight),
                                       self.shape(layer.out))
        m, k = x_shape[-2], x_shape[-1]
        n = w_shape[-2] if layer.trans_b else w_shape[-1]
        batch = out_shape[:-2]
        if int(np.prod(w_shape[:-2], dtype=np.int64)) == 1:
            # One weight matrix for every batch: the batches are just more rows.
            products = [Product(0, 0, 0)]
            m *= int(np.prod(batch, dtype=np.int64))
        else:
            products = _batched_products(x_shape, w_shape, out_shape)
        geometry = GemmGeometry(
            self.machine, (self.slot_of(layer.x), self.slot_of(layer.weight),
                           self.slot_of(layer.out)), m, k, n, layer.trans_b, products,
            layer.epilogue)
        tiling = plan(geometry)
        return matrix_steps(geometry, tiling, sram,
                            params_slot=self.params_slot(layer, layer.epilogue, n),
                            residual_slot=self.residual_slot(layer.epilogue))

    def elementwise(self, layer: ElementwiseLayer, sram: SramPlan):
        out_shape = self.shape(layer.out)
        operands = [Operand(self.resolve(name), self.slot_of(name),
                            broadcast_strides(self.shape(name), out_shape))
                    for name in layer.operands]
        return elementwise_layout(self.machine, sram, layer.op, operands,
                                  self.slot_of(layer.out), out_shape, layer.act)


def _batched_products(x_shape: Sequence[int], w_shape: Sequence[int],
                      out_shape: Sequence[int]) -> list[Product]:
    """DRAM offsets of each 2-D product of a MatMul whose weights are batched too."""
    batch = out_shape[:-2]
    x_strides = broadcast_strides(x_shape[:-2], batch)
    w_strides = broadcast_strides(w_shape[:-2], batch)
    out_strides = broadcast_strides(batch, batch)
    x_size = x_shape[-2] * x_shape[-1]
    w_size = w_shape[-2] * w_shape[-1]
    o_size = out_shape[-2] * out_shape[-1]
    products = []
    for index in np.ndindex(*batch):
        products.append(Product(
            x_size * sum(i * s for i, s in zip(index, x_strides, strict=True)),
            w_size * sum(i * s for i, s in zip(index, w_strides, strict=True)),
            o_size * sum(i * s for i, s in zip(index, out_strides, strict=True))))
    return products


def describe(layer: Layer) -> str:
    """A layer, for messages: its kind and output."""
    kind = type(layer).__name__.removesuffix("Layer")
    return f"{kind} -> '{layer.out}'"


def options_for(machine: SimAccelLimits | Mapping[str, Any]) -> dict[str, Any]:
    """Codegen options that compile for ``machine`` (for ``build(options=...)``)."""
    if isinstance(machine, SimAccelLimits):
        import dataclasses

        fields = dataclasses.asdict(machine)
        fields.pop("dtypes", None)
        return {"machine": fields}
    return {"machine": dict(machine)}


__all__ = ["NO_ACTIVATION", "CompileError", "compile_layers", "compile_region", "options_for"]
