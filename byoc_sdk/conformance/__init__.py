"""The byoc conformance suite: how a vendor proves, in its own CI, that its target is right.

* :class:`ConformanceSuite`: subclass it in a test module, naming the target, and every
  check runs as its own pytest item;
* ``byoc conformance --target NAME`` (:func:`run_conformance`): the same suite from the
  command line, with a JSON report and JUnit XML;
* the pytest plugin (:mod:`.plugin`): ``pytest --byoc-target NAME``.

What it checks is generated from the target's own declarations; see
``docs/vendor-guide.md``. Names are imported lazily: the plugin module is loaded by every
pytest run, and must stay cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConformanceSuite", "render_template", "run_conformance"]


def __getattr__(name: str) -> Any:
    if name == "ConformanceSuite":
        from byoc_sdk.conformance.suite import ConformanceSuite

        return ConformanceSuite
    if name == "run_conformance":
        from byoc_sdk.conformance.runner import run_conformance

        return run_conformance
    if name == "render_template":
        from byoc_sdk.conformance.template import render_template

        return render_template
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
