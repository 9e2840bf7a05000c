"""Cyclic garbage collection paused where a run makes many long-lived objects and next to no cyclic
garbage, so that its collections would walk them again and again and free nothing.

Three places: start-up (the command line pauses it before parsing; a command turns it back on once
its plugins are loaded, so that the scanning of many hosts runs with it), the rules of one host
(:func:`collector_paused`), and each host of many (the same, then the finished host freed at once).
"""

import gc
from contextlib import contextmanager

_gc_paused = False


def pause_gc() -> None:
    """Start-up (argparse, the command's modules, the plugins) allocates thousands of long-lived
    objects and next to no cyclic garbage: the collections it triggers find nothing to free, yet
    cost a few percent of a small scan. Cyclic GC is paused until :func:`end_of_startup`."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def end_of_startup() -> None:
    """Turn cyclic GC back on if the command line paused it: once plugins are loaded (the scanning of
    many hosts runs with it), else when the command ends. What start-up made is frozen first (moved
    out of the collected generations), or the first collection would walk all of it after all."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


@contextmanager
def collector_paused(free_after: bool = False):
    """Cyclic GC paused for the block and left as it was found after; with ``free_after``, the youngest
    generation (everything the block made, the collector having been paused) collected at its end.
    Nested or already paused: the block leaves it as it is."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        if free_after:
            gc.collect(0)
