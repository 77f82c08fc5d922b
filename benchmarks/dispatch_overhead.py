"""What byoc's runtime costs on top of the work: per call, and per step.

(a) Per-call overhead: a one-node model (Relu on a 4-element tensor) compiled to C
    through the example C-source target and run with ``CompiledModel.run``, against
    onnxruntime's ``InferenceSession.run`` and ``run_with_iobinding`` on the same model.
    Goal: under 2 us per call.
(b) Per-step overhead: a ~200-node model (Conv, Relu, Add, Reshape, Transpose, MatMul,
    Softmax) cut into 1, 2, 11 and 22 host regions — by Abs nodes between blocks that a
    C target claims — against one onnxruntime session on the whole model.
    Goal: no more than 1.05x.
(c) Per-call overhead with a dynamic input: the Relu of (a) on x: [N, 4], which runs as
    a host step (a C region takes static boundaries only), against
    ``InferenceSession.run`` on the same model: what byoc adds to the same onnxruntime
    call (checking the feed, the schedule, the frame).

Both sides use one thread (onnxruntime intra-op threads and OpenMP), run interleaved,
and the medians of many runs are printed with their ratio. (b) and (c) show wall time
and the process's CPU time: with everything on one thread they agree on an idle machine,
and on a busy one CPU time leaves out the time slices other processes took.

    python benchmarks/dispatch_overhead.py [--calls 20000] [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("BYOC_CACHE_DIR", str(Path(tempfile.gettempdir()) / "byoc-bench-cache"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for examples.targets

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pinning import pin_threads  # noqa: E402

from byoc_sdk import RegionPolicy, Target, build  # noqa: E402
from byoc_sdk.testing import as_proto  # noqa: E402
from examples.targets import c_elementwise  # noqa: E402

OPSET, IR = 21, 10


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(as_proto(model).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def per_call(calls: int, rounds: int) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "one", [x], [y]),
        opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR,
    )
    compiled = build(model, [c_elementwise.target], host_threads=1)
    assert compiled.steps[0].kind == "external", "the Relu must run as a compiled region"
    feeds = {"x": np.arange(-2, 2, dtype=np.float32)}
    sess = session(model)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(feeds["x"]))
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(np.empty(4, np.float32)))
    cases = {
        "byoc CompiledModel.run": lambda: compiled.run(feeds),
        "onnxruntime run": lambda: sess.run(None, feeds),
        "onnxruntime run_with_iobinding": lambda: sess.run_with_iobinding(binding),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():  # interleaved, so drift hits every case alike
            start = time.perf_counter()
            for _ in range(calls):
                call()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    ours = statistics.median(samples["byoc CompiledModel.run"])
    print(f"(a) per-call overhead, one-node model, median of {rounds} x {calls} calls")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:<32} {median:6.2f} us   ours/this {ours / median:5.2f}x")
    print(f"  goal: byoc under 2 us per call: {'met' if ours < 2 else 'NOT met'} ({ours:.2f} us)")


def per_call_dynamic(calls: int, rounds: int) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "one", [x], [y]),
        opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR,
    )
    compiled = build(model, [c_elementwise.target], host_threads=1)
    assert [step.kind for step in compiled.steps] == ["host"], "the Relu must run on the host"
    assert compiled.inputs[0].shape == (-1, 4), "the input must stay dynamic"
    feeds = {"x": np.arange(-4, 4, dtype=np.float32).reshape(2, 4)}
    sess = session(model)
    cases = {
        "byoc CompiledModel.run": lambda: compiled.run(feeds),
        "onnxruntime run": lambda: sess.run(None, feeds),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():  # interleaved, so drift hits every case alike
            samples[name].append(timed(_repeat, call, calls))
    print(f"\n(c) per-call overhead, the model of (a) with input x: [N, 4] (a host step), "
          f"median of {rounds} x {calls} calls")
    print(f"  {'':<32} {'wall us':>8} {'cpu us':>8}")
    for name, values in samples.items():
        wall, cpu = (statistics.median(t[clock] for t in values) / calls * 1e6
                     for clock in (0, 1))
        print(f"  {name:<32} {wall:>8.2f} {cpu:>8.2f}")
    ours, theirs = samples["byoc CompiledModel.run"], samples["onnxruntime run"]
    wall, cpu = _ratio(ours, theirs, 0), _ratio(ours, theirs, 1)
    print(f"  byoc over onnxruntime: {(cpu[0] - cpu[1]) / calls * 1e3:+.2f} us in CPU time "
          f"({cpu[2]:.2f}x; wall time {(wall[0] - wall[1]) / calls * 1e3:+.2f} us, "
          f"{wall[2]:.2f}x)")


def _repeat(call, calls: int) -> None:
    for _ in range(calls):
        call()


def block_model(separators: int, channels: int, side: int) -> onnx.ModelProto:
    """A chain of 18 conv blocks and 18 attention-like blocks (198 nodes) on a
    (1, channels, side, side) tensor, with ``separators`` Abs nodes spread between blocks."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    inits.append(numpy_helper.from_array(np.array([1, channels, side * side], np.int64), "shape3"))
    inits.append(numpy_helper.from_array(np.array([1, channels, side, side], np.int64), "shape4"))
    shape3 = "shape3"
    blocks = 36
    cuts = np.linspace(0, blocks, separators + 2, dtype=int)[1:-1] if separators else []
    cut_after = set(cuts)
    x = "input"
    for b in range(blocks):
        p = f"b{b}"
        if b % 2 == 0:
            w = const(f"{p}.w", rng.standard_normal((channels, channels, 3, 3)) * 0.05)
            bias = const(f"{p}.bias", rng.standard_normal(channels) * 0.05)
            nodes += [
                helper.make_node("Conv", [x, w, bias], [f"{p}.conv"], name=f"{p}/conv",
                                 pads=[1, 1, 1, 1]),
                helper.make_node("Relu", [f"{p}.conv"], [f"{p}.relu"], name=f"{p}/relu"),
                helper.make_node("Add", [f"{p}.relu", x], [f"{p}.out"], name=f"{p}/add"),
            ]
        else:
            w1 = const(f"{p}.w1", rng.standard_normal((channels, channels)) * 0.1)
            w2 = const(f"{p}.w2", rng.standard_normal((channels, channels)) * 0.1)
            nodes += [
                helper.make_node("Reshape", [x, shape3], [f"{p}.r"], name=f"{p}/reshape"),
                helper.make_node("Transpose", [f"{p}.r"], [f"{p}.t"], name=f"{p}/transpose",
                                 perm=[0, 2, 1]),
                helper.make_node("MatMul", [f"{p}.t", w1], [f"{p}.q"], name=f"{p}/matmul1"),
                helper.make_node("Softmax", [f"{p}.q"], [f"{p}.s"], name=f"{p}/softmax", axis=-1),
                helper.make_node("MatMul", [f"{p}.s", w2], [f"{p}.v"], name=f"{p}/matmul2"),
                helper.make_node("Transpose", [f"{p}.v"], [f"{p}.tb"], name=f"{p}/transpose_back",
                                 perm=[0, 2, 1]),
                helper.make_node("Reshape", [f"{p}.tb", "shape4"], [f"{p}.rb"],
                                 name=f"{p}/reshape_back"),
                helper.make_node("Add", [f"{p}.rb", x], [f"{p}.out"], name=f"{p}/add"),
            ]
        x = f"{p}.out"
        if b + 1 in cut_after:
            nodes.append(helper.make_node("Abs", [x], [f"{p}.cut"], name=f"{p}/cut"))
            x = f"{p}.cut"
    nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    shape = [1, channels, side, side]
    graph = helper.make_graph(
        nodes, "blocks", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR)


def timed(call, *args) -> tuple[float, float]:
    """Seconds of wall time and of this process's CPU time that ``call(*args)`` takes.

    Every thread of both sides runs on the calling thread here, so CPU time is the work
    itself, without the time slices a busy machine gives other processes.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    call(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _ratio(ours: list[tuple[float, float]], theirs: list[tuple[float, float]],
           clock: int) -> tuple[float, float, float]:
    """Medians in ms of one clock (0: wall, 1: CPU) for both sides, and their ratio."""
    a = statistics.median(t[clock] for t in ours)
    b = statistics.median(t[clock] for t in theirs)
    return a * 1e3, b * 1e3, a / b


def per_step(runs: int, channels: int, side: int) -> None:
    cutter = Target("cut", version="1.0", policy=RegionPolicy.keep_all(),
                    codegen=c_elementwise.codegen)
    cutter.support("Abs", dtypes={"float32"})
    print(f"\n(b) ~200-node model on (1, {channels}, {side}, {side}) cut into host regions, "
          f"median of {runs} runs")
    print(f"  {'':>19} {'wall time':-^33} {'cpu time':-^26}")
    print(f"  {'host regions':>12} {'steps':>6} {'byoc ms':>9} {'onnxruntime ms':>15} "
          f"{'ratio':>7} {'byoc ms':>8} {'ort ms':>8} {'ratio':>7} {'cpu us per extra step':>22}")
    worst = {"wall": 0.0, "cpu": 0.0}
    for regions in (1, 2, 11, 22):
        model = block_model(regions - 1, channels, side)
        compiled = build(model, [cutter], host_threads=1)
        hosts = sum(step.kind == "host" for step in compiled.steps)
        assert hosts == regions, f"expected {regions} host steps, got {hosts}"
        feeds = {"input": np.random.default_rng(1).standard_normal((1, channels, side, side))
                 .astype(np.float32)}
        sess = session(model)
        np.testing.assert_allclose(compiled.run(feeds)["output"], sess.run(None, feeds)[0],
                                   rtol=1e-4, atol=1e-5)
        for _ in range(10):  # warm-up
            compiled.run(feeds)
            sess.run(None, feeds)
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(timed(compiled.run, feeds))
            theirs.append(timed(sess.run, None, feeds))
        wall = _ratio(ours, theirs, 0)
        cpu = _ratio(ours, theirs, 1)
        worst = {"wall": max(worst["wall"], wall[2]), "cpu": max(worst["cpu"], cpu[2])}
        steps = len(compiled.steps)
        per_extra = (cpu[0] - cpu[1]) / (steps - 1) * 1e3 if steps > 1 else 0.0
        print(f"  {regions:>12} {steps:>6} {wall[0]:>9.3f} {wall[1]:>15.3f} {wall[2]:>6.3f}x "
              f"{cpu[0]:>8.3f} {cpu[1]:>8.3f} {cpu[2]:>6.3f}x {per_extra:>22.1f}")
    print(f"  goal: no more than 1.05x in CPU time: {'met' if worst['cpu'] <= 1.05 else 'NOT met'} "
          f"(worst {worst['cpu']:.3f}x; wall time {worst['wall']:.3f}x, which the time "
          "other processes take pulls towards 1x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per timing round (a, c)")
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (a, c)")
    parser.add_argument("--runs", type=int, default=200, help="runs per configuration (b)")
    parser.add_argument("--channels", type=int, default=32, help="channels of the model (b)")
    parser.add_argument("--side", type=int, default=32, help="spatial size of the model (b)")
    args = parser.parse_args(argv)
    pin_threads(1)
    per_call(args.calls, args.rounds)
    per_step(args.runs, args.channels, args.side)
    per_call_dynamic(args.calls, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
