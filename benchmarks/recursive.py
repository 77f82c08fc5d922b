"""Recursive models: byoc's fused kernels against PyTorch (and DyNet) baselines.

One thread everywhere. For every model, structure source and batch size, byoc is timed
against each baseline in a pass of its own: the two take turns on the same batches
(interleaved, the first rotating), and each one's time is the median over at least 50
batches after a warm-up. Each ratio compares the two runners of one pass. Pairs, rather
than all runners in one rotation, so that byoc is not timed right after a third runner
whose memory traffic evicted its weights (DyNet's memory pools do), a cost neither side
of the comparison pays in use. Every timed call starts from the batch's structures and
word ids, so linearization (and DyNet's graph building) is included.

Runners:
  byoc           the compiled kernel (cpu target)
  torch-node     eager PyTorch, node by node: the baseline of the Cortex and DyNet papers
  torch-level    eager PyTorch, one call per op for all nodes of a level
  dynet-auto     DyNet with automatic batching (only if `pip install dynet38` worked)

    OMP_NUM_THREADS=1 python benchmarks/recursive.py            # the full table
    python benchmarks/recursive.py --quick                       # a smoke run
    python benchmarks/recursive.py --ablation                    # technique by technique
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pinning import pin_threads

from byoc_sdk.recursive import (
    RecursiveModel,
    Structure,
    compile_model,
    complete_tree,
    mv_rnn,
    node_levels,
    random_binary_tree,
    sst_trees,
    tree_fc,
    tree_gru,
    tree_lstm,
)
from byoc_sdk.recursive.stages import StageOptions

VOCAB = 21701
MV_VOCAB = 1000


@dataclass(frozen=True)
class Config:
    model: str
    hidden: int
    shapes: str  # "sst", "random" or "complete7"

    def build(self) -> RecursiveModel:
        if self.model == "TreeLSTM":
            return tree_lstm(self.hidden, vocab=VOCAB)
        if self.model == "TreeGRU":
            return tree_gru(self.hidden, vocab=VOCAB)
        if self.model == "TreeFC":
            return tree_fc(self.hidden, vocab=VOCAB)
        return mv_rnn(self.hidden, vocab=MV_VOCAB)


CONFIGS = [Config(m, h, s) for m in ("TreeLSTM", "TreeGRU") for h in (256, 512)
           for s in ("sst", "random")]
CONFIGS += [Config("TreeFC", 256, "complete7")]
CONFIGS += [Config("MV-RNN", h, s) for h in (64, 128) for s in ("sst", "random")]


def batches(config: Config, batch: int, count: int, vocab: int, seed: int = 0):
    """``count`` batches of ``batch`` structures with random word ids."""
    rng = np.random.default_rng(seed)
    if config.shapes == "sst":
        pool = sst_trees()
        pick = rng.choice(len(pool), size=(count, batch))
        groups = [[pool[i] for i in row] for row in pick]
    elif config.shapes == "random":
        groups = [[random_binary_tree(int(rng.integers(20, 51)), rng) for _ in range(batch)]
                  for _ in range(count)]
    else:
        tree = complete_tree(7)
        groups = [[tree] * batch for _ in range(count)]
    words = [[rng.integers(0, vocab, s.num_nodes).astype(np.int32) for s in g] for g in groups]
    return groups, words


# --- runners --------------------------------------------------------------------------


def torch_runners(model: RecursiveModel) -> dict[str, Callable]:
    try:
        import torch
    except ImportError:
        print("torch is not installed (pip install -e '.[bench]'): PyTorch baselines skipped")
        return {}
    torch.set_num_threads(1)
    from byoc_sdk.recursive.torch_models import LevelBatched, NodeByNode

    node, level = NodeByNode(model), LevelBatched(model)
    return {"torch-node": lambda s, w: node.run(s, w), "torch-level": lambda s, w: level.run(s, w)}


_DYNET = None


def dynet_module():
    """DyNet with autobatching, imported once; None when dynet38 is not installed."""
    global _DYNET
    if _DYNET is None:
        try:
            import dynet_config

            dynet_config.set(autobatch=1, mem=2048, random_seed=1)
            import dynet

            _DYNET = dynet
        except Exception as exc:  # any failure to install or start DyNet skips it
            print(f"DyNet unavailable ({type(exc).__name__}: {exc}): its baseline is skipped")
            _DYNET = False
    return _DYNET or None


class DyNetModel:
    """A shipped tree model restated in DyNet (column vectors: weights transposed)."""

    def __init__(self, dy, model: RecursiveModel) -> None:
        self.dy, self.model = dy, model
        self.pc = dy.ParameterCollection()
        p = model.params

        def param(name, transpose=True):
            value = p[name].T if transpose and p[name].ndim == 2 else p[name]
            return self.pc.add_parameters(value.shape, init=dy.NumpyInitializer(value))

        self.param = {n: param(n) for n in p if n not in ("embedding", "word_vectors",
                                                           "word_matrices")}
        if model.name == "MV-RNN":
            self.param["W_M"] = param("W_M", transpose=False)
            self.vectors = self.pc.lookup_parameters_from_numpy(p["word_vectors"])
            self.matrices = [p["word_matrices"][i] for i in range(len(p["word_matrices"]))]
        else:
            self.embed = self.pc.lookup_parameters_from_numpy(p["embedding"])
        self.hidden = model.state[0].shape[0]

    def run(self, structures: Sequence[Structure], words):
        dy = self.dy
        dy.renew_cg()
        e = self.param
        roots = []
        for s, ids in zip(structures, words, strict=True):
            states: list = [None] * s.num_nodes
            for v in np.argsort(node_levels(s), kind="stable").tolist():
                kids = [states[c] for c in s.children[v] if c >= 0]
                states[v] = self.internal(e, kids) if kids else self.leaf(e, int(ids[v]))
            roots.append(states[int(s.roots[0])][0])
        return dy.concatenate_cols(roots).npvalue()

    def leaf(self, e, word):
        dy, h = self.dy, self.hidden
        name = self.model.name
        if name == "MV-RNN":
            return dy.lookup(self.vectors, word), dy.inputTensor(self.matrices[word])
        x = dy.lookup(self.embed, word)
        if name == "TreeFC":
            return (dy.rectify(e["W_x"] * x + e["b_x"]),)
        if name == "TreeGRU":
            zh = e["W_zh"] * x
            z = dy.logistic(dy.pick_range(zh, 0, h) + e["b_z"])
            return (dy.cmult(-z + 1.0, dy.tanh(dy.pick_range(zh, h, 2 * h) + e["b_h"])),)
        iou = e["W_iou"] * x + e["b_iou"]
        c = dy.cmult(dy.logistic(dy.pick_range(iou, 0, h)),
                     dy.tanh(dy.pick_range(iou, 2 * h, 3 * h)))
        return dy.cmult(dy.logistic(dy.pick_range(iou, h, 2 * h)), dy.tanh(c)), c

    def internal(self, e, kids):
        dy, h = self.dy, self.hidden
        name = self.model.name
        if name == "TreeFC":
            return (dy.rectify(e["W"] * dy.concatenate([kids[0][0], kids[1][0]]) + e["b"]),)
        if name == "MV-RNN":
            (a, a_mat), (b, b_mat) = kids
            mixed = dy.concatenate([b_mat * a, a_mat * b])
            return (dy.tanh(e["W"] * mixed + e["w"]),
                    e["W_M"] * dy.concatenate([a_mat, b_mat]))
        if name == "TreeGRU":
            h0, h1 = kids[0][0], kids[1][0]
            total = h0 + h1
            z = dy.logistic(e["U_z"] * total + e["b_z"])
            gated = [dy.cmult(dy.logistic(e["U_r"] * k + e["b_r"]), k) for k in (h0, h1)]
            cand = dy.tanh(e["U_h"] * (gated[0] + gated[1]) + e["b_h"])
            return (dy.cmult(z, total) + dy.cmult(-z + 1.0, cand),)
        (h0, c0), (h1, c1) = kids
        iou = e["U_iou"] * (h0 + h1) + e["b_iou"]
        forget = [dy.logistic(e["U_f"] * k + e["b_f"]) for k in (h0, h1)]
        c = (dy.cmult(dy.logistic(dy.pick_range(iou, 0, h)),
                      dy.tanh(dy.pick_range(iou, 2 * h, 3 * h)))
             + dy.cmult(forget[0], c0) + dy.cmult(forget[1], c1))
        return dy.cmult(dy.logistic(dy.pick_range(iou, h, 2 * h)), dy.tanh(c)), c


# --- measuring ------------------------------------------------------------------------


def first_state(result) -> np.ndarray:
    """The first state component of every root, ``[roots, ...]``, from any runner."""
    if hasattr(result, "roots"):
        return next(iter(result.roots.values()))
    if isinstance(result, list):
        return result[0].numpy()
    return np.asarray(result).T  # DyNet: one column per root


def verify(runners: dict[str, Callable], structures, words) -> None:
    """Every runner computes what byoc computes (on one batch), before anything is timed."""
    expected = first_state(runners["byoc"](structures, words))
    for name, runner in runners.items():
        got = first_state(runner(structures, words)).reshape(expected.shape)
        error = float(np.abs(got - expected).max())
        if error > 1e-3:
            raise AssertionError(f"{name} differs from byoc by {error:.2e}")


def measure(runners: dict[str, Callable], groups, words, warmup: int) -> dict[str, float]:
    """Median milliseconds per batch, runners interleaved batch by batch."""
    names = list(runners)
    for i in range(min(warmup, len(groups))):
        for name in names:
            runners[name](groups[i], words[i])
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup, len(groups)):
        turn = names[i % len(names):] + names[:i % len(names)]
        for name in turn:
            start = time.perf_counter()
            runners[name](groups[i], words[i])
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


BASELINES = ("torch-node", "torch-level", "dynet-auto")
BATCHED = ("torch-level", "dynet-auto")


def measure_pairs(runners: dict[str, Callable], groups, words,
                  warmup: int) -> dict[str, tuple[float, float]]:
    """Per baseline, (byoc's median, the baseline's median) from a pass of the two alone."""
    return {name: tuple(measure({"byoc": runners["byoc"], name: runner}, groups, words,
                                warmup).values())
            for name, runner in runners.items() if name != "byoc"}


def ratio(pairs: dict[str, tuple[float, float]], names: Sequence[str]) -> float | None:
    """The smallest baseline / byoc ratio among ``names`` (each from its own pass)."""
    found = [pairs[n][1] / pairs[n][0] for n in names if n in pairs]
    return min(found) if found else None


def row(config: Config, batch: int, pairs: dict[str, tuple[float, float]]) -> str:
    cells = [f"{config.model:8s} {config.hidden:4d} {config.shapes:9s} {batch:3d}"]
    for name in BASELINES:
        ours, theirs = pairs.get(name, (None, None))
        cells += [f"{ours:7.3f}" if ours else f"{'-':>7s}",
                  f"{theirs:9.3f}" if theirs else f"{'-':>9s}"]
    for value in (ratio(pairs, ["torch-node"]), ratio(pairs, BATCHED)):
        cells.append(f"{value:7.1f}x" if value else f"{'-':>8s}")
    return " ".join(cells)


HEADER = (f"{'model':8s} {'H':>4s} {'shapes':9s} {'B':>3s} {'byoc':>7s} {'torch-node':>9s} "
          f"{'byoc':>7s} {'torch-lvl':>9s} {'byoc':>7s} {'dynet':>9s} {'vs node':>8s} "
          f"{'vs best':>8s}")


def run_table(configs: Sequence[Config], sizes: Sequence[int], count: int, warmup: int,
              use_dynet: bool) -> list[tuple[Config, int, dict[str, tuple[float, float]]]]:
    print("milliseconds per batch (median); byoc is timed in a pass with each baseline (the "
          "byoc column left of it); ratios: baseline time / byoc time in that pass; "
          "'vs best': the fastest batched baseline")
    print(HEADER)
    results = []
    for config in configs:
        model = config.build()
        compiled = compile_model(model, "cpu")
        runners = {"byoc": lambda s, w, c=compiled: c.run(s, words=w), **torch_runners(model)}
        dy = dynet_module() if use_dynet else None
        if dy is not None:
            runners["dynet-auto"] = DyNetModel(dy, model).run
        for batch in sizes:
            groups, words = batches(config, batch, count + warmup, model.vocab_size)
            verify(runners, groups[0], words[0])
            pairs = measure_pairs(runners, groups, words, warmup)
            results.append((config, batch, pairs))
            print(row(config, batch, pairs), flush=True)
    return results


def goals(results) -> None:
    print("\ngoals: >= 10x torch-node at batch 1; >= 1.5x the best batched baseline at batch 10")
    for config, batch, pairs in results:
        node, batched = ratio(pairs, ["torch-node"]), ratio(pairs, BATCHED)
        if batch == 1 and node:
            print(f"  {config.model} H={config.hidden} {config.shapes} B=1: {node:.1f}x vs "
                  f"node by node {'met' if node >= 10 else 'NOT met'}")
        if batch == 10 and batched:
            print(f"  {config.model} H={config.hidden} {config.shapes} B=10: {batched:.1f}x vs "
                  f"best batched {'met' if batched >= 1.5 else 'NOT met'}")


def ablation(count: int, warmup: int) -> None:
    """TreeLSTM H=256 on SST shapes with the techniques switched off one at a time, and
    MV-RNN (the model with leaf-child tables) with and without those."""
    config = Config("TreeLSTM", 256, "sst")
    model = config.build()
    ablate(config, model, count, warmup, {
        "all techniques": compile_model(model),
        "no vocab precompute": compile_model(model, options=StageOptions(precompute_vocab=False)),
        "no sibling stacking": compile_model(model, options=StageOptions(stack_siblings=False)),
        "one node at a time": compile_model(model, chunk_rows=1),
    })
    for hidden in (64, 128):
        config = Config("MV-RNN", hidden, "sst")
        model = config.build()
        ablate(config, model, count, warmup, {
            "all techniques": compile_model(model),
            "no leaf-child tables": compile_model(
                model, options=StageOptions(leaf_child_tables=False)),
        })


def ablate(config: Config, model: RecursiveModel, count: int, warmup: int,
           variants: dict) -> None:
    """The variants of one model, interleaved with each other only."""
    print(f"\nablation: {config.model} H={config.hidden}, {config.shapes} shapes "
          "(ms per batch, median)")
    for batch in (1, 10):
        groups, words = batches(config, batch, count + warmup, model.vocab_size, seed=7)
        runners = {name: (lambda s, w, c=c: c.run(s, words=w)) for name, c in variants.items()}
        medians = measure(runners, groups, words, warmup)
        print(f"  B={batch:2d} " + "  ".join(f"{n}: {t:.3f}" for n, t in medians.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few configs, few batches")
    parser.add_argument("--batches", type=int, default=60, help="timed batches (>= 50)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-dynet", action="store_true")
    parser.add_argument("--ablation", action="store_true", help="only the ablation table")
    parser.add_argument("--models", nargs="*", help="restrict to these models")
    args = parser.parse_args(argv)
    pin_threads(1)
    count = 6 if args.quick else max(args.batches, 50)
    if args.ablation:
        ablation(count, args.warmup)
        return 0
    configs = CONFIGS
    if args.models:
        configs = [c for c in configs if c.model in args.models]
    if args.quick:
        configs = [Config("TreeLSTM", 64, "sst"), Config("MV-RNN", 16, "random")]
    results = run_table(configs, (1, 10), count, args.warmup, not args.no_dynet)
    goals(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
