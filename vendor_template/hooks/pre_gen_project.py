"""Refuse answers that would generate a broken backend, before anything is written."""

import re
import sys

STARTER_OPS = {"Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp",
               "Add", "Sub", "Mul", "Div", "Max", "Min", "MatMul"}

target = {{ cookiecutter.target_name | jsonify }}
package = {{ cookiecutter.package_name | jsonify }}
kind = {{ cookiecutter.codegen_kind | jsonify }}
ops = [op.strip() for op in {{ cookiecutter.ops | jsonify }}.split(",") if op.strip()]

problems = []
if not re.fullmatch(r"[a-z][a-z0-9_]*", target):
    problems.append(f"target name {target!r} must be lowercase letters, digits and '_', "
                    "starting with a letter")
if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", package):
    problems.append(f"package name {package!r} is not a Python identifier")
if kind not in ("json", "c_source", "binary"):
    problems.append(f"codegen kind {kind!r} is not one of json, c_source, binary")
unknown = sorted(set(ops) - STARTER_OPS)
if unknown or not ops:
    problems.append(f"ops {unknown or ops} are not among the starter ops "
                    f"{', '.join(sorted(STARTER_OPS))}")
if problems:
    print("byoc vendor template: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
