"""Plugin hooks of vfio-scan (pluggy project ``vfio_scan``).

Both hooks use the register-callback shape of llm and datasette: the core owns the registries,
a plugin only hands objects over, and duplicates or bad metadata are rejected centrally.
Built-in rules and formats are ordinary plugins registered through these same hooks;
third-party plugins come from the entry-point group ``vfio_scan``.

A plugin module looks like::

    from scanner import Finding, Rule, hookimpl

    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule(id="ACME-100", name="acme-firmware", scope="host", severity="low",
                      title="ACME firmware is recent", check=check, docs=__doc__))
"""

import pluggy

PROJECT = "vfio_scan"  #: pluggy project name and entry-point group

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)  #: decorator that marks a vfio-scan plugin hook


@hookspec
def vfio_scan_register_rules(register):
    """Register rules.

    :param register: call ``register(rule)`` with a :class:`scanner.engine.model.Rule` for each rule
        the plugin provides. The rule is validated on the spot (id pattern, unique id, scope,
        severity, non-empty docs); an invalid rule makes the plugin fail to load.

    A rule's ``check`` runs once per host under a guard: whatever it raises (``sys.exit()`` and
    BaseException subclasses too), and a check still running after ``VFIO_SCAN_PLUGIN_TIMEOUT``
    seconds (default 30), becomes that rule's ``error`` finding; the scan goes on (exit 3).
    """


@hookspec
def vfio_scan_register_formats(register):
    """Register output formats.

    :param register: call ``register(name, target, description)`` where ``target`` is a
        ``"module:function"`` string naming ``render(report, options) -> str``. The module is
        imported only when that format is asked for, so a plugin's heavy imports cost nothing
        to other commands. A renderer that raises, does not return text, or (a third-party one)
        runs past ``VFIO_SCAN_PLUGIN_TIMEOUT`` loses its own output only: one line on stderr names
        the format and the plugin, the other outputs are still written, and the exit code is 3.
    """
