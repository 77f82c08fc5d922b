"""The bundled targets pass the conformance suite, as a vendor's target must.

``cuda`` runs it in the host emulation (``BYOC_CUDA_EMULATE=1``) unless the machine has a
GPU: the same generated source, compiled for the CPU, checked against onnxruntime.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reference_backends.cuda.device import device_count


@pytest.mark.parametrize("target", ["cpu", "simaccel", "cuda"])
def test_bundled_target_is_conformant(target, tmp_path, build_cache_dir):
    report = tmp_path / "report.json"
    env = dict(os.environ)
    if target == "cuda" and device_count() == 0:
        env["BYOC_CUDA_EMULATE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "byoc_sdk.cli", "conformance", "--target", target,
         "--report", str(report)],
        cwd=tmp_path,  # away from the checkout: the installed package must be what runs
        capture_output=True, text=True, timeout=900, check=False, env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "CONFORMANT" in done.stdout
    assert report.is_file()
