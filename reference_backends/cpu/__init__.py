"""cpu: the bundled target that generates C code for the host CPU."""

from reference_backends.cpu.target import target

__all__ = ["target"]
