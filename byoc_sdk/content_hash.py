"""Content hashes of constant tensors: how byoc tells interchangeable constants apart.

The hash covers element type, shape and bytes, so two initializers with equal hashes
can replace each other, and the package's constant store keeps each content once.
"""

from __future__ import annotations

import hashlib

import onnx_ir as ir

#: ``metadata_props`` key under which a constant value carries its content hash.
SHA256_KEY = "byoc.sha256"


def content_hash(tensor: ir.TensorProtocol) -> str:
    """Hex sha256 over dtype, shape and bytes."""
    digest = hashlib.sha256()
    # shape.dims of a tensor are plain ints: the same text as tuple(shape.numpy()), cheaper.
    digest.update(f"{tensor.dtype.name}{tuple(tensor.shape.dims)}".encode())
    digest.update(tensor.tobytes())
    return digest.hexdigest()


def constant_hash(value: ir.Value, tensor: ir.TensorProtocol | None = None) -> str:
    """The content hash of a constant value (its ``const_value``, or ``tensor`` for a
    Constant node's output): the one recorded on it, else computed now and recorded."""
    digest = value.metadata_props.get(SHA256_KEY)
    if digest is None:
        digest = content_hash(tensor if tensor is not None else value.const_value)
        value.metadata_props[SHA256_KEY] = digest
    return digest
