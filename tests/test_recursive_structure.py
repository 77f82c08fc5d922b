"""Recursive front end: building and checking structures, and linearization."""

from __future__ import annotations

import time

import numpy as np
import pytest

from byoc_sdk.errors import ByocError
from byoc_sdk.recursive import (
    ArityError,
    CellError,
    CycleError,
    MissingChildError,
    Structure,
    StructureError,
    complete_tree,
    dag_rnn,
    grid_dag,
    linearize,
    load_parent_arrays,
    mv_rnn,
    node_levels,
    random_binary_tree,
    random_dag,
    sst_trees,
    tree_fc,
    tree_gru,
    tree_lstm,
)
from byoc_sdk.recursive.structure import check_arity


def test_sst_trees_match_the_documented_figures():
    trees = sst_trees()
    assert len(trees) == 11855
    nodes = np.array([t.num_nodes for t in trees])
    leaves = np.array([len(t.leaves) for t in trees])
    assert nodes.max() == 111 and round(nodes.mean(), 1) == 37.3
    assert leaves.max() == 56 and round(leaves.mean(), 1) == 19.2
    assert max(t.height for t in trees) == 29
    assert all(t.arities == {2} for t in trees[:500])


def test_builders_agree():
    nested = Structure.from_nested((("a", "b"), "c"))
    children = Structure.from_children([[], [], [0, 1], [], [2, 3]])
    parents = Structure.from_parents([2, 2, 4, 4, -1])
    for s in (nested, children, parents):
        assert s.children.tolist() == [[-1, -1], [-1, -1], [0, 1], [-1, -1], [2, 3]]
        assert s.roots.tolist() == [4]
        assert s.leaves.tolist() == [0, 1, 3]
        assert s.height == 2


def test_parent_arrays_keep_children_in_node_order():
    s = Structure.from_parents([4, 3, 3, 4, -1])
    assert s.children[4].tolist() == [0, 3]
    assert s.children[3].tolist() == [1, 2]


def test_generators():
    tree = complete_tree(7)
    assert tree.num_nodes == 255 and len(tree.leaves) == 128 and tree.height == 7
    rng = np.random.default_rng(0)
    for leaves in (1, 2, 20, 50):
        t = random_binary_tree(leaves, rng)
        assert len(t.leaves) == leaves and t.num_nodes == 2 * leaves - 1
    grid = grid_dag(3, 4)
    assert grid.kind == "dag" and grid.roots.tolist() == [11] and grid.leaves.tolist() == [0]
    assert node_levels(grid)[11] == 5
    dag = random_dag(30, 3, rng)
    assert (node_levels(dag) >= 0).all()


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: Structure.from_children([[1], [2], [0]]), CycleError, "form a cycle"),
        (lambda: Structure.from_children([[0]]), CycleError, "node 0 is its own child"),
        (lambda: Structure.from_children([[], [0, 5]]), MissingChildError, "node 1 names child 5"),
        (lambda: Structure.from_parents([1, 7, -1]), MissingChildError, "names parent 7"),
        (lambda: Structure.from_parents([-1, -1]), StructureError, "exactly one root"),
        (lambda: Structure.from_children([[], [0], [0, 1]]), StructureError, "has 2 parents"),
        (lambda: Structure.from_children([[], [], [0, 1], []]), StructureError, "one root"),
        (lambda: Structure.from_children(np.array([[-1, 0], [-1, -1]])), StructureError, "gap"),
        (lambda: Structure.from_children([[], [0, 0]]), StructureError, "twice"),
    ],
)
def test_bad_structures_get_clear_errors(build, error, words):
    with pytest.raises(error, match=words) as caught:
        build()
    assert isinstance(caught.value, ByocError)


def test_cycle_error_names_the_structure_and_nodes():
    with pytest.raises(CycleError) as caught:
        Structure.from_children([[], [0, 3], [1], [2]], name="sentence 7", kind="dag")
    assert "sentence 7" in str(caught.value)
    assert "[1, 3, 2, 1]" in str(caught.value) or "nodes [" in str(caught.value)


def test_arity_check_names_the_node():
    tree = Structure.from_nested((("a", "b", "c"), "d"), name="t3")
    with pytest.raises(ArityError, match="t3: node 3 has 3 children"):
        check_arity(tree, 2)
    check_arity(grid_dag(2, 2), 2, allow_fewer=True)
    with pytest.raises(ArityError, match="takes 2"):
        check_arity(grid_dag(2, 2), 2)


def test_linearization_makes_levels_contiguous_and_children_earlier():
    rng = np.random.default_rng(1)
    batch = [*sst_trees(5), random_binary_tree(30, rng), grid_dag(3, 3), Structure.from_nested("w")]
    lin = linearize(batch)
    assert lin.num_nodes == sum(s.num_nodes for s in batch)
    assert sorted(lin.order.tolist()) == list(range(lin.num_nodes))
    levels = np.concatenate([node_levels(s) for s in batch])
    for level in range(lin.num_levels):
        span = lin.level(level)
        assert (levels[lin.order[span.start:span.stop]] == level).all()
        kids = lin.children[span.start:span.stop]
        assert (kids[kids >= 0] < span.start).all()  # children are all done
    # Stable: within a level, batch order.
    for level in range(lin.num_levels):
        span = lin.order[lin.level(level).start:lin.level(level).stop]
        assert (np.diff(span) > 0).all()
    assert lin.roots.tolist() == [int(s.roots[0]) + int(o) for s, o in
                                  zip(batch[:6], lin.offsets, strict=False)] + \
        [int(lin.offsets[6]) + 8, int(lin.offsets[7])]


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        # Narrowed to int32 first, 2**33 + 1 was node 1 and 2**32 - 1 was -1 (no child).
        (lambda: Structure.from_children(np.array([[2**33 + 1], [-1]])), MissingChildError,
         "node 0 names child 8589934593"),
        (lambda: Structure.from_children(np.array([[1], [2**32 - 1]], dtype=np.uint32)),
         MissingChildError, "node 1 names child 4294967295"),
        (lambda: Structure.from_children(np.array([[1], [2**64 - 1]], dtype=np.uint64)),
         MissingChildError, "node 1 names child 18446744073709551615"),
        (lambda: Structure.from_children([[2**70], []]), MissingChildError,
         "node 0 names child 1180591620717411303424"),
        # Cast to int64 first, 2.7 was rounded down and 2**64 - 1 made a second root.
        (lambda: Structure.from_parents([2.7, 2.2, -1.0]), StructureError,
         "parent indices must be integers, got float64 values; node 0 names 2.7"),
        (lambda: Structure.from_parents(np.array([2.0, 2.0, -1.0])), StructureError,
         "must be integers"),
        (lambda: Structure.from_parents(np.array([1, 2**64 - 1], dtype=np.uint64)),
         MissingChildError, "node 1 names parent 18446744073709551615"),
        (lambda: Structure.from_parents([True, -1]), StructureError, "not bools"),
        (lambda: Structure.from_children([[1.7, 2.2], [], []]), StructureError,
         "child indices must be integers, got float64"),
        (lambda: Structure.from_children([[True], []]), StructureError, "not bools"),
        (lambda: Structure.from_children(np.array([[True], [False]])), StructureError,
         "got bool values"),
    ],
)
def test_indices_are_checked_before_any_cast(build, error, words):
    with pytest.raises(error, match=words):
        build()


def _left_chain(pairs: int) -> object:
    nested: object = "w"
    for i in range(pairs):
        nested = (nested, i)
    return nested


def test_levels_take_one_pass_however_high_the_structure():
    # Relaxing every node once per level took minutes at this size (nodes x height).
    start = time.perf_counter()
    nested = Structure.from_nested(_left_chain(100_000))
    chain = np.full((200_000, 1), -1)
    chain[1:, 0] = np.arange(199_999)
    single = Structure(chain)
    assert nested.num_nodes == 200_001 and nested.height == 100_000
    assert node_levels(single)[-1] == 199_999 and single.height == 199_999
    assert time.perf_counter() - start < 10  # about 0.5 s; the quadratic version never got here


def test_a_long_cycle_is_named_without_printing_every_node():
    children = np.arange(1, 10_001).reshape(-1, 1) % 10_000
    with pytest.raises(CycleError, match=r"nodes \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, \.\.\.\] "
                                         "form a cycle of 10000 nodes"):
        Structure(children, "dag", "ring")


def test_the_structure_does_not_lock_or_share_the_callers_array():
    given = np.array([[1, 2], [-1, -1], [-1, -1]], dtype=np.int32)
    s = Structure(given)
    assert given.flags.writeable
    given[0] = [-1, -1]
    assert s.children.tolist() == [[1, 2], [-1, -1], [-1, -1]]
    assert not s.children.flags.writeable


def test_nested_lists_build_internal_nodes_like_tuples():
    assert Structure.from_nested([[1, 2], 3]).children.tolist() == \
        Structure.from_nested(((1, 2), 3)).children.tolist()
    assert Structure.from_nested([("a", ["b", "c"]), "d"]).num_nodes == 7
    with pytest.raises(StructureError, match="an empty list is not a node"):
        Structure.from_nested([[1, 2], []])


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Structure.from_parents(np.array([[2, 2, -1]])),
         r"parents must be a 1-D sequence of parent indices, got ndarray of shape \(1, 3\)"),
        (lambda: Structure.from_parents(np.array([[2], [2], [-1]])), "1-D sequence"),
        (lambda: Structure.from_parents(3), r"got int of shape \(\)"),
        (lambda: Structure.from_parents(None), "1-D sequence"),
        (lambda: Structure.from_parents("21-"), "got a string"),
        (lambda: Structure.from_parents([[1], [2, -1]]), "1-D sequence"),
        (lambda: Structure.from_parents(["a", "b"]), "must be integers"),
        (lambda: Structure.from_parents([]), "parents is empty"),
        (lambda: Structure.from_children([1, 2, -1]),
         "one list of child indices per node; node 0's entry is 1"),
        (lambda: Structure.from_children(None), "got NoneType"),
        (lambda: Structure.from_children("ab"), "got str"),
        (lambda: Structure.from_children([[None, 1], []]), "node 0 names None"),
        (lambda: Structure.from_children([["1"], []]), "must be integers"),
        (lambda: Structure.from_children([[[1], [2, 3]], []]), "not nested lists"),
        (lambda: Structure([[1], []]), "use Structure.from_children"),
        (lambda: complete_tree(-1), "complete_tree: height must be >= 0, got -1"),
        (lambda: complete_tree(2, 0), "complete_tree: arity must be >= 1"),
        (lambda: complete_tree(2.5), "height must be an integer"),
        (lambda: random_binary_tree(0, np.random.default_rng()),
         "random_binary_tree: num_leaves must be >= 1, got 0"),
        (lambda: grid_dag(-1, 3), "grid_dag: rows must be >= 1"),
        (lambda: random_dag(5, -1, np.random.default_rng()), "random_dag: max_preds"),
        (lambda: linearize([]), "linearize: the batch is empty"),
        (lambda: linearize([((0, 1), 2)]), "batch item 0 is a tuple, not a Structure"),
    ],
)
def test_builders_refuse_malformed_arguments(build, words):
    with pytest.raises(StructureError, match=words):
        build()


def test_parent_files_with_non_integer_entries_name_the_line(tmp_path):
    path = tmp_path / "parents.txt"
    path.write_text("2 2 -1\n2 2.0 -1\n")
    with pytest.raises(StructureError, match=r"parents\.txt:2: parent indices must be integers"):
        load_parent_arrays(path)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: tree_lstm(0), "model TreeLSTM: hidden must be >= 1, got 0"),
        (lambda: tree_lstm(-2), "hidden must be >= 1, got -2"),
        (lambda: tree_fc(4, embed=0), "embed must be >= 1"),
        (lambda: tree_gru(4, vocab=0), "vocab must be >= 1"),
        (lambda: mv_rnn(2.5), "hidden must be an integer >= 1, got 2.5"),
        (lambda: dag_rnn(4, 0), "features must be >= 1"),
        (lambda: tree_fc(4, params={}), r"model TreeFC: params lacks weights \['W', "),
        (lambda: tree_fc(4, vocab=10, params={
            "embedding": np.zeros((10, 4)), "W_x": np.zeros((3, 4)), "b_x": np.zeros(4),
            "W": np.zeros((8, 4)), "b": np.zeros(4)}),
         r"weight W_x has shape \(3, 4\), expected \(4, 4\)"),
        (lambda: dag_rnn(2, 1, params={"U": [["x", "y"]], "W": np.zeros((2, 2)),
                                       "b": np.zeros(2)}), "weight U is not a float array"),
    ],
)
def test_model_builders_refuse_bad_sizes_and_weights(build, words):
    with pytest.raises(CellError, match=words):
        build()
