"""Benchmark: the cuda target's generated kernels against onnxruntime's CUDA provider.

The cases are ``cpu_kernels.py``'s (Conv 3x3, 1x1 and depthwise at ResNet and MobileNet
shapes, square and skinny Gemm/MatMul, a fused conv+bias+relu, a small CNN). Each is
built for ``cuda`` with byoc and run next to an onnxruntime session with the
``CUDAExecutionProvider`` on the same model, interleaved in rounds; the table shows the
median time per call of each and the ratio ``onnxruntime / byoc`` (above 1: byoc is
faster), then the geometric mean. Both sides are timed from host arrays to host arrays
(byoc's module copies inputs in and outputs out; so does ``InferenceSession.run``).

Without a GPU, or without an onnxruntime build that has the CUDA provider
(``onnxruntime-gpu``), it says what it found and exits without timing anything.

Usage::

    python benchmarks/cuda_kernels.py [--rounds 15] [--only conv] [--device 0]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
from cpu_kernels import Case, cases, interleaved_medians

from byoc_sdk import build
from byoc_sdk.testing import as_proto
from reference_backends.cuda.device import device_count


def _ort_runner(model: onnx.ModelProto, feeds: dict, device: int) -> Callable[[], object]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(as_proto(model).SerializeToString(), options,
                                   providers=[("CUDAExecutionProvider", {"device_id": device})])
    return lambda: session.run(None, feeds)


def _byoc_runner(model: onnx.ModelProto, feeds: dict, device: int) -> Callable[[], object]:
    compiled = build(model, ["cuda"], strict=True,
                     options={"cuda": {"device": device, "emulate": False}})
    return lambda: compiled.run(feeds)


def measure(case: Case, device: int, rounds: int) -> tuple[float, float]:
    """Median seconds per call (byoc, onnxruntime), interleaved over ``rounds``."""
    ours = _byoc_runner(case.model, case.feeds, device)
    theirs = _ort_runner(case.model, case.feeds, device)
    got, want = ours(), theirs()
    for a, b in zip(got.values(), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    return interleaved_medians(ours, theirs, rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--only", default="", help="run cases whose name contains this")
    parser.add_argument("--device", type=int, default=0, help="CUDA device ordinal")
    args = parser.parse_args()
    found = device_count()
    providers = ort.get_available_providers()
    print(f"found: {found} CUDA device(s); onnxruntime {ort.__version__} providers "
          f"{', '.join(providers)}")
    if found <= args.device:
        print("no CUDA device to run on: nothing timed")
        return 0
    if "CUDAExecutionProvider" not in providers:
        print("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu): "
              "nothing timed")
        return 0
    print(f"cuda kernels: byoc (CompiledModel.run) vs onnxruntime CUDA provider, device "
          f"{args.device}, {args.rounds} interleaved rounds, medians")
    print(f"{'case':<42}{'byoc ms':>10}{'ort ms':>10}{'ratio':>8}{'byoc GF/s':>11}")
    ratios = []
    for case in cases():
        if args.only and args.only not in case.name:
            continue
        ours, theirs = measure(case, args.device, args.rounds)
        ratios.append(theirs / ours)
        rate = f"{case.flops / ours / 1e9:>11.1f}" if case.flops else f"{'':>11}"
        print(f"{case.name:<42}{ours * 1e3:>10.3f}{theirs * 1e3:>10.3f}{ratios[-1]:>8.2f}"
              f"{rate}", flush=True)
    if ratios:
        geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"{'geometric mean of ratios (ort / byoc)':<62}{geomean:>8.2f}")
        print(f"{'lowest ratio':<62}{min(ratios):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
