"""Plugins: built-ins and third-party entry points (group ``vfio_scan``), and what happens when one is broken.

Third-party plugins are real installed distributions (a module plus a ``.dist-info`` with
``entry_points.txt``) found through PYTHONPATH by a real ``python -m scanner`` subprocess.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import types

import pytest

from clihelpers import (BUILTIN_IDS, HOST_IDS, READY_HOST_IDS, DEVICE_IDS, ACME_RULE, GOOD_PLUGIN, NON_FINDING_PLUGIN, RAISING_PLUGIN, by_rule, make_plugin,
                        no_dmar_host, plugin_with_rule, run_cli, scan_json, stderr_lines)
from scanner import hookimpl
from scanner.engine.model import Finding, Rule, RuleDefinitionError
from scanner.engine.plugins import BUILTIN_PLUGINS, load_plugins


BROKEN_PLUGINS = {
    "import-error": '''
        raise ImportError("acme_vfio needs libacme, which is not installed")
    ''',
    "syntax-error": '''
        def vfio_scan_register_rules(register:
    ''',
    "bad-id": plugin_with_rule(ACME_RULE.replace('id="ACME-100"', 'id="acme_100"')),
    "empty-docs": plugin_with_rule(ACME_RULE.replace("docs=__doc__", 'docs="   "')),
    "duplicate-id": plugin_with_rule(ACME_RULE.replace('id="ACME-100"', 'id="VFIO-001"')),
    "bad-severity": plugin_with_rule(ACME_RULE.replace('severity="low"', 'severity="urgent"')),
    "unknown-hook": GOOD_PLUGIN + '''

    @hookimpl
    def vfio_scan_register_rulez(register):
        pass
    ''',
    # registers a good rule, then a bad one: the good one must be rolled back too
    "partly-bad": '''
        """ACME-100 / ACME-101 docs."""
        from scanner import hookimpl
        from scanner.engine.model import Finding, Rule

        @hookimpl
        def vfio_scan_register_rules(register):
            register(Rule(id="ACME-100", name="acme-firmware", scope="host", severity="low",
                          title="ACME firmware is recent", check=check, docs=__doc__))
            register(Rule(id="ACME-101", name="acme-firmware-2", scope="sideways", severity="low",
                          title="second", check=check, docs=__doc__))

        def check(facts, scan):
            yield Finding.passed("ok")
    ''',
    "register-raises": '''
        from scanner import hookimpl

        @hookimpl
        def vfio_scan_register_rules(register):
            raise KeyError("acme config")
    ''',
}


@pytest.fixture
def good_plugin(tmp_path):
    return make_plugin(tmp_path / "site", GOOD_PLUGIN)


def warning_lines(proc):
    return [l for l in stderr_lines(proc) if "warning" in l]


# -- a good third-party plugin -----------------------------------------------------------------

def test_plugin_rule_is_listed(good_plugin):
    proc = run_cli("rules", pythonpath=good_plugin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    line = next((l for l in proc.stdout.splitlines() if l.startswith("ACME-100")), None)
    assert line is not None, proc.stdout
    assert "acme-firmware" in line and "ACME firmware is recent" in line
    for rule_id in BUILTIN_IDS:
        assert rule_id in proc.stdout


def test_plugin_is_shown_with_its_source(good_plugin):
    proc = run_cli("plugins", pythonpath=good_plugin)
    assert proc.returncode == 0, proc.stderr
    line = next((l for l in proc.stdout.splitlines() if l.startswith("acme ")), None)
    assert line is not None, proc.stdout
    assert "ACME-100" in line and "ok" in line
    assert "entry point acme_vfio" in line  # where it came from (the table may wrap the distribution)
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--format", "json", pythonpath=good_plugin).stdout)}
    assert plugins["acme"]["source"] == "entry point acme_vfio (acme-vfio 1.0)"
    assert plugins["acme"]["rules"] == ["ACME-100"]
    assert plugins["acme"]["error"] is None


def test_plugin_explain(good_plugin):
    proc = run_cli("explain", "ACME-100", pythonpath=good_plugin)
    assert proc.returncode == 0
    assert "flash firmware 2.1" in proc.stdout
    assert "from: acme" in proc.stdout


def test_plugin_finding_in_scan(intel_host, good_plugin):
    proc, doc = scan_json(intel_host.root, pythonpath=good_plugin)
    assert proc.returncode == 0, proc.stderr
    acme = by_rule(doc)["ACME-100"]
    assert acme["status"] == "pass"
    assert acme["rule"] == "acme-firmware"
    assert acme["severity"] == "low"
    assert acme["message"] == "ACME firmware 2.1 is recent enough"
    assert sorted(by_rule(doc)) == sorted(BUILTIN_IDS + ["ACME-100"])


def test_plugin_rule_can_be_selected(intel_host, good_plugin):
    proc, doc = scan_json(intel_host.root, "--rule", "acme-firmware", pythonpath=good_plugin)
    assert proc.returncode == 0
    assert list(by_rule(doc)) == ["ACME-100"]


def test_disable_plugins_env(intel_host, good_plugin):
    env = {"VFIO_SCAN_DISABLE_PLUGINS": "1"}
    assert "ACME-100" not in run_cli("rules", pythonpath=good_plugin, **env).stdout
    plugins = [p["name"] for p in json.loads(run_cli("plugins", "--format", "json", pythonpath=good_plugin, **env).stdout)]
    assert "acme" not in plugins
    assert "rules.kernel_cmdline" in plugins  # built-ins still load
    proc, doc = scan_json(intel_host.root, pythonpath=good_plugin, **env)
    assert "ACME-100" not in by_rule(doc)
    assert sorted(by_rule(doc)) == BUILTIN_IDS


# -- broken third-party plugins ------------------------------------------------------------------

@pytest.fixture(params=sorted(BROKEN_PLUGINS))
def broken_plugin(request, tmp_path):
    return make_plugin(tmp_path / "site", BROKEN_PLUGINS[request.param])


def test_broken_plugin_is_one_warning(broken_plugin, intel_host):
    proc, doc = scan_json(intel_host.root, pythonpath=broken_plugin)
    assert proc.returncode == 0, proc.stderr  # exit code unaffected: the built-in scan is READY
    assert "Traceback" not in proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "warning" in lines[0] and "'acme'" in lines[0] and "acme_vfio" in lines[0]
    assert sorted(by_rule(doc)) == BUILTIN_IDS  # nothing of the broken plugin was registered
    assert all(f["status"] == "pass" for f in doc["findings"] if f["rule_id"] in READY_HOST_IDS)


def test_broken_plugin_does_not_change_a_failing_exit(broken_plugin, tmp_path):
    proc = run_cli("scan", "--root", no_dmar_host(tmp_path / "h").root, pythonpath=broken_plugin)
    assert proc.returncode == 1
    assert len(warning_lines(proc)) == 1


def test_broken_plugin_in_rules_and_plugins(broken_plugin):
    rules = run_cli("rules", pythonpath=broken_plugin)
    assert rules.returncode == 0
    assert len(warning_lines(rules)) == 1
    assert "ACME-10" not in rules.stdout
    listing = run_cli("plugins", "--format", "json", pythonpath=broken_plugin)
    assert listing.returncode == 0
    acme = {p["name"]: p for p in json.loads(listing.stdout)}["acme"]
    assert acme["error"], acme
    assert acme["rules"] == []
    table = run_cli("plugins", pythonpath=broken_plugin)
    assert "FAILED" in table.stdout


def test_broken_plugin_strict(broken_plugin, intel_host):
    proc = run_cli("scan", "--root", intel_host.root, "--strict-plugins", pythonpath=broken_plugin)
    assert proc.returncode == 2
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "'acme'" in lines[0] and "--strict-plugins" in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # refused before scanning
    assert run_cli("rules", "--strict-plugins", pythonpath=broken_plugin).returncode == 2


def test_broken_plugin_disabled(broken_plugin, intel_host):
    proc = run_cli("scan", "--root", intel_host.root, "--strict-plugins", pythonpath=broken_plugin,
                   VFIO_SCAN_DISABLE_PLUGINS="1")
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_good_plugin_strict(good_plugin, intel_host):
    assert run_cli("scan", "--root", intel_host.root, "--strict-plugins", pythonpath=good_plugin).returncode == 0


@pytest.mark.parametrize("kind, reason", [
    ("import-error", "ImportError: acme_vfio needs libacme"),
    ("bad-id", "acme_100"),
    ("empty-docs", "docs are empty"),
    ("duplicate-id", "VFIO-001 is already registered by rules.cpu_virtualization"),
    ("partly-bad", "sideways"),
])
def test_warning_says_why(kind, reason, tmp_path):
    proc = run_cli("rules", pythonpath=make_plugin(tmp_path / "site", BROKEN_PLUGINS[kind]))
    assert reason in proc.stderr


def test_duplicate_id_keeps_the_builtin(tmp_path):
    site = make_plugin(tmp_path / "site", BROKEN_PLUGINS["duplicate-id"])
    rules = {r["id"]: r for r in json.loads(run_cli("rules", "--format", "json", pythonpath=site).stdout)}
    assert rules["VFIO-001"]["plugin"] == "rules.cpu_virtualization"
    assert rules["VFIO-001"]["name"] == "cpu-virtualization"


def test_one_broken_plugin_does_not_stop_another(tmp_path, intel_host):
    site = make_plugin(tmp_path / "site", GOOD_PLUGIN)
    make_plugin(site, BROKEN_PLUGINS["import-error"], module="broken_vfio", ep_name="broken", dist="broken-vfio")
    proc, doc = scan_json(intel_host.root, pythonpath=site)
    assert proc.returncode == 0
    assert by_rule(doc)["ACME-100"]["status"] == "pass"
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "'broken'" in lines[0]


# -- plugins whose rules misbehave at scan time ---------------------------------------------

def test_raising_check_is_an_error_finding(intel_host, tmp_path):
    site = make_plugin(tmp_path / "site", RAISING_PLUGIN)
    proc, doc = scan_json(intel_host.root, pythonpath=site)
    assert proc.returncode == 3
    assert proc.stderr == ""  # the plugin loaded fine; the error is in the report
    acme = by_rule(doc)["ACME-100"]
    assert acme["status"] == "error"
    assert "acme" in acme["message"] and "RuntimeError" in acme["message"]
    assert all(by_rule(doc)[r]["status"] == "pass" for r in READY_HOST_IDS)


def test_raising_check_in_table_and_junit(intel_host, tmp_path):
    site = make_plugin(tmp_path / "site", RAISING_PLUGIN)
    table = run_cli("scan", "--root", intel_host.root, pythonpath=site)
    assert table.returncode == 3
    assert "ERROR" in table.stdout and "ACME-100" in table.stdout
    junit = run_cli("scan", "--root", intel_host.root, "--format", "junit", pythonpath=site)
    assert junit.returncode == 3
    assert "<error" in junit.stdout and "acme firmware query exploded" in junit.stdout


def test_non_finding_is_an_error_naming_the_plugin(intel_host, tmp_path):
    site = make_plugin(tmp_path / "site", NON_FINDING_PLUGIN)
    proc, doc = scan_json(intel_host.root, pythonpath=site)
    assert proc.returncode == 3
    acme = by_rule(doc)["ACME-100"]
    assert acme["status"] == "error"
    assert "plugin acme" in acme["message"]
    assert "dict" in acme["message"] and "not a Finding" in acme["message"]
    assert all(by_rule(doc)[r]["status"] == "pass" for r in READY_HOST_IDS)


def test_check_yielding_nothing_is_an_error(intel_host, tmp_path):
    site = make_plugin(tmp_path / "site", plugin_with_rule(ACME_RULE, "return iter(())"))
    proc, doc = scan_json(intel_host.root, pythonpath=site)
    assert proc.returncode == 3
    assert by_rule(doc)["ACME-100"]["status"] == "error"


# -- in-process API --------------------------------------------------------------------------

def _inline_plugin(rule_id="INL-001", docs="INL-001 inline-rule: docs."):
    module = types.ModuleType("inline_vfio_plugin")

    def check(facts, scan):
        yield Finding.warn("inline warning")

    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule(id=rule_id, name="inline-rule", scope="host", severity="medium", title="Inline rule",
                      check=check, docs=docs))

    module.vfio_scan_register_rules = vfio_scan_register_rules
    return module


def test_load_plugins_extra_inline():
    registry = load_plugins(extra=[_inline_plugin()], autoload=False)
    assert registry.failures == []
    rule = registry.rules["INL-001"]
    assert rule.plugin == "inline_vfio_plugin"
    info = {p.name: p for p in registry.plugins}["inline_vfio_plugin"]
    assert info.source == "inline" and info.rules == ["INL-001"]
    assert [r.id for r in registry.sorted_rules()] == sorted(BUILTIN_IDS + ["INL-001"])


def test_load_plugins_inline_failure_is_recorded():
    registry = load_plugins(extra=[_inline_plugin(docs="")], autoload=False)
    assert "INL-001" not in registry.rules
    assert [p.name for p in registry.failures] == ["inline_vfio_plugin"]
    assert "docs are empty" in registry.failures[0].error


def test_autoload_false_ignores_entry_points(good_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(good_plugin))
    importlib.invalidate_caches()
    assert "ACME-100" in load_plugins().rules  # found through the entry point...
    assert "ACME-100" not in load_plugins(autoload=False).rules  # ...unless autoloading is off
    monkeypatch.setenv("VFIO_SCAN_DISABLE_PLUGINS", "1")
    assert "ACME-100" not in load_plugins().rules
    sys.modules.pop("acme_vfio", None)


@pytest.mark.parametrize("field, value, complaint", [
    ("id", "VFIO-1", "does not match"),
    ("id", "vfio-001", "does not match"),
    ("name", "Kernel_Cmdline", "lower-case"),
    ("title", " ", "title is empty"),
    ("scope", "cluster", "scope"),
    ("severity", "urgent", "severity"),
    ("docs", "", "docs are empty"),
    ("docs", None, "docs are empty"),
    ("check", "not callable", "check is not callable"),
])
def test_rule_validate(field, value, complaint):
    kwargs = dict(id="ACME-100", name="acme-firmware", title="t", scope="host", severity="low",
                  check=lambda facts, scan: (), docs="ACME-100 docs")
    Rule(**kwargs).validate()
    kwargs[field] = value
    with pytest.raises(RuleDefinitionError, match=complaint):
        Rule(**kwargs).validate()


# -- built-in rules are documented -------------------------------------------------------------

def test_builtins_load_cleanly():
    registry = load_plugins(autoload=False)
    assert registry.failures == [], [(p.name, p.error) for p in registry.failures]
    assert [r.id for r in registry.sorted_rules()] == BUILTIN_IDS
    assert [p.name for p in registry.plugins] == list(BUILTIN_PLUGINS)
    for info in registry.plugins:
        assert info.source == "builtin"
        if info.name.startswith("rules."):
            assert info.rules, f"{info.name} registered no rule"


def test_every_builtin_rule_has_docs_mentioning_its_id():
    """``vfio-scan explain`` shows the docs: every built-in rule must have them (what, why, how, fix).

    A rule module without a docstring either fails to load (then it is missing from the
    registry: the first assertion catches it) or ends up here with docs that do not name it.
    """
    registry = load_plugins(autoload=False)
    builtin_rule_modules = [name for name in BUILTIN_PLUGINS if name.startswith("rules.")]
    loaded = {p.name: p for p in registry.plugins}
    for module in builtin_rule_modules:
        assert loaded[module].error is None, f"{module}: {loaded[module].error}"
        assert loaded[module].rules, f"{module} registered no rule"
    rules = [r for r in registry.sorted_rules() if r.plugin in builtin_rule_modules]
    assert len(rules) >= len(builtin_rule_modules)
    for rule in rules:
        docs = textwrap.dedent(rule.docs or "").strip()
        assert docs, f"{rule.id} has no docs"
        assert rule.id in docs, f"{rule.id}: docs do not mention the rule id"
        assert len(docs.split()) >= 30, f"{rule.id}: docs are too thin to explain the rule"


def _odd_plugin_module():
    """A plugin module whose names are of every kind pluggy tells apart: hooks as a function, a
    staticmethod and a bound method, a marked class and callable, builtins, data, a module."""
    module = types.ModuleType("acme_odd")

    class Holder:
        @hookimpl
        def vfio_scan_register_formats(self, register):
            pass

    @hookimpl
    def vfio_scan_register_rules(register):
        pass

    class Marked:
        vfio_scan_impl = {}

    module.__dict__.update(vfio_scan_register_rules=vfio_scan_register_rules,
                           vfio_scan_register_formats=Holder().vfio_scan_register_formats,
                           static_hook=staticmethod(hookimpl(lambda register: None)), Marked=Marked,
                           called=Marked(), length=len, text="x", json=json, nothing=None, plain=lambda: None)
    return module


@pytest.mark.parametrize("name", list(BUILTIN_PLUGINS) + ["odd"])
def test_the_loaders_manager_finds_the_hooks_pluggy_finds(name):
    """The loader's pluggy manager passes a module's imports and data over without asking pluggy:
    every name of every plugin still gets pluggy's own answer."""
    import pluggy

    from scanner.engine.plugins import _Manager

    plugin = _odd_plugin_module() if name == "odd" else importlib.import_module(name)
    ours, pluggys = _Manager("vfio_scan"), pluggy.PluginManager("vfio_scan")
    names = dir(plugin) + ["absent"]
    assert [_answer(ours, plugin, n) for n in names] == [_answer(pluggys, plugin, n) for n in names]
    assert any(ours.parse_hookimpl_opts(plugin, n) is not None for n in names)


def _answer(manager, plugin, name):
    """What the manager says of one name: its options, or the error it raises (pluggy before 1.7 raises
    AttributeError for a name the plugin does not have)."""
    try:
        return manager.parse_hookimpl_opts(plugin, name)
    except Exception as exc:
        return type(exc)
