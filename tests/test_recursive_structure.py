"""Recursive front end: building and checking structures, and linearization."""

from __future__ import annotations

import numpy as np
import pytest

from byoc_sdk.errors import ByocError
from byoc_sdk.recursive import (
    ArityError,
    CycleError,
    MissingChildError,
    Structure,
    StructureError,
    complete_tree,
    grid_dag,
    linearize,
    node_levels,
    random_binary_tree,
    random_dag,
    sst_trees,
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
