"""The collector (scanner/collector.py): stand-alone on Python 3.6, complete for what Facts reads, valid snapshots.

The central test replays every read a full scan makes of a fixture tree against the snapshot of
that tree: each answer (text, bytes, listing, resolved path, reason) must be identical, and no
read may land on a path the collector did not record. It fails as soon as Facts (or a rule, or
``groups``) reads something the collector's CAPTURE list does not capture.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from functools import cached_property
from pathlib import Path

import pytest

from hosttree import workstation
from snapshottrees import TREES
from scanner import collector
from scanner.engine.runner import Scan
from scanner.facts import Facts
from scanner.host import DEFAULT_CAP
from scanner.host.snapshot import NOT_COLLECTED, SnapshotHost, parse_snapshot
from scanner.host.tree import TreeHost
from scanner.base.schemas import schema_validator
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

REPO = Path(__file__).resolve().parents[1]
COLLECTOR = REPO / "scanner" / "collector.py"
_REGISTRY = load_plugins(autoload=False)


class Recording:
    """A host wrapper that notes every call the scanner makes (method, arguments) and passes it on."""

    def __init__(self, host):
        self._host = host
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._host, name)  # source, machine

    def _call(self, method, *args):
        self.calls.append((method, args))
        return getattr(self._host, method)(*args)

    def read(self, path, cap=DEFAULT_CAP, lenient=False):
        return self._call("read", path, cap, lenient)

    def read_bytes(self, path, cap=DEFAULT_CAP):
        return self._call("read_bytes", path, cap)

    def initramfs(self, path):
        return self._call("initramfs", path)

    def listdir(self, path):
        return self._call("listdir", path)

    def lists(self, path, name):
        return self._call("lists", path, name)

    def resolve(self, path):
        return self._call("resolve", path)

    def stat(self, path):
        return self._call("stat", path)

    def exists(self, path):
        return self._call("exists", path)

    def is_dir(self, path):
        return self._call("is_dir", path)

    def hostname(self):
        return self._call("hostname")

    def kernel_log(self):
        return self._call("kernel_log")


def exercise(host) -> None:
    """Everything the scanner can read of a host: every rule with every device targeted (SR-IOV PFs
    with VFs asked), every Facts property and lookup, the groups document."""
    facts = Facts(host)
    addresses = sorted(facts.pci)
    pfs = [a for a, d in facts.pci.items() if (d.sriov_totalvfs or 0) > 0]
    selectors, vfs = parse_all(addresses, [], [f"{pf}=1" for pf in pfs])
    scan_host(host, _REGISTRY.sorted_rules(), Scan(), selectors=selectors, vfs=vfs, facts=facts)
    for name in dir(Facts):
        if isinstance(getattr(Facts, name), (cached_property, property)):
            getattr(facts, name)
    for device in facts.pci.values():
        if device.driver:
            facts.driver_module(device.driver)
    for tool in collector.TOOLS.split(","):
        facts.has_tool(tool)
    from scanner.engine.groups_document import groups_document

    groups_document(facts)
    groups_document(Facts(host))  # the fields alone, as `groups` reads them: no device read in full first


def build(name, tmp_path):
    root = tmp_path / name
    TREES[name](root)
    return str(root)


def snapshot_of(root, **kw) -> dict:
    return parse_snapshot(collector.dumps(collector.collect(root, **kw)), f"snapshot of {root}")


def replay(root, snapshot) -> SnapshotHost:
    """Record a full scan of the tree, replay each call on the snapshot: identical answers, nothing uncollected."""
    recording = Recording(TreeHost(root))
    exercise(recording)
    assert len(recording.calls) > 10
    snap = SnapshotHost(snapshot)
    for method, args in recording.calls:
        if args and "/pci.ids" in str(args[0]):
            continue  # cut down to the host's devices: tests/test_collector_pciids.py compares the names
        want = getattr(TreeHost(root), method)(*args)
        got = getattr(snap, method)(*args)
        assert got == want, f"{method}{args}: tree says {want!r}, snapshot says {got!r}"
    assert Facts(snap).pci_ids.devices == {
        ids: name for ids, name in Facts(TreeHost(root)).pci_ids.devices.items()
        if ids in {(d.vendor, d.device) for d in Facts(TreeHost(root)).pci.values()}}
    assert not snap.uncollected, f"the scan read paths the collector did not record: {sorted(snap.uncollected)}"
    return snap


@pytest.mark.parametrize("name", sorted(TREES))
def test_every_read_of_a_scan_is_answered_by_the_snapshot_exactly(name, tmp_path):
    root = build(name, tmp_path)
    replay(root, snapshot_of(root))


def test_the_coverage_check_fails_when_the_collector_misses_a_path(tmp_path, monkeypatch):
    """The test above has teeth: drop one pattern from CAPTURE and the replay names the path."""
    root = build("workstation", tmp_path)
    monkeypatch.setattr(collector, "CAPTURE", tuple(c for c in collector.CAPTURE if c[1] != "/proc/cmdline"))
    with pytest.raises(AssertionError, match=r"/proc/cmdline"):
        replay(root, snapshot_of(root))


def test_kernel_log_given_on_the_command_line(tmp_path):
    root = build("ready", tmp_path)
    log = tmp_path / "dmesg.txt"
    log.write_bytes(b"[0.1] DMAR: IOMMU enabled\n[0.2] bad \xff byte\n")
    snap = SnapshotHost(snapshot_of(root, kernel_log_file=str(log)))
    assert snap.kernel_log() == TreeHost(root, kernel_log_file=str(log)).kernel_log()
    missing = SnapshotHost(snapshot_of(root, kernel_log_file=str(tmp_path / "nope")))
    assert missing.kernel_log() == TreeHost(root, kernel_log_file=str(tmp_path / "nope")).kernel_log()


# -- the snapshot document ----------------------------------------------------------------------

def test_snapshot_is_schema_valid_and_records_what_it_promises(tmp_path):
    root = build("kitchen-sink", tmp_path)
    snapshot = collector.collect(root)
    errors = list(schema_validator("snapshot").iter_errors(json.loads(collector.dumps(snapshot))))
    assert errors == []
    assert snapshot["format"] == "vfio-scan-snapshot" and snapshot["source"] == "root"
    assert snapshot["hostname"] == "testhost" and snapshot["kernel_release"] == "6.1.0-56-amd64"
    assert snapshot["machine"] is None and snapshot["kernel_log"]["source"] == "/var/log/dmesg"
    entries = snapshot["entries"]
    link = entries["/sys/bus/pci/devices/0000:01:00.0"]
    assert link["type"] == "link" and link["target"].startswith("../../../devices/")
    assert entries["/proc/config.gz"]["base64"]  # binary content is kept exactly
    assert entries["/sys/bus/pci/devices"]["names"][0] == "0000:00:00.0"
    assert "0x10de\n" == entries["/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/vendor"]["text"]


def test_schema_refuses_inconsistent_entries(tmp_path):
    document = json.loads(collector.dumps(collector.collect(build("ready", tmp_path))))
    validator = schema_validator("snapshot")
    for bad in ({"type": "error"}, {"type": "link"}, {"type": "file", "reason": "x"}, {"type": "sock"},
                {"type": "link", "target": "a", "link_error": "b"}, {"type": "file", "text": "a", "base64": "b"},
                {"type": "file", "text": "a", "read_error": "b"}, {"type": "dir", "names": [], "list_error": "x"},
                {"type": "file", "target": "x"}, {"type": "file", "cap": -1}, {"type": "dir", "extra": 1}):
        document["entries"]["/bad"] = bad
        assert list(validator.iter_errors(document)), bad
    document["entries"]["relative"] = {"type": "dir"}
    del document["entries"]["/bad"]
    assert list(validator.iter_errors(document))


def test_sizes_are_capped_and_reasons_recorded(tmp_path):
    root = build("garbled", tmp_path)
    entries = collector.collect(root)["entries"]
    assert entries["/proc/modules"]["read_error"] == "too large: over the 1048576-byte cap"
    assert entries["/proc/interrupts"]["cap"] == collector.LARGE_CAP and "text" in entries["/proc/interrupts"]
    assert entries["/sys/hypervisor/type"]["read_error"] == "not a regular file"
    assert entries["/etc/default/grub"]["read_error"] == "not a regular file (a directory)"
    assert "base64" in entries["/proc/cpuinfo"]
    assert entries["/proc/cmdline"]["text"].startswith("BOOT_IMAGE=/vmlinuz\u0000")  # NUL kept: the scanner calls it garbled


def test_a_link_loop_and_an_escape_stay_inside_the_root(tmp_path):
    root = build("broken-links", tmp_path)
    snap = SnapshotHost(snapshot_of(root))
    gpu = "/sys/bus/pci/devices/0000:01:00.0"
    assert snap.resolve(f"{gpu}/driver").reason == "symlink loop"
    assert snap.resolve(f"{gpu}/iommu_group").reason == "missing"
    assert snap.resolve("/sys/bus/pci/devices/0000:00:14.0/driver").text == "/sys/bus/pci/drivers/xhci_hcd"
    assert snap.resolve("/dev/kvm").reason == "missing"


def test_entry_limit_is_a_note_not_a_crash(tmp_path, monkeypatch):
    root = build("workstation", tmp_path)
    monkeypatch.setattr(collector, "MAX_ENTRIES", 50)
    snapshot = collector.collect(root)
    assert len(snapshot["entries"]) <= 50
    assert any("entry limit" in n for n in snapshot["notes"])
    snap = SnapshotHost(parse_snapshot(collector.dumps(snapshot), "limited"))
    assert not snap.read("/proc/cmdline").ok or snap.read("/proc/cmdline").text  # answers, never raises
    Facts(snap).pci  # noqa: B018 - reading what is there must not fail


def test_uncollected_paths_read_as_not_in_the_snapshot(tmp_path):
    snap = SnapshotHost(snapshot_of(build("ready", tmp_path)))
    got = snap.read("/etc/shadow")
    assert got.reason in ("missing", NOT_COLLECTED)
    assert snap.read("/sys/devices/pci0000:00/0000:00:02.0/config").reason == "missing"  # listing known: missing
    assert snap.read("/usr/lib/somewhere/else").reason == "missing"  # /usr/lib was looked up: absent
    assert snap.read("/usr/sbin/grub-install").reason == NOT_COLLECTED  # /usr/sbin exists, never listed
    assert "/usr/sbin/grub-install" in snap.uncollected


# -- stand-alone: Python 3.6, no vfio-scan, stdin ------------------------------------------------

def test_collector_is_python_36_syntax_and_stdlib_only():
    source = COLLECTOR.read_text()
    try:
        tree = ast.parse(source, feature_version=(3, 6))
    except ValueError:  # this Python no longer parses for 3.6: the oldest it can
        tree = ast.parse(source, feature_version=(3, 7))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module != "__future__", "no relative or __future__ imports"
            imported.add(node.module.split(".")[0])
        assert not isinstance(node, ast.JoinedStr), "no f-strings: Python < 3.6 must reach the version check"
        assert not isinstance(node, ast.AnnAssign), "no variable annotations"
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib:
        assert imported <= set(stdlib), f"not stdlib: {imported - set(stdlib)}"


def old_pythons():
    """Real interpreters of Python 3.6/3.7 on this machine (pyenv, deadsnakes), if any."""
    found = [shutil.which(f"python3.{minor}") for minor in (6, 7)]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.[67].*/bin/python3.[67]")))
    found += sorted(glob.glob("/opt/python/3.[67]*/bin/python3.[67]"))
    working = []
    for path in dict.fromkeys(p for p in found if p):
        try:
            out = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() in ("(3, 6)", "(3, 7)"):
            working.append(path)
    return working


def test_collector_runs_piped_to_a_real_old_python(tmp_path):
    """``python3.6 - --root T < collector.py``, as over ssh: the same snapshot as in-process."""
    pythons = old_pythons()
    if not pythons:
        pytest.skip("no Python 3.6 or 3.7 interpreter on this machine (the ast check above still ran)")
    root = build("kitchen-sink", tmp_path)
    want = collector.collect(root)
    for python in pythons:
        proc = subprocess.run([python, "-", "--root", root], input=COLLECTOR.read_bytes(), capture_output=True,
                              timeout=120, cwd=str(tmp_path), env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"})
        assert proc.returncode == 0, proc.stderr.decode()
        got = parse_snapshot(proc.stdout.decode("ascii"), python)
        assert got["collector"]["python"].startswith(("3.6", "3.7"))
        for key in ("entries", "kernel_log", "hostname", "kernel_release", "root", "machine", "notes"):
            assert got[key] == want[key], f"{python}: {key} differs"


def test_collector_refuses_old_python_and_bad_arguments(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text("import sys\nsys.version_info = (3, 5, 2)\nsys.version = '3.5.2 fake'\n"
                    + COLLECTOR.read_text())
    proc = subprocess.run([sys.executable, str(fake)], capture_output=True, text=True)
    assert proc.returncode == 2 and "needs Python 3.6 or newer, this is 3.5.2" in proc.stderr
    proc = subprocess.run([sys.executable, str(COLLECTOR), "--root", str(tmp_path / "nope")], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == f"vfio-scan collector: error: --root {tmp_path / 'nope'}: no such directory"


def test_live_collection_of_this_machine_is_valid_and_scans(tmp_path):
    """The collector on the machine running the tests: a valid snapshot that a scan reads without error."""
    snapshot = snapshot_of(None)
    assert snapshot["source"] == "live" and snapshot["machine"] == os.uname().machine
    assert snapshot["entries"]["/proc/cmdline"].get("text") is not None
    report = scan_host(SnapshotHost(snapshot), _REGISTRY.sorted_rules(), Scan())
    assert not [f for f in report.findings if f.status == "error"]


def test_standalone_output_file_and_ascii(tmp_path):
    root = tmp_path / "ws"
    workstation(root)
    out = tmp_path / "snap.json"
    proc = subprocess.run([sys.executable, str(COLLECTOR), "--root", str(root), "-o", str(out)], capture_output=True)
    assert proc.returncode == 0 and proc.stdout == b""
    out.read_bytes().decode("ascii")  # any locale can carry it
    assert parse_snapshot(out.read_text(), str(out))["hostname"] == "testhost"
