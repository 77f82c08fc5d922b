"""Benchmark: the cpu target's generated kernels against onnxruntime on the CPU.

Each case is a small ONNX model (one op, a fused conv+bias+relu, or a whole small CNN),
built for ``cpu`` with byoc and run next to an onnxruntime session on the same model,
with the same number of threads (``--threads``: onnxruntime's ``intra_op_num_threads``
and ``OMP_NUM_THREADS`` for the generated code), and idle threads that sleep rather than
spin on both sides (``OMP_WAIT_POLICY=passive``, onnxruntime's
``session.intra_op.allow_spinning=0``), since a spinning pool would take the cores the
other side is timed on. Runs are interleaved in rounds (ours,
then onnxruntime, repeated) so that drift of the machine hits both; the table shows the
median time per call of each and the ratio ``onnxruntime / byoc`` (above 1: byoc is
faster), then the geometric mean of the ratios.

Both sides are timed through their Python entry points: byoc's ``CompiledModel.run``
(the whole model: input checks, the native call, the generated module) and
onnxruntime's ``InferenceSession.run``. ``--direct`` times byoc's module through the
native core's function object instead (no Python schedule), for pure kernel timing.
``--layout NHWC`` builds byoc's side with ``options={"cpu": {"layout": "NHWC"}}``: the
region's NCHW input is copied to NHWC by one relayout kernel (a shallow one is read
NCHW by the first kernel), the kernels compute channels-last, and the last one stores
the NCHW output; the time includes those conversions, as onnxruntime's includes the
reorders of its NCHWc kernels.

Usage::

    python benchmarks/cpu_kernels.py [--threads 1] [--rounds 15] [--only conv] [--layout NHWC]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> int:
    """The thread count, read before anything loads OpenMP (it reads the env once)."""
    for index, arg in enumerate(sys.argv):
        if arg == "--threads" and index + 1 < len(sys.argv):
            return int(sys.argv[index + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


os.environ["OMP_NUM_THREADS"] = str(_threads_from_argv())
# Idle worker threads must not spin: with interleaved runs, one side's spinning pool
# would steal the cores the other side needs (onnxruntime gets the same setting).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pinning import pin_threads  # noqa: E402

from byoc_sdk import build, model_zoo  # noqa: E402
from byoc_sdk.testing import as_proto  # noqa: E402

OPSET = 17


@dataclass
class Case:
    name: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    flops: float


def _model(nodes: list, inputs: dict[str, tuple], output: str,
           weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "bench",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def conv_case(name: str, channels: int, out_channels: int, size: int, kernel: int,
              stride: int = 1, group: int = 1, bias: bool = False, relu: bool = False) -> Case:
    """Conv on a (1, channels, size, size) input; optionally + bias and ReLU fused."""
    rng = np.random.default_rng(0)
    weights = {"w": (rng.standard_normal((out_channels, channels // group, kernel, kernel))
                     * 0.1).astype(np.float32)}
    inputs = ["x", "w"]
    if bias:
        weights["b"] = rng.standard_normal(out_channels).astype(np.float32)
        inputs.append("b")
    pad = kernel // 2
    nodes = [helper.make_node("Conv", inputs, ["c"], kernel_shape=[kernel, kernel],
                              pads=[pad] * 4, strides=[stride] * 2, group=group)]
    last = "c"
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        last = "r"
    model = _model(nodes, {"x": (1, channels, size, size)}, last, weights)
    out = (size + 2 * pad - kernel) // stride + 1
    flops = 2.0 * out_channels * (channels // group) * kernel * kernel * out * out
    feeds = {"x": rng.standard_normal((1, channels, size, size)).astype(np.float32)}
    return Case(name, model, feeds, flops)


def matmul_case(name: str, m: int, n: int, k: int, gemm: bool = False) -> Case:
    """x (m, k) times a constant (k, n): MatMul, or Gemm with a bias."""
    rng = np.random.default_rng(0)
    weights = {"w": (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)}
    if gemm:
        weights["b"] = rng.standard_normal(n).astype(np.float32)
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"])]
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = _model(nodes, {"x": (m, k)}, "y", weights)
    feeds = {"x": rng.standard_normal((m, k)).astype(np.float32)}
    return Case(name, model, feeds, 2.0 * m * n * k)


def batched_matmul_case(name: str, batch: int, m: int, n: int, k: int) -> Case:
    """Two computed operands (attention-style scores)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
    model = _model(nodes, {"a": (batch, m, k), "b": (batch, k, n)}, "y", {})
    feeds = {"a": rng.standard_normal((batch, m, k)).astype(np.float32),
             "b": rng.standard_normal((batch, k, n)).astype(np.float32)}
    return Case(name, model, feeds, 2.0 * batch * m * n * k)


def cnn_case() -> Case:
    model = model_zoo.small_cnn(batch=1, channels=3, size=64)
    return Case("small_cnn 64x64 (whole model)", model, model_zoo.random_inputs(model), 0.0)


def cases() -> list[Case]:
    return [
        conv_case("conv3x3 64->64 56x56", 64, 64, 56, 3),
        conv_case("conv3x3 128->128 28x28", 128, 128, 28, 3),
        conv_case("conv3x3 256->256 14x14", 256, 256, 14, 3),
        conv_case("conv3x3 s2 3->32 224x224 (stem)", 3, 32, 224, 3, stride=2),
        conv_case("conv1x1 256->64 56x56", 256, 64, 56, 1),
        conv_case("conv1x1 128->512 28x28", 128, 512, 28, 1),
        conv_case("dwconv3x3 32 112x112", 32, 32, 112, 3, group=32),
        conv_case("dwconv3x3 128 56x56", 128, 128, 56, 3, group=128),
        conv_case("dwconv3x3 s2 256 28x28", 256, 256, 28, 3, stride=2, group=256),
        matmul_case("matmul 512x512x512", 512, 512, 512),
        matmul_case("gemm+bias 256x1024x1024", 256, 1024, 1024, gemm=True),
        matmul_case("matmul skinny 1x1024x1024", 1, 1024, 1024),
        matmul_case("matmul skinny 16x4096x1024", 16, 4096, 1024),
        batched_matmul_case("batched matmul 8x128x128x64", 8, 128, 128, 64),
        conv_case("conv3x3+bias+relu 64->64 56x56 (fused)", 64, 64, 56, 3, bias=True,
                  relu=True),
        cnn_case(),
    ]


def _ort_runner(model: onnx.ModelProto, feeds: dict, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(as_proto(model).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def _byoc_runner(model: onnx.ModelProto, feeds: dict, direct: bool, threads: int,
                 layout: str) -> Callable[[], object]:
    compiled = build(model, ["cpu"], strict=True, host_threads=threads,
                     options={"cpu": {"layout": layout}})
    if direct:
        if len(compiled.steps) != 1 or compiled.steps[0].kind != "external":
            raise SystemExit("--direct needs every case to be one compiled region")
        function = compiled.steps[0].runner
        args = [feeds[name] for name in compiled.steps[0].inputs]
        return lambda: function(args)
    return lambda: compiled.run(feeds)


def _check(model: onnx.ModelProto, feeds: dict, ours: Callable, theirs: Callable) -> None:
    got, want = ours(), theirs()
    got = list(got.values()) if isinstance(got, dict) else got
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def _time(run: Callable[[], object], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def measure(case: Case, threads: int, rounds: int, direct: bool,
            layout: str = "NCHW") -> tuple[float, float]:
    """Median seconds per call (byoc, onnxruntime), interleaved over ``rounds``."""
    ours = _byoc_runner(case.model, case.feeds, direct, threads, layout)
    theirs = _ort_runner(case.model, case.feeds, threads)
    _check(case.model, case.feeds, ours, theirs)
    return interleaved_medians(ours, theirs, rounds)


def interleaved_medians(ours: Callable[[], object], theirs: Callable[[], object],
                        rounds: int) -> tuple[float, float]:
    """Median seconds per call of each, timed in ``rounds`` alternating batches of about
    20 ms, so that drift of the machine hits both."""
    probe = min(_time(ours, 3) + _time(theirs, 3))
    calls = max(3, min(200, int(0.02 / max(probe, 1e-6))))
    mine, other = [], []
    for _ in range(rounds):
        mine += _time(ours, calls)
        other += _time(theirs, calls)
    return statistics.median(mine), statistics.median(other)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both (ORT intra-op, OMP_NUM_THREADS)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--only", default="", help="run cases whose name contains this")
    parser.add_argument("--direct", action="store_true",
                        help="time byoc's module through the native core, not run()")
    parser.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW",
                        help="activation layout inside byoc's regions (the cpu option)")
    args = parser.parse_args()
    pin_threads(args.threads)
    how = "native function call" if args.direct else "CompiledModel.run"
    print(f"cpu kernels: byoc ({how}, layout {args.layout}) vs onnxruntime "
          f"(InferenceSession.run), {args.threads} thread(s), {args.rounds} interleaved "
          "rounds, medians")
    print(f"{'case':<42}{'byoc ms':>10}{'ort ms':>10}{'ratio':>8}{'byoc GF/s':>11}")
    ratios = []
    for case in cases():
        if args.only and args.only not in case.name:
            continue
        ours, theirs = measure(case, args.threads, args.rounds, args.direct, args.layout)
        ratio = theirs / ours
        ratios.append(ratio)
        rate = f"{case.flops / ours / 1e9:>11.1f}" if case.flops else f"{'':>11}"
        print(f"{case.name:<42}{ours * 1e3:>10.3f}{theirs * 1e3:>10.3f}{ratio:>8.2f}{rate}",
              flush=True)
    if ratios:
        geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"{'geometric mean of ratios (ort / byoc)':<62}{geomean:>8.2f}")
        print(f"{'lowest ratio':<62}{min(ratios):>8.2f}")


if __name__ == "__main__":
    main()
