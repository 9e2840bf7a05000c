"""The Host layer over a tree: chroot-style resolution, reasons instead of exceptions, no writes."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from hosttree import HostTree, ready_host
from scanner.cli import main as cli_main
from scanner.engine.runner import Scan
from scanner.host import DEFAULT_CAP
from scanner.host.tree import MAX_LINK_HOPS, TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def host(tree):
    return TreeHost(str(tree.root))


# -- plain reads ---------------------------------------------------------------------------

def test_reads_a_file(tree, host):
    tree.write("/proc/cmdline", "quiet intel_iommu=on\n")
    got = host.read("/proc/cmdline")
    assert got.ok
    assert got.text == "quiet intel_iommu=on\n"
    assert got.reason is None
    assert got.path == "/proc/cmdline"


def test_path_without_leading_slash_is_inside_the_root_too(tree, host):
    tree.write("/etc/hostname", "box\n")
    assert host.read("etc/hostname").text == "box\n"


def test_missing_file_says_missing(host):
    got = host.read("/proc/cmdline")
    assert not got.ok
    assert got.text is None
    assert got.reason == "missing"
    assert got.missing
    assert got.describe() == "/proc/cmdline: missing"


def test_missing_parent_directory_says_missing(host):
    assert host.read("/no/such/dir/file").reason == "missing"


def test_directory_is_not_a_regular_file(tree, host):
    tree.mkdir("/sys/kernel/iommu_groups")
    got = host.read("/sys/kernel/iommu_groups")
    assert not got.ok
    assert got.reason.startswith("not a regular file")


def test_root_itself_is_not_a_regular_file(host):
    assert host.read("/").reason.startswith("not a regular file")


def test_file_over_the_cap_is_too_large(tree, host):
    tree.write("/proc/cpuinfo", "x" * 11)
    assert host.read("/proc/cpuinfo", cap=10).reason.startswith("too large")
    # exactly at the cap is fine
    assert host.read("/proc/cpuinfo", cap=11).text == "x" * 11


def test_default_cap_applies(tree, host):
    tree.write("/var/big", b"a" * (DEFAULT_CAP + 1))
    got = host.read("/var/big")
    assert not got.ok
    assert got.reason.startswith("too large")
    assert str(DEFAULT_CAP) in got.reason


def _read_fifo(read, fifo: Path):
    """Call ``read()``; should it block on the FIFO, unblock it by opening the writing end and fail.

    A hang guard only (so a regression fails instead of hanging the suite), not a timing check.
    """
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("got", read()), daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():
        for _ in range(2):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        worker.join(30)
        pytest.fail(f"reading the FIFO {fifo} blocked (opened without O_NONBLOCK?)")
    return box["got"]


def test_fifo_does_not_hang(tree, host):
    tree.mkdir("/proc")
    fifo = tree.path("/proc/kmsg")
    os.mkfifo(fifo)
    # a blocking open of a FIFO without a writer would never return; the answer is a reason
    got = _read_fifo(lambda: host.read("/proc/kmsg"), fifo)
    assert not got.ok
    assert got.reason == "not a regular file"
    raw = _read_fifo(lambda: host.read_bytes("/proc/kmsg"), fifo)
    assert raw.reason == "not a regular file"


def test_fifo_through_a_symlink_does_not_hang(tree, host):
    tree.mkdir("/run")
    fifo = tree.path("/run/pipe")
    os.mkfifo(fifo)
    tree.symlink("/proc/cmdline", "/run/pipe")
    assert _read_fifo(lambda: host.read("/proc/cmdline"), fifo).reason == "not a regular file"


@pytest.mark.parametrize("data", [b"ok\xff\xfebad\n", b"abc\x00def\n", b"\xc3"])
def test_garbled_bytes_give_a_garbled_reason(tree, host, data):
    tree.write("/proc/cmdline", data)
    got = host.read("/proc/cmdline")
    assert not got.ok
    assert got.reason.startswith("garbled")


def test_nul_byte_reason_names_the_offset(tree, host):
    tree.write("/proc/cmdline", b"abc\x00def")
    assert "offset 3" in host.read("/proc/cmdline").reason


def test_lenient_read_keeps_the_text(tree, host):
    tree.write("/var/log/dmesg", b"[ 0.0] DMAR: IOMMU enabled\n[ 0.1] odd \xff name\x00\n")
    got = host.read("/var/log/dmesg", lenient=True)
    assert got.ok
    assert "DMAR: IOMMU enabled" in got.text


def test_read_bytes_returns_raw_data(tree, host):
    tree.write("/proc/config.gz", b"\x1f\x8b\x00\xff")
    raw = host.read_bytes("/proc/config.gz")
    assert raw.ok and raw.data == b"\x1f\x8b\x00\xff"


def test_path_through_a_regular_file_is_missing(tree, host):
    tree.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    got = host.read("/etc/passwd/x")
    assert got.reason == "missing"
    assert not host.exists("/etc/passwd/x")
    assert host.listdir("/etc/passwd/x").reason == "missing"
    # as the kernel answers ENOTDIR: a regular file is no directory, even when ".." follows
    tree.write("/etc/hostname", "box\n")
    assert host.read("/etc/passwd/../hostname").reason == "missing"


# -- symlinks never leave the root ---------------------------------------------------------

def test_absolute_symlink_resolves_inside_the_root(tree, host):
    tree.write("/etc/passwd", "tree-user:x:1000:1000::/home/tree:/bin/sh\n")
    tree.symlink("/etc/x", "/etc/passwd")
    got = host.read("/etc/x")
    assert got.ok
    assert got.text == "tree-user:x:1000:1000::/home/tree:/bin/sh\n"
    assert "root:x:0:0" not in got.text
    assert host.resolve("/etc/x").text == "/etc/passwd"


def test_absolute_symlink_to_a_path_only_the_real_host_has_is_missing(tree, host):
    assert os.path.exists("/etc/passwd")  # the real one exists; the tree has none
    tree.symlink("/etc/x", "/etc/passwd")
    got = host.read("/etc/x")
    assert got.reason == "missing"
    assert got.text is None


def test_relative_link_with_many_dotdots_cannot_climb_above_root(tree, host):
    tree.write("/etc/passwd", "in-tree\n")
    tree.symlink("/a/b/c/link", "../../../../../../../../../../etc/passwd")
    got = host.read("/a/b/c/link")
    assert got.text == "in-tree\n"
    assert host.resolve("/a/b/c/link").text == "/etc/passwd"


def test_relative_link_climbing_to_a_real_only_file_is_missing(tree, host):
    tree.mkdir("/a")
    tree.symlink("/a/link", "../../../../../../../../etc/hostname")
    assert os.path.exists("/etc/hostname") or os.path.exists("/etc/passwd")
    assert host.read("/a/link").reason == "missing"


def test_dotdot_in_the_requested_path_stays_in_the_root(tree, host):
    tree.write("/etc/passwd", "in-tree\n")
    tree.mkdir("/proc")
    assert host.read("/../../../etc/passwd").text == "in-tree\n"
    assert host.read("/proc/../../../../etc/passwd").text == "in-tree\n"
    # as in the kernel, a missing component before ".." is an error, not skipped
    assert host.read("/nowhere/../etc/passwd").reason == "missing"


def test_directory_symlink_with_absolute_target_stays_inside(tree, host):
    tree.write("/etc/shadow", "tree-shadow\n")
    tree.symlink("/var/lib/conf", "/etc")
    assert host.read("/var/lib/conf/shadow").text == "tree-shadow\n"
    assert host.listdir("/var/lib/conf").names == ("shadow",)


def test_link_loop_says_symlink_loop(tree, host):
    tree.mkdir("/etc")
    tree.symlink("/etc/a", "b")
    tree.symlink("/etc/b", "/etc/a")
    got = host.read("/etc/a")
    assert not got.ok
    assert got.reason == "symlink loop"
    assert host.resolve("/etc/a").reason == "symlink loop"
    assert host.listdir("/etc/a").reason == "symlink loop"


def test_self_loop_says_symlink_loop(tree, host):
    tree.mkdir("/etc")
    tree.symlink("/etc/self", "self")
    assert host.read("/etc/self").reason == "symlink loop"


def test_loop_in_a_middle_component(tree, host):
    tree.mkdir("/sys")
    tree.symlink("/sys/loop", "../sys/loop")
    assert host.read("/sys/loop/x/y").reason == "symlink loop"


def test_hop_limit_is_the_kernels(tree, host):
    tree.write("/chain/target", "end\n")
    # MAX_LINK_HOPS links in a chain still resolve; one more is a loop, as ELOOP in the kernel
    for n in range(MAX_LINK_HOPS + 1):
        tree.symlink(f"/chain/l{n}", "target" if n == 0 else f"l{n - 1}")
    assert MAX_LINK_HOPS == 40
    assert host.read(f"/chain/l{MAX_LINK_HOPS - 1}").text == "end\n"
    assert host.read(f"/chain/l{MAX_LINK_HOPS}").reason == "symlink loop"


def test_hop_limit_counts_a_whole_path_through_directories_read_before(tree, host):
    # 30 links lead to /d, 10 more to /d/e: 40 in one path still resolve, 41 are a loop, also
    # when /d and the shorter paths were read before (their walks are remembered, not their hops)
    tree.write("/d/e/f", "end\n")
    for n in range(30):
        tree.symlink(f"/l{n}", "d" if n == 0 else f"l{n - 1}")
    for n in range(11):
        tree.symlink(f"/d/m{n}", "e" if n == 0 else f"m{n - 1}")
    assert host.read("/l29/e/f").text == "end\n"
    assert host.read("/l29/m9/f").text == "end\n"
    assert host.read("/l29/m10/f").reason == "symlink loop"
    assert host.read("/d/m10/f").text == "end\n"


def test_dangling_link_is_missing(tree, host):
    tree.mkdir("/dev")
    tree.symlink("/dev/kvm", "/dev/nowhere")
    assert host.read("/dev/kvm").reason == "missing"
    assert not host.exists("/dev/kvm")


# -- sysfs-shaped link chains --------------------------------------------------------------

def test_resolve_sysfs_relative_chain(tree, host):
    devdir = tree.pci_device("0000:00:02.0", "8086", "10d3", "020000", driver="e1000e", group="1")
    assert devdir == "/sys/devices/pci0000:00/0000:00:02.0"
    # the fixture makes the same relative links the kernel does
    assert os.readlink(tree.path("/sys/bus/pci/devices/0000:00:02.0")) == "../../../devices/pci0000:00/0000:00:02.0"
    assert host.resolve("/sys/bus/pci/devices/0000:00:02.0").text == "/sys/devices/pci0000:00/0000:00:02.0"
    assert host.resolve("/sys/bus/pci/devices/0000:00:02.0/driver").text == "/sys/bus/pci/drivers/e1000e"
    assert host.resolve("/sys/bus/pci/devices/0000:00:02.0/iommu_group").text == "/sys/kernel/iommu_groups/1"
    assert host.resolve("/sys/kernel/iommu_groups/1/devices/0000:00:02.0/vendor").text == \
        "/sys/devices/pci0000:00/0000:00:02.0/vendor"
    assert host.read("/sys/bus/pci/devices/0000:00:02.0/vendor").text == "0x8086\n"


def test_dotdot_after_a_link_applies_to_the_link_target(tree, host):
    # like the kernel: bus/pci/devices/X/.. is the physical parent, not bus/pci/devices
    tree.pci_device("0000:00:00.0", "8086", "29c0", "060000")
    tree.pci_device("0000:00:02.0", "8086", "10d3", "020000")
    got = host.resolve("/sys/bus/pci/devices/0000:00:02.0/../0000:00:00.0")
    assert got.text == "/sys/devices/pci0000:00/0000:00:00.0"
    assert host.listdir("/sys/bus/pci/devices/0000:00:02.0/..").names == ("0000:00:00.0", "0000:00:02.0")


def test_driver_link_basename_is_the_driver(tree, host):
    tree.pci_device("0000:01:00.0", "10de", "1b80", "030000", driver="vfio-pci", group="13")
    assert os.path.basename(host.resolve("/sys/bus/pci/devices/0000:01:00.0/driver").text) == "vfio-pci"
    assert host.is_dir("/sys/bus/pci/devices/0000:01:00.0/driver")
    assert not host.is_dir("/sys/bus/pci/devices/0000:01:00.0/vendor")


def test_resolve_of_missing_path(host):
    got = host.resolve("/sys/bus/pci/devices/0000:09:00.0")
    assert not got.ok and got.reason == "missing"


def test_resolve_does_not_follow_into_real_filesystem(tree, host):
    tree.symlink("/proc/self", "/proc/1")
    assert host.resolve("/proc/self").reason == "missing"


# -- listings ------------------------------------------------------------------------------

def test_listdir_is_sorted(tree, host):
    for name in ("MCFG", "DMAR", "APIC", "data", "HPET", "FACP"):
        tree.write(f"/sys/firmware/acpi/tables/{name}", "")
    got = host.listdir("/sys/firmware/acpi/tables")
    assert got.ok
    assert got.names == ("APIC", "DMAR", "FACP", "HPET", "MCFG", "data")


def test_listdir_numbers_sorted_as_text_and_through_a_link(tree, host):
    for n in ("10", "2", "1"):
        tree.mkdir(f"/sys/devices/virtual/iommu/dmar{n}")
    tree.link_to("/sys/class/iommu", "/sys/devices/virtual/iommu")
    assert host.listdir("/sys/class/iommu").names == ("dmar1", "dmar10", "dmar2")


def test_listdir_missing_and_not_a_directory(tree, host):
    tree.write("/etc/modules", "vfio\n")
    assert host.listdir("/etc/modules-load.d").reason == "missing"
    assert host.listdir("/etc/modules-load.d").entries() == ()
    assert host.listdir("/etc/modules").reason == "not a directory"


def test_hostname_from_the_tree(tree, host):
    tree.write("/proc/sys/kernel/hostname", "treebox\n")
    assert host.hostname() == "treebox"


def test_kernel_log_missing_names_the_option(host):
    got = host.kernel_log()
    assert not got.ok
    assert "--kernel-log" in got.reason
    assert "/var/log/dmesg" in got.reason


def test_kernel_log_file_outside_the_tree(tmp_path, tree):
    log = tmp_path / "dmesg.txt"
    log.write_bytes(b"[    0.1] DMAR: IOMMU enabled\n[    0.2] bad \xff byte\n")
    got = TreeHost(str(tree.root), kernel_log_file=str(log)).kernel_log()
    assert got.ok
    assert "DMAR: IOMMU enabled" in got.text


def test_kernel_log_file_given_through_a_symlink(tmp_path, tree):
    # --kernel-log names the user's own file: links to it are followed on the real filesystem
    # (an absolute link, and a relative one that leaves the link's directory)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dmesg.0").write_text("[    0.2] DMAR-IR: Enabled IRQ remapping in x2apic mode\n")
    (logs / "dmesg").symlink_to(logs / "dmesg.0")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "kern.log").symlink_to("../logs/dmesg.0")
    for given in (logs / "dmesg", tmp_path / "inbox" / "kern.log"):
        got = TreeHost(str(tree.root), kernel_log_file=str(given)).kernel_log()
        assert got.ok, got.reason
        assert "Enabled IRQ remapping" in got.text
        assert got.path == str(given)


def test_kernel_log_file_that_is_a_fifo_does_not_hang(tmp_path, tree):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    got = _read_fifo(lambda: TreeHost(str(tree.root), kernel_log_file=str(fifo)).kernel_log(), fifo)
    assert got.reason == "not a regular file"


# -- permission denied, proven as an unprivileged user -------------------------------------

SNIPPET = """
import json, sys
from scanner.host.tree import TreeHost
h = TreeHost(sys.argv[1])
print(json.dumps({p: [h.read(p).text, h.read(p).reason] for p in ("/secret", "/public", "/locked/file")}))
"""


def test_permission_denied_as_nobody():
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to user nobody")
    # pytest's tmp_path is 0700 (root only): use a directory nobody can traverse
    base = tempfile.mkdtemp(prefix="vfio-scan-perm-")
    try:
        os.chmod(base, 0o755)
        tree = HostTree(os.path.join(base, "root"))
        os.chmod(tree.root, 0o755)
        tree.write("/secret", "root only\n", mode=0o400)
        tree.write("/public", "everyone\n", mode=0o644)
        tree.mkdir("/locked")
        tree.write("/locked/file", "inside\n", mode=0o644)
        os.chmod(tree.path("/locked"), 0o700)
        assert os.stat(tree.path("/secret")).st_uid == 0
        proc = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", SNIPPET, str(tree.root)],
            cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1"),
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["/public"] == ["everyone\n", None]  # the tree itself is reachable as nobody
        assert result["/secret"] == [None, "permission denied"]
        assert result["/locked/file"] == [None, "permission denied"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- a scan never writes -------------------------------------------------------------------

def _fingerprint(root: Path) -> dict:
    """Every path under root: type, content checksum (files) or target (links), mtime, mode."""
    prints = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                content = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    content = hashlib.sha256(fh.read()).hexdigest()
            else:
                content = stat.S_IFMT(st.st_mode)
            prints[rel] = (content, st.st_mtime_ns, st.st_mode, st.st_size)
    st = os.lstat(root)
    prints["."] = ("root", st.st_mtime_ns, st.st_mode)
    return prints


def test_a_full_scan_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VFIO_SCAN_DISABLE_PLUGINS", "1")
    tree = ready_host(tmp_path / "host")
    # some odd things for the scan to trip over
    tree.write("/etc/modules-load.d/vfio.conf", "vfio\nvfio_virqfd\n")
    tree.write("/proc/config.gz", b"not gzip")
    os.mkfifo(tree.path("/proc/kmsg"))
    tree.symlink("/etc/loop", "loop")
    before = _fingerprint(tree.root)
    assert len(before) > 50

    registry = load_plugins(autoload=False)
    report = scan_host(TreeHost(str(tree.root)), registry.sorted_rules(), Scan())
    assert {f.rule_id for f in report.findings} >= {f"VFIO-00{n}" for n in range(1, 8)}
    for fmt in ("table", "json", "junit"):
        code = cli_main(["scan", "--root", str(tree.root), "--format", fmt, "--verbose"])
        assert code in (0, 1)
    capsys.readouterr()

    after = _fingerprint(tree.root)
    assert after == before

