"""The ``byoc`` command.

Every failure a user can cause prints one line, ``byoc: error: ...``, naming the file,
node, target and region that apply, and exits with code 2; ``--debug`` shows the
traceback instead. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from byoc_sdk.errors import ByocError

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2

#: Models with at least this many nodes get stage-by-stage progress on stderr.
PROGRESS_NODES = 10_000


def _progress(verbose: bool) -> Callable[[str], None]:
    """Print each stage as it starts, with the time the previous one took."""
    started = [time.perf_counter(), ""]

    def say(stage: str) -> None:
        now = time.perf_counter()
        if verbose and started[1]:
            print(f"  {started[1]}: {now - started[0]:.2f} s", file=sys.stderr)
        print(f"byoc: {stage}...", file=sys.stderr)
        started[:] = [now, stage]

    return say


def _writable(path: Path, what: str) -> Path:
    """Refuse an output path up front, before any work or any other output is written."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ByocError(f"cannot write the {what}: folder {folder} does not exist", file=str(path))
    if path.is_dir():
        raise ByocError(f"cannot write the {what}: it is a directory", file=str(path))
    return path


def _write(path: Path, what: str, write: Callable[[Path], None]) -> None:
    try:
        write(path)
    except OSError as exc:
        raise ByocError(f"cannot write the {what}: {exc.strerror or exc}", file=str(path)) from exc


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def cmd_partition(args: argparse.Namespace) -> int:
    from byoc_sdk.dot import to_dot
    from byoc_sdk.loader import load_model
    from partition.pipeline import partition_model
    from partition.policy import RegionPolicy

    output = Path(args.output) if args.output else Path(f"{Path(args.model).stem}.partitioned.onnx")
    _writable(output, "partitioned model")
    dot = _writable(Path(args.dot), "Graphviz file") if args.dot else None
    policy = None
    if args.keep_all_regions:
        policy = RegionPolicy.keep_all()
    elif args.min_region_size is not None:
        policy = RegionPolicy(min_nodes=args.min_region_size)
    say = _progress(args.verbose) if args.verbose else None
    model = load_model(args.model)
    if say is None and model.graph.num_nodes() >= PROGRESS_NODES:
        say = _progress(False)
    result = partition_model(model, args.target, policy=policy, progress=say)
    _write(output, "partitioned model", result.save)
    if dot is not None:
        text = to_dot(result.model, result.report.targets)
        _write(dot, "Graphviz file", lambda path: path.write_text(text))
    if args.json:
        print(result.report.to_json())
        return EXIT_OK
    print(result.report.render(explain=args.explain))
    print(f"\nwrote {output}" + (f" and {args.dot}" if args.dot else ""))
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    from byoc_sdk.registry import get_target, target_names

    if args.ops:
        target = get_target(args.ops)
        rows = target.support_table()
        print(f"{target.name} {target.version}: {target.description}".rstrip(": "))
        print(
            f"priority {target.priority}, merge style {target.merge_style}, "
            f"constants {target.constants}\n"
        )
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in ("name", "opsets", "dtypes")}
        header = f"{'kind':<8}{'name':<{widths['name'] + 2}}{'opsets':<{widths['opsets'] + 2}}"
        print(header + f"{'dtypes':<{widths['dtypes'] + 2}}conditions")
        for row in rows:
            print(
                f"{row['kind']:<8}{row['name']:<{widths['name'] + 2}}"
                f"{row['opsets']:<{widths['opsets'] + 2}}{row['dtypes']:<{widths['dtypes'] + 2}}"
                f"{row['conditions']}"
            )
        return EXIT_OK
    names = target_names()
    if not names:
        print("no targets installed")
        return EXIT_OK
    print(
        f"{'target':<12}{'version':<10}{'priority':>8}  {'style':<9}{'ops':>5}"
        f"{'patterns':>10}  description"
    )
    for name in names:
        target = get_target(name)
        print(
            f"{name:<12}{target.version:<10}{target.priority:>8}  {target.merge_style:<9}"
            f"{sum(len(v) for v in target.ops.values()):>5}{len(target.patterns):>10}  "
            f"{target.description}"
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="byoc", description="Bring-your-own-codegen SDK for deep-learning accelerators."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    part = commands.add_parser(
        "partition",
        parents=[common],
        help="partition an ONNX model between targets and the host",
        description="Fuse patterns, annotate, merge and partition MODEL; write the "
        "partitioned ONNX model and print a report.",
    )
    part.add_argument("model", help="ONNX model file")
    part.add_argument(
        "--target",
        "-t",
        action="append",
        required=True,
        help="target to offload to (repeat for several; priority decides)",
    )
    part.add_argument(
        "-o",
        "--output",
        help="partitioned model path (default: MODEL_STEM.partitioned.onnx in the current folder)",
    )
    part.add_argument("--explain", action="store_true", help="say for every node why it went where")
    part.add_argument("--json", action="store_true", help="print the report as JSON")
    part.add_argument("--dot", metavar="FILE", help="write a Graphviz view coloured by target")
    part.add_argument(
        "--min-region-size",
        type=int,
        metavar="N",
        help="send regions of fewer than N nodes back to the host",
    )
    part.add_argument(
        "--keep-all-regions",
        action="store_true",
        help="offload every region a target claims, however small",
    )
    part.add_argument("-v", "--verbose", action="store_true", help="print stage timings")
    part.set_defaults(run=cmd_partition)

    tgt = commands.add_parser(
        "targets", parents=[common], help="list installed targets or show one's support"
    )
    tgt.add_argument("--ops", metavar="NAME", help="print the support table of target NAME")
    tgt.set_defaults(run=cmd_targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ByocError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"byoc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("byoc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (byoc ... | head): not an error worth a message.
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # the last line of defence: a bug, not bad input
        if args.debug:
            traceback.print_exc()
        print(
            f"byoc: internal error: {type(exc).__name__}: {exc} (run with --debug for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
