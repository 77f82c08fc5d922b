"""The ``byoc new-backend`` and ``byoc conformance`` commands (parsers in byoc_sdk.cli)."""

from __future__ import annotations

import argparse

EXIT_OK = 0


def cmd_new_backend(args: argparse.Namespace) -> int:
    from byoc_sdk.conformance.template import render_template

    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    project = render_template(args.name, kind=args.kind, output_dir=args.output,
                              vendor=args.vendor, ops=ops, package=args.package)
    print(f"created {project} ({args.kind} codegen for target {args.name})\n")
    print("next steps:")
    print(f"  cd {project}")
    print('  pip install -e ".[test]"')
    print(f"  byoc conformance --target {args.name}")
    print("then read README.md there (and docs/vendor-guide.md).")
    return EXIT_OK


def cmd_conformance(args: argparse.Namespace) -> int:
    from byoc_sdk.conformance.runner import run_conformance

    return run_conformance(args.target, report=args.report, junit=args.junit,
                           keyword=args.keyword, xfail_file=args.xfail_file,
                           verbose=args.verbose, models=args.model or (),
                           timeout=args.timeout)
