"""A bundled target's support table as Markdown, generated from its declarations.

``docs/backends/cpu.md`` (and ``cuda.md``) carry the table between two marker lines;
regenerate it after changing the target's ``target.py``::

    python -m reference_backends.cpu.docs docs/backends/cpu.md          # rewrite
    python -m reference_backends.cpu.docs docs/backends/cpu.md --check  # exit 1 if stale
    python -m reference_backends.cpu.docs docs/backends/cuda.md --target cuda

The test suite runs the check, so the page never drifts from the declarations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from byoc_sdk.target import Target

END = "<!-- end of generated support table -->"


def begin_marker(name: str) -> str:
    """The line that opens the generated table on target ``name``'s page."""
    command = "python -m reference_backends.cpu.docs" + ("" if name == "cpu" else
                                                          f" --target {name}")
    return (f"<!-- support table: generated from reference_backends/{name}/target.py by "
            f"`{command}`; do not edit by hand -->")


def support_markdown(target: Target | None = None) -> str:
    """The ops and composite patterns ``target`` (default: cpu) declares, as tables."""
    if target is None:
        from reference_backends.cpu.target import target as cpu

        target = cpu
    rows = target.support_table()
    ops = [r for r in rows if r["kind"] == "op"]
    patterns = [r for r in rows if r["kind"] == "pattern"]
    lines = ["| op | opsets | types (input 0) | conditions |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['opsets']} | {r['dtypes']} | {_cell(r['conditions'])} |"
              for r in ops]
    lines += ["", "| composite pattern | what it fuses |", "|---|---|"]
    lines += [f"| {r['name']} | {_cell(r['conditions'])} |" for r in patterns]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def updated(page: str, table: str, name: str = "cpu") -> str:
    """``page`` with the text between target ``name``'s markers replaced by ``table``."""
    begin = begin_marker(name)
    try:
        head, rest = page.split(begin, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError("the page has no support table markers") from None
    return f"{head}{begin}\n{table}\n{END}{tail}"


def load_target(name: str) -> Target:
    """A bundled source-codegen target by name."""
    if name == "cuda":
        from reference_backends.cuda.target import target
    else:
        from reference_backends.cpu.target import target
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate a bundled target's support table.")
    parser.add_argument("page", type=Path, help="the Markdown page with the markers")
    parser.add_argument("--target", default="cpu", choices=("cpu", "cuda"),
                        help="whose declarations to list (default: cpu)")
    parser.add_argument("--check", action="store_true",
                        help="only check that the page is up to date")
    args = parser.parse_args(argv)
    text = args.page.read_text()
    fresh = updated(text, support_markdown(load_target(args.target)), args.target)
    if args.check:
        if fresh != text:
            print(f"{args.page}: the support table is stale; regenerate it", file=sys.stderr)
            return 1
        return 0
    args.page.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
