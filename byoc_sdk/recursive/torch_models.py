"""The shipped models restated in PyTorch, and two ways to run them: the baselines.

* :class:`NodeByNode` — eager PyTorch, one node at a time in topological order: the papers'
  baseline (what a framework does for a recursive model written naturally).
* :class:`LevelBatched` — eager PyTorch over the same linearization the compiler uses: all
  nodes of a level in one call per op, children gathered by index.

Both call the same cell functions (written for a batch of nodes), so they compute the same
thing as each other and as the compiled kernels. torch is imported lazily: ``pip install
byoc[bench]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from byoc_sdk.recursive.cells import RecursiveModel
from byoc_sdk.recursive.linearize import linearize, node_levels
from byoc_sdk.recursive.reference import RecursiveOutput
from byoc_sdk.recursive.structure import Structure

State = tuple  # of torch tensors, one per state component, batched over nodes


def _torch():
    import torch

    return torch


class TorchCells:
    """A model's leaf and internal cells as batched PyTorch functions."""

    def __init__(self, model: RecursiveModel) -> None:
        torch = _torch()
        self.model = model
        self.p = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.params.items()}
        self.tables = {f.name: torch.from_numpy(np.ascontiguousarray(f.table, np.float32))
                       for f in model.features if f.table is not None}
        builders: dict[str, tuple[Callable, Callable]] = {
            "TreeFC": (self._fc_leaf, self._fc_internal),
            "TreeGRU": (self._gru_leaf, self._gru_internal),
            "TreeLSTM": (self._lstm_leaf, self._lstm_internal),
            "MV-RNN": (self._mv_leaf, self._mv_internal),
            "DAG-RNN": (self._dag_leaf, self._dag_internal),
        }
        if model.name not in builders:
            raise KeyError(f"no PyTorch version of model {model.name}")
        self.leaf, self.internal = builders[model.name]

    # each cell: leaf(features) -> state; internal(features, children states) -> state

    def _fc_leaf(self, f):
        torch = _torch()
        return (torch.relu(f["x"] @ self.p["W_x"] + self.p["b_x"]),)

    def _fc_internal(self, f, kids):
        torch = _torch()
        both = torch.cat([kids[0][0], kids[1][0]], dim=1)
        return (torch.relu(both @ self.p["W"] + self.p["b"]),)

    def _gru_leaf(self, f):
        torch = _torch()
        p = self.p
        z, h = (f["x"] @ p["W_zh"]).chunk(2, dim=1)
        return ((1 - torch.sigmoid(z + p["b_z"])) * torch.tanh(h + p["b_h"]),)

    def _gru_internal(self, f, kids):
        torch = _torch()
        p = self.p
        h = torch.stack([kids[0][0], kids[1][0]], dim=1)
        total = h.sum(dim=1)
        z = torch.sigmoid(total @ p["U_z"] + p["b_z"])
        r = torch.sigmoid(h @ p["U_r"] + p["b_r"])
        cand = torch.tanh((r * h).sum(dim=1) @ p["U_h"] + p["b_h"])
        return (z * total + (1 - z) * cand,)

    def _lstm_leaf(self, f):
        torch = _torch()
        p = self.p
        i, o, u = (f["x"] @ p["W_iou"] + p["b_iou"]).chunk(3, dim=1)
        c = torch.sigmoid(i) * torch.tanh(u)
        return torch.sigmoid(o) * torch.tanh(c), c

    def _lstm_internal(self, f, kids):
        torch = _torch()
        p = self.p
        h = torch.stack([kids[0][0], kids[1][0]], dim=1)
        c = torch.stack([kids[0][1], kids[1][1]], dim=1)
        i, o, u = (h.sum(dim=1) @ p["U_iou"] + p["b_iou"]).chunk(3, dim=1)
        forget = torch.sigmoid(h @ p["U_f"] + p["b_f"])
        cell = torch.sigmoid(i) * torch.tanh(u) + (forget * c).sum(dim=1)
        return torch.sigmoid(o) * torch.tanh(cell), cell

    def _mv_leaf(self, f):
        return f["x"], f["X"]

    def _mv_internal(self, f, kids):
        torch = _torch()
        p = self.p
        (a, a_mat), (b, b_mat) = kids
        mixed = torch.cat([(b_mat @ a.unsqueeze(2)).squeeze(2),
                           (a_mat @ b.unsqueeze(2)).squeeze(2)], dim=1)
        vec = torch.tanh(mixed @ p["W"] + p["w"])
        return vec, p["W_M"] @ torch.cat([a_mat, b_mat], dim=1)

    def _dag_leaf(self, f):
        torch = _torch()
        return (torch.tanh(f["x"] @ self.p["U"] + self.p["b"]),)

    def _dag_internal(self, f, kids):
        torch = _torch()
        p = self.p
        return (torch.tanh(f["x"] @ p["U"] + (kids[0][0] + kids[1][0]) @ p["W"] + p["b"]),)


class _Runner:
    """Shared plumbing: features of a set of nodes, zero states for padding, outputs."""

    def __init__(self, model: RecursiveModel) -> None:
        self.cells = TorchCells(model)
        self.model = model
        self.dense = [f.name for f in model.features if f.table is None]

    def _zeros(self, count: int) -> State:
        torch = _torch()
        return tuple(torch.zeros((count, *c.shape)) for c in self.model.state)

    def _features(self, words, dense, index) -> dict:
        """Features of batch nodes ``index`` (a tensor); ``words``/``dense`` batch-wide."""
        out = {name: table[words[index]] for name, table in self.cells.tables.items()}
        out.update({name: dense[name][index] for name in self.dense})
        return out

    def _batch_inputs(self, structures, words, features):
        torch = _torch()
        word_t = (torch.from_numpy(np.concatenate(words).astype(np.int64))
                  if words is not None else None)
        dense = {name: torch.from_numpy(np.concatenate(
            [np.asarray(f[name], np.float32).reshape(s.num_nodes, -1)
             for s, f in zip(structures, features, strict=True)]))
            for name in self.dense} if features is not None else {}
        for f in self.model.features:
            if f.table is None and f.name in dense:
                dense[f.name] = dense[f.name].reshape(-1, *f.shape)
        return word_t, dense


class NodeByNode(_Runner):
    """Eager PyTorch, one node per call, in a topological order of each structure."""

    def run(self, structures: Sequence[Structure], words=None, features=None):
        torch = _torch()
        word_t, dense = self._batch_inputs(structures, words, features)
        roots = []
        with torch.no_grad():
            offset = 0
            for s in structures:
                states: list = [None] * s.num_nodes
                for v in np.argsort(node_levels(s), kind="stable").tolist():
                    index = torch.tensor([offset + v])
                    feats = self._features(word_t, dense, index)
                    kids = [int(c) for c in s.children[v] if c >= 0]
                    if kids:
                        pairs = [states[c] for c in kids]
                        pairs += [self._zeros(1)] * (self.model.arity - len(kids))
                        states[v] = self.cells.internal(feats, pairs)
                    else:
                        states[v] = self.cells.leaf(feats)
                roots += [states[r] for r in s.roots.tolist()]
                offset += s.num_nodes
        return [torch.cat([r[i] for r in roots]) for i in range(len(self.model.state))]


class LevelBatched(_Runner):
    """Eager PyTorch, a level of the whole batch per call (children gathered by index)."""

    def run(self, structures: Sequence[Structure], words=None, features=None):
        torch = _torch()
        word_t, dense = self._batch_inputs(structures, words, features)
        lin = linearize(structures)
        order = torch.from_numpy(lin.order)
        arity = self.model.arity
        with torch.no_grad():
            # One row more than the nodes: the zero state that missing children read.
            states = [torch.zeros((lin.num_nodes + 1, *c.shape)) for c in self.model.state]
            children = torch.from_numpy(np.where(lin.children >= 0, lin.children,
                                                 lin.num_nodes).astype(np.int64))
            for level in range(lin.num_levels):
                lo, hi = int(lin.level_starts[level]), int(lin.level_starts[level + 1])
                feats = self._features(word_t, dense, order[lo:hi])
                if level == 0:
                    new = self.cells.leaf(feats)
                else:
                    kids = [tuple(s.index_select(0, children[lo:hi, k]) for s in states)
                            for k in range(arity)]
                    new = self.cells.internal(feats, kids)
                for target, value in zip(states, new, strict=True):
                    target[lo:hi] = value
            roots = torch.from_numpy(lin.position[lin.roots])
            return [s.index_select(0, roots) for s in states]


def as_output(model: RecursiveModel, roots: Sequence, structures: Sequence[Structure]
              ) -> RecursiveOutput:
    """Baseline root states as a :class:`RecursiveOutput` (for comparisons)."""
    owner = np.repeat(np.arange(len(structures)), [len(s.roots) for s in structures])
    return RecursiveOutput({c.name: r.numpy() for c, r in zip(model.state, roots, strict=True)},
                           owner)
