"""Keep the codegen (and runtime) of the chosen kind under their final names; drop the rest."""

import shutil
from pathlib import Path

KIND = "{{ cookiecutter.codegen_kind }}"
PACKAGE = Path("{{ cookiecutter.package_name }}")

for kind in ("json", "c_source", "binary"):
    for part in ("codegen", "runtime", "program"):
        source = PACKAGE / f"{part}_{kind}.py"
        if not source.exists():
            continue
        if kind == KIND:
            source.rename(PACKAGE / f"{part}.py")
        else:
            source.unlink()

if KIND == "c_source":
    # Compiled modules run without Python: there is no numpy runtime to keep.
    (PACKAGE / "kernels.py").unlink()

# An installed byoc's copy of this template can hold bytecode that pip compiled at install
# time, for files this hook has just removed too: none of it belongs in the project.
for cache in list(Path(".").rglob("__pycache__")):
    shutil.rmtree(cache)
