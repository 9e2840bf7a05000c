"""A fleet of snapshots, as ``vfio-scan fleet --save-snapshots DIR`` leaves them after an audit.

Eight kinds of host, each built as a tree (``treegen`` and the test fixtures' builders) and
snapshotted once by the real collector (``vfio-scan collect --root``); the fleet is those
snapshots again and again under their own host names (``node-0001`` ...), so that a merged report
has hosts that pass, hosts that fail for different reasons and hosts with SR-IOV NICs:

* AMD servers ready for passthrough: 10 functions, 40 (a NIC with 27 VFs), 300 (two NICs);
* Intel GPU workstations (the fixtures' ``workstation``): ready; booted without
  ``intel_iommu=on`` and with no IOMMU active; without the vfio modules; without interrupt
  remapping; without /dev/kvm.

Usage: ``python3 benchmarks/fleetgen.py DIR --hosts N [--vfio-scan PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import treegen  # noqa: E402
from hosttree import DMESG_INTEL_ON, HostTree, workstation  # noqa: E402

HOSTNAME_FILE = "/proc/sys/kernel/hostname"


def _no_intel_iommu(tree: HostTree) -> None:
    """Booted without intel_iommu=on, and the IOMMU did not come up: no units, no groups (VFIO-005)."""
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=/dev/nvme0n1p2 ro quiet")
    log = [line for line in DMESG_INTEL_ON.splitlines(keepends=True)
           if "iommu group" not in line and "DMAR: IOMMU enabled" not in line and "Default domain" not in line]
    tree.kernel_log("".join(log).replace(" intel_iommu=on iommu=pt", ""))
    for link in tree.path("/sys/bus/pci/devices").iterdir():
        tree.remove(f"/sys/bus/pci/devices/{link.name}/iommu_group")
    shutil.rmtree(tree.path("/sys/kernel/iommu_groups"))
    shutil.rmtree(tree.path("/sys/devices/virtual/iommu"))
    tree.remove("/sys/class/iommu/dmar0")


def _no_vfio_modules(tree: HostTree) -> None:
    tree.modules(loaded=["kvm_intel", "kvm"], installed=[])


def _no_interrupt_remapping(tree: HostTree) -> None:
    tree.interrupts(remapped=False)
    tree.kernel_log(DMESG_INTEL_ON.replace("DMAR-IR: Enabled IRQ remapping in xapic mode",
                                           "DMAR-IR: IRQ remapping was enabled on dmar0 but we are not in kernel mode"))


def _no_kvm(tree: HostTree) -> None:
    tree.remove("/dev/kvm")


def build_templates(directory: Path) -> list:
    """The eight host trees under ``directory``; returns their paths."""
    trees = []
    for functions in (10, 40, 300):
        path = directory / f"server-{functions}"
        treegen.build(path, functions)
        trees.append(path)
    for name, spoil in (("ready", None), ("no-intel-iommu", _no_intel_iommu), ("no-vfio", _no_vfio_modules),
                        ("no-irq-remapping", _no_interrupt_remapping), ("no-kvm", _no_kvm)):
        path = directory / f"workstation-{name}"
        tree = workstation(path)
        if spoil:
            spoil(tree)
        trees.append(path)
    return trees


def collect(vfio_scan: str, tree: Path, output: Path) -> dict:
    subprocess.run([vfio_scan, "collect", "--root", str(tree), "-o", str(output)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(output.read_text())


def build(directory, hosts: int, vfio_scan: str) -> list:
    """Write ``hosts`` snapshots ``node-NNNN.json`` into ``directory``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vfio-scan-fleet-") as scratch:
        scratch = Path(scratch)
        templates = [collect(vfio_scan, tree, scratch / f"{tree.name}.json")
                     for tree in build_templates(scratch / "trees")]
    written = []
    for n in range(hosts):
        snapshot = templates[n % len(templates)]
        name = f"node-{n + 1:04d}"
        snapshot["hostname"] = name
        entry = snapshot["entries"].get(HOSTNAME_FILE)
        if entry and entry.get("type") == "file":
            entry["text"] = name + "\n"
        path = directory / f"{name}.json"
        path.write_text(json.dumps(snapshot))
        written.append(path)
    return written


def default_vfio_scan() -> str:
    beside = Path(sys.executable).with_name("vfio-scan")
    return str(beside) if beside.exists() else "vfio-scan"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to write the snapshots (created)")
    parser.add_argument("--hosts", type=int, default=1000, help="snapshots to write (default 1000)")
    parser.add_argument("--vfio-scan", default=default_vfio_scan(), help="the vfio-scan to collect with")
    args = parser.parse_args(argv)
    written = build(args.directory, args.hosts, args.vfio_scan)
    size = sum(os.path.getsize(p) for p in written)
    print(f"{args.directory}: {len(written)} snapshots, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
