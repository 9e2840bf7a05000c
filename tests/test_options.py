"""The command line becomes typed options in one place, and argparse stops there.

* every option of every subcommand, found by walking the real parser, lands in a field of that
  command's options object (a new option the conversion forgets fails here), no two in one field;
* what a parsed command line turns into, field by field, defaults included;
* the options records are frozen, compared by value, and refuse a field they do not have;
* no module outside scanner/cli.py and scanner/commands/ imports argparse, and no command
  implementation takes or reads the namespace: only scanner/commands/options.py does.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from scanner.cli import COMMANDS, build_parser
from scanner.commands.options import (Connection, FleetHosts, FleetOptions, GateOptions, HostSource, Options, Outputs,
                                      PolicyChoice, ScanOptions, Targets, VmSide, from_namespace)

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("scanner", "rules", "reports")
#: The stand-alone collector (run on remote hosts as ``python3 - < collector.py``) is a program of its
#: own, with its own small command line; it never sees vfio-scan's.
OWN_PROGRAMS = {"scanner/collector.py"}


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _options_actions(subparser):
    return [a for a in subparser._actions if a.dest != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def _takes_many(action) -> bool:
    return isinstance(action, (argparse._AppendAction, argparse._ExtendAction)) or action.nargs in ("*", "+")


class Marker:
    """A value no option could have: found again only where the conversion carried it."""

    def __init__(self, dest):
        self.dest = dest

    def __repr__(self):
        return f"Marker({self.dest})"


def _paths_of(marker, value, path=""):
    """Where ``marker`` is in an options object: field paths such as ``policy.severities[0]``."""
    if value is marker:
        return [path]
    if isinstance(value, Options):
        return [p for name, field in value.items() for p in _paths_of(marker, field, f"{path}.{name}".lstrip("."))]
    if isinstance(value, (list, tuple)):
        return [p for i, item in enumerate(value) for p in _paths_of(marker, item, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_of_every_command_lands_in_a_field(command):
    subparser = _subparsers()[command]
    actions = _options_actions(subparser)
    assert actions, f"{command}: no options found"
    given = [command] + ["X" for a in actions if not a.option_strings and a.nargs is None]  # required positionals
    landed = {}
    for action in actions:
        marker = Marker(action.dest)
        namespace = build_parser().parse_args(given)
        setattr(namespace, action.dest, [marker] if _takes_many(action) else marker)
        paths = _paths_of(marker, from_namespace(namespace))
        assert len(paths) == 1, f"{command} {'/'.join(action.option_strings) or action.dest}: in {paths or 'no field'}"
        landed[action.dest] = paths[0]
    assert len(set(landed.values())) == len(landed), landed


def _parse(*argv):
    return from_namespace(build_parser().parse_args(list(argv)))


def test_a_scan_command_line_as_options():
    options = _parse("scan", "--root", "/t", "--kernel-log", "/t/dmesg", "--device", "01:00.0", "--device", "10de:2204",
                     "--class", "0300", "--vfs", "0000:3b:00.0=8", "--format", "json", "-o", "out.json",
                     "--junit", "j.xml", "--validate", "--fail-on", "high", "--rule", "VFIO-004", "--skip-rule", "x",
                     "--severity", "VFIO-006=critical", "--as-of", "2030-01-01", "--policy", "p.toml",
                     "--vm-user", "qemu", "--guest-memory", "16G", "--managed", "--strict-plugins")
    assert options == ScanOptions(
        command="scan",
        hosts=HostSource(root="/t", kernel_log="/t/dmesg"),
        targets=Targets(devices=("01:00.0", "10de:2204"), classes=("0300",), vfs=("0000:3b:00.0=8",)),
        policy=PolicyChoice(file="p.toml", rules=("VFIO-004",), skip_rules=("x",), severities=("VFIO-006=critical",),
                            fail_on="high", as_of="2030-01-01"),
        outputs=Outputs(format="json", output="out.json", junit_file="j.xml", validate=True),
        vm=VmSide(user="qemu", guest_memory="16G", managed=True),
        strict_plugins=True)


def test_defaults_as_options():
    assert _parse("scan") == ScanOptions(command="scan", hosts=HostSource(), targets=Targets(), policy=PolicyChoice(),
                                         outputs=Outputs(), vm=VmSide(), strict_plugins=False)
    assert _parse("fix").outputs.format == "script"
    assert _parse("scan", "--snapshot", "a.json", "b").hosts == HostSource(snapshots=("a.json", "b"))
    assert _parse("fleet", "h1") == FleetOptions(
        hosts=FleetHosts(names=("h1",), hosts_files=(), inventories=(), limits=()),
        connection=Connection(parallel=10, timeout=120.0, ssh_options=(), ssh_config=None, python="python3",
                              sudo=False, save_snapshots=None),
        scan=ScanOptions(command="fleet", hosts=HostSource(), targets=Targets(), policy=PolicyChoice(),
                         outputs=Outputs(), vm=VmSide(), strict_plugins=False))
    assert _parse("qemu-args", "--device", "01:00.0") == GateOptions(
        hosts=HostSource(), targets=Targets(devices=("01:00.0",)), policy=PolicyChoice(), strict_plugins=False,
        machine="q35")
    assert _parse("groups", "--root", "/t").hosts == HostSource(root="/t")


def test_options_are_frozen_records():
    source = HostSource(root="/t")
    with pytest.raises(AttributeError):
        source.root = "/elsewhere"
    with pytest.raises(AttributeError):
        del source.root
    assert source.replace(kernel_log="k") == HostSource(root="/t", kernel_log="k")
    assert source == HostSource(root="/t") and source != HostSource() and source != Targets()
    assert repr(source) == "HostSource(root='/t', kernel_log=None, snapshots=(), preset=None)"
    with pytest.raises(TypeError, match="no field rot"):
        HostSource(rot="/t")
    with pytest.raises(TypeError, match="hosts is required"):
        ScanOptions(command="scan")


# -- where argparse and the namespace may go ------------------------------------------------------

def _modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_argparse_stays_in_the_command_line_layer():
    allowed = {"scanner/cli.py"} | OWN_PROGRAMS
    offenders = [name for name, tree in _modules()
                 if not (name in allowed or name.startswith("scanner/commands/"))
                 and any(module.split(".")[0] == "argparse" for module in _imports(tree))]
    assert offenders == []


NAMESPACE_NAMES = {"args", "namespace", "ns"}


def test_commands_read_their_options_not_the_namespace():
    """Below the conversion (scanner/commands/options.py) nothing takes, names or imports the namespace."""
    checked = 0
    for name, tree in _modules():
        if not name.startswith("scanner/commands/") or name == "scanner/commands/options.py":
            continue
        checked += 1
        for node in ast.walk(tree):
            if isinstance(node, ast.arg):
                assert node.arg not in NAMESPACE_NAMES, f"{name}:{node.lineno}: takes {node.arg!r}"
            elif isinstance(node, ast.Name):
                assert node.id not in NAMESPACE_NAMES, f"{name}:{node.lineno}: reads {node.id!r}"
            elif isinstance(node, ast.Attribute):
                assert node.attr != "Namespace", f"{name}:{node.lineno}: names argparse.Namespace"
            elif isinstance(node, ast.FunctionDef) and node.name == "run":
                assert node.args.args[0].arg == "options", f"{name}:{node.lineno}: run() takes {node.args.args[0].arg}"
        assert "argparse" not in {m.split(".")[0] for m in _imports(tree)}, f"{name} imports argparse"
    assert checked >= len(set(module for module, _ in COMMANDS.values()))
