"""``vfio-scan qemu-args``: the QEMU ``-device vfio-pci`` line when nothing blocks, what blocks otherwise.

Runs the real CLI on the workstation fixture (tests/hosttree.py): group 1 holds the CPU root port,
the GPU 0000:01:00.0 (nvidia) and its HDMI audio 0000:01:00.1 (snd_hda_intel); group 11 a
PCIe-to-PCI bridge with two e1000 in different slots; the I350 0000:02:00.0 is alone in group 7.
"""

from __future__ import annotations

import json
import os

import pytest

from clihelpers import DMESG_INTEL_ON, RAISING_PLUGIN, make_plugin, run_cli, stderr_lines
from hosttree import gpu_on_vfio, workstation

GPU, AUDIO = "0000:01:00.0", "0000:01:00.1"


def port(n: int) -> str:
    """The n-th slot's root port on q35."""
    return f"-device pcie-root-port,id=vfio-rp{n},chassis={100 + n},bus=pcie.0"


def slot_args(n: int, *addresses: str) -> str:
    """Root port n and the functions of one host slot behind it, multifunction on the first of several."""
    words = [port(n)]
    for function, address in enumerate(addresses):
        multi = ",multifunction=on" if function == 0 and len(addresses) > 1 else ""
        words.append(f"-device vfio-pci,host={address},bus=vfio-rp{n},addr=00.{function}{multi}")
    return " ".join(words)


GPU_LINE = slot_args(1, GPU, AUDIO) + "\n"
BLOCKED_HEADER = "vfio-scan qemu-args: not ready for passthrough, no arguments printed; blocked by:"


@pytest.fixture(scope="module")
def registered_rules():
    return {r["id"] for r in json.loads(run_cli("rules", "--format", "json").stdout)}


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


@pytest.fixture
def gpu_ready(ws):
    """The GPU and its audio function both on vfio-pci (which also creates /dev/vfio/1), and kept there at boot."""
    return gpu_on_vfio(ws)


def test_a_binding_lost_at_next_boot_is_a_caution_not_a_block(ws):
    """On vfio-pci now, by a runtime driver_override only: QEMU takes it now; the loss at reboot is said."""
    ws.bind(GPU, "vfio-pci")
    ws.bind(AUDIO, "vfio-pci")
    proc = qemu_args(ws.root, "--device", GPU)
    assert (proc.returncode, proc.stdout) == (0, GPU_LINE), proc.stderr
    assert f"vfio-scan qemu-args: caution: VFIO-017 {GPU}: works now, lost at next boot" in proc.stderr


def qemu_args(root, *selectors, **kw):
    proc = run_cli("qemu-args", "--root", root, *selectors, **kw)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def blocking_lines(proc) -> list:
    """The ``RULE-ID SUBJECT: message`` lines under the 'blocked by' header."""
    lines = stderr_lines(proc)
    assert BLOCKED_HEADER in lines, proc.stderr
    return [line.strip() for line in lines[lines.index(BLOCKED_HEADER) + 1:] if line.startswith("  ")]


def assert_blocked(proc, subject, *needles: str) -> list:
    """Exit 1, nothing on stdout, a blocking line about ``subject`` (any subject when None)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = blocking_lines(proc)
    assert lines, proc.stderr
    naming = [line for line in lines if subject is None or line.split(" ", 2)[1].rstrip(":") == subject]
    assert naming, f"no blocking line names {subject}: {lines}"
    for needle in needles:
        assert any(needle in line for line in lines), (needle, lines)
    return lines


# -- ready: exactly the arguments ------------------------------------------------------------------

@pytest.mark.parametrize("selector", [GPU, "01:00.0", "10de:2204"])
def test_gpu_with_its_audio_on_vfio(gpu_ready, selector):
    proc = qemu_args(gpu_ready.root, "--device", selector)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == GPU_LINE
    assert proc.stderr == ""


def test_both_functions_named_give_the_same_line(gpu_ready):
    proc = qemu_args(gpu_ready.root, "--device", AUDIO, "--device", GPU)
    assert (proc.returncode, proc.stdout) == (0, GPU_LINE), proc.stderr


def test_class_selector(gpu_ready):
    """--class 0302 (3D controller) matches nothing here; --class 030000's prefix 0300 takes the iGPU too."""
    proc = qemu_args(gpu_ready.root, "--class", "0300")
    assert_blocked(proc, "0000:00:02.0")  # the iGPU is on i915
    gpu_ready.bind("0000:00:02.0", "vfio-pci")
    proc = qemu_args(gpu_ready.root, "--class", "0300")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == slot_args(1, "0000:00:02.0") + " " + slot_args(2, GPU, AUDIO) + "\n"


def test_single_function_device_has_no_multifunction(ws):
    ws.bind("0000:02:00.0", "vfio-pci")
    proc = qemu_args(ws.root, "--device", "02:00.0")
    assert (proc.returncode, proc.stdout) == (0, slot_args(1, "0000:02:00.0") + "\n"), proc.stderr


def test_several_targets_in_address_order(gpu_ready):
    gpu_ready.bind("0000:02:00.0", "vfio-pci")
    proc = qemu_args(gpu_ready.root, "--device", "02:00.0", "--device", "01:00.0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == GPU_LINE.rstrip("\n") + " " + slot_args(2, "0000:02:00.0") + "\n"


def test_unrelated_group_member_is_not_passed(ws):
    """Group 11: both e1000 on vfio-pci makes the group viable; only the target is handed to QEMU."""
    ws.bind("0000:06:01.0", "vfio-pci")
    ws.bind("0000:06:02.0", "vfio-pci")
    proc = qemu_args(ws.root, "--device", "06:01.0")
    assert (proc.returncode, proc.stdout) == (0, slot_args(1, "0000:06:01.0") + "\n"), proc.stderr


def test_warnings_are_cautions_on_stderr(gpu_ready):
    """No interrupt remapping seen, and no device MSI to judge by: VFIO-006 warns; the arguments are printed."""
    gpu_ready.write("/proc/interrupts", "           CPU0\n  0:         44   IO-APIC    2-edge      timer\n")
    gpu_ready.kernel_log(DMESG_INTEL_ON.replace("[    0.210809] DMAR-IR: Enabled IRQ remapping in xapic mode\n", ""))
    proc = qemu_args(gpu_ready.root, "--device", GPU)
    assert (proc.returncode, proc.stdout) == (0, GPU_LINE), proc.stderr
    cautions = stderr_lines(proc)
    assert cautions and all(line.startswith("vfio-scan qemu-args: caution: ") for line in cautions)
    assert any(line.startswith("vfio-scan qemu-args: caution: VFIO-006 host: ") for line in cautions), cautions


def test_plain_pci_msi_blocks_the_arguments(gpu_ready):
    """Device MSIs on plain PCI-MSI while the IOMMU runs: vfio_iommu_type1 would refuse the group."""
    gpu_ready.interrupts(remapped=False)
    proc = qemu_args(gpu_ready.root, "--device", GPU)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "\n  VFIO-006 host: interrupt remapping is off: 1 device MSI line(s) on the plain PCI-MSI chip" in proc.stderr


# -- blocked: nothing on stdout, exit 1, what blocks on stderr --------------------------------------

def test_gpu_still_on_nvidia(ws, registered_rules):
    ws.bind(AUDIO, "vfio-pci")
    proc = qemu_args(ws.root, "--device", GPU)
    lines = assert_blocked(proc, GPU, "nvidia")
    if "VFIO-013" in registered_rules:
        assert any(line.startswith(f"VFIO-013 {GPU}: ") for line in lines), lines


def test_audio_still_on_the_host_driver(ws, registered_rules):
    ws.bind(GPU, "vfio-pci")
    proc = qemu_args(ws.root, "--device", GPU)
    lines = assert_blocked(proc, None)
    assert any(AUDIO in line and "snd_hda_intel" in line for line in lines), lines
    if "VFIO-012" in registered_rules:
        assert any(line.startswith("VFIO-012 ") and AUDIO in line for line in lines), lines


def test_sibling_without_driver_must_still_be_bound(ws):
    """An unbound audio function keeps the group viable, but QEMU cannot be handed it: blocked, named."""
    ws.bind(GPU, "vfio-pci")
    ws.bind(AUDIO, None)
    proc = qemu_args(ws.root, "--device", GPU)
    assert_blocked(proc, AUDIO, "vfio-pci")


def test_unrelated_member_on_a_host_driver(ws):
    ws.bind("0000:06:01.0", "vfio-pci")
    proc = qemu_args(ws.root, "--device", "06:01.0")
    assert_blocked(proc, "0000:06:01.0", "0000:06:02.0", "e1000")


def test_host_rule_failure_blocks(gpu_ready):
    gpu_ready.remove("/sys/firmware/acpi/tables/DMAR")
    proc = qemu_args(gpu_ready.root, "--device", GPU)
    lines = assert_blocked(proc, "host")
    assert any(line.startswith("VFIO-002 host: ") for line in lines), lines


def test_selector_matching_nothing_blocks(gpu_ready):
    proc = qemu_args(gpu_ready.root, "--device", GPU, "--device", "0a:00.0")
    lines = assert_blocked(proc, "0000:0a:00.0")
    assert any(line.startswith("VFIO-010 0000:0a:00.0: ") for line in lines), lines


def test_no_iommu_blocks(gpu_ready):
    import shutil

    shutil.rmtree(gpu_ready.path("/sys/kernel/iommu_groups"))
    for where, _, names in os.walk(gpu_ready.path("/sys/devices")):  # without an IOMMU no device has one
        if "iommu_group" in names:
            os.unlink(os.path.join(where, "iommu_group"))
    proc = qemu_args(gpu_ready.root, "--device", GPU)
    lines = assert_blocked(proc, "host")
    assert any(line.startswith("VFIO-005 host: ") for line in lines), lines


def test_rule_error_is_exit_3_and_prints_nothing(gpu_ready, tmp_path):
    where = make_plugin(tmp_path / "plugins", RAISING_PLUGIN)
    proc = run_cli("qemu-args", "--root", gpu_ready.root, "--device", GPU, pythonpath=where)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert any(line.strip().startswith("ACME-100 host: ") for line in stderr_lines(proc)), proc.stderr
    assert "Traceback" not in proc.stderr


# -- usage errors ----------------------------------------------------------------------------------

def _usage_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0]
    assert proc.stdout == ""


def test_no_device_is_a_usage_error(gpu_ready):
    _usage_error(run_cli("qemu-args", "--root", gpu_ready.root), "--device")


def test_malformed_device_is_a_usage_error(gpu_ready):
    _usage_error(run_cli("qemu-args", "--root", gpu_ready.root, "--device", "01:00"), "--device", "01:00")


def test_missing_root_is_a_usage_error(tmp_path):
    _usage_error(run_cli("qemu-args", "--root", tmp_path / "nope", "--device", GPU), "--root")


def test_help():
    proc = run_cli("qemu-args", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: vfio-scan qemu-args")
    for option in ("--device", "--class", "--root"):
        assert option in proc.stdout


# -- the argument builder ----------------------------------------------------------------------------

def test_the_pc_machine_puts_the_slot_on_pci_0(gpu_ready):
    proc = qemu_args(gpu_ready.root, "--device", GPU, "--machine", "pc")
    assert proc.stdout == (f"-device vfio-pci,host={GPU},bus=pci.0,addr=0x10.0,multifunction=on "
                           f"-device vfio-pci,host={AUDIO},bus=pci.0,addr=0x10.1\n"), proc.stderr


def test_no_kvm_is_a_caution_not_a_block(gpu_ready):
    """QEMU assigns a vfio-pci device under TCG too: KVM is -accel kvm's business."""
    gpu_ready.remove("/dev/kvm")
    proc = qemu_args(gpu_ready.root, "--device", GPU)
    assert (proc.returncode, proc.stdout) == (0, GPU_LINE), proc.stderr
    assert "vfio-scan qemu-args: caution: VFIO-001 host: " in proc.stderr


def test_a_hostile_address_never_reaches_the_line(gpu_ready):
    """A sysfs entry named like an argument list is no device the plan accepts: nothing is printed."""
    from scanner.remediation.shell import UnsafeValue
    from scanner.vm_config.plan import _passed

    class Facts:
        pci = {}

    with pytest.raises(UnsafeValue):
        _passed(Facts(), "0000:01:00.0,romfile=/etc/shadow")


# -- this machine -------------------------------------------------------------------------------------

def test_this_machine_without_iommu_is_blocked():
    from pathlib import Path

    groups = Path("/sys/kernel/iommu_groups")
    if groups.is_dir() and any(groups.iterdir()):
        pytest.skip("this machine has IOMMU groups")
    devices = sorted(p.name for p in Path("/sys/bus/pci/devices").iterdir()) if Path("/sys/bus/pci/devices").is_dir() else []
    if not devices:
        pytest.skip("this machine shows no PCI devices")
    proc = run_cli("qemu-args", "--device", devices[-1])
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert any(line.startswith("VFIO-005 host: ") for line in blocking_lines(proc)), proc.stderr


def test_the_arguments_are_for_the_user_qemu_will_run_as(gpu_ready):
    """QEMU run as alice, with systemd's 8 MiB of locked memory, stops at VM start: the arguments are not
    printed for her, though root may have them. A size that is none is a usage error."""
    gpu_ready.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:A:/home/alice:/bin/bash\n")
    as_root = qemu_args(gpu_ready.root, "--device", GPU, "--guest-memory", "16G")
    assert (as_root.returncode, as_root.stdout) == (0, GPU_LINE), as_root.stderr
    as_alice = qemu_args(gpu_ready.root, "--device", GPU, "--vm-user", "alice", "--guest-memory", "16G")
    assert as_alice.returncode == 1 and as_alice.stdout == ""
    assert any(line.startswith("VFIO-019 host: alice (uid 1000, --vm-user) may lock 8 MiB")
               for line in blocking_lines(as_alice)), as_alice.stderr
    bad = qemu_args(gpu_ready.root, "--device", GPU, "--guest-memory", "lots")
    assert bad.returncode == 2 and len(stderr_lines(bad)) == 1 and "--guest-memory" in bad.stderr
