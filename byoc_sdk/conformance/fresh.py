"""The fresh-process half of the package and determinism checks.

``python -m byoc_sdk.conformance.fresh JOB.json`` loads each package the job lists and
runs it on the saved inputs (writing the outputs), notes whether doing so imported any
of the target's own modules (a package must run with the runtime alone), then rebuilds
each model with the target and records a digest of every artifact. It runs with another
hash seed than the suite, so artifacts that depend on set order differ and show up.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    result: dict[str, Any] = {"runs": {}, "imported": [], "digests": {}}
    before = set(sys.modules)
    for entry in job["packages"]:
        result["runs"][entry["id"]] = _run_package(entry)
    result["imported"] = [m for m in job["watch"] if m in sys.modules and m not in before]
    for entry in job["rebuild"]:
        result["digests"][entry["id"]] = _rebuild(job["target"], entry)
    Path(job["result"]).write_text(json.dumps(result))
    return 0


def _run_package(entry: dict[str, Any]) -> dict[str, Any]:
    """Load one package and run it on its saved feeds; the outputs go to a .npz file."""
    import numpy as np

    from byoc_sdk.runtime import CompiledModel

    try:
        compiled = CompiledModel.load(entry["package"], host_threads=1)
        with np.load(entry["feeds"]) as data:
            feeds = {name: data[name] for name in data.files}
        outputs = compiled.run(feeds)
        np.savez(entry["outputs"], **outputs)
    except Exception as exc:  # any failure is the finding: report it, go on
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "error": ""}


def _rebuild(target: str, entry: dict[str, Any]) -> dict[str, str]:
    """Artifact digests of the model rebuilt here (or {"error": ...})."""
    from byoc_sdk.build import build
    from byoc_sdk.conformance.checks import artifact_digests
    from partition.policy import RegionPolicy

    policy = RegionPolicy.keep_all() if entry["keep_all"] else None
    try:
        compiled = build(entry["model"], [target], policy=policy, strict=True, host_threads=1)
    except Exception as exc:  # reported by the determinism test
        return {"error": f"{type(exc).__name__}: {exc}"}
    return artifact_digests(compiled)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
