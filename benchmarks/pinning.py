"""Pinning a benchmark's threads to fixed cores.

An unpinned benchmark lets the scheduler move its thread between cores mid-run: the
thread then finds cold private caches (L1, L2) that its baseline, timed just before on
the other core, did not, and the two sides stop comparing like with like. Pinning the
process before it starts any thread keeps every later thread (OpenMP, onnxruntime,
PyTorch pools) on the same cores, since threads inherit their creator's affinity.

The last cores the process may use are taken, leaving core 0 (where the system tends to
put interrupts and other work) alone. ``BYOC_BENCH_PIN=0`` turns pinning off.
"""

from __future__ import annotations

import os


def pin_threads(count: int = 1) -> list[int]:
    """Restrict this process to ``count`` cores; return them (empty if not pinned).

    Call before anything starts a thread pool. Prints which cores were taken, so a
    benchmark's output says how it ran.
    """
    if os.environ.get("BYOC_BENCH_PIN", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        print("threads not pinned")
        return []
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[-count:] if count < len(allowed) else allowed
    os.sched_setaffinity(0, cores)
    print(f"pinned to core{'s' if len(cores) > 1 else ''} {', '.join(map(str, cores))}")
    return cores
