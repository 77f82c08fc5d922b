"""Compiled recursive models against the numpy reference (and PyTorch, when installed)."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from byoc_sdk.recursive import (
    SHIPPED,
    ArityError,
    CellBuilder,
    CellError,
    RecursiveCompileError,
    RecursiveInputError,
    RecursiveModel,
    Reference,
    StateSpec,
    Structure,
    compile_model,
    complete_tree,
    grid_dag,
    linearize,
    mv_rnn,
    random_binary_tree,
    random_dag,
    sst_trees,
    stages,
    tree_lstm,
)
from byoc_sdk.recursive.cells import Feature
from byoc_sdk.recursive.kernel import CACHE_LINE, cache_aligned
from byoc_sdk.recursive.stages import StageOptions

HIDDEN = 16
VOCAB = 40
FEATURES = 6
ATOL = 1e-4


def make(name: str) -> RecursiveModel:
    if name == "DAG-RNN":
        return SHIPPED[name](HIDDEN, FEATURES)
    return SHIPPED[name](HIDDEN, vocab=VOCAB)


_COMPILED: dict = {}


def compiled(name: str):
    if name not in _COMPILED:
        model = make(name)
        _COMPILED[name] = (model, compile_model(model, "cpu"), Reference(model))
    return _COMPILED[name]


def inputs_for(model: RecursiveModel, batch, rng):
    if model.vocab_size is not None:
        return {"words": [rng.integers(0, model.vocab_size, s.num_nodes) for s in batch]}
    return {"features": [{"x": rng.standard_normal((s.num_nodes, FEATURES)).astype(np.float32)}
                         for s in batch]}


def shapes(kind: str, rng) -> list[Structure]:
    if kind == "random":
        return [random_binary_tree(int(rng.integers(20, 51)), rng) for _ in range(4)]
    if kind == "sst":
        trees = sst_trees(400)
        return [trees[i] for i in rng.choice(len(trees), 6, replace=False)]
    if kind == "dag":
        return [grid_dag(4, 5), random_dag(25, 2, rng), grid_dag(1, 3)]
    if kind == "edge":  # one-node trees, a complete tree, a batch over 128 nodes
        return [Structure.from_nested("w"), complete_tree(6), Structure.from_nested(("a", "b"))]
    raise ValueError(kind)


def assert_same(expected, got, all_nodes: bool) -> None:
    assert expected.roots.keys() == got.roots.keys()
    for name in expected.roots:
        np.testing.assert_allclose(got.roots[name], expected.roots[name], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(got.root_structure, expected.root_structure)
    if all_nodes:
        for exp, out in zip(expected.nodes, got.nodes, strict=True):
            for name in exp:
                np.testing.assert_allclose(out[name], exp[name], atol=ATOL, rtol=0)


CASES = [(name, kind) for name in ("TreeFC", "TreeGRU", "TreeLSTM", "MV-RNN")
         for kind in ("random", "sst", "edge")] + [("DAG-RNN", "dag"), ("DAG-RNN", "random")]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_shipped_models_match_the_numpy_reference(name, kind):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{kind}".encode()))
    model, kernel, reference = compiled(name)
    batch = shapes(kind, rng)
    given = inputs_for(model, batch, rng)
    assert_same(reference.run(batch, **given, all_nodes=True),
                kernel.run(batch, **given, all_nodes=True), all_nodes=True)
    # Batch of one, roots only, and the same structure twice in a batch.
    one = batch[:1]
    single = {k: v[:1] for k, v in given.items()}
    assert_same(reference.run(one, **single), kernel.run(one, **single), all_nodes=False)
    if "words" in given:  # int32 ids: a tree as wide as the arity takes the batch-1 path
        ids = [given["words"][0].astype(np.int32)]
        assert_same(reference.run(one, words=ids, all_nodes=True),
                    kernel.run(one, words=ids, all_nodes=True), all_nodes=True)
    twice = {k: v[:1] * 2 for k, v in given.items()}
    assert_same(reference.run(one * 2, **twice), kernel.run(one * 2, **twice), all_nodes=False)


def test_kernel_linearization_matches_python():
    rng = np.random.default_rng(3)
    _, kernel, _ = compiled("TreeLSTM")
    batch = [*sst_trees(7), random_binary_tree(25, rng), Structure.from_nested("w")]
    order, starts = kernel.numbering(batch)
    lin = linearize(batch)
    np.testing.assert_array_equal(order, lin.order)
    np.testing.assert_array_equal(starts, lin.level_starts)
    _, dag_kernel, _ = compiled("DAG-RNN")
    dags = [grid_dag(3, 4), random_dag(20, 2, rng)]
    order, starts = dag_kernel.numbering(dags)
    np.testing.assert_array_equal(order, linearize(dags).order)


def test_bad_batches_get_clear_errors():
    _, kernel, reference = compiled("TreeLSTM")
    ternary = Structure.from_nested((("a", "b", "c"), "d"), name="ternary")
    for runner in (kernel, reference):
        with pytest.raises(ArityError, match="ternary: node 3 has 3 children"):
            runner.run([ternary], words=[np.zeros(5, int)])
    tree = sst_trees(1)[0]
    words = np.zeros(tree.num_nodes, int)
    words[3] = VOCAB + 2
    for runner in (kernel, reference):
        with pytest.raises(RecursiveInputError, match=f"node 3 has word id {VOCAB + 2}"):
            runner.run([tree], words=[words])
    with pytest.raises(RecursiveInputError, match="word ids"):
        kernel.run([tree], words=[words[:-1]])
    with pytest.raises(RecursiveInputError, match="one word-id array per structure"):
        kernel.run([tree])


@pytest.mark.parametrize("dtype", [np.int64, np.int32], ids=["checked", "batch-1 path"])
def test_the_kernel_counts_children_and_the_error_is_the_reference_s(dtype):
    """A node with one child in a two-column tree reaches the kernel unchecked (the Python
    side no longer counts children per structure): the kernel refuses it, and the error
    is the reference's ArityError, whichever structure of the batch it is in. With int32
    ids, a batch of one tree takes the batch-1 path, which leaves every check to the
    kernel: the errors are the same."""
    _, kernel, reference = compiled("TreeLSTM")
    unary = Structure.from_nested((("a",), "b"), name="unary")  # node 1 has one child
    assert unary.children.shape[1] == 2
    tree = sst_trees(1)[0]
    for batch in ([unary], [tree, unary]):
        words = [np.zeros(s.num_nodes, dtype) for s in batch]
        for runner in (kernel, reference):
            with pytest.raises(ArityError, match="unary: node 1 has 1 children, the model's "
                                                 "internal cell takes 2"):
                runner.run(batch, words=words)
    bad = np.zeros(tree.num_nodes, dtype)
    bad[2] = VOCAB
    for runner in (kernel, reference):
        with pytest.raises(RecursiveInputError, match=f"node 2 has word id {VOCAB}, outside"):
            runner.run([tree], words=[bad])
    # The refused batches left nothing behind: the next one runs, roots and all nodes.
    words = [np.arange(tree.num_nodes, dtype=dtype) % VOCAB]
    assert (kernel._plain_tree([tree], words, None) is not None) == (dtype == np.int32)
    assert_same(reference.run([tree], words=words, all_nodes=True),
                kernel.run([tree], words=words, all_nodes=True), all_nodes=True)
    assert_same(reference.run((tree,), words=tuple(words)),
                kernel.run((tree,), words=tuple(words)), all_nodes=False)
    # A model whose cell pads missing children takes fewer, in the kernel as well.
    _, dag_kernel, dag_reference = compiled("DAG-RNN")
    chain = Structure.from_children([[], [0], [1]], kind="dag", name="chain")
    features = [{"x": np.ones((3, FEATURES), np.float32)}]
    np.testing.assert_allclose(dag_kernel.run([chain], features=features).roots["h"],
                               dag_reference.run([chain], features=features).roots["h"],
                               atol=ATOL)


def test_weights_start_on_cache_lines():
    """The weights (every constant after the vocabulary tables) are copied side by side,
    each starting on a cache line: numpy's own arrays start 16 to 48 bytes past one, and
    every vector load of a misaligned panel row straddled two lines."""
    spec = compiled("TreeLSTM")[1].spec
    tables = len(spec.stages.leaf.tables) + len(spec.stages.internal.tables)
    weights = spec.constants[tables:]
    for before, after in itertools.pairwise(weights):
        assert before.ctypes.data % CACHE_LINE == after.ctypes.data % CACHE_LINE == 0
        assert before.ctypes.data + before.nbytes <= after.ctypes.data < (
            before.ctypes.data + before.nbytes + CACHE_LINE)
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in weights)
    copies = cache_aligned([np.arange(5, dtype=np.float32), np.ones((2, 3), np.float32)])
    np.testing.assert_array_equal(copies[0], np.arange(5))
    np.testing.assert_array_equal(copies[1], np.ones((2, 3)))
    assert cache_aligned([]) == []


def test_unsupported_op_is_named():
    state = (StateSpec("h", (4,)),)
    leaf = CellBuilder("leaf")
    leaf.output(leaf.op("Softmax", leaf.input("x", (4,))), state[0])
    node = CellBuilder("node")
    kids = node.children(state, 2)
    node.output(node.op("Add", kids[0]["h"], kids[1]["h"]), state[0])
    table = np.ones((3, 4), np.float32)
    model = RecursiveModel("soft", state, (Feature("x", (4,), table),), leaf.build(),
                           node.build(), 2)
    with pytest.raises(CellError, match="node Softmax_1 is a Softmax, which the recursive "
                                        "compiler does not take"):
        compile_model(model)


def test_cell_signature_is_checked():
    state = (StateSpec("h", (4,)),)
    leaf = CellBuilder("leaf")
    leaf.output(leaf.input("y", (4,)), state[0])
    node = CellBuilder("node")
    node.output(node.input("h.child0", (4,)), state[0])
    with pytest.raises(CellError, match="input 'y' is neither a feature nor a child state"):
        RecursiveModel("bad", state, (Feature("x", (4,), np.ones((2, 4))),), leaf.build(),
                       node.build(), 2)


@pytest.mark.parametrize(("computed", "message"), [
    (lambda b, kids: b.op("MatMul", kids[0]["h"], b.weight("w", np.ones((4, 1)))),
     r"differ in dimension 0: \(1\) vs \(4\)"),
    (lambda b, kids: b.op("MatMul", kids[0]["h"], kids[1]["h"]), r"differ in rank: \(0\) vs \(1\)"),
])
def test_an_output_computing_another_shape_than_its_state_is_refused(computed, message):
    # The kernel wrote the computed [1] into a state of [4] and left the rest as it was.
    state = (StateSpec("h", (4,)),)
    leaf = CellBuilder("leaf")
    leaf.output(leaf.input("x", (4,)), state[0])
    node = CellBuilder("node")
    node.output(computed(node, node.children(state, 2)), state[0])
    with pytest.raises(CellError, match=f"internal cell: shapes do not agree: .*{message}"):
        RecursiveModel("bad", state, (Feature("x", (4,), np.ones((2, 4))),), leaf.build(),
                       node.build(), 2)


def user_model(hidden: int = 8) -> RecursiveModel:
    """A new cell written by a user: vocabulary and dense features, Gemm, Slice, Reshape,
    Div, Neg, a constant-only subgraph and an output that is a Concat of computed parts."""
    rng = np.random.default_rng(5)
    state = (StateSpec("h", (hidden,)), StateSpec("m", (2, hidden)))
    embed = rng.standard_normal((VOCAB, hidden)).astype(np.float32)
    features = (Feature("x", (hidden,), embed), Feature("d", (3,)))

    def weight(b, name, *shape):
        return b.weight(name, rng.standard_normal(shape).astype(np.float32) / np.sqrt(shape[0]))

    leaf = CellBuilder("user_leaf")
    x, d = leaf.input("x", (hidden,)), leaf.input("d", (3,))
    wx = leaf.op("Tanh", leaf.op("MatMul", x, weight(leaf, "Wx", hidden, hidden)))
    wd = leaf.op("MatMul", d, weight(leaf, "Wd", 3, hidden))
    leaf.output(leaf.op("Add", wx, wd), state[0])
    leaf.output(leaf.op("Concat", leaf.op("Unsqueeze", wx, leaf.weight("ax", np.array([0]))),
                        leaf.op("Unsqueeze", wd, leaf.weight("ax2", np.array([0]))), axis=0),
                state[1])

    node = CellBuilder("user_internal")
    kids = node.children(state, 2)
    x, d = node.input("x", (hidden,)), node.input("d", (3,))
    both = node.op("Reshape", node.op("Concat", kids[0]["h"], kids[1]["h"], axis=0),
                   node.weight("shape", np.array([1, 2 * hidden])))
    gemm = node.op("Gemm", both, weight(node, "G", hidden, 2 * hidden),
                   weight(node, "gb", hidden), transB=1, alpha=0.5)
    flat = node.op("Reshape", gemm, node.weight("flat", np.array([hidden])))
    half = node.weight("half", np.full(hidden, 2.0, np.float32))
    scaled = node.op("Div", node.op("Neg", flat), node.op("Add", half, half))
    word = node.op("Sigmoid", node.op("MatMul", x, weight(node, "Wx", hidden, hidden)))
    first = node.op("Slice", kids[1]["m"], node.weight("s0", np.array([0])),
                    node.weight("s1", np.array([1])), node.weight("s2", np.array([0])))
    mixed = node.op("Mul", node.op("Relu", scaled),
                    node.op("Reshape", first, node.weight("s3", np.array([hidden]))))
    h = node.op("Add", node.op("Add", mixed, word),
                node.op("MatMul", d, weight(node, "Wd", 3, hidden)))
    node.output(h, state[0])
    m = node.op("Sub", kids[0]["m"], node.op("Mul", kids[1]["m"], h))
    node.output(node.op("Tanh", m), state[1])
    return RecursiveModel("user", state, features, leaf.build(), node.build(), 2)


@pytest.mark.parametrize("form", ["sizes input", "num_outputs"])
def test_split_in_both_of_its_forms(form):
    # The form with a sizes input, the one ONNX's exporters write, failed on a lookup of
    # an attribute nothing set.
    state = (StateSpec("h", (4,)),)
    leaf = CellBuilder("leaf")
    leaf.output(leaf.op("Tanh", leaf.input("x", (4,))), state[0])
    node = CellBuilder("node")
    kids = node.children(state, 2)
    both = node.op("Concat", kids[0]["h"], kids[1]["h"], axis=0)
    if form == "sizes input":
        left, right = node.op("Split", both, node.weight("sizes", np.array([4, 4])), outputs=2,
                              axis=0)
    else:
        left, right = node.op("Split", both, outputs=2, axis=0, num_outputs=2)
    node.output(node.op("Tanh", node.op("Sub", left, node.op("Mul", right, right))), state[0])
    model = RecursiveModel("split", state, (Feature("x", (4,), np.eye(4)[[0, 1, 2, 3, 1]]),),
                           leaf.build(), node.build(), 2)
    trees = [random_binary_tree(9, np.random.default_rng(2)), complete_tree(3)]
    words = [np.random.default_rng(3).integers(0, 5, t.num_nodes) for t in trees]
    got = compile_model(model, "cpu").run(trees, words=words).roots["h"]
    np.testing.assert_allclose(got, Reference(model).run(trees, words=words).roots["h"],
                               atol=ATOL)


def test_user_defined_cell_compiles_and_runs():
    model = user_model()
    kernel, reference = compile_model(model), Reference(model)
    rng = np.random.default_rng(9)
    batch = [random_binary_tree(12, rng), *sst_trees(3)]
    given = {"words": [rng.integers(0, VOCAB, s.num_nodes) for s in batch],
             "features": [{"d": rng.standard_normal((s.num_nodes, 3))} for s in batch]}
    assert_same(reference.run(batch, **given, all_nodes=True),
                kernel.run(batch, **given, all_nodes=True), all_nodes=True)


def _three_child_mv(pad_missing: bool) -> RecursiveModel:
    """An MV-RNN-like model of arity 3: ``A = W [A_0; A_1; A_2]``, ``a = tanh(A_0 Σ a_k)``."""
    h = 4
    rng = np.random.default_rng(5)
    state = (StateSpec("a", (h,)), StateSpec("A", (h, h)))
    leaf = CellBuilder("leaf3")
    leaf.output(leaf.input("x", (h,)), state[0])
    leaf.output(leaf.input("X", (h, h)), state[1])
    node = CellBuilder("node3")
    kids = node.children(state, 3)
    total = node.op("Add", node.op("Add", kids[0]["a"], kids[1]["a"]), kids[2]["a"])
    node.output(node.op("Tanh", node.op("MatMul", kids[0]["A"], total)), state[0])
    weight = node.weight("W", (rng.standard_normal((h, 3 * h)) / 3).astype(np.float32))
    node.output(node.op("MatMul", weight, node.op("Concat", *(k["A"] for k in kids), axis=0)),
                state[1])
    features = (Feature("x", (h,), rng.standard_normal((VOCAB, h)).astype(np.float32)),
                Feature("X", (h, h), (np.eye(h) + 0.3 * rng.standard_normal((VOCAB, h, h)))
                        .astype(np.float32)))
    return RecursiveModel("MV3", state, features, leaf.build(), node.build(), 3,
                          pad_missing=pad_missing)


def _leaf_table_gemms(compiled) -> list:
    return [op for op in compiled.spec.stages.internal.level.ops
            if getattr(op, "leaf_tables", ())]


def test_leaf_children_read_their_share_of_a_product_from_a_table(monkeypatch):
    # MV-RNN's W_M [A; B]: a leaf child's share W_M_j @ A_word is a vocabulary table. Nodes
    # with two leaf children, one, or none (each takes another branch), and a lone leaf.
    model = mv_rnn(8, vocab=VOCAB)
    with_tables = compile_model(model)
    without = compile_model(model, options=StageOptions(leaf_child_tables=False))
    (gemm,) = _leaf_table_gemms(with_tables)
    assert len(gemm.leaf_tables) == model.arity
    assert not _leaf_table_gemms(without)
    batch = [Structure.from_nested(((("a", "b"), ("c", "d")), ("e", ("f", "g")))),
             Structure.from_nested(("a", "b")), Structure.from_nested("w")]
    words = [np.random.default_rng(4).integers(0, VOCAB, s.num_nodes) for s in batch]
    expected = Reference(model).run(batch, words=words, all_nodes=True)
    for compiled in (with_tables, without):
        assert_same(expected, compiled.run(batch, words=words, all_nodes=True), all_nodes=True)
    # Arity 3 with missing children (a missing child's share is zero, neither a product
    # nor a table row), in the C kernel and in the CUDA emulation.
    sparse = _three_child_mv(pad_missing=True)
    leaf = [-1, -1, -1]
    trees = [Structure.from_children([[1, 2, -1], [3, 4, 5], leaf, leaf, leaf, leaf]),
             Structure.from_children([[1, -1, -1], leaf]),
             Structure.from_children([[1, 2, 3], [4, -1, -1], [5, 6, -1], leaf, leaf, leaf,
                                      leaf])]
    words = [np.arange(s.num_nodes) % VOCAB for s in trees]
    expected = Reference(sparse).run(trees, words=words, all_nodes=True)
    for compiled in (compile_model(sparse), compile_model(sparse, "cuda", emulate=True)):
        assert len(_leaf_table_gemms(compiled)) == 1
        assert_same(expected, compiled.run(trees, words=words, all_nodes=True), all_nodes=True)
    # Past the size budget, the products stay computed.
    monkeypatch.setattr(stages, "LEAF_TABLE_BYTES", 4 * VOCAB * 64 * model.arity - 1)
    assert not _leaf_table_gemms(compile_model(model))


@pytest.mark.parametrize("name", ["TreeFC", "TreeGRU", "TreeLSTM", "MV-RNN", "DAG-RNN"])
def test_pytorch_baselines_match_the_reference(name):
    pytest.importorskip("torch")
    from byoc_sdk.recursive.torch_models import LevelBatched, NodeByNode, as_output

    rng = np.random.default_rng(11)
    model, kernel, reference = compiled(name)
    batch = shapes("dag" if name == "DAG-RNN" else "sst", rng)[:3]
    given = inputs_for(model, batch, rng)
    expected = reference.run(batch, **given)
    for runner in (NodeByNode(model), LevelBatched(model)):
        assert_same(expected, as_output(model, runner.run(batch, **given), batch), False)
    assert_same(as_output(model, LevelBatched(model).run(batch, **given), batch),
                kernel.run(batch, **given), False)


def test_feature_and_target_errors():
    model, kernel, reference = compiled("DAG-RNN")
    grid = grid_dag(2, 3)
    for runner in (kernel, reference):
        with pytest.raises(RecursiveInputError, match="feature"):
            runner.run([grid], features=[{"x": np.zeros((grid.num_nodes, FEATURES + 1))}])
        with pytest.raises(RecursiveInputError, match="no vocabulary"):
            runner.run([grid], words=[np.zeros(grid.num_nodes, int)],
                       features=[{"x": np.zeros((grid.num_nodes, FEATURES))}])
    with pytest.raises(RecursiveCompileError, match="unknown target 'tpu'"):
        compile_model(model, "tpu")


def test_the_compiled_model_checks_its_inputs_as_the_reference_does():
    """What the reference refuses, the compiled model refuses with the same error type
    (it used to reshape mis-shaped features, ignore unexpected ones and wrap word ids
    into int32)."""
    _, kernel, reference = compiled("DAG-RNN")
    grid = grid_dag(2, 3)
    x = np.zeros((grid.num_nodes, FEATURES), np.float32)
    bad_features = [
        ([{"x": x.reshape(2 * grid.num_nodes, FEATURES // 2)}], "has shape"),  # same size
        ([x], "must be a dict"),
        ({"x": x}, "one feature dict"),
    ]
    for features, message in bad_features:
        for runner in (kernel, reference):
            with pytest.raises(RecursiveInputError, match=message):
                runner.run([grid], features=features)
    _, kernel, reference = compiled("TreeLSTM")
    tree = sst_trees(1)[0]
    for runner in (kernel, reference):
        with pytest.raises(RecursiveInputError, match="no dense features"):
            runner.run([tree], words=[np.zeros(tree.num_nodes, int)],
                       features=[{"x": np.zeros((tree.num_nodes, 2))}])
        wrapped = np.zeros(tree.num_nodes, np.int64)
        wrapped[1] = 2**32 + 5  # int32(2**32 + 5) is 5, a valid id
        with pytest.raises(RecursiveInputError, match=f"word id {2**32 + 5}"):
            runner.run([tree], words=[wrapped])
        with pytest.raises(RecursiveInputError, match="integers"):
            runner.run([tree], words=[np.zeros(tree.num_nodes, bool)])
        with pytest.raises(RecursiveInputError, match="one word-id array"):
            runner.run([tree], words=5)
        with pytest.raises(RecursiveInputError, match="must be Structures"):
            runner.run([tree.children], words=[np.zeros(tree.num_nodes, int)])
    # Any iterable of structures is a batch.
    words = [np.zeros(tree.num_nodes, int)]
    np.testing.assert_allclose(kernel.run(iter([tree]), words=words).roots["h"],
                               reference.run([tree], words=words).roots["h"], atol=ATOL)


@pytest.mark.parametrize("chunk_rows", [0, -3, 2.5, True])
def test_chunk_rows_must_be_a_positive_integer(chunk_rows):
    # -1 gave wrong numbers on cpu, and a cuda kernel that never returned.
    with pytest.raises(RecursiveCompileError, match=r"chunk_rows must be (an integer )?>= 1"):
        compile_model(make("TreeFC"), "cpu", chunk_rows=chunk_rows)


def test_module_init_refuses_constants_of_another_size_or_type():
    # The module keeps its constants' pointers from _init on: it checks them there.
    from byoc_sdk import _native

    compiled = compile_model(tree_lstm(8, vocab=5), "cpu")
    spec = compiled.spec
    function = _native.Function(compiled._library, spec.entry, spec.input_specs(64),
                                spec.output_specs(64))
    short = list(spec.constants)
    short[1] = short[1].ravel()[:-1].copy()
    with pytest.raises(RuntimeError, match=r"constant 1 must be .* contiguous float32 values"):
        function.init(short)
    typed = [c.astype(np.float64) for c in spec.constants]
    with pytest.raises(RuntimeError, match="constant 0 must be"):
        function.init(typed)
    with pytest.raises(RuntimeError, match=f"expected {len(spec.constants)} constants"):
        function.init(list(spec.constants)[:-1])


def test_numpy_integers_are_sizes_too():
    model = SHIPPED["TreeFC"](np.int64(8), vocab=np.int64(VOCAB))
    kernel = compile_model(model, "cpu", chunk_rows=np.int64(8))
    tree = sst_trees(1)[0]
    words = [np.zeros(tree.num_nodes, int)]
    np.testing.assert_allclose(kernel.run([tree], words=words).roots["h"],
                               Reference(model).run([tree], words=words).roots["h"], atol=ATOL)
