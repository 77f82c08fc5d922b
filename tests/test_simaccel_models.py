"""Whole models partitioned between simaccel and the host, built, packaged and run: equal
to onnxruntime, with the simulator's statistics in profiles."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from byoc_sdk import model_zoo
from byoc_sdk.build import build
from byoc_sdk.cli import main
from byoc_sdk.runtime import CompiledModel, Profile
from byoc_sdk.testing import random_feeds, run_onnxruntime
from reference_backends.simaccel.testing import (
    check,
    mobilenet_like,
    resnet_like,
    simaccel_stats,
)

TINY = {"input_kib": 8, "weight_kib": 8, "accumulator_kib": 4}

MODELS = {
    "small_cnn": lambda: model_zoo.small_cnn(batch=2),
    "depthwise_cnn": lambda: model_zoo.depthwise_cnn(),
    "mlp": lambda: model_zoo.mlp(),
    "resnet_like": lambda: resnet_like(size=32, widths=(8, 16, 32, 64), blocks=1),
    "mobilenet_like": lambda: mobilenet_like(size=32),
}


@pytest.mark.parametrize("machine", [None, TINY], ids=["default", "tiny"])
@pytest.mark.parametrize("name", list(MODELS))
def test_cnn_models_split_between_simaccel_and_host(name, machine):
    """Softmax has no simaccel lowering: it stays on the host, the rest is simulated."""
    model = MODELS[name]()
    compiled = check(model, machine)
    targets = {step.target for step in compiled.steps}
    assert "simaccel" in targets
    if any(n.op_type == "Softmax" for n in model.graph.node):
        assert "host" in targets
    for stats in simaccel_stats(compiled):
        assert stats["cycles"] > 0 and 0 < stats["mac_utilization"] <= 1
        assert stats["sram_peak_bytes"] <= 512 * 1024


def test_transformer_block_regions_compile_and_match():
    """MatMul regions of a transformer block run on simaccel; LayerNorm, Softmax,
    Transpose and Gelu stay on the host."""
    model = model_zoo.transformer_block()
    compiled = build(model, ["simaccel"], strict=True)
    feeds = random_feeds(model)
    expected = run_onnxruntime(model, feeds)
    for name, value in compiled.run(feeds).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-4, atol=1e-5)
    assert sum(step.target == "simaccel" for step in compiled.steps) >= 3


def test_package_round_trip_and_profile(tmp_path):
    model = resnet_like(size=32, widths=(8, 16), blocks=1)
    compiled = build(model, ["simaccel"], strict=True)
    path = compiled.save(tmp_path / "model.byoc")
    loaded = CompiledModel.load(path)
    feeds = random_feeds(model)
    profile = Profile()
    got = loaded.run(feeds, profile=profile)
    np.testing.assert_allclose(got["probs"], run_onnxruntime(model, feeds)["probs"],
                               rtol=1e-4, atol=1e-5)
    events = [e for e in profile.events if e["cat"] == "simaccel"]
    assert events
    for key in ("cycles", "mac_utilization", "dram_bytes", "sram_peak_bytes", "host_seconds"):
        assert key in events[0]["args"]
    json.dumps(profile.events)  # the trace is saved as JSON


def test_a_package_runs_without_the_compiler(tmp_path):
    """Loading and running a package imports simaccel's runtime, never its compiler."""
    model = model_zoo.small_cnn()
    path = build(model, ["simaccel"], strict=True).save(tmp_path / "m.byoc")
    np.save(tmp_path / "x.npy", random_feeds(model)["input"])
    script = (
        "import sys, numpy as np\n"
        "from byoc_sdk.runtime import CompiledModel\n"
        f"m = CompiledModel.load({str(path)!r})\n"
        f"out = m.run({{'input': np.load({str(tmp_path / 'x.npy')!r})}})\n"
        "assert any(s.target == 'simaccel' for s in m.steps)\n"
        "print(sorted(k for k in sys.modules if k.startswith('reference_backends')))\n"
    )
    # cwd away from the checkout: `python -c` puts the current folder first on sys.path,
    # and the source tree must not shadow the installed package (and its _native).
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True, cwd=tmp_path)
    assert "reference_backends.simaccel.runtime" in done.stdout
    assert "reference_backends.simaccel.compiler" not in done.stdout


def test_cli_build_and_run_with_check(tmp_path, capsys):
    package = tmp_path / "s.byoc"
    assert main(["build", "examples/small_cnn.onnx", "--target", "simaccel",
                 "-o", str(package)]) == 0
    assert "simaccel" in capsys.readouterr().out
    assert main(["run", str(package), "--random-inputs", "--check"]) == 0
    out = capsys.readouterr().out
    assert "simaccel" in out and "ok" in out and "MISMATCH" not in out
    assert "steps bound to planned buffers" in out and "MB per concurrent run" in out


def test_run_summary_reports_the_simulators_statistics():
    """Each run's statistics appear in the profile summary `byoc run` prints."""
    from byoc_sdk import Profile

    model = model_zoo.small_cnn()
    compiled = build(model, ["simaccel"], strict=True)
    profile = Profile()
    compiled.run(random_feeds(model), profile=profile)
    stats = profile.region_stats()
    (region,) = stats
    target, values = stats[region]
    assert target == "simaccel"
    assert values["cycles"] > 0 and 0 < values["mac_utilization"] <= 1
    assert {"dram_bytes", "sram_peak_bytes"} <= set(values)
    summary = profile.render_summary()
    assert "runtime statistics" in summary and f"{values['cycles']:,}" in summary
