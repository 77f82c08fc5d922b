"""simaccel: simulated cycles against the roofline of the same machine, and simulator speed.

For GEMM- and convolution-heavy layers (ResNet-18/50-like and MobileNet-v1-like layers at
224 x 224, and transformer-sized matrix products), each built with byoc for the default
simaccel chip (16 x 16 array, 64 vector lanes, 512 KiB SRAM, 64 B/cycle DMA):

* simulated cycles, from the simulator's timing model;
* the roofline lower bound of the same machine: max(MACs / array cells, compulsory DRAM
  bytes / DMA bytes per cycle), the bytes being the input, weights and output once;
* their ratio (goal: at most 1.25 on GEMM and convolution layers);
* host seconds of one functional simulation (best of ``--repeat``) and the simulated MACs
  per host second.

Then whole models (ResNet-like, MobileNet-like), end to end through byoc: host time of one
run and simulated time. Run: ``python benchmarks/simaccel.py [--quick] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from pinning import pin_threads

from byoc_sdk.testing import random_feeds, run_onnxruntime
from reference_backends.simaccel import LIMITS
from reference_backends.simaccel.testing import (
    GraphBuilder,
    build_for,
    mobilenet_like,
    resnet_like,
    simaccel_stats,
)


@dataclass(frozen=True)
class Layer:
    name: str
    model: onnx.ModelProto
    macs: int
    dram_bytes: int  # compulsory: input, weights and output, once each


def conv_layer(name: str, c_in: int, size: int, c_out: int, k: int, stride: int = 1,
               depthwise: bool = False, relu6: bool = False) -> Layer:
    """Conv (no bias) + BatchNormalization + ReLU (or ReLU6), one composite."""
    g = GraphBuilder()
    x = g.input("x", (1, c_in, size, size))
    group = c_in if depthwise else 1
    y = g.batchnorm(g.conv(x, c_in, c_out, k, stride=stride, group=group, bias=False), c_out)
    if relu6:
        y = g.node("Clip", [y, g.const("lo", 0.0), g.const("hi", 6.0)])
    else:
        y = g.node("Relu", [y])
    out = (size + 2 * (k // 2) - k) // stride + 1
    macs = c_out * out * out * (c_in // group) * k * k
    elements = c_in * size * size + c_out * (c_in // group) * k * k + c_out * out * out
    return Layer(name, g.model(y), macs, 4 * elements)


def gemm_layer(name: str, m: int, k: int, n: int) -> Layer:
    """Gemm with a bias (transB, as a fully connected layer is stored) + ReLU."""
    g = GraphBuilder()
    x = g.input("x", (m, k))
    y = g.node("Gemm", [x, g.weight("w", (n, k), 0.05), g.weight("b", (n,))], transB=1)
    return Layer(name, g.model(g.node("Relu", [y])), m * k * n, 4 * (m * k + k * n + m * n))


LAYERS: list[Callable[[], Layer]] = [
    lambda: conv_layer("resnet stem 7x7/2 3->64 @224", 3, 224, 64, 7, 2),
    lambda: conv_layer("resnet 3x3 64->64 @56", 64, 56, 64, 3),
    lambda: conv_layer("resnet 3x3/2 64->128 @56", 64, 56, 128, 3, 2),
    lambda: conv_layer("resnet 1x1/2 64->128 @56", 64, 56, 128, 1, 2),
    lambda: conv_layer("resnet 3x3 128->128 @28", 128, 28, 128, 3),
    lambda: conv_layer("resnet 3x3 256->256 @14", 256, 14, 256, 3),
    lambda: conv_layer("resnet 3x3 512->512 @7", 512, 7, 512, 3),
    lambda: conv_layer("resnet50 1x1 256->64 @56", 256, 56, 64, 1),
    lambda: conv_layer("resnet50 1x1 64->256 @56", 64, 56, 256, 1),
    lambda: gemm_layer("resnet fc 512->1000", 1, 512, 1000),
    lambda: conv_layer("mobilenet 1x1 32->64 @112", 32, 112, 64, 1, relu6=True),
    lambda: conv_layer("mobilenet dw3x3/2 64 @112", 64, 112, 64, 3, 2, True, True),
    lambda: conv_layer("mobilenet 1x1 128->128 @56", 128, 56, 128, 1, relu6=True),
    lambda: conv_layer("mobilenet dw3x3 256 @28", 256, 28, 256, 3, 1, True, True),
    lambda: conv_layer("mobilenet 1x1 512->512 @14", 512, 14, 512, 1, relu6=True),
    lambda: conv_layer("mobilenet dw3x3 1024 @7", 1024, 7, 1024, 3, 1, True, True),
    lambda: conv_layer("mobilenet 1x1 1024->1024 @7", 1024, 7, 1024, 1, relu6=True),
    lambda: gemm_layer("gemm 256x1024x1024", 256, 1024, 1024),
    lambda: gemm_layer("gemm 128x768x3072", 128, 768, 3072),
]
QUICK = (1, 2, 5, 9, 12, 13, 17)


def best_run(run: Callable[[], object], repeat: int) -> float:
    """Host seconds of the fastest of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_layer(layer: Layer, repeat: int) -> dict[str, float]:
    compiled = build_for(layer.model, policy=None)
    feeds = random_feeds(layer.model)
    (step,) = [s for s in compiled.steps if s.target == "simaccel"]
    inputs = [feeds[name] for name in step.inputs if name in feeds]
    got = compiled.run(feeds)
    want = run_onnxruntime(layer.model, feeds)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-4, err_msg=layer.name)
    host = best_run(lambda: step.runner(inputs), repeat)
    (stats,) = simaccel_stats(compiled)
    roofline = max(layer.macs / LIMITS.macs_per_cycle,
                   layer.dram_bytes / LIMITS.dma_bytes_per_cycle)
    return {"cycles": stats["cycles"], "roofline": roofline,
            "ratio": stats["cycles"] / roofline, "host": host,
            "utilization": stats["mac_utilization"]}


def layer_table(indices: tuple[int, ...] | None, repeat: int) -> list[float]:
    header = (f"{'layer':<32}{'MACs':>10}{'sim cycles':>12}{'roofline':>11}{'ratio':>7}"
              f"{'MAC util':>9}{'host s':>10}{'sim MAC/s':>11}")
    print(header)
    print("-" * len(header))
    ratios = []
    for index, make in enumerate(LAYERS):
        if indices is not None and index not in indices:
            continue
        layer = make()
        row = measure_layer(layer, repeat)
        ratios.append(row["ratio"])
        print(f"{layer.name:<32}{layer.macs / 1e6:>9.1f}M{row['cycles']:>12,}"
              f"{row['roofline']:>11,.0f}{row['ratio']:>7.3f}{row['utilization']:>9.2f}"
              f"{row['host']:>10.4f}{layer.macs / row['host'] / 1e9:>9.2f}G")
    return ratios


def model_table(models: dict[str, onnx.ModelProto], repeat: int) -> None:
    header = (f"{'model':<44}{'MACs':>10}{'sim cycles':>13}{'sim ms':>9}{'host s':>9}"
              f"{'sim MAC/s':>11}")
    print(header)
    print("-" * len(header))
    for name, model in models.items():
        compiled = build_for(model, policy=None)
        feeds = random_feeds(model)
        compiled.run(feeds)  # warm up
        host = best_run(lambda compiled=compiled, feeds=feeds: compiled.run(feeds), repeat)
        stats = simaccel_stats(compiled)
        cycles = sum(s["cycles"] for s in stats)
        macs = sum(s["macs"] for s in stats)
        print(f"{name:<44}{macs / 1e6:>9.1f}M{cycles:>13,}{cycles / LIMITS.clock_mhz / 1e3:>9.3f}"
              f"{host:>9.3f}{macs / host / 1e9:>9.2f}G")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few layers, small models")
    parser.add_argument("--repeat", type=int, default=3, help="host timings: best of N")
    args = parser.parse_args(argv)
    pin_threads(1)
    print(f"simaccel: {LIMITS.array_rows}x{LIMITS.array_cols} array, {LIMITS.vector_lanes} "
          f"lanes, {LIMITS.sram_kib} KiB SRAM, DMA {LIMITS.dma_bytes_per_cycle} B/cycle, "
          f"{LIMITS.clock_mhz} MHz\n")
    ratios = layer_table(QUICK if args.quick else None, args.repeat)
    print(f"\nworst ratio {max(ratios):.3f}, geometric mean "
          f"{float(np.exp(np.mean(np.log(ratios)))):.3f} (goal: <= 1.25)\n")
    models = {"resnet-like 64x64, widths 16-128 (small)": resnet_like(size=64)}
    if not args.quick:
        models["mobilenet-like 224x224"] = mobilenet_like(size=224)
        models["resnet-18 224x224"] = resnet_like(size=224, widths=(64, 128, 256, 512),
                                                  classes=1000)
    model_table(models, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
