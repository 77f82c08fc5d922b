"""cuda: the bundled target that generates CUDA C kernels.

``target`` is the support table (``target.py``); its codegen (``codegen.generate``)
turns each region into one CUDA source file, see ``docs/backends/cuda.md``.
"""

from reference_backends.cuda.codegen import generate
from reference_backends.cuda.target import target

target.codegen = generate

__all__ = ["generate", "target"]
