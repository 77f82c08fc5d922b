"""Keep the codegen (and runtime) of the chosen kind under their final names; drop the rest."""

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
