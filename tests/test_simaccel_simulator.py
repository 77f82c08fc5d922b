"""simaccel's instruction set and simulator: the encoding both sides agree on, what each
instruction computes, the timing model, and the validator (malformed, truncated, out
of bounds, deadlocked and racy programs are refused; fuzzed programs never crash)."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest

from byoc_sdk import _native, model_zoo
from reference_backends.simaccel import LIMITS, isa
from reference_backends.simaccel.isa import (
    Act,
    Engine,
    MatrixOperand,
    Opcode,
    PoolGeometry,
    PoolKind,
    Slot,
    SlotKind,
    VecOp,
    VecOperand,
)
from reference_backends.simaccel.limits import SRAM_GRANULE
from reference_backends.simaccel.testing import build_for

sim = _native.simaccel
M = LIMITS
IN, W, ACC = 0, M.input_bytes, M.input_bytes + M.weight_bytes  # partition bases


def encode(code, slots, data=b"", machine=M, inputs=1, outputs=1, constants=0) -> bytes:
    return isa.Program(machine, list(slots), list(code), data, inputs, outputs,
                       constants).encode()


def run(code, slots, inputs, data=b"", constants=(), machine=M):
    n_in = sum(s.kind == SlotKind.INPUT for s in slots)
    n_out = sum(s.kind == SlotKind.OUTPUT for s in slots)
    program = encode(code, slots, data, machine, n_in, n_out, len(constants))
    simulator = sim.Simulator(program, [np.ascontiguousarray(c, np.float32) for c in constants])
    outputs = simulator.run([np.ascontiguousarray(a, np.float32) for a in inputs])
    return outputs, simulator.stats()


def io(n_in: int, n_out: int) -> list[Slot]:
    return [Slot(SlotKind.INPUT, 0, n_in), Slot(SlotKind.OUTPUT, 0, n_out)]


def load(slot, offset, sram, counts, dram, strides):
    return isa.dma(Opcode.DMA_LOAD, slot, offset, sram, counts, dram, strides)


def store(slot, offset, sram, counts, dram, strides):
    return isa.dma(Opcode.DMA_STORE, slot, offset, sram, counts, dram, strides)


def serial(*code):
    """Each instruction waits for the one before (on whatever engine): no races."""
    out, semaphore = [], 0
    for instr in code:
        if out:
            out += [isa.signal(out[-1].engine, semaphore), isa.wait(instr.engine, semaphore, 1)]
            semaphore += 1
        out.append(instr)
    return out


# --- encoding ------------------------------------------------------------------------


def test_python_and_cpp_agree_on_the_format():
    assert sim.VERSION == isa.VERSION
    assert sim.MAGIC == isa.MAGIC
    assert (sim.HEADER_SIZE, sim.SLOT_SIZE, sim.INSTRUCTION_SIZE) == (
        isa.HEADER_SIZE, isa.SLOT_SIZE, isa.INSTRUCTION_SIZE)
    assert sim.NUM_SEMAPHORES == isa.NUM_SEMAPHORES
    assert sim.GRANULE == SRAM_GRANULE


def test_encode_decode_round_trip_and_disassembly():
    compiled = build_for(model_zoo.small_cnn())
    data = next(r for r in compiled.package.regions if r.target == "simaccel").artifact.data
    program = isa.decode(data)
    assert program.encode() == data
    listing = isa.disassemble(data)
    assert listing.startswith("simaccel v1: 16x16 array")
    assert "GEMM" in listing and "DMA_LOAD" in listing and "WAIT" in listing


# --- what instructions compute -----------------------------------------------------


def test_strided_dma_gathers_im2col_style():
    """A 4-D DMA box: every other row and column of each channel, reordered."""
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    counts, dram = (3, 2, 3), (12, 36, 2)  # rows 0,2,4; channels; cols 0,2,4
    code = serial(load(0, 0, IN, counts, dram, (6, 3, 1)),
                  store(1, 0, IN, (18,), (1,), (1,)))
    (out,), _ = run(code, io(x.size, 18), [x.reshape(-1)])
    np.testing.assert_array_equal(out.reshape(3, 2, 3), x[:, ::2, ::2].transpose(1, 0, 2))


@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_with_two_level_strides(accumulate):
    """A stored as [K][M] (transposed), rows split in groups of 3; B as [N][K]; C as [N][M]."""
    rng = np.random.default_rng(0)
    m, k, n = 6, 5, 4
    a, b, c0 = rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal((m, n))
    inputs = np.concatenate([a.T.reshape(-1), b.T.reshape(-1), c0.T.reshape(-1)])
    gemm = isa.gemm(m, k, n, m_inner=3, k_inner=k,
                    a=MatrixOperand(IN, inner=1, outer=3, k_inner=m, k_outer=0),
                    b=MatrixOperand(W, inner=1, outer=0, n=k),
                    c=MatrixOperand(ACC, inner=1, outer=3, n=m), accumulate=accumulate)
    code = serial(load(0, 0, IN, (a.size,), (1,), (1,)),
                  load(0, a.size, W, (b.size,), (1,), (1,)),
                  load(0, a.size + b.size, ACC, (c0.size,), (1,), (1,)),
                  gemm, store(1, 0, ACC, (m * n,), (1,), (1,)))
    (out,), stats = run(code, io(inputs.size, m * n), [inputs])
    want = a @ b + (c0 if accumulate else 0)
    np.testing.assert_allclose(out.reshape(n, m).T, want, rtol=1e-5, atol=1e-6)
    assert stats["macs"] == m * k * n


ACTS = {
    Act.NONE: lambda x, a, b: x,
    Act.RELU: lambda x, a, b: np.maximum(x, 0),
    Act.LEAKY_RELU: lambda x, a, b: np.where(x >= 0, x, a * x),
    Act.CLIP: lambda x, a, b: np.clip(x, a, b),
    Act.SIGMOID: lambda x, a, b: 1 / (1 + np.exp(-x)),
    Act.TANH: lambda x, a, b: np.tanh(x),
    Act.HARD_SIGMOID: lambda x, a, b: np.clip(a * x + b, 0, 1),
    Act.HARD_SWISH: lambda x, a, b: x * np.clip(x / 6 + 0.5, 0, 1),
}
OPS = {
    VecOp.COPY: lambda a, b, c: a, VecOp.ADD: lambda a, b, c: a + b,
    VecOp.SUB: lambda a, b, c: a - b, VecOp.MUL: lambda a, b, c: a * b,
    VecOp.FMA: lambda a, b, c: a * b + c, VecOp.MAX: lambda a, b, c: np.maximum(a, b),
    VecOp.MIN: lambda a, b, c: np.minimum(a, b),
}


@pytest.mark.parametrize("act", list(Act), ids=lambda a: a.name)
@pytest.mark.parametrize("op", list(VecOp), ids=lambda o: o.name)
def test_vector_ops_broadcast_and_activate(op, act):
    """dst[3,4,5] = act(op(a, b broadcast along rows, c a scalar))."""
    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 1, 5)), rng.standard_normal(1)
    flat = np.concatenate([a.reshape(-1), b.reshape(-1), c]).astype(np.float32)
    sources = {VecOp.COPY: 1, VecOp.FMA: 3}.get(op, 2)
    operands = [VecOperand(IN, (20, 5, 1)), VecOperand(IN + 4 * 60, (5, 0, 1)),
                VecOperand(IN + 4 * 75, (0, 0, 0))][:sources]
    vec = isa.vec(op, (3, 4, 5), VecOperand(ACC, (20, 5, 1)), *operands, act=act,
                  alpha=0.2, beta=0.7)
    code = serial(load(0, 0, IN, (76,), (1,), (1,)), vec, store(1, 0, ACC, (60,), (1,), (1,)))
    (out,), stats = run(code, io(76, 60), [flat])
    want = ACTS[act](OPS[op](a, b, c), np.float32(0.2), np.float32(0.7))
    np.testing.assert_allclose(out.reshape(3, 4, 5), want, rtol=1e-5, atol=1e-6)
    assert stats["vector_elements"] == 60


@pytest.mark.parametrize("kind", list(PoolKind), ids=lambda k: k.name)
def test_pool_clips_windows_to_the_tile(kind):
    x = np.random.default_rng(2).standard_normal((2, 5, 6)).astype(np.float32)
    g = PoolGeometry(2, 5, 6, 3, 3, 3, 3, 2, 2, 1, 1)
    code = serial(load(0, 0, IN, (60,), (1,), (1,)),
                  isa.pool(kind, g, IN, (30, 6), ACC, (9, 3)),
                  store(1, 0, ACC, (18,), (1,), (1,)))
    (out,), _ = run(code, io(60, 18), [x.reshape(-1)])
    want = np.empty((2, 3, 3), np.float32)
    for oy in range(3):
        for ox in range(3):
            window = x[:, max(oy * 2 - 1, 0):oy * 2 + 2, max(ox * 2 - 1, 0):ox * 2 + 2]
            want[:, oy, ox] = (window.max if kind == PoolKind.MAX else window.mean)(axis=(1, 2))
    np.testing.assert_allclose(out.reshape(2, 3, 3), want, rtol=1e-6)


def test_data_section_and_constants():
    constant = np.arange(4, dtype=np.float32)
    data = np.full(4, 10, np.float32).tobytes()
    slots = [*io(4, 4), Slot(SlotKind.CONSTANT, 0, 4), Slot(SlotKind.DATA, 0, 4)]
    code = serial(load(2, 0, IN, (4,), (1,), (1,)), load(3, 0, IN + 256, (4,), (1,), (1,)),
                  load(0, 0, IN + 512, (4,), (1,), (1,)),
                  isa.vec(VecOp.FMA, (4,), VecOperand(ACC, (0, 0, 1)),
                          VecOperand(IN, (0, 0, 1)), VecOperand(IN + 256, (0, 0, 1)),
                          VecOperand(IN + 512, (0, 0, 1))),
                  store(1, 0, ACC, (4,), (1,), (1,)))
    (out,), _ = run(code, slots, [np.ones(4)], data, [constant])
    np.testing.assert_array_equal(out, constant * 10 + 1)


# --- the timing model ---------------------------------------------------------------


def test_dma_cycles_are_latency_plus_bus_beats_per_run():
    contiguous = [load(0, 0, IN, (1024,), (1,), (1,))]
    _, stats = run(contiguous, io(1024, 1), [np.zeros(1024)])
    assert stats["cycles"] == M.dma_latency_cycles + 1024 * 4 // M.dma_bytes_per_cycle
    strided = [load(0, 0, IN, (256,), (4,), (1,))]  # 256 runs of one element
    _, stats = run(strided, io(1024, 1), [np.zeros(1024)])
    assert stats["cycles"] == M.dma_latency_cycles + 256
    assert stats["dram_read_bytes"] == 1024


def test_gemm_cycles_fill_stream_and_drain():
    r, c = M.array_rows, M.array_cols
    gemm = isa.gemm(100, 40, 20, m_inner=100, k_inner=40, a=MatrixOperand(IN, inner=40, k_inner=1),
                    b=MatrixOperand(W, inner=20, n=1), c=MatrixOperand(ACC, inner=20, n=1),
                    accumulate=False)
    _, stats = run([gemm], io(1, 1), [np.zeros(1)])
    blocks = -(-40 // r) * -(-20 // c)
    assert stats["cycles"] == r + blocks * 100 + r + c  # preload, stream, fill/drain
    assert stats["mxu_busy_cycles"] == r + blocks * 100
    assert stats["mac_utilization"] == pytest.approx(100 * 40 * 20 / (stats["cycles"] * r * c))


def test_engines_overlap_unless_a_wait_orders_them():
    dma = load(0, 0, IN, (4096,), (1,), (1,))
    vec = isa.vec(VecOp.COPY, (1, 64, 64), VecOperand(ACC, (0, 64, 1)),
                  VecOperand(IN + 65536, (0, 64, 1)))
    dma_cycles = M.dma_latency_cycles + 4096 * 4 // M.dma_bytes_per_cycle
    vec_cycles = 4096 // M.vector_lanes + M.vector_latency_cycles
    _, parallel = run([dma, vec], io(4096, 1), [np.zeros(4096)])
    assert parallel["cycles"] == max(dma_cycles, vec_cycles)
    _, ordered = run(serial(dma, vec), io(4096, 1), [np.zeros(4096)])
    assert ordered["cycles"] == dma_cycles + vec_cycles
    assert ordered["vpu_stall_cycles"] == dma_cycles


def test_timeline_shows_each_instruction():
    dma = load(0, 0, IN, (4096,), (1,), (1,))
    vec = isa.vec(VecOp.COPY, (1, 64, 64), VecOperand(ACC, (0, 64, 1)), VecOperand(IN, (0, 64, 1)))
    timeline = sim.timeline(encode(serial(dma, vec), io(4096, 1)))
    engines, starts, issued, complete = timeline.T
    # DMA_LOAD, SIGNAL (DMA), WAIT (VPU), VEC
    assert list(engines) == [Engine.DMA, Engine.DMA, Engine.VPU, Engine.VPU]
    beats = 4096 * 4 // M.dma_bytes_per_cycle
    assert (issued[0], complete[0]) == (beats, beats + M.dma_latency_cycles)
    assert starts[3] == complete[0]
    assert complete[3] == complete[0] + 4096 // M.vector_lanes + M.vector_latency_cycles


def test_compiled_conv_overlaps_dma_with_compute():
    """A conv big enough for many tiles keeps the array busy: DMA hides behind it."""
    compiled = build_for(model_zoo.small_cnn(size=64))
    compiled.run(model_zoo.random_inputs(model_zoo.small_cnn(size=64)))
    (stats,) = [s.stats() for s in compiled.steps if s.target == "simaccel"]
    assert stats["dma_busy_cycles"] + stats["mxu_busy_cycles"] > stats["cycles"]
    assert stats["mac_utilization"] > 0.75
    assert 0 < stats["sram_peak_bytes"] <= M.sram_bytes


# --- validation ---------------------------------------------------------------------

GOOD = serial(load(0, 0, IN, (4,), (1,), (1,)), store(1, 0, IN, (4,), (1,), (1,)))


def refused(program: bytes, match: str, constants=()) -> None:
    with pytest.raises(sim.ProgramError, match=match):
        sim.validate(program)
    with pytest.raises(ValueError, match=match):  # ProgramError is a ValueError
        sim.Simulator(program, list(constants))


def test_a_good_program_passes():
    stats = sim.validate(encode(GOOD, io(4, 4)))
    assert stats["instructions"] == 2


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda b: b[:50], "shorter than its 96-byte header"),
    (lambda b: b[:-7], "truncated"),
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: b"X" + b[1:], "bad magic"),
    (lambda b: b[:8] + b"\x02" + b[9:], "version 2"),
    (lambda b: b[:90] + b"\x01" + b[91:], "reserved bytes"),
], ids=["short", "truncated", "trailing", "magic", "version", "reserved"])
def test_malformed_headers_are_refused(mutate, match):
    refused(mutate(encode(GOOD, io(4, 4))), match)


@pytest.mark.parametrize(("code", "match"), [
    ([load(5, 0, IN, (4,), (1,), (1,))], "slot 5 does not exist"),
    ([load(0, 1, IN, (4,), (1,), (1,))], "DRAM box leaves slot 0"),
    ([load(0, 0, M.sram_bytes - 8, (4,), (1,), (1,))], "outside SRAM"),
    ([load(0, 0, W - 8, (4,), (1,), (1,))], "crosses a buffer boundary"),
    ([load(0, 0, IN + 2, (4,), (1,), (1,))], "not 4-byte aligned"),
    ([load(0, 0, IN, (4, 0), (1, 1), (1, 1))], "zero count"),
    ([store(0, 0, IN, (4,), (1,), (1,))], "read-only"),
    ([isa.Instruction(Opcode.GEMM, words=(4, 4, 4))], "zero dimension"),
    ([isa.gemm(4, 4, 4, m_inner=4, k_inner=4, a=MatrixOperand(W, inner=4, k_inner=1),
               b=MatrixOperand(W, inner=4, n=1), c=MatrixOperand(ACC, inner=4, n=1),
               accumulate=False)], "A must be in the input buffer"),
    ([isa.gemm(8192, 4096, 16, m_inner=8192, k_inner=4096, a=MatrixOperand(IN),
               b=MatrixOperand(W), c=MatrixOperand(ACC), accumulate=False)], "2\\^24"),
    ([isa.Instruction(Opcode.VEC, a=9)], "unknown vector op"),
    ([isa.Instruction(Opcode.VEC, a=VecOp.COPY, b=42)], "unknown activation"),
    ([isa.vec(VecOp.COPY, (4,), VecOperand(IN, (0, 0, 1)), VecOperand(IN),
              VecOperand(IN + 64))], "reserved word 11"),
    ([isa.vec(VecOp.COPY, (4, 4), VecOperand(ACC, (0, 1, 1)), VecOperand(IN))],
     "writes some elements more than once"),
    ([load(0, 0, IN, (4, 4), (0, 1), (0, 1))], "writes some elements more than once"),
    ([isa.vec(VecOp.COPY, (4,), VecOperand(IN, (0, 0, 1)), VecOperand(IN, (0, 0, 1)),
              alpha=float("nan"))], "alpha is NaN"),
    ([isa.pool(PoolKind.MAX, PoolGeometry(1, 2, 2, 3, 1, 1, 1, 1, 1, 0, 0), IN, (4, 2), ACC,
               (3, 1))], "wholly outside"),
    ([isa.Instruction(Opcode(0x30), a=7)], "unknown engine"),
    ([isa.signal(Engine.DMA, 32)], "semaphore 32 does not exist"),
    ([isa.signal(Engine.DMA, 1), isa.wait(Engine.MXU, 1, 2)], "deadlock"),
    ([isa.Instruction(Opcode.DMA_LOAD, dtype=1)], "only float32"),
    ([isa.gemm(4096, 4096, 1, m_inner=4096, k_inner=4096, a=MatrixOperand(IN),
               b=MatrixOperand(W, inner=1), c=MatrixOperand(ACC, inner=1),
               accumulate=True)] * 1025, "more work than the simulator"),
], ids=["slot", "dram", "sram", "partition", "align", "count", "store-input", "gemm-zero",
        "gemm-buffer", "gemm-size", "vec-op", "vec-act", "vec-unused", "vec-overlap",
        "dma-overlap", "nan", "pool-window", "engine", "semaphore", "deadlock", "dtype", "work"])
def test_bad_instructions_are_refused(code, match):
    refused(encode(code, io(4, 4)), match)


def test_unknown_opcodes_and_bad_slots_are_refused():
    raw = bytearray(encode(GOOD, io(4, 4)))
    first = isa.HEADER_SIZE + 2 * isa.SLOT_SIZE
    bad = bytes(raw[:first]) + b"\x77" + bytes(raw[first + 1:])
    refused(bad, "unknown opcode 119")
    refused(encode(GOOD, [Slot(SlotKind.INPUT, 0, 4), Slot(SlotKind.INPUT, 0, 4)], outputs=0,
                   inputs=2), "out of range or repeated")
    refused(encode(GOOD, [*io(4, 4), Slot(SlotKind.DATA, 0, 4, data_offset=8)], b"\0" * 16),
            "outside the data section")


def test_a_missing_wait_is_a_race():
    """The same two instructions, with and without their SIGNAL/WAIT pair."""
    unsynced = [load(0, 0, IN, (4,), (1,), (1,)),
                isa.vec(VecOp.COPY, (4,), VecOperand(ACC, (0, 0, 1)), VecOperand(IN, (0, 0, 1)))]
    refused(encode(unsynced, io(4, 4)), "race \\(read after write\\).*a SIGNAL/WAIT pair is "
                                        "missing")
    sim.validate(encode(serial(*unsynced), io(4, 4)))


def test_dropping_waits_from_a_compiled_program_is_caught():
    compiled = build_for(model_zoo.small_cnn())
    region = next(r for r in compiled.package.regions if r.target == "simaccel")
    program = isa.decode(region.artifact.data)
    program.instructions = [i for i in program.instructions if i.opcode != Opcode.WAIT]
    constants = [compiled.package.constants[sha] for sha in region.constants.values()]
    refused(program.encode(), "race", constants)


def test_run_checks_its_arguments():
    simulator = sim.Simulator(encode(GOOD, io(4, 4)), [])
    assert simulator.input_elements == [4] and simulator.output_elements == [4]
    with pytest.raises(ValueError, match="takes 1 inputs"):
        simulator.run([])
    with pytest.raises(ValueError, match="has 3 elements"):
        simulator.run([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="float32"):
        simulator.run([np.zeros(4, np.float64)])
    with pytest.raises(ValueError, match="takes 0 constants"):
        sim.Simulator(encode(GOOD, io(4, 4)), [np.zeros(1, np.float32)])


def test_the_header_carries_the_machine():
    small = dataclasses.replace(M, array_rows=4, array_cols=8, vector_lanes=2)
    gemm = isa.gemm(8, 8, 8, m_inner=8, k_inner=8, a=MatrixOperand(IN, inner=8, k_inner=1),
                    b=MatrixOperand(W, inner=8, n=1), c=MatrixOperand(ACC, inner=8, n=1),
                    accumulate=False)
    stats = sim.validate(encode([gemm], io(1, 1), machine=small))
    assert stats["cycles"] == 4 + 2 * 1 * 8 + 4 + 8
    bad = dataclasses.replace(M, array_rows=300)
    refused(encode([gemm], io(1, 1), machine=bad), "systolic array size")


# --- fuzzing ------------------------------------------------------------------------


def _mutants(data: bytes, rng: np.random.Generator, count: int):
    """Random corruptions of a valid program: byte flips, words set to extreme values,
    truncations, duplicated and dropped spans."""
    for _ in range(count):
        raw = bytearray(data)
        kind = rng.integers(5)
        if kind == 0:
            for _ in range(rng.integers(1, 8)):
                raw[rng.integers(len(raw))] ^= 1 << rng.integers(8)
        elif kind == 1:
            at = int(rng.integers(len(raw) - 4)) & ~3
            raw[at:at + 4] = int(rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000,
                                             rng.integers(2**32)])).to_bytes(4, "little")
        elif kind == 2:
            raw = raw[:rng.integers(len(raw))]
        elif kind == 3:
            at, size = int(rng.integers(len(raw))), int(rng.integers(1, 200))
            raw = raw[:at] + raw[at:at + size] + raw[at:]
        else:
            at, size = int(rng.integers(len(raw))), int(rng.integers(1, 200))
            raw = raw[:at] + raw[at + size:]
        yield bytes(raw)


@pytest.mark.parametrize("model", [model_zoo.small_cnn(size=16), model_zoo.depthwise_cnn(size=16),
                                   model_zoo.mlp()], ids=["cnn", "depthwise", "mlp"])
def test_fuzzed_programs_are_refused_or_run_never_crash(model):
    """Thousands of corrupted programs: each is refused with an error, or is valid and
    runs; none crashes the process (a crash would end this test run)."""
    compiled = build_for(model)
    region = next(r for r in compiled.package.regions if r.target == "simaccel")
    constants = [compiled.package.constants[region.constants[name]]
                 for name in region.artifact.constants]
    feeds = [np.random.default_rng(0).standard_normal(s.shape).astype(np.float32)
             for s in region.signature.inputs]
    work = _work(sim.validate(region.artifact.data))
    rng = np.random.default_rng(1234)
    outcomes = {"refused": 0, "ran": 0, "valid": 0}
    for mutant in _mutants(region.artifact.data, rng, 2500):
        try:
            simulator = sim.Simulator(mutant, constants)
        except ValueError:
            outcomes["refused"] += 1
            continue
        outcomes["valid"] += 1
        if _work(simulator.stats()) > 4 * work:
            continue  # valid, bounded by the work limit, but too slow for a unit test
        with contextlib.suppress(ValueError):  # inputs may not fit a (valid) mutant's slots
            simulator.run(feeds)
        outcomes["ran"] += 1
    assert outcomes["refused"] > 1000 and outcomes["ran"] > 0


def _work(stats) -> int:
    return stats["macs"] + stats["vector_elements"] + stats["dram_bytes"] // 4
