"""Read-only: no subcommand writes into the tree it reads, and a read-only tree scans the same.

* Every subcommand that reads a tree (scan in each format and with every output option, fix,
  groups, qemu-args, collect) and those that read none (rules, explain, plugins) leave the tree's
  fingerprint — content checksums, link targets, modes, owners and mtimes of every path, the
  root's included — and the working directory exactly as they were.
* While a scan runs and its report renders in every format, no function that writes is called
  at all (open for writing, os.open with a writing flag, mkdir, unlink, rename, chmod, ...).
* The Host and Facts layers have no write path in their source.
* A tree made read-only (``chmod -R a-w``) scans to the same findings: as root (who ignores the
  modes), as user ``nobody`` (who does not) and on a read-only bind mount (where even root gets
  EROFS), when this machine allows one.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hardening import REPO, as_nobody, fingerprint, require_nobody, scan, world_readable_base
from hosttree import workstation
from scanner.cli import main as cli_main
from scanner.engine.groups_document import groups_document
from scanner.facts import Facts
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins

TARGETS = ["--device", "01:00.0", "--device", "00:02.0", "--vfs", "0000:02:00.0=2"]


def odd_workstation(root):
    """The workstation tree plus things a scan may trip over: a FIFO, a link loop, a bad config.gz."""
    tree = workstation(root)
    tree.write("/proc/config.gz", b"not gzip at all")
    tree.write("/etc/modules-load.d/vfio.conf", "vfio\nvfio_virqfd\n")
    os.mkfifo(tree.path("/proc/kmsg"))
    tree.symlink("/etc/loop", "loop")
    return tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return odd_workstation(tmp_path_factory.mktemp("ro") / "ws")


def _commands(root, out):
    root = str(root)
    return {
        "scan-table": ["scan", "--root", root, "--verbose", *TARGETS],
        "scan-json": ["scan", "--root", root, "--format", "json", "--validate", *TARGETS],
        "scan-junit": ["scan", "--root", root, "--format", "junit", *TARGETS],
        "scan-script": ["scan", "--root", root, "--format", "script", *TARGETS],
        "scan-files": ["scan", "--root", root, "-o", f"{out}/o.txt", "--json", f"{out}/r.json",
                       "--junit", f"{out}/r.xml", "--fail-on", "warn"],
        "scan-host-only": ["scan", "--root", root, "--kernel-log", f"{root}/var/log/dmesg"],
        "fix": ["fix", "--root", root, *TARGETS],
        "groups-table": ["groups", "--root", root],
        "groups-json": ["groups", "--root", root, "--format", "json"],
        "qemu-args-blocked": ["qemu-args", "--root", root, "--device", "01:00.0"],
        "qemu-args-class": ["qemu-args", "--root", root, "--class", "0c03"],
        "collect": ["collect", "--root", root, "-o", f"{out}/snapshot.json"],
        "rules": ["rules"],
        "rules-json": ["rules", "--format", "json"],
        "explain": ["explain", "VFIO-012"],
        "plugins": ["plugins"],
    }


COMMAND_NAMES = sorted(_commands("/r", "/o"))


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_no_subcommand_writes_into_the_tree(tree, name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VFIO_SCAN_DISABLE_PLUGINS", "1")
    cwd = tmp_path / "cwd"
    out = tmp_path / "out"
    cwd.mkdir()
    out.mkdir()
    monkeypatch.chdir(cwd)
    argv = _commands(tree.root, out)[name]
    before = fingerprint(tree.root)
    code = cli_main(argv)
    captured = capsys.readouterr()
    assert code in (0, 1, 3), (code, captured.err)
    assert "Traceback" not in captured.err
    assert fingerprint(tree.root) == before
    assert list(cwd.iterdir()) == []  # nothing dropped in the working directory either
    wanted = {a.rsplit("/", 1)[1] for a in argv if a.startswith(str(out))}
    assert {p.name for p in out.iterdir()} == wanted  # only the outputs asked for


# -- no writing function is called at all ----------------------------------------------------------

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
FORBIDDEN_OS = ("remove", "unlink", "rename", "replace", "mkdir", "makedirs", "rmdir", "removedirs", "symlink",
                "link", "chmod", "chown", "lchown", "utime", "truncate", "mkfifo", "mknod", "write", "ftruncate",
                "fchmod", "fchown", "system", "popen", "execv", "execve", "fork", "spawnv", "posix_spawn",
                "posix_spawnp")
FORBIDDEN_SHUTIL = ("rmtree", "copy", "copy2", "copyfile", "copytree", "move", "chown")


def test_a_scan_calls_no_writing_function(tree, monkeypatch):
    registry = load_plugins(autoload=False)
    renderers = {name: spec.load() for name, spec in registry.formats.items()}  # imported before the guard
    calls = []

    def guard(name, real):
        def refused(*args, **kwargs):
            calls.append((name, args[:2]))
            raise AssertionError(f"a scan called {name}{args[:2]}")
        return refused

    real_open, real_os_open = builtins.open, os.open

    def checked_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            calls.append(("open", file, mode))
            raise AssertionError(f"a scan opened {file} with mode {mode}")
        return real_open(file, mode, *args, **kwargs)

    def checked_os_open(path, flags, *args, **kwargs):
        if flags & WRITE_FLAGS:
            calls.append(("os.open", path, flags))
            raise AssertionError(f"a scan os.open()ed {path} for writing")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", checked_open)
    monkeypatch.setattr(io, "open", checked_open)
    monkeypatch.setattr(os, "open", checked_os_open)
    for name in FORBIDDEN_OS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, guard(f"os.{name}", getattr(os, name)))
    for name in FORBIDDEN_SHUTIL:
        monkeypatch.setattr(shutil, name, guard(f"shutil.{name}", getattr(shutil, name)))
    monkeypatch.setattr(subprocess, "Popen", guard("subprocess.Popen", subprocess.Popen))  # a tree runs nothing

    _, report = scan(tree.root, rules=registry.sorted_rules())
    for name, render in renderers.items():
        render([report], {"verbose": True, "validate": True, "fail_on": "fail"})
    groups_document(Facts(TreeHost(str(tree.root))))
    monkeypatch.undo()
    assert calls == []
    assert len(report.findings) > 20


# -- nor could it: the Host and Facts layers have no write path ---------------------------------------

OS_WRITE = set(FORBIDDEN_OS) | {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}
PATH_WRITE = {"write_text", "write_bytes", "symlink_to", "hardlink_to", "touch", "mkdir", "unlink", "rmdir", "chmod",
              "rename", "Popen", "check_call", "check_output"}


def _layer_files():
    files = sorted((REPO / "scanner" / "host").glob("*.py")) + sorted((REPO / "scanner" / "facts").glob("*.py"))
    assert any(f.name == "tree.py" for f in files) and any(f.name == "cmdline.py" for f in files)
    return files


@pytest.mark.parametrize("path", _layer_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_host_and_facts_layers_have_no_write_path(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            on_os = isinstance(node.value, ast.Name) and node.value.id == "os"
            if (on_os and node.attr in OS_WRITE) or node.attr in PATH_WRITE:
                problems.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            problems += [f"line {node.lineno}: imports {n}" for n in names if n in ("shutil", "tempfile")]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            modes += [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
            if not modes or any(c in str(m) for m in modes for c in "wax+"):
                problems.append(f"line {node.lineno}: open() {'without a mode' if not modes else modes}")
    # the live host runs the two read-only kernel-log commands (scanner/host/command.py spawns them): nothing else
    if path.name == "command.py":
        problems = [p for p in problems if not p.endswith(": .posix_spawnp")]
    assert problems == [], f"{path}: " + "; ".join(problems)


def test_the_live_host_runs_only_kernel_log_readers():
    from scanner.host.live import KERNEL_LOG_COMMANDS

    spawners = [p.name for p in _layer_files() if "command import" in p.read_text(encoding="utf-8")]
    assert spawners == ["live.py"]

    assert {argv[0] for argv in KERNEL_LOG_COMMANDS} == {"dmesg", "journalctl"}
    assert all("--follow" not in argv and "-f" not in argv and "--vacuum" not in " ".join(argv)
               for argv in KERNEL_LOG_COMMANDS)


# -- a read-only tree --------------------------------------------------------------------------------

def _statuses(findings):
    return {(f["rule_id"], f["subject"]): (f["status"], f["message"]) for f in findings}


def _read_only_copy(src, dst):
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)  # keeps links and the FIFO as they are
    for dirpath, dirnames, filenames in os.walk(dst):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)
    os.chmod(dst, 0o555)
    return Path(dst)


@pytest.fixture(scope="module")
def read_only(tree):
    base = world_readable_base("vfio-scan-ro-")
    root = _read_only_copy(tree.root, base / "ro")
    expected = {(f.rule_id, f.subject): (f.status, f.message) for f in scan(tree.root)[1].findings}
    yield root, expected
    for dirpath, dirnames, _ in os.walk(base):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(base, ignore_errors=True)


def test_a_read_only_tree_scans_the_same_as_root(read_only):
    root, expected = read_only
    assert not os.access(root / "proc", os.W_OK) or os.geteuid() == 0
    before = fingerprint(root)
    _, report = scan(root)
    assert {(f.rule_id, f.subject): (f.status, f.message) for f in report.findings} == expected
    assert fingerprint(root) == before


def test_a_read_only_tree_scans_the_same_as_nobody(read_only):
    root, expected = read_only
    require_nobody()
    args = ["-m", "scanner", "scan", "--root", str(root), "--format", "json", *TARGETS]
    proc = as_nobody(args)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    got = _statuses(json.loads(proc.stdout)["findings"])
    assert got == expected


def test_a_read_only_bind_mount_scans_the_same(tree, tmp_path):
    """On a read-only mount even root gets EROFS for any write: the scan does not notice."""
    unshare = shutil.which("unshare")
    if not unshare or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private read-only bind mount")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    script = ('mount --bind -o ro "$1" "$2" || exit 99; touch "$2/probe" 2>/dev/null && exit 98; '
              'shift 2; exec "$@"')
    proc = subprocess.run([unshare, "--mount", "sh", "-c", script, "sh", str(tree.root), str(mountpoint),
                           sys.executable, "-m", "scanner", "scan", "--root", str(mountpoint), "--format", "json",
                           *TARGETS],
                          cwd=REPO, env=dict(os.environ, VFIO_SCAN_DISABLE_PLUGINS="1", PYTHONDONTWRITEBYTECODE="1"),
                          capture_output=True, text=True, timeout=120)
    if proc.returncode in (99,) or "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip(f"no read-only bind mount here: {proc.stderr.strip()[:200]}")
    assert proc.returncode != 98, "the bind mount was writable"
    assert proc.returncode == 1, proc.stderr
    expected = {(f.rule_id, f.subject): (f.status, f.message) for f in scan(tree.root)[1].findings}
    assert _statuses(json.loads(proc.stdout)["findings"]) == expected
