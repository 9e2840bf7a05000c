"""vfio-scan: is this Linux host ready for VFIO PCI passthrough, and if not, what fixes it.

The package root stays tiny on purpose: ``vfio-scan --version`` imports only this module,
so start-up cost is paid only by the commands that need the engine.
"""

__version__ = "0.1.0"

PROJECT = "vfio_scan"  #: pluggy project name and entry-point group


def __getattr__(name):
    # ``scanner.hookimpl`` is the public marker for plugins; pluggy is imported only on first use.
    if name == "hookimpl":
        from scanner.engine.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'scanner' has no attribute {name!r}")
