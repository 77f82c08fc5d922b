"""Names for the nodes and functions the partitioner makes: readable, numbered per stem
(``simaccel_0``, ``conv_act_3``), and never a name the graph already has.

Node names must be unique: onnxruntime refuses a graph where two nodes share one
(after inlining functions too), and the runtime and the report tell nodes apart by name.
A model whose host node happens to be called ``simaccel_0`` must get its region named
otherwise, not a second ``simaccel_0``.
"""

from __future__ import annotations

from collections.abc import Container


def numbered(stem: str, start: int, taken: Container[str]) -> tuple[str, int]:
    """``<stem>_<k>`` for the smallest ``k >= start`` whose name is not ``taken``, and
    that ``k``."""
    k = start
    while f"{stem}_{k}" in taken:
        k += 1
    return f"{stem}_{k}", k
