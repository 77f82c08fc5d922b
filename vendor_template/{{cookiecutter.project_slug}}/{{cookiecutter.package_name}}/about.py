"""This backend's names, in one place: the target, the codegen and the runtime read them."""

#: The target's name: what users pass to ``byoc build --target``.
TARGET = {{ cookiecutter.target_name | jsonify }}
VENDOR = {{ cookiecutter.vendor_name | jsonify }}
VERSION = "0.1.0"
#: The name the runtime registers under (entry point group ``byoc.runtimes``).
RUNTIME = TARGET
#: The ops the target claims. Each needs a kernel (kernels.py for the numpy runtimes,
#: a case in codegen.py for C) and a support rule (target.py) — see README.md.
OPS: tuple[str, ...] = tuple({{ cookiecutter.ops.replace(" ", "").split(",") | jsonify(None) }})
#: The one composite the target fuses: Relu(x @ w + b), w and b constants.
DENSE_RELU = "matmul_add_relu"
