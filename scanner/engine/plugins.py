"""Loading plugins: built-ins first, then each third-party entry point on its own.

Modelled on tox and llm: one pluggy manager, built-in rule and format modules registered like any
plugin, entry points of the group ``vfio_scan`` loaded one at a time so that a broken plugin
costs a warning (an error under ``--strict-plugins``), never the CLI. ``VFIO_SCAN_DISABLE_PLUGINS=1``
skips autoloading. Each plugin's hooks are called separately, so a failure is attributed to it
and whatever it registered before failing is rolled back.

A third-party plugin's import and hooks run under the engine's guard (scanner/engine/runner.py
:class:`~scanner.engine.runner.Deadline`): ``sys.exit()``, GeneratorExit or a BaseException of its own at
import is that plugin's failure, like any exception, and an import or hook that hangs is stopped
after ``VFIO_SCAN_PLUGIN_TIMEOUT`` seconds. A KeyboardInterrupt is the user's Ctrl-C wherever it
comes from -- a plugin cannot be told apart from the user here -- and ends the command (exit 130).
"""

from __future__ import annotations

import os
import types
from typing import Dict, List, Optional, Sequence

import pluggy

from scanner.base.record import field, record
from scanner.engine.hookspecs import PROJECT
from scanner.engine import hookspecs
from scanner.engine.runner import Deadline, PluginCrash, plugin_timeout
from scanner.engine.model import Rule, RuleDefinitionError

BUILTIN_PLUGINS = (
    "rules.cpu_virtualization",
    "rules.firmware_iommu",
    "rules.kernel_config",
    "rules.kernel_cmdline",
    "rules.iommu_active",
    "rules.interrupt_remapping",
    "rules.vfio_modules",
    "rules.device_present",
    "rules.sriov_pf",
    "rules.group_isolation",
    "rules.driver_binding",
    "rules.device_reset",
    "rules.boot_vga",
    "rules.next_boot",
    "rules.binding_persistence",
    "rules.vm_access",
    "rules.guest_memory_lock",
    "rules.boot_framebuffer",
    "rules.bar_window",
    "rules.rmrr",
    "rules.kernel_lockdown",
    "reports",
)
DISABLE_ENV = "VFIO_SCAN_DISABLE_PLUGINS"
HOOKS = ("vfio_scan_register_rules", "vfio_scan_register_formats")


@record(frozen=True)
class FormatSpec:
    """An output format: its name, the ``module:function`` that renders it, and the plugin that gave it."""

    name: str
    target: str  # "module:function"
    description: str
    plugin: str

    def load(self):
        """Import the renderer only now: formats cost nothing until asked for."""
        import importlib

        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


@record
class PluginInfo:
    """One plugin as ``vfio-scan plugins`` lists it: where it came from, what it gave, or why it failed."""

    name: str
    source: str  # "builtin" or "entry point <dist> <version>"
    hooks: List[str] = field(default_factory=list)
    rules: List[str] = field(default_factory=list)
    formats: List[str] = field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "hooks": self.hooks, "rules": self.rules,
                "formats": self.formats, "error": self.error}


@record
class Registry:
    """Everything the plugins registered: rules by id, formats by name, and every plugin."""

    rules: Dict[str, Rule] = field(default_factory=dict)
    formats: Dict[str, FormatSpec] = field(default_factory=dict)
    plugins: List[PluginInfo] = field(default_factory=list)

    @property
    def failures(self) -> List[PluginInfo]:
        return [p for p in self.plugins if p.error]

    def sorted_rules(self) -> List[Rule]:
        return sorted(self.rules.values(), key=lambda r: r.id)


#: what pluggy may take a hook implementation from: anything else in a module is passed over
_HOOKABLE = (types.FunctionType, types.MethodType, staticmethod, classmethod)
_ABSENT = object()


class _Manager(pluggy.PluginManager):
    """pluggy's manager, quicker to pass over what a plugin module imported.

    pluggy looks at every name in a plugin (``dir()``), each through ``inspect.getattr_static``;
    a rule module holds some twenty-five names (its imports, constants, classes), so registering
    the built-ins asked that about five hundred times, for ten hooks. A module's value that is no
    function, method, staticmethod or classmethod carries no hook to pluggy (it returns None for
    it, as here); every other name, and every plugin that is not a module, is pluggy's to judge.
    """

    def parse_hookimpl_opts(self, plugin, name):
        if isinstance(plugin, types.ModuleType):
            value = plugin.__dict__.get(name, _ABSENT)
            if value is not _ABSENT and not isinstance(value, _HOOKABLE):
                return None
        return super().parse_hookimpl_opts(plugin, name)


class _Loader:
    """One pluggy manager, used for loading only and thrown away after: a plugin that failed keeps
    nothing, since only what :meth:`_collect` accepted whole reaches the registry."""

    def __init__(self):
        self.pm = _Manager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.deadline = Deadline()  # guarded, no timer: load_plugins sets one for third-party plugins

    def add(self, plugin, name: str, source: str) -> None:
        info = PluginInfo(name=name, source=source)
        self.registry.plugins.append(info)
        try:  # pluggy reads the plugin's attributes and our hooks call its code: both guarded
            self.deadline.call(self._register, plugin, info)
        except PluginCrash as crash:
            info.error = str(crash)
            info.rules, info.formats = [], []

    def _register(self, plugin, info: PluginInfo) -> None:
        self.pm.register(plugin, name=info.name)  # pluggy validation: wrong hook arguments and the like
        hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or ())
        unknown = [hook for hook in hooks if hook not in HOOKS]
        if unknown:
            raise PluginCrash(f"unknown hook(s): {', '.join(unknown)} (known: {', '.join(HOOKS)})")
        info.hooks = hooks
        self._collect(plugin, info)

    def _collect(self, plugin, info: PluginInfo) -> None:
        rules: List[Rule] = []
        formats: List[FormatSpec] = []

        def register_rule(rule):
            if not isinstance(rule, Rule):
                raise RuleDefinitionError(f"register() wants a scanner.engine.model.Rule, got {type(rule).__name__}")
            rule.validate()
            if rule.id in self.registry.rules or any(r.id == rule.id for r in rules):
                owner = self.registry.rules[rule.id].plugin if rule.id in self.registry.rules else info.name
                raise RuleDefinitionError(f"rule id {rule.id} is already registered by {owner}")
            object.__setattr__(rule, "plugin", info.name)
            rules.append(rule)

        def register_format(name, target, description=""):
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"format name {name!r} is not a plain word")
            if name in self.registry.formats:
                raise ValueError(f"format {name!r} is already registered by {self.registry.formats[name].plugin}")
            if not isinstance(target, str) or ":" not in target:
                raise ValueError(f"format {name!r}: target must be 'module:function', got {target!r}")
            formats.append(FormatSpec(name, target, description, info.name))

        for hook, register in ((self.pm.hook.vfio_scan_register_rules, register_rule),
                               (self.pm.hook.vfio_scan_register_formats, register_format)):
            for impl in hook.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(*[register for _ in impl.argnames])
        for rule in rules:
            self.registry.rules[rule.id] = rule
        for spec in formats:
            self.registry.formats[spec.name] = spec
        info.rules = [r.id for r in rules]
        info.formats = [f.name for f in formats]

    def add_entry_points(self) -> None:
        # scanner.engine.entrypoints finds what importlib.metadata.entry_points(group=...) finds, without
        # importing importlib.metadata (which alone costs more than scanning a small machine).
        from scanner.engine.entrypoints import entry_points

        eps = entry_points(PROJECT)
        for ep in sorted(eps, key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.value}" + (f" ({dist.name} {dist.version})" if dist else "")
            try:
                plugin = self.deadline.call(ep.load)  # the plugin's import: its sys.exit() must not end the run
            except PluginCrash as crash:
                self.registry.plugins.append(PluginInfo(name=ep.name, source=source, error=str(crash)))
                continue
            self.add(plugin, ep.name, source)


def load_plugins(extra: Sequence = (), autoload: Optional[bool] = None) -> Registry:
    """Register built-ins, then ``extra`` plugin objects (tests), then entry points.

    Failures are recorded on the registry (``registry.failures``); the caller decides whether
    they are warnings or, under ``--strict-plugins``, an error. Built-ins load without a deadline
    (they are part of vfio-scan); ``extra`` and entry points each get ``VFIO_SCAN_PLUGIN_TIMEOUT``.
    """
    import importlib

    seconds = configured_timeout()
    loader = _Loader()
    for name in BUILTIN_PLUGINS:
        loader.add(importlib.import_module(name), name, "builtin")
    if autoload is None:
        autoload = os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes")
    with Deadline(seconds) as loader.deadline:
        for plugin in extra:
            loader.add(plugin, getattr(plugin, "__name__", repr(plugin)), "inline")
        if autoload:
            loader.add_entry_points()
    return loader.registry


def configured_timeout() -> float:
    """``VFIO_SCAN_PLUGIN_TIMEOUT``, checked before anything is loaded or scanned: a bad value is a usage error."""
    try:
        return plugin_timeout()
    except ValueError as exc:
        from scanner.base.errors import UsageError

        raise UsageError(str(exc)) from None


def check_formats(registry: Registry) -> List[PluginInfo]:
    """Import every format's renderer, so that ``vfio-scan plugins`` shows a format that cannot render
    (its module fails to import, its function is missing) as its plugin's failure; the plugins so
    marked. Only that command pays for the imports: a scan imports the one renderer it is asked for.
    """
    by_name = {info.name: info for info in registry.plugins}
    marked: List[PluginInfo] = []
    with Deadline(configured_timeout()) as deadline:
        for spec in registry.formats.values():
            try:
                deadline.call(_renderer_of, spec)
            except PluginCrash as crash:
                info = by_name[spec.plugin]
                why = f"format {spec.name!r}: {crash}"
                info.error = f"{info.error}; {why}" if info.error else why
                marked.append(info)
    return marked


def _renderer_of(spec: FormatSpec):
    renderer = spec.load()
    if not callable(renderer):
        raise PluginCrash(f"{spec.target} is a {type(renderer).__name__}, not a function")
    return renderer
