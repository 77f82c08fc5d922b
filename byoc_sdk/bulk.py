"""Building large object graphs without paying for the cyclic garbage collector.

Loading a model and partitioning it each create a few long-lived objects per node and
almost no garbage cycles, yet each collection walks every young object: on a 100k-node
model, collections took about half the time of both. :func:`bulk_allocation` pauses the
collector for such work, then moves the survivors straight to the oldest generation
(``gc.freeze`` then ``gc.unfreeze``, which merges without scanning) instead of scanning
them twice on their way there. They stay collectable as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def bulk_allocation() -> Iterator[None]:
    """Pause the cyclic garbage collector while building long-lived objects."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()
