"""The bundled targets pass the conformance suite, as a vendor's target must.

``cuda`` is not here: it has no codegen yet, and the suite says so (see
tests/test_conformance_run.py for a target without a codegen).
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("target", ["cpu", "simaccel"])
def test_bundled_target_is_conformant(target, tmp_path, build_cache_dir):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "byoc_sdk.cli", "conformance", "--target", target,
         "--report", str(report)],
        cwd=tmp_path,  # away from the checkout: the installed package must be what runs
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "CONFORMANT" in done.stdout
    assert report.is_file()
