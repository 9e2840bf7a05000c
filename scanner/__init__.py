"""vfio-scan: is this Linux host ready for VFIO PCI passthrough, and if not, what fixes it.

The package root stays tiny on purpose: ``vfio-scan --version`` imports only this module,
so start-up cost is paid only by the commands that need the engine.
"""

__version__ = "0.1.0"

#: what a plugin module imports from ``scanner``: the hook marker and the rule model
_PLUGIN_API = {"hookimpl": "scanner.engine.hookspecs", "Rule": "scanner.engine.model",
               "Finding": "scanner.engine.model", "Evidence": "scanner.engine.model", "Step": "scanner.engine.model"}


def __getattr__(name):
    # The plugin API, imported only on first use (pluggy with ``hookimpl``): a plugin writes
    # ``from scanner import hookimpl, Finding, Rule`` and never depends on where they live inside.
    if name in _PLUGIN_API:
        import importlib

        return getattr(importlib.import_module(_PLUGIN_API[name]), name)
    raise AttributeError(f"module 'scanner' has no attribute {name!r}")
