"""Regressions found by differential fuzzing of the cuda target against onnxruntime.

Each test is one minimised reproducer: the model must build strictly for cuda (every
node on cuda, in the host emulation, so no GPU is needed) and match onnxruntime on the
original model; where nvcc is installed, the same source must also compile for the GPU.
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import byoc_sdk as byoc
from byoc_sdk.build import BuildError
from byoc_sdk.codegen import CSource
from byoc_sdk.testing import EMPTY_PRODUCTS, empty_product, random_feeds, run_onnxruntime
from byoc_sdk.testing import float_model as model
from byoc_sdk.toolchain import CompileJob, Toolchain
from partition.policy import RegionPolicy

RTOL, ATOL = 1e-4, 1e-5
FLOAT = TensorProto.FLOAT
#: Keep single-op regions on cuda (its default policy leaves them to the host).
EVERY_REGION = RegionPolicy(min_nodes=1, require_compute=False)


def build(proto: onnx.ModelProto, options: dict[str, Any] | None = None) -> byoc.CompiledModel:
    """A strict, emulated cuda build with every node on cuda."""
    compiled = byoc.build(proto, ["cuda"], strict=True, host_threads=1, policy=EVERY_REGION,
                          options={"cuda": {"emulate": True, **(options or {})}})
    host = [n.name for n in compiled.report.partition.nodes if n.target == "host"]
    assert not host, f"left on the host: {host}"
    return compiled


def check(proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
          options: dict[str, Any] | None = None) -> None:
    """Same outputs as onnxruntime (NaN = NaN), and the source compiles with nvcc."""
    compiled = build(proto, options)
    expected = run_onnxruntime(proto, feeds)
    actual = compiled.run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(actual[name], want, rtol=RTOL, atol=ATOL, err_msg=name)
    if shutil.which("nvcc"):
        toolchain = Toolchain()
        for region in compiled.package.regions:
            ((name, text),) = region.artifact.sources.items()
            source = CSource(sources={name.rsplit(".", 1)[0] + ".cu": text},
                             entry=region.artifact.entry,
                             constants=list(region.artifact.constants), language="cuda")
            assert toolchain.compile(CompileJob(region.name, "cuda", source)).is_file()


def test_depthwise_conv_multiplies_padding_by_the_weights() -> None:
    """The padding of a convolution is zeros the weights multiply: an inf weight over
    the padding gives NaN there, as onnxruntime, the cpu target and cuda's own GEMM path
    compute it. The depthwise kernel skipped padded taps and returned finite numbers."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])]
    proto = model(nodes, {"x": (1, 2, 3, 3), "w": (2, 1, 3, 3)}, ["y"])
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = np.inf   # the top row of every window is padding for output row 0
    w[1, 0, 2, 1] = np.nan
    check(proto, {"x": rng.standard_normal((1, 2, 3, 3)).astype(np.float32), "w": w})


def conv_pair() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A GEMM-style Conv followed by a depthwise one."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "dw"], ["y"], group=4, pads=[1, 1, 1, 1])]
    constants = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                 "dw": rng.standard_normal((4, 1, 3, 3)).astype(np.float32)}
    proto = model(nodes, {"x": (1, 3, 6, 6)}, ["y"], constants)
    return proto, {"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}


@pytest.mark.parametrize("record", [
    {"bm": 32, "bn": 32, "bk": 8, "tm": 2, "tn": 2},   # TileSchedule only
    {"threads": 64, "max_blocks": 1},                   # BlockSchedule only
    {"bm": 16, "tm": 1, "threads": 32},                 # both
])
def test_conv_op_record_tunes_depthwise_and_gemm_convs_alike(record: dict[str, int]) -> None:
    """An ``ops`` record for Conv names fields of the TileSchedule (GEMM-style Conv) or
    of the BlockSchedule (depthwise Conv); each kernel takes those of its own schedule.
    The depthwise kernel used to refuse the tile fields (and the GEMM kernel the block
    fields), so ``{"Conv": {"bm": 32}}`` failed every region holding a depthwise Conv."""
    proto, feeds = conv_pair()
    check(proto, feeds, {"ops": {"Conv": record}})


def test_conv_op_record_still_refuses_unknown_keys() -> None:
    proto, _ = conv_pair()
    with pytest.raises(BuildError, match="has no parameters"):
        build(proto, {"ops": {"Conv": {"bm": 32, "tiles": 2}}})


@pytest.mark.parametrize("case", [c for c in EMPTY_PRODUCTS if c != "matmul_empty_reduction"])
def test_empty_products_launch_nothing(case: str) -> None:
    """A tiled product with no rows, columns or batches has a grid of zero blocks, which
    CUDA refuses ('invalid configuration argument'): the build succeeded and every run
    failed. An empty output needs no kernel, so none is launched."""
    proto = empty_product(case)  # the Relu after the empty product is skipped too
    check(proto, random_feeds(proto))
