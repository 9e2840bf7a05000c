"""VFIO-018 vm-access and VFIO-019 guest-memory-lock: the user QEMU runs as can open the vfio nodes and lock the
guest's memory.

The trees are the workstation's, with the GPU and its audio function on vfio-pci (``/dev/vfio/1``), and the
account files of a real host. A tree's files belong to whoever runs the tests, so the device nodes' owner and
group are read back and the account files are written around them: the VM's user never owns a node, and is put in
the node's group where a test says so.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from clihelpers import run_cli
from hardening import as_nobody, world_readable_base
from hosttree import workstation
from scanner.engine.runner import Scan
from scanner.facts.memlock import GIB, MIB, UNLIMITED, Who, format_size, memlock_for, parse_limits, parse_size
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all
from scriptrun import Shims, run_script
from systools import require_tool

from reports.script import render_report

_REGISTRY = load_plugins(autoload=False)
GPU, AUDIO = "0000:01:00.0", "0000:01:00.1"
VM_UID = 64055 if os.getuid() != 64055 else 64056
KVM_GID = 993 if os.getgid() != 993 else 994
ACCESS_RULES = "/etc/udev/rules.d/70-vfio-scan-access.rules"
MEMLOCK_FILE = "/etc/security/limits.d/95-vfio-scan-memlock.conf"


def vm_host(tmp_path, container=0o666, node=0o600, in_node_group=()):
    """The workstation with the GPU on vfio-pci, its nodes at these modes, and alice (not owning them)."""
    tree = workstation(tmp_path / "h")
    tree.bind(GPU, "vfio-pci")
    tree.bind(AUDIO, "vfio-pci")
    os.chmod(tree.path("/dev/vfio/vfio"), container)
    os.chmod(tree.path("/dev/vfio/1"), node)
    accounts(tree, in_node_group)
    return tree


def accounts(tree, in_node_group=()):
    """/etc/passwd and /etc/group: root, alice (in kvm), libvirt-qemu (in kvm); ``in_node_group`` join the group
    that owns the device nodes (named after its gid: the test runner's)."""
    tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
                              f"alice:x:{VM_UID}:{VM_UID}:Alice:/home/alice:/bin/bash\n"
                              f"libvirt-qemu:x:{VM_UID + 1}:{KVM_GID}:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n")
    node_gid = os.stat(tree.path("/dev/vfio/vfio")).st_gid
    members = ",".join(in_node_group)
    lines = [f"root:x:0:{members if node_gid == 0 else ''}", f"kvm:x:{KVM_GID}:alice,libvirt-qemu",
             f"alice:x:{VM_UID}:"]
    if node_gid != 0:
        lines.append(f"vfio-owners:x:{node_gid}:{members}")
    tree.write("/etc/group", "\n".join(lines) + "\n")


def scan(tree, rule, vm_user=None, guest_memory=None, devices=(GPU,)):
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == rule]
    selectors, requests = parse_all(devices=devices)
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(vm_user=vm_user, guest_memory=guest_memory),
                       selectors=selectors, vfs=requests)
    return {f.subject: f for f in report.findings}


def access(tree, **kw):
    return scan(tree, "VFIO-018", **kw)[GPU]


def memlock(tree, vm_user="alice", guest_memory=16 * GIB):
    return scan(tree, "VFIO-019", vm_user=vm_user, guest_memory=guest_memory)["host"]


# -- VFIO-018: who QEMU runs as ------------------------------------------------------------------------

def test_without_user_or_libvirt_qemu_runs_as_root_which_opens_everything(tmp_path):
    f = access(vm_host(tmp_path))
    assert f.status == "pass"
    assert f.message.startswith("QEMU runs as root (no --vm-user, no libvirt") and "--vm-user USER" in f.message
    assert "/dev/vfio/1" in {e.source for e in f.evidence}  # the nodes are shown all the same


def test_a_group_node_only_root_may_open_fails_for_a_plain_user(tmp_path):
    f = access(vm_host(tmp_path), vm_user="alice")
    assert f.status == "fail"
    assert f.message.startswith(f"alice (uid {VM_UID}, --vm-user) cannot open /dev/vfio/1 (mode 0600")
    assert 'failed to open /dev/vfio/1: Permission denied' in f.message
    (step,) = f.remediation
    assert step.phase == "access" and step.action["kind"] == "udev-vfio-access"
    assert step.action["group"] == "kvm" and step.action["nodes"] == ["group"]
    assert f"printf '%s\\n' 'SUBSYSTEM==\"vfio\", GROUP=\"kvm\", MODE=\"0660\"' >> {ACCESS_RULES}" in step.commands[0]
    assert "udevadm trigger --action=change --subsystem-match=vfio" in step.commands


def test_a_node_open_to_a_group_of_the_user_passes(tmp_path):
    f = access(vm_host(tmp_path, node=0o660, in_node_group=["alice"]), vm_user="alice")
    assert f.status == "pass" and f.message == f"alice (uid {VM_UID}, --vm-user) can open /dev/vfio/vfio and /dev/vfio/1"


def test_group_bits_do_not_help_a_user_outside_the_group(tmp_path):
    assert access(vm_host(tmp_path, node=0o660), vm_user="alice").status == "fail"


def test_a_closed_container_is_given_back_the_kernels_mode(tmp_path):
    f = access(vm_host(tmp_path, container=0o600, node=0o660, in_node_group=["alice"]), vm_user="alice")
    assert f.status == "fail" and "cannot open /dev/vfio/vfio (mode 0600" in f.message
    assert f.remediation[0].action["nodes"] == ["container"]
    assert any('SUBSYSTEM==\\"misc\\", KERNEL==\\"vfio\\", MODE=\\"0666\\"' in c or
               'SUBSYSTEM=="misc", KERNEL=="vfio", MODE="0666"' in c for c in f.remediation[0].commands)


def test_libvirt_hands_the_group_node_to_its_user_itself(tmp_path):
    tree = vm_host(tmp_path)
    tree.write("/etc/libvirt/qemu.conf", '# the file as shipped, one line set\nuser = "libvirt-qemu"\n#group = "root"\n')
    f = access(tree)
    assert f.status == "pass"
    assert f.message.startswith(f"libvirt-qemu (uid {VM_UID + 1}, user in /etc/libvirt/qemu.conf) can open")
    assert "dynamic_ownership" in f.message


def test_libvirt_without_dynamic_ownership_leaves_the_node_as_it_is(tmp_path):
    tree = vm_host(tmp_path)
    tree.write("/etc/libvirt/qemu.conf", 'user = "libvirt-qemu"\ngroup = "kvm"\ndynamic_ownership = 0\n')
    f = access(tree)
    assert f.status == "fail" and f.message.startswith("libvirt-qemu")
    assert f.remediation[0].action["group"] == "kvm"


def test_libvirt_without_a_user_line_runs_qemu_as_the_distributions_user(tmp_path):
    tree = vm_host(tmp_path)
    tree.write("/etc/libvirt/qemu.conf", '#user = "root"\n#group = "root"\n')
    f = access(tree)
    assert f.status == "pass" and "libvirt's built-in user" in f.message and f.message.startswith("libvirt-qemu")


def test_an_unreadable_qemu_conf_is_a_skip_that_says_how_to_name_the_user(tmp_path):
    tree = vm_host(tmp_path)
    tree.mkdir("/etc/libvirt/qemu.conf")
    f = access(tree)
    assert f.status == "skip"
    assert "cannot read /etc/libvirt/qemu.conf: not a regular file" in f.message and "--vm-user USER" in f.message


@pytest.mark.parametrize("broken, words", [("missing", "not in /etc/passwd"), ("directory", "cannot read /etc/passwd")])
def test_a_user_whose_uid_cannot_be_read_is_skipped(tmp_path, broken, words):
    tree = vm_host(tmp_path)
    if broken == "directory":
        tree.remove("/etc/passwd")
        tree.mkdir("/etc/passwd")
    f = access(tree, vm_user="bob" if broken == "missing" else "alice")
    assert f.status == "skip" and words in f.message


def test_unreadable_groups_are_a_skip_not_a_guess(tmp_path):
    tree = vm_host(tmp_path, node=0o660, in_node_group=["alice"])
    tree.remove("/etc/group")
    tree.mkdir("/etc/group")
    f = access(tree, vm_user="alice")
    assert f.status == "skip" and "cannot read /etc/group" in f.message


def test_a_target_not_on_vfio_yet_follows_from_013(tmp_path):
    tree = workstation(tmp_path / "h")
    accounts(tree)
    f = access(tree, vm_user="alice")
    assert f.status == "skip" and f.message.startswith("follows from VFIO-013: /dev/vfio/1 does not exist yet")


def test_only_the_iommufd_way_open_is_a_warning_naming_the_qemu_option(tmp_path):
    tree = vm_host(tmp_path, in_node_group=["alice"])
    tree.mkdir(f"{tree.device_dir(GPU)}/vfio-dev/vfio0")
    for node in ("/dev/iommu", "/dev/vfio/devices/vfio0"):
        tree.write(node, "", mode=0o660)
    f = access(tree, vm_user="alice")
    assert f.status == "warn"
    assert "can open /dev/iommu and /dev/vfio/devices/vfio0: QEMU must use iommufd" in f.message
    assert f"-device vfio-pci,host={GPU},iommufd=fd0" in f.message


def test_closed_iommufd_nodes_do_not_block_the_group_way(tmp_path):
    tree = vm_host(tmp_path, node=0o660, in_node_group=["alice"])
    tree.mkdir(f"{tree.device_dir(GPU)}/vfio-dev/vfio0")
    for node in ("/dev/iommu", "/dev/vfio/devices/vfio0"):
        tree.write(node, "", mode=0o600)
    f = access(tree, vm_user="alice")
    assert f.status == "pass" and "only QEMU's iommufd= backend needs them" in f.message


def test_unprivileged_scan_skips_on_a_root_only_qemu_conf(tmp_path):
    """The real case: /etc/libvirt/qemu.conf is 0600 root's on Debian; a scan as nobody cannot read it."""
    base = world_readable_base("vfio-scan-vm-")
    try:
        tree = vm_host(base)
        os.chmod(tree.root, 0o755)
        tree.write("/etc/libvirt/qemu.conf", 'user = "libvirt-qemu"\n', mode=0o600)
        done = as_nobody(["-m", "scanner", "scan", "--root", str(tree.root), "--format", "json", "--device", GPU,
                          "--rule", "VFIO-018", "--rule", "VFIO-019", "--guest-memory", "16G"])
        findings = {f["rule_id"]: f for f in json.loads(done.stdout)["findings"]}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for rule in ("VFIO-018", "VFIO-019"):
        assert findings[rule]["status"] == "skip", findings[rule]
        assert "cannot read /etc/libvirt/qemu.conf: permission denied" in findings[rule]["message"]


# -- VFIO-019: locked memory ----------------------------------------------------------------------------

def test_without_guest_memory_the_rule_says_how_to_ask(tmp_path):
    f = scan(vm_host(tmp_path), "VFIO-019")["host"]
    assert f.status == "skip" and f.message.startswith("give --guest-memory SIZE")


@pytest.mark.parametrize("limits, status, words", [
    # no memlock line: systemd's 8 MiB, which holds no guest (QEMU as alice fails at VM start with any -m)
    ("", "warn", f"alice (uid {VM_UID}, --vm-user) may lock 8 MiB (no memlock line applies, so the login's own: "
                 "systemd's default of 8 MiB (64 KiB before systemd 253)): that holds no guest at all"),
    ("alice - memlock 17825792\n", "warn", "may lock 17 GiB (/etc/security/limits.conf line 1): that holds a guest of "
                                           "at most 16 GiB"),
    ("alice - memlock unlimited\n", "pass", "may lock unlimited (/etc/security/limits.conf line 1): no limit"),
])
def test_a_named_vm_user_s_finite_limit_is_a_warning_even_without_the_guest_s_size(tmp_path, limits, status, words):
    tree = vm_host(tmp_path)
    if limits:
        tree.write("/etc/security/limits.conf", limits)
    f = scan(tree, "VFIO-019", vm_user="alice")["host"]
    assert f.status == status and words in f.message, f.message
    assert status == "pass" or "give --guest-memory SIZE" in f.message


def test_root_and_libvirt_need_no_limit(tmp_path):
    tree = vm_host(tmp_path)
    assert memlock(tree, vm_user=None).message.startswith("QEMU runs as root")
    tree.write("/etc/libvirt/qemu.conf", 'user = "libvirt-qemu"\n')
    f = memlock(tree, vm_user=None)
    assert f.status == "pass" and "libvirt raises the limit for each VM itself" in f.message


def test_a_user_with_no_memlock_line_has_systemds_default_and_fails(tmp_path):
    f = memlock(vm_host(tmp_path))
    assert f.status == "fail"
    assert f.message.startswith(f"alice (uid {VM_UID}, --vm-user) may lock 8 MiB (no memlock line applies")
    assert "under the 17 GiB a 16 GiB guest pins" in f.message
    (step,) = f.remediation
    assert step.action == {"kind": "limits-memlock", "file": MEMLOCK_FILE, "user": "alice", "kib": 17 * 1024 * 1024,
                           "files": [{"path": MEMLOCK_FILE, "text": None, "reason": None}]}


@pytest.mark.parametrize("files, status, words", [
    # a group's line in limits.d, beside limits.conf's other items
    ({"/etc/security/limits.conf": "# /etc/security/limits.conf\n*  soft  core  0\n",
      "/etc/security/limits.d/90-kvm.conf": "@kvm  -  memlock  unlimited\n"},
     "pass", "may lock unlimited (/etc/security/limits.d/90-kvm.conf line 1)"),
    # the user's own line outranks its group's and '*', though they are read later
    ({"/etc/security/limits.conf": "alice  -  memlock  65536\n",
      "/etc/security/limits.d/90-kvm.conf": "@kvm  -  memlock  unlimited\n*  -  memlock  unlimited\n"},
     "fail", "may lock 64 MiB (/etc/security/limits.conf line 1)"),
    # a low soft limit under a high hard one: ulimit -l can raise it
    ({"/etc/security/limits.d/vm.conf": "alice soft memlock 65536\nalice hard memlock unlimited\n"},
     "warn", f"'ulimit -l {17 * 1024 * 1024}'"),
    # no memlock line: systemd's DefaultLimitMEMLOCK (the last drop-in's) is what the login has
    ({"/etc/systemd/system.conf": "[Manager]\n#DefaultLimitMEMLOCK=8M\n",
      "/etc/systemd/system.conf.d/50-vm.conf": "[Manager]\nDefaultLimitMEMLOCK=infinity\n"},
     "pass", "DefaultLimitMEMLOCK in /etc/systemd/system.conf.d/50-vm.conf"),
])
def test_limits_are_read_as_pam_limits_reads_them(tmp_path, files, status, words):
    tree = vm_host(tmp_path)
    for path, text in files.items():
        tree.write(path, text)
    f = memlock(tree)
    assert f.status == status and words in f.message


def test_an_unreadable_limits_file_is_a_skip_with_the_reason(tmp_path):
    tree = vm_host(tmp_path)
    tree.mkdir("/etc/security/limits.d/90-kvm.conf")
    f = memlock(tree)
    assert f.status == "skip" and "/etc/security/limits.d/90-kvm.conf: not a regular file" in f.message


def test_the_cli_takes_the_options_and_refuses_a_bad_size(tmp_path):
    tree = vm_host(tmp_path)
    bad = run_cli("scan", "--root", tree.root, "--guest-memory", "lots")
    assert bad.returncode == 2 and "--guest-memory 'lots' is not a size" in bad.stderr
    done = run_cli("scan", "--root", tree.root, "--format", "json", "--device", GPU, "--vm-user", "alice",
                   "--guest-memory", "16G", "--rule", "VFIO-018", "--rule", "VFIO-019")
    findings = {f["rule_id"]: f for f in json.loads(done.stdout)["findings"]}
    assert findings["VFIO-018"]["status"] == "fail" and findings["VFIO-019"]["status"] == "fail"
    assert done.returncode == 1


def test_sizes_and_pam_ranks():
    assert parse_size("16G") == parse_size("16GiB") == parse_size("16384") == 16 * GIB
    assert parse_size("512M") == 512 * MIB and format_size(17 * GIB) == "17 GiB" and format_size(UNLIMITED) == "unlimited"
    with pytest.raises(ValueError):
        parse_size("0")
    who = Who("alice", 1000, 1000, frozenset({1000, 36}), frozenset({"alice", "kvm"}))
    lines = parse_limits("f", "*  -  memlock  1\n@kvm soft memlock 2\n1000:  hard  memlock  3\n@36: - memlock 4\n")
    got = memlock_for(lines, who)
    assert (got.soft, got.hard) == (4 * 1024, 3 * 1024)  # the @gid range outranks '*', the uid range outranks both
    assert memlock_for(parse_limits("f", "alice -\n@kvm - memlock 9\n"), who).ignored is not None


# -- the remediation script ------------------------------------------------------------------------------

def test_the_script_merges_both_fixes_into_their_files_and_a_second_run_changes_nothing(tmp_path):
    tree = vm_host(tmp_path)
    tree.write(ACCESS_RULES, "# kept: someone's own line\nKERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\"\n")
    tree.write(MEMLOCK_FILE, "bob soft memlock 1024\n")
    selectors, requests = parse_all(devices=[GPU])
    rules = [r for r in _REGISTRY.sorted_rules() if r.id in ("VFIO-018", "VFIO-019")]
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(vm_user="alice", guest_memory=16 * GIB),
                       selectors=selectors, vfs=requests)
    script = render_report(report)
    path = tmp_path / "fix.sh"
    path.write_text(script)
    checked = require_tool("shellcheck")
    import subprocess

    lint = subprocess.run([checked, "-s", "bash", str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    shims = Shims(tmp_path)
    first = run_script(script, tree.root, shims)
    assert first.returncode == 0, first.stdout + first.stderr
    assert tree.path(ACCESS_RULES).read_text() == ('# kept: someone\'s own line\nKERNEL=="kvm", GROUP="kvm", MODE="0660"\n'
                                                  'SUBSYSTEM=="vfio", GROUP="kvm", MODE="0660"\n')
    assert tree.path(MEMLOCK_FILE).read_text() == (f"bob soft memlock 1024\nalice soft memlock {17 << 20}\n"
                                                  f"alice hard memlock {17 << 20}\n")
    assert "not run (tree mode): udevadm trigger --action=change --subsystem-match=vfio" in first.stdout
    second = run_script(script, tree.root, shims)
    assert second.returncode == 0 and "wrote" not in second.stdout
    assert shims.calls() == []
