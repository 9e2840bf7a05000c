"""Unprivileged: the scan run as user ``nobody`` over a tree whose root-only files it cannot read.

What a real host keeps from unprivileged users — the kernel config in /boot (0600 on several
distributions), the kernel log (``dmesg_restrict``), ACPI tables (the directory itself on some
kernels), a device's config-like attributes — is made mode 0400 (or 0700 for directories), owned
by root. Run as nobody, each becomes a ``skip`` that says "permission denied", never a ``fail``
and never an ``error``; whatever nobody can read is judged exactly as root judges it.

The tree lives under a fresh 0755 temporary directory (pytest's tmp_path is 0700: nobody could
not even reach it); the scan runs with ``setpriv --reuid=65534 --regid=65534 --clear-groups``
and the repository on PYTHONPATH, as tests/test_host.py and tests/test_cli.py do.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from hardening import as_nobody, require_nobody, scan, world_readable_base
from hosttree import RELEASE, workstation

TARGETS = ["--device", "01:00.0", "--device", "00:02.0", "--vfs", "0000:02:00.0=2"]

#: Root-only files (mode 0400) and what becomes of them: (rule, subject) -> path named in the skip.
FILES = {
    "/proc/cmdline": ("VFIO-004", "host"),
    "/proc/cpuinfo": ("VFIO-001", "host"),
    f"/boot/config-{RELEASE}": ("VFIO-003", "host"),
    "/proc/modules": ("VFIO-007", "host"),
    "/sys/bus/pci/devices/0000:01:00.0/reset_method": ("VFIO-014", "0000:01:00.0"),
    "/sys/bus/pci/devices/0000:01:00.0/boot_vga": ("VFIO-015", "0000:01:00.0"),
    "/sys/bus/pci/devices/0000:02:00.0/sriov_numvfs": ("VFIO-011", "0000:02:00.0"),
    "/var/log/dmesg": (None, None),  # the log only corroborates: no verdict may hang on it
    "/proc/interrupts": (None, None),
}
#: Root-only directories (mode 0700): listing them is denied.
DIRECTORIES = {
    "/sys/firmware/acpi/tables": ("VFIO-002", "host"),
    "/sys/devices/pci0000:00/0000:00:02.0": ("VFIO-013", "0000:00:02.0"),  # a whole device
}
#: A second tree: what VFIO-005 and VFIO-010 list.
DIRECTORIES_2 = {
    "/sys/kernel/iommu_groups": ("VFIO-005", "host"),
    "/sys/bus/pci/devices": ("VFIO-010", "0000:01:00.0"),
}


def _root_only_tree(base, files, directories):
    tree = workstation(base / "root")
    os.chmod(tree.root, 0o755)
    for path in files:
        os.chmod(tree.path(path), 0o400)
        assert os.stat(tree.path(path)).st_uid == 0
    for path in directories:
        os.chmod(tree.path(path), 0o700)
    return tree


@pytest.fixture
def base():
    require_nobody()
    base = world_readable_base("vfio-scan-nobody-")
    yield base
    shutil.rmtree(base, ignore_errors=True)


#: the notes of the last scan as nobody (a target it could not read at all is no verdict: exit 3)
NOTES = []


def _scan_as_nobody(root, *extra, codes=(0, 1)):
    proc = as_nobody(["-m", "scanner", "scan", "--root", str(root), "--format", "json", "--validate", *TARGETS,
                      *extra])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == ""
    assert proc.returncode in codes, (proc.returncode, proc.stdout[-2000:])
    document = json.loads(proc.stdout)
    NOTES[:] = document.get("notes", [])
    return {(f["rule_id"], f["subject"]): f for f in document["findings"]}


def _check(tree, expected, codes=(0, 1)):
    as_root = {(f.rule_id, f.subject): f for f in scan(tree.root)[1].findings}  # root reads through the modes
    as_nobody = _scan_as_nobody(tree.root, codes=codes)
    denied_targets = any("permission denied" in f["message"] for k, f in as_nobody.items() if k[0] == "VFIO-010")
    for (rule_id, subject), path in expected.items():
        got = as_nobody[(rule_id, subject)]
        assert got["status"] == "skip", (rule_id, subject, got["message"])
        text = got["message"] + " " + " ".join(e["value"] for e in got["evidence"])
        assert "permission denied" in text, (rule_id, got["message"])
        assert path.rsplit("/", 1)[-1] in text or subject in text, (rule_id, got["message"])
    for key, got in as_nobody.items():
        assert got["status"] != "error", (key, got["message"])
        mine = as_root.get(key)
        if mine is None or got["status"] != mine.status:  # only what nobody could not read differs: a skip, with why
            assert got["status"] == "skip", (key, mine and mine.status, got["status"], got["message"])
            text = got["message"] + " " + " ".join(e["value"] for e in got["evidence"])
            # ... or the consequence of VFIO-010's own "permission denied": no target to judge
            assert "permission denied" in text or (denied_targets and "see VFIO-010" in text), (key, got["message"])
    return as_root, as_nobody


def test_root_only_files_are_skips_with_the_reason_for_nobody(base):
    tree = _root_only_tree(base, FILES, DIRECTORIES)
    expected = {rule: path for path, rule in {**FILES, **DIRECTORIES}.items() if rule[0]}
    as_root, as_nobody = _check(tree, expected, codes=(3,))  # a target nobody can read at all: no verdict on it
    assert [n.split(":", 3)[:3] for n in NOTES] == [["0000", "00", "02.0"]]
    assert "no rule could judge it: no verdict on it" in NOTES[0]
    # root itself sees past the modes: the same host is judged, nothing skipped for lack of rights
    assert not any("permission denied" in f.message for f in as_root.values())
    # an unreadable device is skipped by every device rule, the others are judged
    for rule_id in ("VFIO-010", "VFIO-012", "VFIO-014", "VFIO-015"):
        assert as_nobody[(rule_id, "0000:00:02.0")]["status"] == "skip"
    assert as_nobody[("VFIO-013", "0000:01:00.0")]["status"] == "fail"  # still on nvidia: readable, judged


def test_root_only_listings_are_skips_with_the_reason_for_nobody(base):
    tree = _root_only_tree(base, {}, DIRECTORIES_2)
    _check(tree, {rule: path for path, rule in DIRECTORIES_2.items()})


def test_groups_command_as_nobody_names_what_it_could_not_read(base):
    tree = _root_only_tree(base, {}, {"/sys/kernel/iommu_groups": None})
    proc = as_nobody(["-m", "scanner", "groups", "--root", str(tree.root)])
    assert proc.returncode == 3, proc.stdout
    assert "Traceback" not in proc.stderr and "permission denied" in proc.stderr
