"""The conformance suite for the target named by ``--byoc-target`` (what
``byoc conformance --target NAME`` and ``pytest --byoc-target NAME`` collect)."""

from byoc_sdk.conformance.suite import ConformanceSuite


class TestConformance(ConformanceSuite):
    """Every conformance check of the target given on the command line."""

    target = None
