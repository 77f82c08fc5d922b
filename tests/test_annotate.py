"""AnnotateTarget: every node gets a target or the host, with the reason recorded."""

from __future__ import annotations

import onnx_ir as ir

from byoc_sdk.testing import onnx_text
from partition.annotate import AnnotateTargetPass
from partition.decision import decision_of

MODEL = """
    g (float[2,4] x) => (float[2,4] y) {
      [a] t = Relu(x)
      [b] s = Softmax(t)
      [c] y = Tanh(s)
    }"""


def decisions(targets):
    model = ir.from_proto(onnx_text(MODEL))
    AnnotateTargetPass(targets)(model)
    return {node.name: decision_of(node) for node in model.graph}


def test_the_first_target_in_priority_order_that_accepts_a_node_gets_it(make_target):
    high = make_target("high", ["Relu"], priority=2)
    low = make_target("low", ["Relu", "Tanh"], priority=1)
    found = decisions([high, low])
    assert (found["a"].target, found["c"].target) == ("high", "low")
    assert found["a"].reason == "high supports Relu"


def test_a_host_node_lists_every_targets_reason(make_target):
    high = make_target("high", ["Relu"], priority=2)
    low = make_target("low", ["Relu", "Tanh"], priority=1)
    found = decisions([high, low])
    assert found["b"].target is None
    assert found["b"].reason == (
        "Softmax is not supported by high; Softmax is not supported by low"
    )


def test_a_declining_check_gives_its_own_reason(make_target):
    target = make_target("acc", [])

    @target.support("Relu")
    def _only_named_x(node):
        return True if node.input(0).name == "t" else "reads a graph input"

    assert decisions([target])["a"].reason == "acc: reads a graph input"


def test_a_shared_reason_says_whose_it_is(make_target):
    """A check shared by several targets gives the same words for each; a reason that
    names its target already is left as it is."""
    targets = [make_target(name, []) for name in ("npu", "dsp")]
    for target in targets:
        target.support("Relu")(lambda node: "1-D convolution is not supported")
    targets.append(make_target("gpu", []))
    targets[2].support("Relu")(lambda node: "gpu runs Relu on float16 only")

    assert decisions(targets)["a"].reason == (
        "npu: 1-D convolution is not supported; dsp: 1-D convolution is not supported; "
        "gpu runs Relu on float16 only")


def test_no_target_means_everything_stays_on_the_host():
    found = decisions([])
    assert all(d.target is None and d.reason == "no target given" for d in found.values())
