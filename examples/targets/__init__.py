"""Worked example targets: one per artifact kind a codegen can return.

All three run the same small op set — float32 elementwise ops and MatMul with a
constant weight, on static shapes — so they differ only in what their codegen emits and
how that runs:

* :mod:`.c_elementwise` (target ``cdemo``): C source, compiled by byoc and called
  through the native core (:class:`byoc_sdk.CSource`);
* :mod:`.json_graph` (target ``jsondemo``): a JSON graph interpreted by a vendor
  runtime (:class:`byoc_sdk.JsonGraph`), the runtime in :mod:`.json_graph_runtime`;
* :mod:`.bytecode` (target ``bytedemo``): a small bytecode program loaded by a vendor
  runtime (:class:`byoc_sdk.Binary`), the format and runtime in :mod:`.bytecode_runtime`.

The codegen halves share :mod:`.ops` (what the targets support, and a region flattened
into a list of ops); the runtime halves share :mod:`.kernels` (the ops in numpy). The
runtime modules never import a codegen module, so a package built with these targets
runs where only the runtimes are installed.
"""
