"""An arm64 server tree, built from what Debian's arm64 kernel showed on QEMU's virt board (tests/data/arm64).

``arm64_host(root, boot="acpi")``: UEFI + ACPI, the real IORT with an SMMUv3, ``smmu3.0x...`` in
/sys/class/iommu, ITS-MSI interrupts, the PCI devices and IOMMU groups that kernel made (the
e1000 0000:04:02.0 behind the PCIe-to-PCI bridge shares 0000:04:01.0's stream ID and is in no
group). ``boot="dt"``: the device tree instead of ACPI, with its coarser groups (each root port
with the device below it).
"""

from __future__ import annotations

from pathlib import Path

from hosttree import HostTree

DATA = Path(__file__).resolve().parent / "data" / "arm64"
RELEASE = "6.1.0-57-arm64"
SMMU_UNIT = "smmu3.0x0000000009050000"
#: the Features line of QEMU's -cpu max under TCG, as /proc/cpuinfo shows it
FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
            "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit")
ARM64_KCONFIG = {
    "IOMMU_SUPPORT": "y", "ARM_SMMU": "y", "ARM_SMMU_V3": "y", "ARM_GIC_V3_ITS": "y", "IOMMU_DEFAULT_DMA_STRICT": "y",
    "VFIO": "m", "VFIO_PCI": "m", "VFIO_IOMMU_TYPE1": "m", "PCI_IOV": "y", "KVM": "y", "IOMMUFD": "n",
}
ACPI_TABLES = ("APIC", "DBG2", "DSDT", "FACP", "GTDT", "MCFG", "PPTT", "SPCR")
GROUPS_ACPI = {"0": ["0000:00:04.0"], "1": ["0000:00:05.0"], "2": ["0000:00:06.0"], "3": ["0000:03:00.0", "0000:04:01.0"],
               "8": ["0000:00:02.0"], "9": ["0000:02:00.0"], "10": ["0000:01:00.0"]}
GROUPS_DT = {"0": ["0000:00:04.0", "0000:01:00.0"], "1": ["0000:00:05.0", "0000:02:00.0"],
             "2": ["0000:00:06.0", "0000:03:00.0", "0000:04:01.0"], "7": ["0000:00:02.0"]}
DEVICES = {  # address: (vendor, device, class, driver, parent)
    "0000:00:00.0": ("1b36", "0008", "060000", None, None),
    "0000:00:02.0": ("8086", "10d3", "020000", "e1000e", None),
    "0000:00:04.0": ("1b36", "000c", "060400", "pcieport", None),
    "0000:00:05.0": ("1b36", "000c", "060400", "pcieport", None),
    "0000:00:06.0": ("1b36", "000c", "060400", "pcieport", None),
    "0000:01:00.0": ("1b36", "0010", "010802", "nvme", "0000:00:04.0"),
    "0000:02:00.0": ("8086", "10d3", "020000", "e1000e", "0000:00:05.0"),
    "0000:03:00.0": ("1b36", "000e", "060400", "shpchp", "0000:00:06.0"),
    "0000:04:01.0": ("8086", "100e", "020000", "e1000", "0000:03:00.0"),
    "0000:04:02.0": ("8086", "100e", "020000", "e1000", "0000:03:00.0"),
}


def arm64_host(root, boot: str = "acpi", iort: str = "IORT-qemu-virt-smmuv3", kvm: bool = False) -> HostTree:
    tree = HostTree(root)
    tree.release(RELEASE)
    block = ("processor\t: {n}\nBogoMIPS\t: 125.00\nFeatures\t: " + FEATURES + "\nCPU implementer\t: 0x00\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0x051\nCPU revision\t: 0\n\n")
    tree.write("/proc/cpuinfo", block.format(n=0) + block.format(n=1))
    tree.write("/proc/sys/kernel/arch", "aarch64\n")
    tree.cmdline("console=ttyAMA0 panic=-1 quiet" + (" initrd=initrd" if boot == "acpi" else ""))
    tree.kconfig(ARM64_KCONFIG, release=RELEASE)
    tree.modules(loaded=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"],
                 builtin=["arm_smmu", "arm_smmu_v3", "kvm"],
                 installed=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"], release=RELEASE)
    tree.write("/etc/modules", "vfio\nvfio_iommu_type1\nvfio_pci\n")
    tree.write("/sys/module/arm_smmu_v3/parameters/disable_bypass", "Y\n")
    if boot == "acpi":
        tree.acpi_tables(*ACPI_TABLES)
        if iort:
            tree.write("/sys/firmware/acpi/tables/IORT", (DATA / iort).read_bytes(), mode=0o400)
        tree.mkdir("/sys/firmware/efi")
    else:
        base = "/sys/firmware/devicetree/base"
        for node in ("chosen", "cpus", "intc@8000000", "memory@40000000", "pl011@9000000", "psci", "timer",
                     "smmuv3@9050000"):
            tree.mkdir(f"{base}/{node}")
        tree.write(f"{base}/smmuv3@9050000/compatible", b"arm,smmu-v3\0")
        for prop in ("bus-range", "compatible", "device_type", "dma-coherent", "iommu-map", "msi-map", "ranges", "reg"):
            tree.write(f"{base}/pcie@10000000/{prop}", b"\0")
    tree.iommu_unit(SMMU_UNIT)
    groups = GROUPS_ACPI if boot == "acpi" else GROUPS_DT
    group_of = {addr: number for number, members in groups.items() for addr in members}
    for addr, (vendor, device, klass, driver, parent) in DEVICES.items():
        tree.pci_device(addr, vendor, device, klass, driver=driver, group=group_of.get(addr), parent=parent,
                        reset_method="pm bus" if klass.startswith("02") else "")
    tree.write("/proc/interrupts", (DATA / "interrupts-6.1-acpi.txt").read_text())
    log = (DATA / "dmesg-6.1-acpi-excerpt.txt").read_text()
    if boot != "acpi":  # the device tree's ITS is named by its node, and groups come out coarser
        log = log.replace("PCI/MSI: ITS@0x8080000 domain created", "PCI/MSI: /intc@8000000/its@8080000 domain created")
    if kvm:
        log = log.replace("kvm [1]: HYP mode not available", "kvm [1]: Hyp mode initialized successfully")
        tree.dev_kvm()
    tree.kernel_log(log)
    tree.lockdown("none")
    tree.write("/dev/vfio/vfio", "")
    return tree


__all__ = ["arm64_host", "RELEASE", "SMMU_UNIT", "DATA", "ARM64_KCONFIG"]
