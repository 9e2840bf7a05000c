"""Hostile inputs: trees whose names and contents try to become commands in the remediation script.

A scanned host (or a captured tree) may be broken or malicious: device directory names, driver and
IOMMU group names, network interface names, the kernel command line, ``/etc/default/grub``, the
host name all end up in messages, and some in the commands of the remediation script, which
runs as root. Each value must be refused with a clear message or carried as inert quoted data.

For every hostile tree the remediation script (``reports.script.render_report`` over the scan) is
generated and

* every payload marker appears only in ``#`` comments or in single-quoted ``say`` strings;
* ``bash -n`` and shellcheck accept it;
* it is really run (``DRY_RUN=0``, ``ROOT`` a copy of the tree, the tool shims of
  tests/scriptrun.py, in a sandbox directory) and none of the payloads' marker files appears.

Policy files with wrong types and hostile snapshots belong to issues 5 and 6 (their own tests).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from clihelpers import run_cli
from systools import require_tool
from hardening import scan
from hosttree import DEBIAN_KCONFIG, workstation
from reports.script import render_report
from scanner.engine.groups_document import groups_document
from scanner.facts import Facts
from scanner.host.tree import TreeHost
from scriptrun import Shims

MARK = "pwned"
PAYLOADS = ("$(touch {m})", "`touch {m}`", ";touch {m};", "|touch {m}", "&& touch {m}", "'; touch {m}; '",
            '"; touch {m}; "', "\ntouch {m}\n")


def payload(n: int, kind: int = 0, where: str = "") -> str:
    """A command that would create the marker file ``pwned-N`` (in ``where``, else the current directory)."""
    marker = f"{where}/{MARK}-{n}" if where else f"{MARK}-{n}"
    return PAYLOADS[kind % len(PAYLOADS)].format(m=marker)


def _regroup(tree, addresses, group):
    """Move ``addresses`` into an IOMMU group named ``group`` (any name a hostile tree may use)."""
    for address in addresses:
        devdir = tree.device_dir(address)
        old = os.path.basename(os.readlink(tree.path(f"{devdir}/iommu_group")))
        tree.remove(f"/sys/kernel/iommu_groups/{old}/devices/{address}")
        tree.mkdir(f"/sys/kernel/iommu_groups/{group}/devices")
        tree.write(f"/sys/kernel/iommu_groups/{group}/type", "DMA\n")
        tree.link_to(f"{devdir}/iommu_group", f"/sys/kernel/iommu_groups/{group}")
        tree.link_to(f"/sys/kernel/iommu_groups/{group}/devices/{address}", devdir)


# -- the hostile trees: (builder, targets) ----------------------------------------------------------

def device_names(root, sandbox):
    """Entries of /sys/bus/pci/devices and of a group's devices that are names, not addresses."""
    tree = workstation(root)
    gpu = tree.device_dir("0000:01:00.0")
    nic = tree.device_dir("0000:06:01.0")
    names = ["0000:01:00.0\n", "0000:06:01.0\n" + payload(1, 0)] + [
        f"0000:0{n}:00.0{payload(n, n)}" for n in range(2, 8)] + [payload(8, 1), "..\n" + payload(9, 2)]
    for name in names:
        tree.link_to(f"/sys/bus/pci/devices/{name.replace('/', '_')}", gpu)
        tree.link_to(f"/sys/kernel/iommu_groups/11/devices/{name.replace('/', '_')}", nic)
    # a device link that climbs out of the root
    tree.symlink("/sys/bus/pci/devices/0000:09:00.0", "../../../../../../../../../../../../etc")
    return tree, {"devices": ["01:00.0", "06:01.0"], "classes": ["02", "03"]}


def drivers(root, sandbox):
    """Driver links whose target directory names are commands (the GPU, its audio, two NICs)."""
    tree = workstation(root)
    tree.bind("0000:01:00.0", "nv" + payload(10, 2))
    tree.bind("0000:01:00.1", "snd" + payload(11, 0))
    tree.bind("0000:06:02.0", "e1000" + payload(12, 1))
    tree.bind("0000:06:01.0", "e1000" + payload(13, 7))
    tree.bind("0000:02:00.0", "igb" + payload(14, 5))  # the SR-IOV PF asked for VFs: its driver is named
    return tree, {"devices": ["01:00.0", "06:01.0"], "vfs": ["0000:02:00.0=2"]}


def groups(root, sandbox):
    """IOMMU groups named like commands, and a device's group link climbing out of the root."""
    tree = workstation(root)
    _regroup(tree, ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"], "1" + payload(15, 0))
    _regroup(tree, ["0000:06:01.0", "0000:06:02.0", "0000:05:00.0"], "11" + payload(16, 3))
    tree.write("/dev/vfio/" + "1" + payload(15, 0).replace("/", "_"), "")
    tree.symlink(tree.device_dir("0000:00:14.0") + "/iommu_group", "../../../../../../../../../../tmp")
    return tree, {"devices": ["01:00.0", "06:01.0", "00:14.0"]}


def cmdline_intel(root, sandbox):
    """intel_iommu=off hidden in a comma list with a payload, and payloads in the warned-about options."""
    tree = workstation(root)
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet "
                 f"intel_iommu=on,sm_on intel_iommu=off,{payload(20, 0, sandbox)} "
                 f'iommu="off {payload(21, 1, sandbox)}" '
                 f"pcie_acs_override=downstream{payload(22, 0)} "
                 f"vfio_iommu_type1.allow_unsafe_interrupts=1{payload(23, 2)} "
                 f'"vfio.enable_unsafe_noiommu_mode=1 {payload(24, 6, sandbox)}"')
    return tree, {"devices": ["01:00.0"]}


def cmdline_amd(root, sandbox):
    """An AMD host: invalid amd_iommu options are reported for removal, payload and all."""
    tree = workstation(root, vendor="amd")
    tree.cmdline(f"BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro amd_iommu=on,{payload(25, 0, sandbox)} "
                 f"amd_iommu=off{payload(26, 1)} iommu=pt")
    return tree, {}


def grub_file(root, sandbox):
    """/etc/default/grub with substitutions, backticks, stray quotes and a command after a value."""
    tree = workstation(root)
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet")
    tree.kconfig(dict(DEBIAN_KCONFIG, INTEL_IOMMU_DEFAULT_ON="n", INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF="n"))
    tree.remove("/sys/class/iommu/dmar0")
    tree.write("/etc/default/grub",
               "GRUB_DEFAULT=0\n"
               f'GRUB_CMDLINE_LINUX_DEFAULT="quiet {payload(30, 0, sandbox)} {payload(31, 1, sandbox)}"\n'
               f"GRUB_CMDLINE_LINUX='intel_iommu=off'; touch {sandbox}/{MARK}-32\n"
               f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT unbalanced {payload(33, 0, sandbox)}\n'
               f"GRUB_CMDLINE_LINUX_DEFAULT+=\" intel_iommu=off,{payload(34, 0, sandbox)}\"\n"
               "# GRUB_CMDLINE_LINUX_DEFAULT=\"\\\n"
               f"{payload(35, 0, sandbox)}\n")
    return tree, {}


def host_names(root, sandbox):
    """Host name, kernel release words, the default route's interface and the root device's name."""
    tree = workstation(root)
    tree.write("/proc/sys/kernel/hostname", f"evil{payload(40, 0, sandbox)}\nrm -rf {sandbox}/nothing\n")
    tree.write("/etc/os-release", f'NAME="x{payload(41, 1, sandbox)}"\n')
    iface = "e" + payload(42, 0).replace(" ", "${IFS}")
    tree.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                                  f"{iface}\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\n")
    tree.link_to(f"/sys/class/net/{iface}/device", tree.device_dir("0000:00:1f.6"))
    tree.write("/proc/self/mountinfo", f"22 1 259:0 / / rw,relatime shared:1 - ext4 /dev/{payload(43, 1)} rw\n")
    tree.write("/etc/modules-load.d/x.conf", f"vfio_virqfd\n{payload(44, 0, sandbox)}\n")
    tree.write("/proc/modules", "vfio 16384 0 - Live 0x0\n" + f"{payload(45, 2)} 16384 0 - Live 0x0\n")
    return tree, {"devices": ["00:1f.6", "01:00.0"]}


HOSTILE = {f.__name__: f for f in (device_names, drivers, groups, cmdline_intel, cmdline_amd, grub_file, host_names)}


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request, tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    tree, targets = HOSTILE[request.param](tmp_path / "tree", sandbox)
    _, report = scan(tree.root, devices=targets.get("devices", ()), vfs=targets.get("vfs", ()),
                     classes=targets.get("classes", ()))
    return request.param, tree, report, sandbox


# -- checks ------------------------------------------------------------------------------------------

#: A ``say`` (or ``warn``) whose whole argument is one single-quoted word (what shlex.quote writes), maybe to stderr.
SAY_QUOTED = re.compile(r"""^\s*(?:say|warn) (?:'[^']*'|"'")+(?:\s*>&2)?\s*$""")


def code_lines_with_marker(script: str):
    return [line for line in script.splitlines()
            if MARK in line and not line.lstrip().startswith("#") and not SAY_QUOTED.match(line)]


def test_hostile_values_reach_the_script_only_as_comments_or_quoted_text(hostile):
    name, tree, report, _ = hostile
    assert report.exit_code in (0, 1, 3)
    errors = [f"{f.rule_id} {f.subject}: {f.message}" for f in report.findings if f.status == "error"]
    assert not errors, errors
    for fail_on in ("fail", "warn"):  # warnings' steps too (a script for --fail-on warn)
        script = render_report(report, fail_on=fail_on)
        assert code_lines_with_marker(script) == [], fail_on


def test_hostile_scripts_pass_bash_n_and_shellcheck(hostile, tmp_path):
    name, tree, report, _ = hostile
    path = tmp_path / f"{name}.sh"
    path.write_text(render_report(report))
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shellcheck = require_tool("shellcheck")
    proc = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def _markers(*places):
    found = []
    for place in places:
        for dirpath, dirnames, filenames in os.walk(place):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if re.fullmatch(rf"{MARK}-\d+", n)]
    return found


def test_hostile_scripts_run_for_real_and_inject_nothing(hostile, tmp_path):
    """DRY_RUN=0 on a copy of the tree, tools shimmed, cwd a sandbox: no payload ran."""
    name, tree, report, sandbox = hostile
    root = sandbox / "root"
    shutil.copytree(tree.root, root, symlinks=True)
    shims = Shims(sandbox)
    script = sandbox / "fix.sh"
    script.write_text(render_report(report))
    env = dict(os.environ, ROOT=str(root), DRY_RUN="0", PATH=f"{shims.dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    proc = subprocess.run(["bash", str(script)], cwd=sandbox, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _markers(sandbox, tree.root, Path.cwd()) == []
    assert not any(MARK in call for call in shims.calls()), shims.calls()
    # a second run changes nothing either way
    again = subprocess.run(["bash", str(script)], cwd=sandbox, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _markers(sandbox, tree.root, Path.cwd()) == []


# -- what each tree must show ---------------------------------------------------------------------------

def _finding(report, rule_id, subject="host"):
    return next(f for f in report.findings if f.rule_id == rule_id and f.subject == subject)


def test_names_that_are_not_addresses_are_no_devices(tmp_path):
    tree, targets = device_names(tmp_path / "tree", tmp_path)
    facts = Facts(TreeHost(str(tree.root)))
    assert all(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]", a) for a in facts.pci)
    assert "0000:01:00.0\n" not in facts.pci  # "$" would have let the newline through
    _, report = scan(tree.root, devices=targets["devices"], classes=targets["classes"])
    assert set(report.targets) <= set(facts.pci)
    # group 11 lists the junk names too: they are shown, never bound (06:02.0 on e1000 blocks it)
    _, report = scan(tree.root, devices=targets["devices"])
    group = _finding(report, "VFIO-012", "0000:06:01.0")
    assert group.status == "fail"
    assert "0000:06:02.0" in group.message
    for step in group.remediation:
        assert all(MARK not in c for c in step.commands)
    # and the groups command lists the tree without tripping over them
    document = groups_document(facts)
    assert all(MARK not in d["address"] for g in document["groups"] for d in g["devices"] if d["vendor"])


def test_driver_names_are_reported_but_never_put_into_commands(tmp_path):
    tree, targets = drivers(tmp_path / "tree", tmp_path)
    _, report = scan(tree.root, devices=targets["devices"], vfs=targets["vfs"])
    binding = _finding(report, "VFIO-013", "0000:01:00.0")
    assert binding.status == "fail" and MARK in binding.message  # what the host says, shown
    for f in report.findings:
        for step in f.remediation:
            assert all(MARK not in c for c in step.commands + step.undo), (f.rule_id, step.commands)
    script = render_report(report)
    assert "cannot be named in a softdep line" in script  # the softdep of a hostile driver is refused


def test_group_names_reach_no_command(tmp_path):
    tree, targets = groups(tmp_path / "tree", tmp_path)
    _, report = scan(tree.root, devices=targets["devices"])
    assert _finding(report, "VFIO-012", "0000:01:00.0").status == "fail"
    lost = _finding(report, "VFIO-013", "0000:00:14.0")  # its group link leads out of the root: nowhere
    assert lost.status == "skip" and "iommu_group: missing" in lost.message
    for f in report.findings:
        for step in f.remediation:
            assert all(MARK not in c for c in step.commands + step.undo)


def test_cmdline_payload_is_refused_yet_the_verdict_stands(tmp_path):
    tree, _ = cmdline_intel(tmp_path / "tree", tmp_path)
    _, report = scan(tree.root, devices=["01:00.0"])
    f = _finding(report, "VFIO-004")
    assert f.status == "fail"  # intel_iommu=off is still seen, and still fails
    assert "intel_iommu=off" in f.message
    (step,) = f.remediation
    assert step.manual and not step.commands and "cannot be put into one safely" in step.summary
    script = render_report(report)
    assert "# NO AUTOMATED FIX: VFIO-004" in script


def test_amd_cmdline_payload_is_refused(tmp_path):
    tree, _ = cmdline_amd(tmp_path / "tree", tmp_path)
    _, report = scan(tree.root)
    f = _finding(report, "VFIO-004")
    assert f.status in ("fail", "warn")
    assert all(not s.commands for s in f.remediation)


def test_odd_grub_file_is_left_to_a_person_with_the_line_named(tmp_path):
    """A value followed by a command (``GRUB_CMDLINE_LINUX='intel_iommu=off'; touch ...``) is not rewritten:
    the fix names the file and line for a person, and the script touches no boot file."""
    tree, _ = grub_file(tmp_path / "tree", tmp_path)
    _, report = scan(tree.root)
    f = _finding(report, "VFIO-004")
    assert f.status == "fail"
    step = next(s for s in f.remediation if s.phase == "boot")
    assert step.manual and not step.commands
    assert "/etc/default/grub line 4" in step.summary and "by hand" in step.summary  # the unbalanced quote
    script = render_report(report)
    assert "put_file /etc/default/grub" not in script and "update-grub" not in script.split("set -euo")[1].replace(
        "run update-grub", "")
    assert "# NO AUTOMATED FIX: VFIO-004 host" in script


def test_host_names_are_comments_and_refusals(tmp_path):
    tree, targets = host_names(tmp_path / "tree", tmp_path)
    _, report = scan(tree.root, devices=targets["devices"])
    nic = _finding(report, "VFIO-013", "0000:00:1f.6")
    assert nic.status == "fail" and "default route" in nic.message  # still recognised as the host's own
    assert report.host["hostname"].startswith("evil")
    script = render_report(report)
    assert "REFUSED" in script
    header = script.split("set -euo pipefail", 1)[0]
    assert all(line.startswith("#") or not line.strip() for line in header.splitlines())


# -- the real CLI on two of them --------------------------------------------------------------------

@pytest.mark.parametrize("builder, args", [
    (device_names, ["--device", "01:00.0", "--class", "02"]),
    (drivers, ["--device", "01:00.0", "--vfs", "0000:02:00.0=2"]),
])
def test_fix_command_on_hostile_trees(builder, args, tmp_path):
    tree, _ = builder(tmp_path / "tree", tmp_path)
    proc = run_cli("fix", "--root", tree.root, *args, VFIO_SCAN_DISABLE_PLUGINS="1")
    assert proc.returncode in (0, 3), proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("vfio-scan fix: wrote stdout: ")
    assert proc.stdout.startswith("#!/usr/bin/env bash")
    assert code_lines_with_marker(proc.stdout) == []
    qemu = run_cli("qemu-args", "--root", tree.root, *args[:2], VFIO_SCAN_DISABLE_PLUGINS="1")
    assert qemu.returncode in (0, 1, 3) and "Traceback" not in qemu.stderr
    assert MARK not in qemu.stdout


def test_the_checks_have_teeth(tmp_path):
    """A payload left as code is caught by both checks: the reading and the run."""
    script = ("#!/usr/bin/env bash\nset -euo pipefail\nsay() { printf '%s\\n' \"$*\"; }\n"
              f"# {payload(1)} in a comment\nsay {shlex.quote(payload(2))}\necho checking {payload(3)}\n")
    assert code_lines_with_marker(script) == [f"echo checking {payload(3)}"]
    (tmp_path / "t.sh").write_text(script)
    subprocess.run(["bash", str(tmp_path / "t.sh")], cwd=tmp_path, capture_output=True, timeout=30)
    assert [os.path.basename(p) for p in _markers(tmp_path)] == [f"{MARK}-3"]
