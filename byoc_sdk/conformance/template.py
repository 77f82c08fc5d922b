"""``byoc new-backend``: a new vendor backend from the cookiecutter template.

The template (``vendor_template/`` in the source tree) ships inside the installed
package as ``byoc_sdk/vendor_template``. Rendering needs no network: cookiecutter reads
the local folder, and its replay file goes to a temporary folder, not the user's home.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from byoc_sdk.errors import ByocError
from byoc_sdk.registry import target_names
from byoc_sdk.target import check_target_name

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "vendor_template"
KINDS = ("json", "c_source", "binary")
STARTER_OPS = ("Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Add", "Sub", "Mul", "Div",
               "Max", "Min", "MatMul")
DEFAULT_OPS = ("Relu", "Add", "MatMul")


def render_template(
    name: str,
    *,
    kind: str = "json",
    output_dir: str | Path = ".",
    vendor: str = "Example Silicon",
    ops: Sequence[str] = DEFAULT_OPS,
    package: str | None = None,
) -> Path:
    """Render a backend for target ``name`` into ``output_dir``; returns its folder.

    Refuses (``ByocError``) bad answers and a folder that exists already: nothing is
    overwritten.
    """
    package = package or f"{name}_byoc"
    _check_answers(name, kind, ops, package)
    slug = package.replace("_", "-")
    output = Path(output_dir)
    project = output / slug
    if project.exists():
        raise ByocError(f"{project} already exists; choose another -o folder or remove it")
    if not output.is_dir():
        raise ByocError(f"output folder {output} does not exist")
    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.main import cookiecutter

    context = {"vendor_name": vendor, "target_name": name, "package_name": package,
               "project_slug": slug, "codegen_kind": kind, "ops": ",".join(ops),
               "_byoc_requirement": sdk_requirement()}
    with tempfile.TemporaryDirectory(prefix="byoc-template-") as scratch:
        try:
            made = cookiecutter(str(template_dir()), no_input=True, extra_context=context,
                                output_dir=str(output), overwrite_if_exists=False,
                                default_config={"replay_dir": scratch,
                                                "cookiecutters_dir": scratch})
        except CookiecutterException as exc:
            raise ByocError(f"the vendor template failed to render: {exc}") from exc
    return Path(made)


def template_dir() -> Path:
    if not (TEMPLATE_DIR / "cookiecutter.json").is_file():
        raise ByocError(f"the vendor template is missing from this byoc installation "
                        f"(looked in {TEMPLATE_DIR})")
    return TEMPLATE_DIR


def sdk_requirement() -> str:
    """The requirement a generated backend puts on byoc: this major.minor series."""
    from byoc_sdk import __version__

    major, minor = (int(p) for p in __version__.split(".")[:2])
    return f"byoc>={major}.{minor},<{major}.{minor + 1}" if major == 0 else \
        f"byoc>={major}.{minor},<{major + 1}"


def _check_answers(name: str, kind: str, ops: Sequence[str], package: str) -> None:
    check_target_name(name)
    if name in target_names():
        raise ByocError(f"target name {name!r} is taken by an installed target; two packages "
                        "registering one name cannot both be used, so choose another")
    if kind not in KINDS:
        raise ByocError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    unknown = [op for op in ops if op not in STARTER_OPS]
    if unknown or not ops:
        raise ByocError(f"ops {unknown or list(ops)} are not starter ops; choose from "
                        f"{', '.join(STARTER_OPS)}")
    if not package.isidentifier():
        raise ByocError(f"package name {package!r} is not a Python identifier")
