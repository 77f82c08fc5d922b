"""The static memory plan of the values between steps (byoc_sdk.memory_plan)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from byoc_sdk.memory_plan import ALIGNMENT, ValueSpec, plan_memory

F32 = np.dtype(np.float32)


def spec(*shape: int, dtype=F32) -> ValueSpec:
    return ValueSpec(np.dtype(dtype), tuple(shape))


def test_a_chain_ping_pongs_between_two_buffers():
    # a -> b -> c -> d: each step reads the last value and writes the next; a buffer is
    # free once its reader is done, but never while that reader is still writing.
    steps = [((), ("a",)), (("a",), ("b",)), (("b",), ("c",)), (("c",), ("d",)), (("d",), ())]
    plan = plan_memory(steps, {name: spec(8) for name in "abcd"})
    assert len(plan.sizes) == 2
    assert plan.placement["a"] == plan.placement["c"] != plan.placement["b"]
    assert plan.placement["b"] == plan.placement["d"]
    assert plan.total_bytes == 2 * 32


def test_a_value_read_later_keeps_its_buffer():
    # a is read by the last step (a residual): nothing may take its buffer before that.
    steps = [((), ("a",)), (("a",), ("b",)), (("b",), ("c",)), (("a", "c"), ())]
    plan = plan_memory(steps, {name: spec(4) for name in "abc"})
    assert plan.placement["a"] not in (plan.placement["b"], plan.placement["c"])
    assert plan.placement["b"] != plan.placement["c"]


def test_an_unread_output_frees_its_buffer_after_its_step():
    steps = [((), ("a", "unused")), (("a",), ("b",)), (("b",), ())]
    plan = plan_memory(steps, {"a": spec(4), "unused": spec(4), "b": spec(4)})
    assert plan.placement["b"] == plan.placement["unused"]


def test_values_without_a_spec_are_not_placed():
    steps = [((), ("a", "dynamic")), (("a", "dynamic"), ("b",))]
    plan = plan_memory(steps, {"a": spec(2), "b": spec(2)})
    assert set(plan.placement) == {"a", "b"}


def test_the_smallest_fitting_buffer_is_reused_and_a_free_one_grows():
    steps = [((), ("big", "small")), (("big", "small"), ()), ((), ("mid",)),
             (("mid",), ("huge",)), (("huge",), ())]
    plan = plan_memory(steps, {"big": spec(100), "small": spec(10), "mid": spec(8),
                               "huge": spec(400)})
    assert plan.placement["mid"] == plan.placement["small"]  # smallest that fits
    assert plan.placement["huge"] == plan.placement["big"]   # the largest free, grown
    assert plan.sizes[plan.placement["huge"]] == 1600
    assert len(plan.sizes) == 2


def test_allocate_gives_aligned_views_of_the_right_dtype_and_shape():
    steps = [((), ("a", "b")), (("a", "b"), ("c",)), (("c",), ())]
    plan = plan_memory(steps, {"a": spec(3, 5), "b": spec(7, dtype=np.int64),
                               "c": spec(2, 2, dtype=np.float64)})
    arrays = plan.allocate()
    assert arrays["a"].shape == (3, 5) and arrays["a"].dtype == F32
    assert arrays["b"].dtype == np.int64 and arrays["c"].shape == (2, 2)
    for array in arrays.values():
        assert array.ctypes.data % ALIGNMENT == 0
        assert array.flags.c_contiguous and array.flags.writeable
    again = plan.allocate()
    assert not np.shares_memory(arrays["a"], again["a"])  # every frame its own memory


@st.composite
def schedules(draw):
    """Random steps over values v0..vn, each written once and read by later steps."""
    count = draw(st.integers(1, 14))
    written: list[str] = []
    steps = []
    for s in range(count):
        reads = draw(st.lists(st.sampled_from(written), unique=True, max_size=3)) \
            if written else []
        outputs = [f"v{s}_{k}" for k in range(draw(st.integers(0, 2)))]
        written += outputs
        steps.append((tuple(reads), tuple(outputs)))
    specs = {name: spec(draw(st.integers(1, 64))) for name in written
             if draw(st.booleans()) or len(written) < 3}
    return steps, specs


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_live_values_never_share_a_buffer_and_always_fit(schedule):
    steps, specs = schedule
    plan = plan_memory(steps, specs)
    assert set(plan.placement) == set(specs)
    born = {name: s for s, (_, outputs) in enumerate(steps) for name in outputs}
    dies = dict(born)
    for s, (inputs, _) in enumerate(steps):
        for name in inputs:
            dies[name] = s
    for name, buffer in plan.placement.items():
        assert plan.sizes[buffer] >= specs[name].nbytes
    names = sorted(plan.placement)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if plan.placement[a] == plan.placement[b]:
                # One must be dead before the other is written: strictly, since a step
                # writing b may still be reading a.
                assert dies[a] < born[b] or dies[b] < born[a], (a, b)
    # Running the plan really keeps each value intact until its last reader.
    arrays = plan.allocate()
    for s, (inputs, outputs) in enumerate(steps):
        for name in inputs:
            if name in arrays:
                assert (arrays[name] == born[name]).all()
        for name in outputs:
            if name in arrays:
                arrays[name][...] = s
