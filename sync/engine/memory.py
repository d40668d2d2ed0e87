"""The cyclic garbage collector, paused where the engine makes millions of objects and no cycle."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Reading a listing and computing its statuses create no reference cycles, but their millions of new
    objects would trigger collections that scan every image already in memory: the collector is paused for
    the block, then re-enabled as it was found (the objects are freed by reference counting meanwhile)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
