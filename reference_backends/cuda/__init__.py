"""cuda: the bundled target that generates CUDA C kernels."""

from reference_backends.cuda.target import target

__all__ = ["target"]
