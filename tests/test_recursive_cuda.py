"""The cuda target's persistent kernel: nvcc accepts it, its numbers are checked in the host
CUDA emulation everywhere, and on the GPU where there is one."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from byoc_sdk.recursive import (
    RecursiveInputError,
    RecursiveRunError,
    Reference,
    compile_model,
    dag_rnn,
    grid_dag,
    mv_rnn,
    sst_trees,
    tree_lstm,
)

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def kernels():
    """TreeLSTM (two state components, stacked siblings, vocabulary tables), DAG-RNN
    (dense features, hoisted stage, missing children) and MV-RNN (per-node GEMMs with
    leaf-child tables), compiled with nvcc."""
    return {key: (model, compile_model(model, "cuda")) for key, model in _models().items()}


def _models():
    return {"lstm": tree_lstm(16, vocab=30), "dag": dag_rnn(16, 4), "mv": mv_rnn(8, vocab=30)}


@needs_nvcc
def test_nvcc_compiles_the_persistent_kernel(kernels):
    for _, compiled in kernels.values():
        assert "cudaLaunchCooperativeKernel" in compiled.source
        assert "grid.sync()" in compiled.source
        assert compiled.source.count("__global__") == 1  # one kernel for the whole model


def _batches(rng):
    trees = sst_trees(6)
    dags = [grid_dag(4, 6), grid_dag(2, 3)]
    words = {"words": [rng.integers(0, 30, t.num_nodes) for t in trees]}
    return {"lstm": (trees, words), "mv": (trees, words),
            "dag": (dags, {"features": [{"x": rng.standard_normal((d.num_nodes, 4))}
                                        for d in dags]})}


@needs_nvcc
@pytest.mark.skipif(_has_gpu(), reason="a GPU is present")
def test_without_a_gpu_running_fails_clearly(kernels):
    (trees, given) = _batches(np.random.default_rng(0))["lstm"]
    with pytest.raises(RecursiveRunError, match="CUDA"):
        kernels["lstm"][1].run(trees, **given)


def _assert_matches_reference(kernels, rng) -> None:
    for key, (structures, given) in _batches(rng).items():
        model, compiled = kernels[key]
        expected = Reference(model).run(structures, **given, all_nodes=True)
        got = compiled.run(structures, **given, all_nodes=True)
        for name in expected.roots:
            np.testing.assert_allclose(got.roots[name], expected.roots[name], atol=1e-4)
        for exp, out in zip(expected.nodes, got.nodes, strict=True):
            for name in exp:
                np.testing.assert_allclose(out[name], exp[name], atol=1e-4)


@pytest.mark.gpu
@needs_nvcc
@pytest.mark.skipif(not _has_gpu(), reason="no GPU")
def test_cuda_kernel_matches_the_reference(kernels):
    _assert_matches_reference(kernels, np.random.default_rng(1))


# --- the same source in the host CUDA emulation (no GPU, no nvcc needed) ------------------


@pytest.fixture(scope="module")
def emulated():
    return {key: (model, compile_model(model, "cuda", emulate=True))
            for key, model in _models().items()}


def test_emulated_persistent_kernel_matches_the_reference(emulated):
    # One cooperative block runs every stage and level: the grid-stride loops and the
    # grid barriers between ops are the GPU's, on fewer threads.
    assert emulated["lstm"][1].source.count("__global__") == 1
    _assert_matches_reference(emulated, np.random.default_rng(2))


def test_emulated_kernel_across_capacities_shares_one_upload(emulated):
    # Batches of different sizes bind functions of different capacities to one module:
    # each takes the constants through _init, which uploads them for the first only (the
    # others share them), and every capacity computes with them. The module's device work
    # block grows for the larger batch and serves the smaller one after it.
    model, compiled = emulated["lstm"]
    rng = np.random.default_rng(3)
    for count in (1, 12, 2):
        trees = sst_trees(count)
        words = [rng.integers(0, 30, t.num_nodes) for t in trees]
        expected = Reference(model).run(trees, words=words)
        got = compiled.run(trees, words=words)
        for name in expected.roots:
            np.testing.assert_allclose(got.roots[name], expected.roots[name], atol=1e-4)
    assert len(compiled._bound) >= 2


def test_emulated_kernel_refuses_bad_word_ids(emulated):
    model, compiled = emulated["lstm"]
    trees = sst_trees(1)
    words = [np.full(trees[0].num_nodes, 30)]
    with pytest.raises(RecursiveInputError, match="outside the vocabulary of 30"):
        compiled.run(trees, words=words)
    good = [np.zeros(trees[0].num_nodes, np.int64)]
    expected = Reference(model).run(trees, words=good)
    np.testing.assert_allclose(compiled.run(trees, words=good).roots["h"],
                               expected.roots["h"], atol=1e-4)
