"""Software pipelining of one layer: rotating SRAM buffers, semaphores, prefetch.

A layer is a sequence of :class:`Step` s. Each step reads tiles from rotating buffers
(input, weights, drain parameters, residual), computes on one engine into an
accumulator tile, and, when the accumulator tile is complete, has the vector unit drain
it and the DMA engine store it. :class:`Pipeline` turns that into instructions:

* every buffer has two slots (double buffering); a tile is loaded only when a step needs
  a different tile than the one resident (so weights stay while input tiles stream);
* a load is issued as early as program order allows: right after the last step that
  read the slot's previous tile, so DMA runs ahead of compute;
* semaphores order it all: a slot's "full" (DMA -> consumer) and "free" (consumer -> DMA),
  and the accumulator's "full" (MXU -> VPU), "ready" (-> DMA) and "free" (DMA -> MXU).

Layers end with a barrier of all three engines, so each layer may lay out SRAM afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from reference_backends.simaccel import isa
from reference_backends.simaccel.isa import Engine, Instruction
from reference_backends.simaccel.limits import SRAM_GRANULE, SimAccelLimits

DEPTH = 2  # slots per buffer: one being computed on, one being loaded


class DoesNotFit(Exception):
    """A tiling asks for more SRAM than a partition has."""


class Partition(IntEnum):
    INPUT = 0
    WEIGHT = 1
    ACCUMULATOR = 2


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def slot_bytes(elements: int) -> int:
    """SRAM bytes of a float32 tile, rounded to whole granules (buffers never share one)."""
    return round_up(max(elements, 1) * 4, SRAM_GRANULE)


class SramPlan:
    """Bump allocation of one layer's buffers in the three SRAM partitions."""

    def __init__(self, machine: SimAccelLimits) -> None:
        self.base = (0, machine.input_bytes, machine.input_bytes + machine.weight_bytes)
        self.size = (machine.input_bytes, machine.weight_bytes, machine.accumulator_bytes)
        self.used = [0, 0, 0]

    def allocate(self, partition: Partition, nbytes: int) -> int:
        """The byte address of ``nbytes`` in ``partition``; raises :class:`DoesNotFit`."""
        nbytes = round_up(nbytes, SRAM_GRANULE)
        if self.used[partition] + nbytes > self.size[partition]:
            raise DoesNotFit(f"{partition.name.lower()} buffer: {self.used[partition] + nbytes} "
                             f"bytes needed, {self.size[partition]} available")
        address = self.base[partition] + self.used[partition]
        self.used[partition] += nbytes
        return address

    def buffer(self, name: str, partition: Partition, elements: int, consumer: Engine
               ) -> Buffer:
        """A double-buffered region for float32 tiles of up to ``elements`` that
        ``consumer`` reads."""
        nbytes = slot_bytes(elements)
        return Buffer(name, self.allocate(partition, DEPTH * nbytes), nbytes, consumer)


class Semaphores:
    """Counting semaphores: how many signals each has had, so a WAIT names the right count.

    Ids are handed out per layer and given back at its end; counts never reset.
    """

    def __init__(self, code: list[Instruction]) -> None:
        self.code = code
        self.counts = [0] * isa.NUM_SEMAPHORES
        self.free = list(range(isa.NUM_SEMAPHORES))

    def take(self) -> int:
        if not self.free:
            raise DoesNotFit("a layer needs more than 32 semaphores")
        return self.free.pop(0)

    def give_back(self, ids: Sequence[int]) -> None:
        self.free = sorted({*self.free, *ids})

    def signal(self, engine: Engine, semaphore: int) -> int:
        """Emit a SIGNAL; returns the count a WAIT for it must name."""
        self.code.append(isa.signal(engine, semaphore))
        self.counts[semaphore] += 1
        return self.counts[semaphore]

    def wait(self, engine: Engine, semaphore: int, count: int) -> None:
        self.code.append(isa.wait(engine, semaphore, count))

    def barrier(self) -> None:
        """No engine goes on until all three have completed everything issued so far."""
        ids = [self.take() for _ in Engine]
        counts = [self.signal(engine, ids[engine]) for engine in Engine]
        for engine in Engine:
            for other in Engine:
                if other != engine:
                    self.wait(engine, ids[other], counts[other])
        self.give_back(ids)


# --- what a layer describes ---------------------------------------------------------

#: Instructions for a tile, given the SRAM address of the slot it goes to or comes from.
Loader = Callable[[int], list[Instruction]]
#: Instructions of a step, given the slot address of each buffer it reads and of its
#: accumulator tile.
Compute = Callable[[Mapping[str, int], int], list[Instruction]]


@dataclass(frozen=True)
class Tile:
    """A tile a step reads: its buffer, its identity and how to load it."""

    buffer: str
    key: Hashable
    load: Loader = field(compare=False)


@dataclass
class Step:
    """One unit of work: read ``reads``, compute on ``engine`` into accumulator tile
    ``out``. The last step of each run of equal ``out`` keys drains the tile
    (``drain`` on the vector unit, which may read ``drain_reads``) and stores it."""

    engine: Engine
    reads: list[Tile]
    compute: Compute
    out: Hashable
    store: Loader
    drain: Compute | None = None
    drain_reads: list[Tile] = field(default_factory=list)


@dataclass
class Buffer:
    """A double-buffered region of SRAM whose tiles one engine reads."""

    name: str
    address: int
    slot_bytes: int
    consumer: Engine

    def slot(self, index: int) -> int:
        return self.address + (index % DEPTH) * self.slot_bytes


@dataclass
class _Occupancy:
    """One stay of a tile in a buffer slot: the steps that read it, and its sync counts."""

    tile: Tile
    index: int  # the n-th tile of its buffer; slot = index % DEPTH
    first: int
    last: int
    full: int = 0  # the count of the slot's "full" semaphore once loaded
    free: int = 0  # the count of its "free" semaphore once released


@dataclass
class _Sems:
    full: list[int]
    free: list[int]


class Pipeline:
    """Emits the instructions of one layer's steps, double-buffered and synchronised."""

    def __init__(self, code: list[Instruction], semaphores: Semaphores,
                 buffers: Sequence[Buffer], accumulator: Buffer) -> None:
        self.code = code
        self.sem = semaphores
        self.buffers = {b.name: b for b in buffers}
        self.acc = accumulator
        self.taken: list[int] = []
        self.sems = {name: self._pair() for name in self.buffers}
        self.acc_full = [self._take() for _ in range(DEPTH)]
        self.acc_ready = [self._take() for _ in range(DEPTH)]
        self.acc_free = [self._take() for _ in range(DEPTH)]

    def _take(self) -> int:
        self.taken.append(self.sem.take())
        return self.taken[-1]

    def _pair(self) -> _Sems:
        return _Sems([self._take() for _ in range(DEPTH)], [self._take() for _ in range(DEPTH)])

    def run(self, steps: Sequence[Step]) -> None:
        """Emit ``steps``, then a barrier; give the semaphores back."""
        stays, per_step = self._stays(steps)
        acc_runs = self._accumulator_runs(steps)
        loads_at = self._load_points(stays)
        acc_free_counts: list[int] = []
        pending_store: Callable[[], None] | None = None
        for i, step in enumerate(steps):
            for occ in loads_at.get(i, []):
                self._load(occ, stays[occ.tile.buffer])
            if pending_store is not None:
                # The previous tile's store queues behind this step's loads: the DMA
                # engine prefetches while the vector unit drains.
                pending_store()
                pending_store = None
            run_index, run_first, run_last = acc_runs[i]
            slot = run_index % DEPTH
            acc_address = self.acc.slot(run_index)
            self._wait_full(per_step[i], i, step.engine, step.reads)
            if run_first == i and run_index >= DEPTH:
                self.sem.wait(step.engine, self.acc_free[slot], acc_free_counts[run_index - DEPTH])
            addresses = {o.tile.buffer: self.buffers[o.tile.buffer].slot(o.index)
                         for o in per_step[i]}
            self.code += step.compute(addresses, acc_address)
            self._release(per_step[i], i, step.engine, step.reads)
            if run_last == i:
                pending_store = self._drain(step, per_step[i], i, slot, addresses, acc_address,
                                            acc_free_counts)
        if pending_store is not None:
            pending_store()
        self.sem.barrier()
        self.sem.give_back(self.taken)

    # --- planning ------------------------------------------------------------------

    def _stays(self, steps: Sequence[Step]
               ) -> tuple[dict[str, list[_Occupancy]], list[list[_Occupancy]]]:
        """Which tile sits in which slot for which steps."""
        stays: dict[str, list[_Occupancy]] = {name: [] for name in self.buffers}
        per_step: list[list[_Occupancy]] = []
        for i, step in enumerate(steps):
            current = []
            for tile in (*step.reads, *step.drain_reads):
                seq = stays[tile.buffer]
                if not seq or seq[-1].tile.key != tile.key:
                    seq.append(_Occupancy(tile, len(seq), i, i))
                seq[-1].last = i
                current.append(seq[-1])
            per_step.append(current)
        return stays, per_step

    @staticmethod
    def _load_points(stays: Mapping[str, list[_Occupancy]]) -> dict[int, list[_Occupancy]]:
        """Before which step each load is emitted.

        The DMA engine takes its queue in order, so loads go in the order steps need
        them; each as early as that order and its slot allow (right after the last step
        that read the slot's previous tile): a big tile needed late never holds up a
        small one needed soon.
        """
        order = sorted((occ for seq in stays.values() for occ in seq),
                       key=lambda o: (o.first, o.index))
        loads_at: dict[int, list[_Occupancy]] = {}
        at = 0
        for occ in order:
            previous = occ.index - DEPTH
            if previous >= 0:
                at = max(at, stays[occ.tile.buffer][previous].last + 1)
            loads_at.setdefault(at, []).append(occ)
        return loads_at

    @staticmethod
    def _accumulator_runs(steps: Sequence[Step]) -> list[tuple[int, int, int]]:
        """Per step: (run number, first step, last step) of its accumulator tile."""
        bounds: list[list[int]] = []
        for i, step in enumerate(steps):
            if i == 0 or step.out != steps[i - 1].out:
                bounds.append([i, i])
            bounds[-1][1] = i
        runs = []
        for number, (first, last) in enumerate(bounds):
            runs += [(number, first, last)] * (last - first + 1)
        return runs

    # --- emission ------------------------------------------------------------------

    def _load(self, occ: _Occupancy, seq: list[_Occupancy]) -> None:
        buffer = self.buffers[occ.tile.buffer]
        sems = self.sems[buffer.name]
        slot = occ.index % DEPTH
        if occ.index >= DEPTH:
            self.sem.wait(Engine.DMA, sems.free[slot], seq[occ.index - DEPTH].free)
        self.code += occ.tile.load(buffer.slot(occ.index))
        occ.full = self.sem.signal(Engine.DMA, sems.full[slot])

    def _wait_full(self, stays: Sequence[_Occupancy], i: int, engine: Engine,
                   tiles: Sequence[Tile]) -> None:
        """Wait until the tiles of ``tiles`` that step ``i`` is first to read are loaded."""
        for occ in stays:
            if occ.first == i and occ.tile in tiles:
                self.sem.wait(engine, self.sems[occ.tile.buffer].full[occ.index % DEPTH],
                              occ.full)

    def _release(self, stays: Sequence[_Occupancy], i: int, engine: Engine,
                 tiles: Sequence[Tile]) -> None:
        """Signal "free" for the slots of ``tiles`` that step ``i`` read for the last time."""
        for occ in stays:
            if occ.last == i and occ.tile in tiles:
                sems = self.sems[occ.tile.buffer]
                occ.free = self.sem.signal(engine, sems.free[occ.index % DEPTH])

    def _drain(self, step: Step, stays: Sequence[_Occupancy], i: int, slot: int,
               addresses: Mapping[str, int], acc_address: int, free_counts: list[int]
               ) -> Callable[[], None]:
        """Drain a complete accumulator tile now; return what stores it (emitted later)."""
        producer = step.engine
        if step.drain is not None:
            if producer != Engine.VPU:
                count = self.sem.signal(producer, self.acc_full[slot])
                self.sem.wait(Engine.VPU, self.acc_full[slot], count)
            self._wait_full(stays, i, Engine.VPU, step.drain_reads)
            self.code += step.drain(addresses, acc_address)
            self._release(stays, i, Engine.VPU, step.drain_reads)
            producer = Engine.VPU
        ready = self.sem.signal(producer, self.acc_ready[slot])

        def store() -> None:
            self.sem.wait(Engine.DMA, self.acc_ready[slot], ready)
            self.code += step.store(acc_address)
            free_counts.append(self.sem.signal(Engine.DMA, self.acc_free[slot]))

        return store
