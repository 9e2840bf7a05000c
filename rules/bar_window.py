"""VFIO-021 bar-window: the device's 64-bit BARs fit QEMU's default 64-bit PCI window.

What: the 64-bit prefetchable memory BARs of the device and of its sibling functions (the other
functions of its slot in its IOMMU group, which go to the VM with it) add up, rounded up to a power
of two, to no more than QEMU's default 64-bit PCI hole on the q35 machine: 32 GiB.

Why: the guest firmware places every 64-bit prefetchable BAR of an assigned device in the machine's
64-bit PCI window, each at an address aligned to its own size. A GPU with a resizable BAR (16 or 32
GiB, and 64 to 128 GiB on compute cards) does not fit the default window: the guest then shows the
device without its memory (Linux: ``BAR 1: no space for [mem size ...]``, Windows: Code 12),
although every host-side check passes. The window is a QEMU property:
``-global q35-pcihost.pci-hole64-size=SIZE`` (``i440FX-pcihost`` on the older pc machine), in libvirt
``<pcihole64 unit='KiB'>`` inside the ``pcie-root`` (``pci-root``) controller.

QEMU's defaults, from its source: ``hw/pci-host/q35.c`` ``#define Q35_PCI_HOST_HOLE64_SIZE_DEFAULT
(1ULL << 35)``, 32 GiB; ``hw/pci-host/i440fx.c`` ``#define I440FX_PCI_HOST_HOLE64_SIZE_DEFAULT (1ULL
<< 31)``, 2 GiB ("Keep it 2G to comply with older win32 guests"); libvirt's ``<pcihole64>`` notes
that QEMU rounds the size up to whole GiB. OVMF (UEFI guests) sizes its own 64-bit aperture too; ``-fw_cfg
name=opt/ovmf/X-PciMmio64Mb,string=MIB`` sets it.

How: ``/sys/bus/pci/devices/<addr>/resource`` of the device and of its siblings: BARs 0-5 with the
memory, 64-bit and prefetch flags (``IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_PREFETCH``);
the expansion ROM and the SR-IOV VF BARs that follow are not given to the guest as BARs. The sum is
rounded up to a power of two, since each BAR sits at its natural alignment. More than 32 GiB: warn,
with the window to ask for; more than 2 GiB: pass, saying what an i440fx machine needs. The finding
lists every BAR it counted, so that cards of several slots given to one VM can be added up.

Fix: start QEMU with ``-global q35-pcihost.pci-hole64-size=<N>G`` (libvirt:
``<controller type='pci' index='0' model='pcie-root'><pcihole64 unit='KiB'>N</pcihole64></controller>``),
and with OVMF ``-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=<MiB>``.
"""

from typing import List

from scanner import hookimpl
from scanner.facts.vm_start_hw import (GIB, I440FX_HOLE64_DEFAULT, Q35_HOLE64_DEFAULT, VIRT_HIGH_MMIO_DEFAULT,
                                       window_needed)
from scanner.engine.model import Evidence, Finding, Rule, Step

@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-021", name="bar-window", scope="device", severity="medium",
                  title="64-bit BARs fit QEMU's default 64-bit PCI window", check=check, docs=__doc__))


def slot_functions(facts, address: str) -> List[str]:
    """The device and the other functions of its slot in its IOMMU group (which go to the VM with it)."""
    device = facts.pci[address]
    members = facts.devices_in_group(device.iommu_group) if device.iommu_group else []
    siblings = [m for m in members if m != address and facts.pci.get(m) is not None
                and facts.pci[m].slot == device.slot and not facts.pci[m].is_bridge]
    return [address] + sorted(siblings)


def check(facts, scan):
    for target in scan.targets:
        yield _judge(facts, target.address)


def _judge(facts, address) -> Finding:
    from scanner.facts.memlock import format_size

    functions = slot_functions(facts, address)
    tables = [facts.bars(a) for a in functions]
    unread = [t.describe() for t in tables if not t.ok]
    if unread:
        return Finding.skip(f"cannot read the BARs ({'; '.join(unread)})", subject=address)
    big = [(a, bar) for a, table in zip(functions, tables) for bar in table.rows if bar.is_64bit_prefetchable]
    if not big:
        return Finding.passed("no 64-bit prefetchable BAR: nothing for QEMU's 64-bit PCI window to hold",
                              subject=address, observed="no 64-bit prefetchable BAR",
                              expected=f"at most {format_size(Q35_HOLE64_DEFAULT)} of them")
    total = sum(bar.size for _, bar in big)
    needed = window_needed(total)
    listed = ", ".join(f"{a} BAR {bar.index} {format_size(bar.size)}" for a, bar in big)
    evidence = [Evidence(f"/sys/bus/pci/devices/{a}/resource", f"BAR {bar.index}: {bar.line}") for a, bar in big]
    observed = f"64-bit prefetchable BARs: {format_size(total)} ({listed}); window needed {format_size(needed)}"
    if facts.is_arm64:
        return _judge_virt(address, listed, needed, observed, evidence)
    expected = f"at most {format_size(Q35_HOLE64_DEFAULT)} (q35's default 64-bit window)"
    if needed <= Q35_HOLE64_DEFAULT:
        return Finding.passed(_fits(total, needed), subject=address, observed=observed, expected=expected,
                              evidence=evidence)
    return Finding.warn(f"its 64-bit prefetchable BARs ({listed}) need a {format_size(needed)} 64-bit PCI window, "
                        f"more than QEMU's default ({format_size(Q35_HOLE64_DEFAULT)} on q35): the guest gets the "
                        f"device without its memory; start QEMU with {_qemu_argument('q35-pcihost', needed)} "
                        f"(libvirt: {_libvirt_element(needed)} in the pcie-root controller)",
                        subject=address, observed=observed, expected=expected, evidence=evidence,
                        remediation=[_step(needed)])


def _judge_virt(address, listed, needed, observed, evidence) -> Finding:
    """arm64: QEMU's virt machine, whose high PCIe window (512 GiB) holds what q35's 32 GiB does not."""
    from scanner.facts.memlock import format_size

    expected = f"at most {format_size(VIRT_HIGH_MMIO_DEFAULT)} (the virt machine's high PCIe window)"
    if needed <= VIRT_HIGH_MMIO_DEFAULT:
        return Finding.passed(f"its 64-bit prefetchable BARs need a {format_size(needed)} window: they fit the virt "
                              f"machine's high PCIe window ({format_size(VIRT_HIGH_MMIO_DEFAULT)}); no option needed",
                              subject=address, observed=observed, expected=expected, evidence=evidence)
    return Finding.warn(f"its 64-bit prefetchable BARs ({listed}) need a {format_size(needed)} window, more than the "
                        f"virt machine's high PCIe window ({format_size(VIRT_HIGH_MMIO_DEFAULT)}): the guest gets the "
                        "device without its memory", subject=address, observed=observed, expected=expected,
                        evidence=evidence,
                        remediation=[Step(summary=(f"Start QEMU with -machine virt,highmem-mmio-size={needed // GIB}G "
                                                   "where your QEMU has that property (recent releases); older ones "
                                                   "cannot give the guest this device's memory"),
                                          phase="access", manual=True, persistent=True,
                                          action={"kind": "vm-config", "highmem_mmio_size": needed})])


def _fits(total: int, needed: int) -> str:
    from scanner.facts.memlock import format_size

    message = (f"its 64-bit prefetchable BARs ({format_size(total)}) fit QEMU's default 64-bit window on q35 "
               f"({format_size(Q35_HOLE64_DEFAULT)})")
    if needed > I440FX_HOLE64_DEFAULT:
        message += (f"; on an i440fx (pc) machine, whose default is {format_size(I440FX_HOLE64_DEFAULT)}, add "
                    f"{_qemu_argument('i440FX-pcihost', needed)}")
    return message


def _qemu_argument(host_bridge: str, needed: int) -> str:
    return f"-global {host_bridge}.pci-hole64-size={needed // GIB}G"


def _libvirt_element(needed: int) -> str:
    return f"<pcihole64 unit='KiB'>{needed >> 10}</pcihole64>"


def _step(needed: int) -> Step:
    from scanner.facts.memlock import format_size

    return Step(summary=(f"Give the VM a {format_size(needed)} 64-bit PCI window: QEMU "
                         f"{_qemu_argument('q35-pcihost', needed)} ({_qemu_argument('i440FX-pcihost', needed)} on "
                         f"the pc machine); libvirt: <controller type='pci' index='0' model='pcie-root'>"
                         f"{_libvirt_element(needed)}</controller>; with OVMF also -fw_cfg "
                         f"name=opt/ovmf/X-PciMmio64Mb,string={needed >> 20}"),
                phase="access", manual=True, persistent=True,
                action={"kind": "vm-config", "pci_hole64_size": needed})
