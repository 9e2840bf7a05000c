"""Start-up without cyclic garbage collection: paused by the CLI, turned back on when the work begins.

The command line pauses it before parsing; a command turns it back on once its plugins are loaded,
so that the scanning of many hosts runs with it.
"""

import gc

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
