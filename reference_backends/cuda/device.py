"""Whether this machine has a CUDA GPU, asked of the driver without the CUDA toolkit.

Tests and benchmarks use it to skip what needs a device; the build does not (a package
built here may run on another machine).
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def device_count() -> int:
    """CUDA devices the driver sees: 0 without a driver or without devices."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value
