"""The shipped recursive models, each written as a leaf cell and an internal cell.

Weights are row-major ``[in, out]`` (a node's vector times the weight), taken from ``params``
(numpy arrays by name) or drawn from a seeded generator. Each builder documents the
equations; ``torch_models.py`` restates the same equations in PyTorch for the baselines.

* :func:`tree_fc` — TreeRNN: ``h = relu([h_0; h_1] W + b)``, leaves ``relu(x W_x + b_x)``.
* :func:`tree_gru` — child-sum TreeGRU.
* :func:`tree_lstm` — binary child-sum TreeLSTM (Tai et al.), as in Cortex.
* :func:`mv_rnn` — matrix-vector RNN (Socher et al.): every node a vector and a matrix.
* :func:`dag_rnn` — DAG-RNN (Shuai et al.) over grids: ``h = tanh(x U + sum_k h_k W + b)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from byoc_sdk.recursive.cells import CellBuilder, CellError, Feature, RecursiveModel, StateSpec
from byoc_sdk.recursive.structure import whole_number

Params = Mapping[str, np.ndarray]


def _sizes(model: str, **sizes: int) -> list[int]:
    """Every size (hidden, embed, vocab, features) as a plain int, refused unless a positive
    integer: a zero or negative size would otherwise fail deep inside numpy or ONNX with
    no word of which argument, and a numpy integer where ONNX attributes want an int."""
    return [whole_number(value, f"model {model}", what, 1, CellError)
            for what, value in sizes.items()]


def _params(model: str, given: Params | None, shapes: Mapping[str, tuple[int, ...]], seed: int,
            special: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``given`` checked against ``shapes``, or seeded draws (scaled by 1/sqrt(fan-in))."""
    if given is not None:
        missing = sorted(set(shapes) - set(given))
        if missing:
            raise CellError(f"model {model}: params lacks weights {missing} "
                            f"(it needs {sorted(shapes)})")
        out: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():
            try:
                out[name] = np.asarray(given[name], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise CellError(f"model {model}: weight {name} is not a float array "
                                f"({exc})") from exc
            if out[name].shape != shape:
                raise CellError(f"model {model}: weight {name} has shape "
                                f"{out[name].shape}, expected {shape}")
        return out
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if special and name in special:
            out[name] = special[name].astype(np.float32)
            continue
        scale = 1.0 / np.sqrt(shape[0]) if len(shape) > 1 else 0.1
        out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


def _word(p: dict[str, np.ndarray], embed: str = "embedding") -> Feature:
    table = p[embed]
    return Feature("x", tuple(table.shape[1:]), table)


def tree_fc(hidden: int, *, embed: int | None = None, vocab: int = 21701,
            params: Params | None = None, seed: int = 0) -> RecursiveModel:
    """TreeFC (TreeRNN): leaves ``h = relu(x W_x + b_x)``, internal ``relu([h_0; h_1] W + b)``."""
    embed = hidden if embed is None else embed
    hidden, embed, vocab = _sizes("TreeFC", hidden=hidden, embed=embed, vocab=vocab)
    p = _params("TreeFC", params, {"embedding": (vocab, embed), "W_x": (embed, hidden),
                                   "b_x": (hidden,), "W": (2 * hidden, hidden), "b": (hidden,)},
                seed)
    state = (StateSpec("h", (hidden,)),)
    leaf = CellBuilder("tree_fc_leaf")
    x = leaf.input("x", (embed,))
    leaf.output(leaf.op("Relu", leaf.op("Add", leaf.op("MatMul", x, leaf.weight("W_x", p["W_x"])),
                                        leaf.weight("b_x", p["b_x"]))), state[0])
    node = CellBuilder("tree_fc_internal")
    kids = node.children(state, 2)
    both = node.op("Concat", kids[0]["h"], kids[1]["h"], axis=0)
    pre = node.op("Add", node.op("MatMul", both, node.weight("W", p["W"])),
                  node.weight("b", p["b"]))
    node.output(node.op("Relu", pre), state[0])
    return RecursiveModel("TreeFC", state, (_word(p),), leaf.build(), node.build(), 2, params=p)


def tree_gru(hidden: int, *, embed: int | None = None, vocab: int = 21701,
             params: Params | None = None, seed: int = 0) -> RecursiveModel:
    """Child-sum TreeGRU.

    Leaves: ``z = σ(x W_z + b_z)``, ``h = (1 - z) ⊙ tanh(x W_h + b_h)``. Internal nodes, with
    ``s = h_0 + h_1``: ``z = σ(s U_z + b_z)``, ``r_k = σ(h_k U_r + b_r)``,
    ``ĥ = tanh((r_0 ⊙ h_0 + r_1 ⊙ h_1) U_h + b_h)``, ``h = z ⊙ s + (1 - z) ⊙ ĥ``.
    """
    embed = hidden if embed is None else embed
    hidden, embed, vocab = _sizes("TreeGRU", hidden=hidden, embed=embed, vocab=vocab)
    p = _params("TreeGRU", params, {"embedding": (vocab, embed), "W_zh": (embed, 2 * hidden),
                                    "b_z": (hidden,), "b_h": (hidden,), "U_z": (hidden, hidden),
                                    "U_r": (hidden, hidden), "b_r": (hidden,),
                                    "U_h": (hidden, hidden)}, seed)
    state = (StateSpec("h", (hidden,)),)
    leaf = CellBuilder("tree_gru_leaf")
    x = leaf.input("x", (embed,))
    zh = leaf.op("Add", leaf.op("MatMul", x, leaf.weight("W_zh", p["W_zh"])),
                 leaf.weight("b_zh", np.concatenate([p["b_z"], p["b_h"]])))
    z_pre, h_pre = leaf.op("Split", zh, axis=0, num_outputs=2, outputs=2)
    keep = leaf.op("Sub", leaf.weight("one", np.ones(1, np.float32)), leaf.op("Sigmoid", z_pre))
    leaf.output(leaf.op("Mul", keep, leaf.op("Tanh", h_pre)), state[0])

    node = CellBuilder("tree_gru_internal")
    kids = node.children(state, 2)
    h0, h1 = kids[0]["h"], kids[1]["h"]
    total = node.op("Add", h0, h1)
    z = node.op("Sigmoid", node.op("Add", node.op("MatMul", total, node.weight("U_z", p["U_z"])),
                                   node.weight("b_z", p["b_z"])))
    u_r, b_r = node.weight("U_r", p["U_r"]), node.weight("b_r", p["b_r"])
    gated = [node.op("Mul", node.op("Sigmoid", node.op("Add", node.op("MatMul", h, u_r), b_r)), h)
             for h in (h0, h1)]
    cand = node.op("Tanh", node.op("Add", node.op("MatMul", node.op("Add", *gated),
                                                  node.weight("U_h", p["U_h"])),
                                   node.weight("b_h", p["b_h"])))
    keep = node.op("Sub", node.weight("one", np.ones(1, np.float32)), z)
    node.output(node.op("Add", node.op("Mul", z, total), node.op("Mul", keep, cand)), state[0])
    return RecursiveModel("TreeGRU", state, (_word(p),), leaf.build(), node.build(), 2, params=p)


def tree_lstm(hidden: int, *, embed: int | None = None, vocab: int = 21701,
              params: Params | None = None, seed: int = 0) -> RecursiveModel:
    """Binary child-sum TreeLSTM (Tai et al. 2015), words at the leaves.

    Gates ``[i, o, u] = x W_iou + s U_iou + b_iou`` (leaves: no ``s``; internal nodes: no
    ``x``, ``s = h_0 + h_1``), forget gates ``f_k = σ(h_k U_f + b_f)``,
    ``c = σ(i) ⊙ tanh(u) + Σ f_k ⊙ c_k``, ``h = σ(o) ⊙ tanh(c)``.
    """
    embed = hidden if embed is None else embed
    hidden, embed, vocab = _sizes("TreeLSTM", hidden=hidden, embed=embed, vocab=vocab)
    p = _params("TreeLSTM", params, {"embedding": (vocab, embed), "W_iou": (embed, 3 * hidden),
                                     "U_iou": (hidden, 3 * hidden), "b_iou": (3 * hidden,),
                                     "U_f": (hidden, hidden), "b_f": (hidden,)}, seed)
    state = (StateSpec("h", (hidden,)), StateSpec("c", (hidden,)))

    def finish(b: CellBuilder, iou: str, carried: list[str]) -> None:
        i, o, u = b.op("Split", iou, axis=0, num_outputs=3, outputs=3)
        c = b.op("Mul", b.op("Sigmoid", i), b.op("Tanh", u))
        for term in carried:
            c = b.op("Add", c, term)
        b.output(b.op("Mul", b.op("Sigmoid", o), b.op("Tanh", c)), state[0])
        b.output(c, state[1])

    leaf = CellBuilder("tree_lstm_leaf")
    x = leaf.input("x", (embed,))
    finish(leaf, leaf.op("Add", leaf.op("MatMul", x, leaf.weight("W_iou", p["W_iou"])),
                         leaf.weight("b_iou", p["b_iou"])), [])

    node = CellBuilder("tree_lstm_internal")
    kids = node.children(state, 2)
    total = node.op("Add", kids[0]["h"], kids[1]["h"])
    iou = node.op("Add", node.op("MatMul", total, node.weight("U_iou", p["U_iou"])),
                  node.weight("b_iou", p["b_iou"]))
    u_f, b_f = node.weight("U_f", p["U_f"]), node.weight("b_f", p["b_f"])
    forgets = [node.op("Mul", node.op("Sigmoid", node.op("Add", node.op("MatMul", k["h"], u_f),
                                                         b_f)), k["c"]) for k in kids]
    finish(node, iou, forgets)
    return RecursiveModel("TreeLSTM", state, (_word(p),), leaf.build(), node.build(), 2, params=p)


def mv_rnn(hidden: int, *, vocab: int = 1000, params: Params | None = None,
           seed: int = 0) -> RecursiveModel:
    """MV-RNN (Socher et al. 2012): a node is a vector ``a`` and a matrix ``A``.

    Leaves are their word's vector and matrix. A parent of ``(a, A)`` and ``(b, B)`` is
    ``p = tanh([B a; A b] W + w)``, ``P = W_M [A; B]``. Word matrices start near the
    identity and ``W_M`` near ``[I I] / 2``, as in the paper, so deep trees stay bounded.
    The vocabulary holds ``hidden**2`` floats a word, hence the smaller default.
    """
    hidden, vocab = _sizes("MV-RNN", hidden=hidden, vocab=vocab)
    rng = np.random.default_rng(seed + 1)
    eye = np.eye(hidden, dtype=np.float32)
    special = {
        "word_matrices": eye + 0.05 * rng.standard_normal((vocab, hidden, hidden)),
        "W_M": np.concatenate([eye, eye], axis=1) / 2
        + 0.01 * rng.standard_normal((hidden, 2 * hidden)),
    }
    p = _params("MV-RNN", params, {"word_vectors": (vocab, hidden),
                                   "word_matrices": (vocab, hidden, hidden),
                                   "W": (2 * hidden, hidden), "w": (hidden,),
                                   "W_M": (hidden, 2 * hidden)}, seed, special)
    state = (StateSpec("a", (hidden,)), StateSpec("A", (hidden, hidden)))
    features = (Feature("x", (hidden,), p["word_vectors"]),
                Feature("X", (hidden, hidden), p["word_matrices"]))
    leaf = CellBuilder("mv_rnn_leaf")
    leaf.output(leaf.input("x", (hidden,)), state[0])
    leaf.output(leaf.input("X", (hidden, hidden)), state[1])

    node = CellBuilder("mv_rnn_internal")
    kids = node.children(state, 2)
    (a, a_mat), (b, b_mat) = (kids[0]["a"], kids[0]["A"]), (kids[1]["a"], kids[1]["A"])
    mixed = node.op("Concat", node.op("MatMul", b_mat, a), node.op("MatMul", a_mat, b), axis=0)
    vec = node.op("Tanh", node.op("Add", node.op("MatMul", mixed, node.weight("W", p["W"])),
                                  node.weight("w", p["w"])))
    mat = node.op("MatMul", node.weight("W_M", p["W_M"]), node.op("Concat", a_mat, b_mat, axis=0))
    node.output(vec, state[0])
    node.output(mat, state[1])
    return RecursiveModel("MV-RNN", state, features, leaf.build(), node.build(), 2, params=p)


def dag_rnn(hidden: int, features: int, *, params: Params | None = None,
            seed: int = 0) -> RecursiveModel:
    """DAG-RNN (Shuai et al. 2016) on grids, dense per-node features ``x``.

    ``h = tanh(x U + Σ_k h_k W + b)`` over a node's predecessors (up to two; a missing one
    reads zeros); nodes without predecessors have ``h = tanh(x U + b)``.
    """
    hidden, features = _sizes("DAG-RNN", hidden=hidden, features=features)
    p = _params("DAG-RNN", params,
                {"U": (features, hidden), "W": (hidden, hidden), "b": (hidden,)}, seed)
    state = (StateSpec("h", (hidden,)),)
    feature = (Feature("x", (features,)),)

    def start(b: CellBuilder) -> str:
        x = b.input("x", (features,))
        return b.op("Add", b.op("MatMul", x, b.weight("U", p["U"])), b.weight("b", p["b"]))

    leaf = CellBuilder("dag_rnn_leaf")
    leaf.output(leaf.op("Tanh", start(leaf)), state[0])
    node = CellBuilder("dag_rnn_internal")
    base = start(node)
    kids = node.children(state, 2)
    preds = node.op("MatMul", node.op("Add", kids[0]["h"], kids[1]["h"]),
                    node.weight("W", p["W"]))
    node.output(node.op("Tanh", node.op("Add", base, preds)), state[0])
    return RecursiveModel("DAG-RNN", state, feature, leaf.build(), node.build(), 2, kind="dag",
                          pad_missing=True, params=p)


SHIPPED = {"TreeFC": tree_fc, "TreeGRU": tree_gru, "TreeLSTM": tree_lstm, "MV-RNN": mv_rnn,
           "DAG-RNN": dag_rnn}
