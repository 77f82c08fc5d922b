"""The passes of the bring-your-own-codegen flow, one pass a module.

MergeComposite -> AnnotateTarget -> MergeRegions -> PartitionGraph; ``pipeline`` runs
them in order. Every pass is an ``onnx_ir`` in-place pass over an ``ir.Model``.
"""
