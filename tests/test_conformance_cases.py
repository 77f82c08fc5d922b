"""Unit tests of the conformance suite's parts: the op catalogue, case generation from a
target's declarations, ONNX node-test selection, expected-failure files and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from byoc_sdk import RegionPolicy, Target, any_input, const, op, partition_model
from byoc_sdk.conformance import backend_tests, cases, checks
from byoc_sdk.conformance.catalogue import FIXED, GENERIC, GENERIC_SHAPES, samples_for
from byoc_sdk.conformance.expectations import (
    ExpectationError,
    expectation_for,
    read_expectations,
)
from byoc_sdk.conformance.report import ConformanceReport, Result, write_json
from byoc_sdk.testing import run_onnxruntime


def _relu_target() -> Target:
    target = Target("relutest", version="1.0")
    target.support("Relu", dtypes={"float32"}, static_shapes=True)
    return target


def test_every_catalogue_sample_makes_a_valid_model_onnxruntime_runs() -> None:
    samples = [s for group in FIXED.values() for s in group]
    samples += [s for make in GENERIC.values() for s in make(GENERIC_SHAPES[1], 0)]
    for sample in samples:
        dtype = "bool" if sample.op_type in ("Not", "And", "Or", "Xor") else "float32"
        model, feeds = cases.sample_model(sample, dtype, max(cases.OPSET, sample.since))
        onnx.checker.check_model(model, full_check=True)
        outputs = run_onnxruntime(model, feeds)
        assert len(outputs) == sample.outputs, sample


def test_claimed_cases_are_what_the_check_accepts() -> None:
    claimed, declined = cases.op_cases(_relu_target(), "", "Relu",
                                       _relu_target().ops[("", "Relu")])
    assert claimed and all(c.category == "op" and c.dtype == "float32" for c in claimed)
    assert [c.id for c in claimed] == ["Relu-2x8-special-f32", "Relu-2x3-f32",
                                       "Relu-1x3x4x4-f32", "Relu-7-f32"]
    reasons = {c.reason for c in declined}
    assert "relutest runs Relu on float32, not float16" in reasons
    assert any("needs static shapes" in r for r in reasons)
    assert all(c.category == "host" for c in declined)


def test_the_check_function_decides_which_attributes_are_claimed() -> None:
    target = Target("convtest", version="1.0")

    @target.support("Conv", dtypes={"float32"}, const_inputs=(1, 2), static_shapes=True)
    def _conv(node):
        return True if node.attr("group", 1) == 1 else "grouped convolution is not supported"

    claimed, declined = cases.op_cases(target, "", "Conv", target.ops[("", "Conv")])
    assert claimed and not any("depthwise" in c.id or "grouped" in c.id for c in claimed)
    assert len(claimed) <= cases.MAX_CLAIMED and len(declined) <= cases.MAX_DECLINED
    everything = [c for sample in samples_for("Conv") for c in [sample.label]]
    assert "grouped" in everything and "depthwise" in everything
    reasons = {c.reason for c in declined}
    assert "convtest needs input 1 of Conv to be a constant" in reasons


def test_runtime_weights_and_const_inputs() -> None:
    target = Target("mmtest", version="1.0")
    target.support("MatMul", dtypes={"float32"}, const_inputs=(1,), static_shapes=True)
    claimed, declined = cases.op_cases(target, "", "MatMul", target.ops[("", "MatMul")])
    weights = [c for c in declined if c.id.endswith("-weights-as-inputs")]
    assert weights and "constant" in weights[0].reason
    assert all("weights-as-inputs" not in c.id for c in claimed)
    initializers = {t.name for t in claimed[0].model.graph.initializer}
    assert initializers == {"w1"}


def test_generation_is_deterministic_and_feeds_match_the_model() -> None:
    first = cases.generate(_relu_target())
    second = cases.generate(_relu_target())
    assert [c.id for c in first.claimed_ops] == [c.id for c in second.claimed_ops]
    for a, b in zip(first.claimed_ops, second.claimed_ops, strict=True):
        assert all(np.array_equal(a.feeds[k], b.feeds[k], equal_nan=True) for k in a.feeds)
        inputs = [i.name for i in a.model.graph.input]
        assert sorted(inputs) == sorted(a.feeds)


def test_value_ranges_suit_the_op() -> None:
    (sample,) = [s for s in samples_for("Log") if s.label == "2x3"]
    _, feeds = cases.sample_model(sample, "float32", 21, seed=3)
    assert (feeds["x0"] > 0).all()
    (sample,) = [s for s in samples_for("Gather") if s.label == "5x4-axis0"]
    _, feeds = cases.sample_model(sample, "float32", 21, seed=3)
    assert feeds["x1"].dtype == np.int64 and feeds["x1"].min() >= 0 and feeds["x1"].max() < 5
    (sample,) = [s for s in samples_for("Max") if s.label.endswith("-special")]
    _, feeds = cases.sample_model(sample, "float32", 21, seed=3)
    special = feeds["x0"]
    assert np.isnan(special).any() and np.isposinf(special).any() and np.isneginf(special).any()
    assert np.isfinite(feeds["x1"]).all()  # the other operand is plain


def test_ops_outside_the_catalogue_are_reported_uncovered() -> None:
    target = Target("odd", version="1.0")
    target.support("NonMaxSuppression")
    target.support("MyOp", domain="com.example")
    generated = cases.generate(target)
    assert set(generated.uncovered) == {"NonMaxSuppression", "com.example::MyOp"}


def test_pattern_cases_are_grown_from_the_pattern_and_sorted_by_its_check() -> None:
    target = Target("densetest", version="1.0")
    target.support("MatMul", "Add", "Relu", dtypes={"float32"}, static_shapes=True)

    def row_bias(match):
        bias = match.value("b").const_value.shape
        return True if len(bias) == 1 else "bias must be a row"

    pattern = op("Relu", op("Add", op("MatMul", any_input("x"), const("w")), const("b")))
    target.pattern("dense_relu", pattern, check=row_bias)
    generated = cases.generate(target)
    assert generated.claimed_patterns and generated.declined_patterns
    for case in generated.claimed_patterns:
        assert [n.op_type for n in case.model.graph.node] == ["MatMul", "Add", "Relu"]
        assert case.id.startswith("dense_relu-")
        result = partition_model(checks.onnx_copy(case.model), [target],
                                 policy=RegionPolicy.keep_all())
        assert {n.composite.rsplit("_", 1)[0] for n in result.report.nodes} == {"dense_relu"}
    assert {c.reason for c in generated.declined_patterns} <= {
        "bias must be a row", "densetest runs MatMul on float32, not float16"}
    for case in generated.declined_patterns:
        result = partition_model(checks.onnx_copy(case.model), [target],
                                 policy=RegionPolicy.keep_all())
        assert not any(n.composite for n in result.report.nodes)


def test_a_check_that_raises_fails_its_case_saying_it_raised() -> None:
    target = Target("raisetest", version="1.0")

    @target.support("Relu", dtypes={"float32"})
    def _relu(node):
        return node.inputs[0].shape[3] > 0  # an IndexError on every sample below rank 4

    pattern = op("Relu", op("Add", any_input("x"), const("b")))
    target.pattern("add_relu", pattern, check=lambda match: match.value("nope"))
    generated = cases.generate(target)
    raising = [c for c in generated.claimed_ops if c.raised]
    assert raising and all(c.raised.startswith("IndexError: ") for c in raising)
    case = raising[0]
    with pytest.raises(checks.Failed) as failed:
        checks.claimed_case(case.model, case.feeds, target, case.tolerance, raised=case.raised)
    assert str(failed.value).startswith(f"the check raised {case.raised} (a check must "
                                        "return True or a reason")
    assert generated.claimed_patterns and all(c.raised for c in generated.claimed_patterns)
    case = generated.claimed_patterns[0]
    with pytest.raises(checks.Failed, match=r"^the check of pattern add_relu raised \w+"):
        checks.claimed_case(case.model, case.feeds, target, case.tolerance, pattern="add_relu",
                            raised=case.raised)


def test_node_tests_of_claimed_ops_only() -> None:
    tests, declined = backend_tests.tests_for(_relu_target())
    assert [t.name for t in tests] == ["test_relu"]
    target = Target("addtest", version="1.0")
    target.support("Add", dtypes={"float32"}, static_shapes=True)
    tests, declined = backend_tests.tests_for(target)
    assert "test_add" in [t.name for t in tests] and declined >= 1  # int8, uint8...
    assert all(t.op_types == {"Add"} for t in tests)


def test_const_inputs_of_node_tests_become_initializers() -> None:
    target = Target("mmtest", version="1.0")
    target.support("MatMul", dtypes={"float32"}, const_inputs=(1,), static_shapes=True)
    tests, _ = backend_tests.tests_for(target)
    test = next(t for t in tests if t.name == "test_matmul_2d")
    model, feeds = backend_tests.prepare(test, target)
    assert [i.name for i in model.graph.input] == ["a"] and list(feeds) == ["a"]
    assert [t.name for t in model.graph.initializer] == ["b"]


def test_expected_failures_file(tmp_path: Path) -> None:
    path = tmp_path / "xfail.txt"
    path.write_text("# comment\n\nop[Conv-dilated-*]: dilation is emulated (see #12)\n"
                    "backend[test_relu]: firmware bug\n")
    entries = read_expectations(path)
    assert [e.reason for e in entries] == ["dilation is emulated (see #12)", "firmware bug"]
    assert expectation_for(entries, "op[Conv-dilated-f32]") is entries[0]
    assert expectation_for(entries, "op[Conv-dilated]") is None
    assert expectation_for(entries, "backend[test_relu_expanded]") is None
    assert entries[0].used and entries[1].used is False
    path.write_text("op[Relu-2x3-f32]:   \n")
    with pytest.raises(ExpectationError, match=r"xfail.txt:1: op\[Relu-2x3-f32\] needs a reason"):
        read_expectations(path)
    path.write_text("Relu is broken\n")
    with pytest.raises(ExpectationError, match="KIND"):
        read_expectations(path)


def test_compare_is_dtype_aware() -> None:
    want = {"y": np.array([1.0, 2.0], np.float32)}
    assert checks.compare({"y": want["y"] + np.float32(1e-6)}, want) < 1e-5
    with pytest.raises(checks.Failed, match=r"max abs error 0\.01"):
        checks.compare({"y": want["y"] + np.float32(0.01)}, want)
    half = {"y": np.array([1.0, 2.0], np.float16)}
    checks.compare({"y": half["y"] + np.float16(0.005)}, half)
    ints = {"y": np.array([1, 2], np.int32)}
    with pytest.raises(checks.Failed):
        checks.compare({"y": np.array([1, 3], np.int32)}, ints)
    with pytest.raises(checks.Failed, match="is float64"):
        checks.compare({"y": want["y"].astype(np.float64)}, want)
    nan = {"y": np.array([np.nan, np.inf], np.float32)}
    assert checks.compare(nan, nan) == 0.0


def test_compare_names_nans_on_one_side_only() -> None:
    # A NaN is no "max abs error inf": the message says which side has it.
    want = {"y": np.array([1.0, np.nan, 3.0], np.float32)}
    with pytest.raises(checks.Failed, match=r"2 of 3 elements out of tolerance: 1 NaN where "
                                            r"onnxruntime gives a number, 1 number where "
                                            r"onnxruntime gives NaN$"):
        checks.compare({"y": np.array([np.nan, 2.0, 3.0], np.float32)}, want)


def test_report_json_stays_strict_json_with_infinite_errors(tmp_path: Path) -> None:
    # Python writes inf as Infinity, which JSON (and so JavaScript, Go, jq's --strict
    # readers of a CI dashboard) does not have.
    results = [Result("op[Relu-2x3-f32]", "t", "op", "Relu", "failed",
                      "output y differs from onnxruntime: max abs error inf", float("inf"), 1, 1),
               Result("model[mlp]", "t", "model", "mlp", "failed", "", float("nan"), 6, 8)]
    path = tmp_path / "report.json"
    write_json([ConformanceReport("t", results)], path)

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["ops"]["Relu"]["max_error"] == "inf"
    assert data["ops"]["Relu"]["failures"][0]["max_error"] == "inf"
    assert data["models"]["mlp"]["max_error"] == "nan"


def test_report_lists_per_op_and_names_failures() -> None:
    results = [
        Result("op[Add-2x3-f32]", "t", "op", "Add", "failed",
               "output y differs from onnxruntime: max abs error 0.5", 0.5, 1, 1),
        Result("op[Relu-2x3-f32]", "t", "op", "Relu", "passed", max_error=0.0),
        Result("backend[test_relu]", "t", "backend", "Relu", "xfailed", "firmware bug"),
        Result("model[mlp]", "t", "model", "mlp", "passed", max_error=1e-7, offloaded=6,
               nodes=8),
    ]
    report = ConformanceReport("t", results, {"version": "1.0"})
    data = report.to_dict()
    assert data["conformant"] is False
    assert data["ops"]["Add"]["failed"] == 1 and data["ops"]["Add"]["max_error"] == 0.5
    assert data["ops"]["Relu"]["xfailed"] == 1
    assert data["models"]["mlp"]["offloaded_share"] == 0.75
    text = report.render()
    assert "op[Add-2x3-f32]: output y differs from onnxruntime: max abs error 0.5" in text
    assert "6/8 nodes (75%)" in text and "NOT CONFORMANT" in text
