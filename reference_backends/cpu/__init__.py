"""cpu: the bundled target that generates C code for the host CPU.

``target`` is the support table (``target.py``); its codegen (``codegen.generate``)
turns each region into one C source file, see ``docs/backends/cpu.md``.
"""

from reference_backends.cpu.codegen import generate
from reference_backends.cpu.target import target

target.codegen = generate

__all__ = ["generate", "target"]
