"""The ``byoc`` command.

Every failure a user can cause prints one line, ``byoc: error: ...``, naming the file,
node, target and region that apply, and exits with code 2; ``--debug`` shows the
traceback instead. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from byoc_sdk.conformance.commands import cmd_conformance, cmd_new_backend
from byoc_sdk.conformance.timeout import DEFAULT_TIMEOUT, seconds_option
from byoc_sdk.errors import ByocError, OnnxRuntimeError, onnxruntime_reason

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2

#: Models with at least this many nodes get stage-by-stage progress on stderr.
PROGRESS_NODES = 10_000


def _load_with_progress(args: argparse.Namespace):
    """Load ``args.model`` and pick the stage reporter: timings with ``-v``, stage names
    alone for models big enough to take a while, silence otherwise."""
    from byoc_sdk.loader import load_model

    say = _progress(True) if args.verbose else _quiet
    say("load")
    model = load_model(args.model, input_shapes=dict(args.input_shape or []) or None)
    if not args.verbose and model.graph.num_nodes() >= PROGRESS_NODES:
        say = _progress(False)
    return model, say


def _quiet(_stage: str) -> None:
    """The stage reporter of small jobs: nothing to report."""


def _progress(verbose: bool) -> Callable[[str], None]:
    """Print each stage as it starts; with ``verbose``, also the time the previous one
    took. Call it with "done" after the last stage to close the account."""
    started = [time.perf_counter(), ""]

    def say(stage: str) -> None:
        now = time.perf_counter()
        if verbose and started[1]:
            print(f"  {started[1]}: {now - started[0]:.2f} s", file=sys.stderr)
        if stage != "done":
            print(f"byoc: {stage}...", file=sys.stderr)
        started[:] = [now, stage]

    return say


def _naming(parser: argparse.ArgumentParser, *flags: str, noun: str = "path",
            **options: Any) -> None:
    """Add to ``parser`` an argument that names something (a file or folder to read or to
    write, by default), and record it in the command's ``named`` default, by dest, as its
    usage text shows it: :func:`_check_names` refuses it empty. Recorded per command, for
    one dest names different things in different commands (``package``: the package
    file of ``run``, the Python package of ``new-backend``)."""
    action = parser.add_argument(*flags, **options)
    shown = "/".join(action.option_strings) or action.dest
    parser.set_defaults(named={**(parser.get_default("named") or {}),
                               action.dest: (shown, noun)})


def _check_names(args: argparse.Namespace) -> None:
    """Refuse, before any work, what argparse takes but no command can use: a blank target
    name, which the registry's "unknown target" error would not show, and an empty path
    (or list of ops), which would silently mean the default, or no file at all, or come
    back as an error about another thing (a model file named ".")."""
    names = getattr(args, "target", None)  # a list for partition and build
    for name in [names] if isinstance(names, str) else names or ():
        if not name.strip():
            from byoc_sdk.registry import target_names

            known = ", ".join(target_names()) or "none"
            raise ByocError(f"target {name!r}: empty target name; installed targets: {known}")
    for dest, (shown, noun) in getattr(args, "named", {}).items():
        value = getattr(args, dest)
        if value == "" or (isinstance(value, list) and "" in value):  # a list: repeatable
            leave = ", or leave the option out" if shown.startswith("-") else ""
            raise ByocError(f"argument {shown}: empty {noun}; give a {noun}{leave}")


def _writable(path: Path, what: str) -> Path:
    """Refuse an output path up front, before any work or any other output is written."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ByocError(f"cannot write the {what}: folder {folder} does not exist", file=str(path))
    if path.is_dir():
        raise ByocError(f"cannot write the {what}: it is a directory", file=str(path))
    return path


def _writable_folder(path: Path, what: str) -> Path:
    """Refuse up front a folder that cannot be made or written (it is a file, or lies
    under one, or its nearest existing folder is read-only), before the work is done."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "it is" if existing == path else f"{existing} is"
        raise ByocError(f"cannot write the {what}: {where} a file, not a folder",
                        file=str(path))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ByocError(f"cannot write the {what}: folder {existing} is not writable",
                        file=str(path))
    return path


def _distinct(args: argparse.Namespace, *paths: tuple[str, str | Path | None]) -> None:
    """Refuse, as a usage error, two of ``paths`` (option, path) that name one file: the
    later write would replace the earlier one's file, or the input it was made from."""
    seen: dict[Path, str] = {}
    for option, path in paths:
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            args.usage_error(f"argument {option}: {path} is the same file as {seen[key]}, "
                             "which it would overwrite; give another path")
        seen[key] = option


def _write(path: Path, what: str, write: Callable[[Path], None]) -> None:
    try:
        write(path)
    except OSError as exc:
        raise ByocError(f"cannot write the {what}: {exc.strerror or exc}", file=str(path)) from exc


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        # Raised as ArgumentTypeError, argparse shows this message, not the type's name.
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _non_negative(text: str) -> int:
    # A seed too: numpy's generators take no negative seed (they would fail only once
    # the package has been loaded).
    return _integer(text, 0)


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    # A negative tolerance fails every comparison, and NaN makes numpy warn and fail.
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, not {text}")
    return value


def cmd_partition(args: argparse.Namespace) -> int:
    from byoc_sdk.dot import to_dot
    from partition.pipeline import partition_model

    output = Path(args.output) if args.output else Path(f"{Path(args.model).stem}.partitioned.onnx")
    _distinct(args, ("the model", args.model), ("--output", output), ("--dot", args.dot))
    _writable(output, "partitioned model")
    dot = _writable(Path(args.dot), "Graphviz file") if args.dot else None
    policy = _policy(args)
    model, say = _load_with_progress(args)
    result = partition_model(model, args.target, policy=policy, progress=say)
    say("save")
    _write(output, "partitioned model", result.save)
    if dot is not None:
        text = to_dot(result.model, result.report.targets)
        _write(dot, "Graphviz file", lambda path: path.write_text(text))
    say("done")
    if args.json:
        print(result.report.to_json())
        return EXIT_OK
    print(result.report.render(explain=args.explain))
    print(f"\nwrote {output}" + (f" and {args.dot}" if args.dot else ""))
    return EXIT_OK


def _shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """NAME=1x3x224x224 -> ("NAME", (1, 3, 224, 224))."""
    name, sep, dims = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, tuple(int(d) for d in dims.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected NAME=1x3x224x224, got {text!r}") from exc


def _policy(args: argparse.Namespace):
    from partition.policy import RegionPolicy

    if args.keep_all_regions:
        return RegionPolicy.keep_all()
    if args.min_region_size is not None:
        # A size rule alone: the compute-heavy rule would drop small regions whatever N is.
        return RegionPolicy(min_nodes=args.min_region_size, require_compute=False)
    return None


def cmd_build(args: argparse.Namespace) -> int:
    import json

    from byoc_sdk.build import build

    output = Path(args.output) if args.output else Path(f"{Path(args.model).stem}.byoc")
    _distinct(args, ("the model", args.model), ("--output", output))
    _writable(output, "package")
    tuning = None
    if args.tuning:
        try:
            tuning = json.loads(Path(args.tuning).read_text())
        except (OSError, ValueError) as exc:
            raise ByocError(f"cannot read tuning records: {exc}", file=args.tuning) from exc
        # {region: {option: value}}: anything else would fail deep in the codegen options.
        if not isinstance(tuning, dict) or not all(isinstance(v, dict) for v in tuning.values()):
            raise ByocError("tuning records must be a JSON object of objects, "
                            '{"region": {"option": value}}', file=args.tuning)
    model, say = _load_with_progress(args)
    compiled = build(
        model, args.target, strict=args.strict, policy=_policy(args), tuning=tuning,
        progress=say, progress_bar=sys.stderr.isatty(),
    )
    say("save")
    _write(output, "package", compiled.save)
    say("done")
    print(compiled.report.render())
    print(f"\nwrote {output}")
    return EXIT_OK


def _feeds(args: argparse.Namespace, compiled) -> dict:
    import numpy as np

    from byoc_sdk.testing import random_array

    feeds = {}
    for item in args.input or []:
        name, sep, file = item.partition("=")
        if not sep:
            raise ByocError(f"--input expects NAME=FILE.npy, got {item!r}")
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ByocError(f"cannot read input '{name}': {exc}", file=file) from exc
        # A .npy written on (or for) a big-endian machine holds the same numbers; the
        # runtime compares dtypes, and '>f4' is not float32 to it.
        feeds[name] = array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
    if args.random_inputs:
        rng = np.random.default_rng(args.seed)
        for spec in compiled.inputs:
            if spec.name in feeds:
                continue
            if any(d < 0 for d in spec.shape):
                raise ByocError(f"input '{spec.name}' has a dynamic shape {spec.shape}; "
                                "give it with --input NAME=FILE.npy")
            feeds[spec.name] = random_array(rng, spec.numpy_dtype, spec.shape)
    return feeds


def _output_files(folder: Path, names: Sequence[str]) -> dict[str, Path]:
    """Where ``--save-outputs`` saves each output: ``folder/NAME.npy``, with the characters
    no file name may hold ("/", NUL) as "_". Refused before the run when two outputs
    would share a file: the second would silently replace the first."""
    owners: dict[Path, str] = {}
    for name in dict.fromkeys(names):
        file = folder / f"{name.replace('/', '_').replace(chr(0), '_')}.npy"
        if file in owners:
            raise ByocError(f"cannot save outputs '{owners[file]}' and '{name}': both would "
                            f"be saved as {file.name}", file=str(folder))
        owners[file] = name
    return {name: file for file, name in owners.items()}


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from byoc_sdk.runtime import CompiledModel, Profile

    _distinct(args, ("the package", args.package), ("--profile", args.profile))
    if args.profile:
        _writable(Path(args.profile), "profile")
    if args.save_outputs:
        _writable_folder(Path(args.save_outputs), "outputs")
    compiled = CompiledModel.load(args.package, host_threads=args.host_threads)
    files = _output_files(Path(args.save_outputs), compiled.outputs) if args.save_outputs else {}
    feeds = _feeds(args, compiled)
    profile = Profile()
    outputs = {}
    for _ in range(args.repeat):
        outputs = compiled.run(feeds, profile=profile)
    print(f"outputs of {args.package}:")
    for name, array in outputs.items():
        stats = ""
        if array.size and array.dtype.kind in "fiub":
            stats = f"  min {array.min():.6g}  max {array.max():.6g}  mean {array.mean():.6g}"
        print(f"  {name}: {array.dtype}{tuple(array.shape)}{stats}")
    print(f"\ntime per target ({args.repeat} run{'s' if args.repeat > 1 else ''}):")
    print(profile.render_summary())
    plan = compiled.memory_plan
    bound = sum(step.bind is not None for step in compiled.steps)
    print(f"\n{bound} of {len(compiled.steps)} steps bound to planned buffers: "
          f"{len(plan.placement)} values in {len(plan.sizes)} buffers, "
          f"{plan.total_bytes / 1e6:.3g} MB per concurrent run")
    if args.profile:
        _write(Path(args.profile), "profile", profile.save)
        print(f"\nwrote {args.profile} (open in chrome://tracing or ui.perfetto.dev)")
    if args.save_outputs:
        folder = Path(args.save_outputs)
        _write(folder, "outputs", lambda path: path.mkdir(parents=True, exist_ok=True))
        for name, array in outputs.items():
            _write(files[name], f"output '{name}'",
                   lambda path, array=array: np.save(path, array))
    if args.check or args.reference:
        return _check(args, compiled, feeds, outputs)
    return EXIT_OK


def _check(args: argparse.Namespace, compiled, feeds: dict, outputs: dict) -> int:
    import numpy as np

    from byoc_sdk.loader import load_external_data, load_model
    from byoc_sdk.testing import close_elements, max_error, reference_scale, run_onnxruntime

    if args.reference:
        reference, label = load_model(args.reference), args.reference
        # onnxruntime gets the model as bytes, so it would look for external data in the
        # current folder rather than beside the model.
        load_external_data(reference)
    else:
        reference, label = compiled.package.model, "the partitioned model"
    try:
        expected = run_onnxruntime(reference, feeds)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        what = "the reference model" if args.reference else label  # the file is named
        raise OnnxRuntimeError(f"onnxruntime cannot run {what} on these inputs: "
                               f"{onnxruntime_reason(exc)}",
                               file=args.reference or args.package) from exc
    print(f"\ncheck against onnxruntime on {label} (rtol {args.rtol}, atol {args.atol}):")
    ok = True
    for name, want in expected.items():
        got = outputs.get(name)
        if got is None:
            print(f"  {name}: missing from the package's outputs")
            ok = False
            continue
        if got.shape != want.shape or got.dtype != want.dtype:
            print(f"  {name}: {got.dtype}{got.shape}, expected {want.dtype}{want.shape} "
                  "MISMATCH")
            ok = False
            continue
        # A NaN where onnxruntime has one too is the same result (a NaN weight, 0 * inf),
        # not a mismatch; a NaN on one side only still is.
        close = close_elements(got, want, rtol=args.rtol, atol=args.atol)
        bad = int(close.size - np.count_nonzero(close))
        ok &= not bad
        verdict = f"MISMATCH ({bad} of {close.size} elements)" if bad else "ok"
        if want.dtype.kind in "OSU":  # strings: equal or not, no distance
            print(f"  {name}: {'equal' if not bad else verdict}")
            continue
        scale = reference_scale(want)
        scaled = (f", atol {args.atol * scale:.3g} ({args.atol:g} x largest |value| "
                  f"{scale:.3g})" if scale > 1 else "")
        print(f"  {name}: max abs error {max_error(got, want):.3g}{scaled} {verdict}")
    return EXIT_OK if ok else EXIT_INTERNAL


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from byoc_sdk.package import read_package, stored_constant

    manifest, members = read_package(Path(args.package))
    if args.json:
        print(json.dumps({k: v for k, v in manifest.items() if k != "members"}, indent=2))
        return EXIT_OK
    size = sum(len(d) for d in members.values())
    constants = manifest["constants"]
    # A constant the manifest lists but no member holds is damage, named as run names it.
    const_bytes = sum(len(stored_constant(members, sha, args.package)) for sha in constants)
    print(f"package {args.package}: byoc {manifest['byoc_version']}, format "
          f"{manifest['format_version']}, built on {manifest['platform']['tag']}")
    print("targets: " + ", ".join(f"{n} {v}" for n, v in manifest["targets"].items()))
    for spec in manifest["inputs"]:
        print(f"input  {spec['name']}: {spec['dtype']}{tuple(spec['shape'])}")
    print(f"outputs: {', '.join(manifest['outputs'])}")
    print(f"{len(members)} members, {size / 1e6:.2f} MB; {len(constants)} constants, "
          f"{const_bytes / 1e6:.2f} MB, each stored once\n")
    print(f"{'region':<16}{'target':<11}{'kind':<10}{'status':<10}{'constants':>10}  detail")
    for region in manifest["regions"]:
        detail = region.get("entry") or region.get("runtime") or ""
        if region["status"] != "compiled":  # a fallback keeps no artifact, only why
            detail = region.get("reason", "")
        elif region.get("kind") == "c_source":
            libs = sorted(n.rsplit("/", 1)[1] for n in members
                          if n.startswith(f"regions/{region['name']}/lib/"))
            detail = f"entry {detail}; sources {', '.join(region['sources'])}; libs {libs}"
        elif detail:
            detail = f"runtime {detail}"
        print(f"{region['name']:<16}{region['target']:<11}{region.get('kind') or '-':<10}"
              f"{region['status']:<10}{len(region.get('constants', {})):>10}  {detail}")
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    from byoc_sdk.registry import get_target, target_names

    if args.target is not None:
        target = get_target(args.target)
        rows = target.support_table()
        print(f"{target.name} {target.version}: {target.description}".rstrip(": "))
        print(
            f"priority {target.priority}, merge style {target.merge_style}, "
            f"constants {target.constants}\n"
        )
        if not rows:
            print("declares no ops and no patterns")
            return EXIT_OK
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
    broken = 0
    for name in names:
        try:
            target = get_target(name)
        except ByocError as exc:  # one broken vendor package must not hide the others
            broken += 1
            print(f"{name:<12}{'-':<10}{'-':>8}  {'-':<9}{'-':>5}{'-':>10}  BROKEN: {exc.reason}")
            continue
        print(
            f"{name:<12}{target.version:<10}{target.priority:>8}  {target.merge_style:<9}"
            f"{sum(len(v) for v in target.ops.values()):>5}{len(target.patterns):>10}  "
            f"{target.description}"
        )
    return EXIT_USAGE if broken else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="byoc", description="Bring-your-own-codegen SDK for deep-learning accelerators."
    )
    # --debug works before or after the command; SUPPRESS keeps a subcommand's default
    # from overwriting a --debug given before it.
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # What partition and build share: the model, the targets, the region policy.
    partitioning = argparse.ArgumentParser(add_help=False)
    _naming(partitioning, "model", help="ONNX model file")
    partitioning.add_argument("--target", "-t", action="append", required=True,
                              help="target to offload to (repeat for several; priority decides)")
    partitioning.add_argument("--input-shape", action="append", type=_shape_option,
                              metavar="NAME=AxBxC",
                              help="fix an input's shape, e.g. input=1x3x224x224 (repeatable)")
    partitioning.add_argument("--min-region-size", type=_positive, metavar="N",
                              help="keep regions of at least N nodes, whatever they hold "
                              "(replaces target policies)")
    partitioning.add_argument("--keep-all-regions", action="store_true",
                              help="offload every region a target claims, however small")
    partitioning.add_argument("-v", "--verbose", action="store_true",
                              help="print stage timings")

    part = commands.add_parser(
        "partition", parents=[common, partitioning],
        help="partition an ONNX model between targets and the host",
        description="Fuse patterns, annotate, merge and partition MODEL; write the "
        "partitioned ONNX model and print a report.",
    )
    _naming(part, "-o", "--output", help="partitioned model path "
                      "(default: MODEL_STEM.partitioned.onnx in the current folder)")
    part.add_argument("--explain", action="store_true", help="say for every node why it went where")
    part.add_argument("--json", action="store_true", help="print the report as JSON")
    _naming(part, "--dot", metavar="FILE", help="write a Graphviz view coloured by target")
    part.set_defaults(run=cmd_partition, usage_error=part.error)

    bld = commands.add_parser(
        "build", parents=[common, partitioning],
        help="partition a model, compile its regions, write a package",
        description="Partition MODEL, generate and compile code for every region, and write "
        "a .byoc package. Regions that cannot be built fall back to the host (reported).",
    )
    _naming(bld, "-o", "--output", help="package path (default: MODEL_STEM.byoc)")
    bld.add_argument("--strict", action="store_true",
                     help="fail instead of falling back to the host when a region cannot build")
    _naming(bld, "--tuning", metavar="FILE.json",
                     help="tuned codegen parameters per region: {region: {option: value}}")
    bld.set_defaults(run=cmd_build, usage_error=bld.error)

    run = commands.add_parser(
        "run", parents=[common], help="run a package",
        description="Load PACKAGE (checking every checksum), run it, print its outputs and "
        "the time spent per target.",
    )
    _naming(run, "package", help=".byoc package")
    run.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input (.npy)")
    run.add_argument("--random-inputs", action="store_true",
                     help="random values for inputs not given with --input")
    run.add_argument("--seed", type=_non_negative, default=0, help="seed of --random-inputs")
    run.add_argument("--repeat", type=_positive, default=1, help="run N times (timing)")
    run.add_argument("--host-threads", type=_non_negative, default=0, metavar="N",
                     help="onnxruntime threads of each host step (default: 0, the CPUs "
                     "shared out among the host steps)")
    run.add_argument("--check", action="store_true",
                     help="compare with onnxruntime on the package's partitioned model")
    _naming(run, "--reference", metavar="MODEL.onnx",
                     help="compare with onnxruntime on this (original) model")
    run.add_argument("--rtol", type=_tolerance, default=1e-4,
                     help="relative tolerance of --check (of each value)")
    run.add_argument("--atol", type=_tolerance, default=1e-5,
                     help="absolute tolerance of --check, per unit of an output's largest "
                     "|value| (when above 1)")
    _naming(run, "--profile", metavar="FILE.json", help="write a Chrome trace of the steps")
    _naming(run, "--save-outputs", metavar="DIR", help="save outputs as DIR/NAME.npy")
    run.set_defaults(run=cmd_run, usage_error=run.error)

    ins = commands.add_parser("inspect", parents=[common], help="show what is inside a package")
    _naming(ins, "package", help=".byoc package")
    ins.add_argument("--json", action="store_true", help="print the manifest as JSON")
    ins.set_defaults(run=cmd_inspect)

    tgt = commands.add_parser(
        "targets", parents=[common], help="list installed targets or show one's support"
    )
    tgt.add_argument("--ops", dest="target", metavar="NAME",
                     help="print the support table of target NAME")
    tgt.set_defaults(run=cmd_targets)

    new = commands.add_parser(
        "new-backend", parents=[common], help="start a vendor backend from the template",
        description="Render the vendor template into DIR/NAME-byoc: an installable package "
        "with a target, a codegen, a runtime, tests and CI that pass conformance as generated.",
    )
    new.add_argument("name", help="target name (lowercase letters, digits and _)")
    new.add_argument("--kind", choices=("json", "c_source", "binary"), default="json",
                     help="what the codegen produces (default: json)")
    _naming(new, "-o", "--output", default=".", metavar="DIR",
                     help="folder to create the project in (default: the current one)")
    new.add_argument("--vendor", default="Example Silicon", help="the target's vendor")
    _naming(new, "--ops", noun="list of ops", default="Relu,Add,MatMul", metavar="OP,OP",
                     help="ops to start with (default: Relu,Add,MatMul)")
    _naming(new, "--package", noun="name", help="Python package name (default: NAME_byoc)")
    new.set_defaults(run=cmd_new_backend)

    cnf = commands.add_parser(
        "conformance", parents=[common], help="run the conformance suite on a target",
        description="Run the byoc conformance suite on installed target NAME; exit non-zero "
        "unless it conforms.",
    )
    cnf.add_argument("--target", "-t", required=True, help="installed target to check")
    _naming(cnf, "--report", metavar="FILE.json", help="write the report as JSON")
    _naming(cnf, "--junit", metavar="FILE.xml", help="write JUnit XML")
    cnf.add_argument("-k", dest="keyword", metavar="EXPR", help="only checks matching EXPR")
    _naming(cnf, "--xfail-file", metavar="FILE",
                     help="expected failures (default: conformance_xfail.txt beside the target)")
    _naming(cnf, "--model", action="append", metavar="FILE.onnx",
                     help="a model of your own (static input shapes) to check beside the "
                     "bundled ones; repeatable")
    cnf.add_argument("--timeout", type=seconds_option, default=DEFAULT_TIMEOUT,
                     metavar="SECONDS",
                     help="time limit of each check; one that runs longer fails as timed out "
                     f"and the rest run (default: {DEFAULT_TIMEOUT:g}; 0: no limit)")
    cnf.add_argument("-v", "--verbose", action="store_true", help="one line per check")
    cnf.set_defaults(run=cmd_conformance)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logger, handler = logging.getLogger("byoc"), None
    if args.debug:  # vendor checks and codegens that raised: their tracebacks too
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.DEBUG)
    try:
        _check_names(args)
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
    finally:  # main may run in-process (tests, notebooks): leave the logger as it was
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
