"""PCI functions as sysfs shows them (``/sys/bus/pci/devices/<address>``).

Attribute text is parsed here, purely; the Facts layer does the reading. A garbled attribute
becomes ``None`` plus a note naming the file, never an exception.
"""

from __future__ import annotations

from typing import Optional, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import field, record

# ``\Z``, not ``$`` (which also matches before a trailing newline: "0000:01:00.0\n" is no address)
ADDRESS = lazy_compile(r"^(?P<domain>[0-9a-f]{4,8}):(?P<bus>[0-9a-f]{2}):(?P<slot>[0-1][0-9a-f])\.(?P<func>[0-7])\Z")
_HEX_ID = lazy_compile(r"^(?:0x)?([0-9a-fA-F]{1,8})$")

#: PCI class codes (base class + subclass) that are bridges: they stay on the host, never bound to vfio.
BRIDGE_CLASSES = ("0604", "0609")
VFIO_DRIVERS = ("vfio-pci",)


def is_vfio_driver(driver: Optional[str]) -> bool:
    """vfio-pci itself, or a vendor variant such as ``mlx5_vfio_pci`` / ``nvgrace_gpu_vfio_pci``."""
    return bool(driver) and (driver in VFIO_DRIVERS or driver.endswith("_vfio_pci") or driver.endswith("-vfio-pci"))


def parse_hex_id(text: Optional[str], width: int) -> Optional[str]:
    """``0x10de\\n`` -> ``10de`` (zero-padded to ``width`` hex digits); None when garbled."""
    if text is None:
        return None
    m = _HEX_ID.match(text.strip())
    if not m or len(m.group(1)) > width:
        return None
    return m.group(1).lower().zfill(width)


def parse_int(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    value = text.strip()
    # ASCII digits only ("²" is isdigit(), yet int() refuses it) and a sane length (int() refuses
    # over 4300 digits): garbage is None, never an exception
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 20 else None


def parse_override(text: Optional[str]) -> Optional[str]:
    """``driver_override`` reads ``(null)`` when unset."""
    if text is None:
        return None
    value = text.strip()
    return None if value in ("", "(null)") else value


def parse_reset_method(text: Optional[str]) -> Optional[Tuple[str, ...]]:
    """``flr bus`` -> ("flr", "bus"); an empty file is an empty tuple (no reset method)."""
    if text is None:
        return None
    return tuple(text.split())


def slot_of(address: str) -> str:
    """``0000:01:00.1`` -> ``0000:01:00`` (functions of one slot share it)."""
    return address.rsplit(".", 1)[0]


@record(frozen=True)
class PciDevice:
    """One PCI function as sysfs describes it."""

    address: str
    vendor: Optional[str] = None  # "10de"
    device: Optional[str] = None  # "2204"
    pci_class: Optional[str] = None  # "030000"
    subsystem_vendor: Optional[str] = None
    subsystem_device: Optional[str] = None
    driver: Optional[str] = None
    driver_override: Optional[str] = None
    iommu_group: Optional[str] = None
    sriov_totalvfs: Optional[int] = None
    sriov_numvfs: Optional[int] = None
    sriov_drivers_autoprobe: Optional[int] = None
    sriov_vf_device: Optional[str] = None  # the device ID its VFs will have ("101e")
    physfn: Optional[str] = None
    virtfns: Tuple[str, ...] = ()
    boot_vga: Optional[bool] = None
    reset_method: Optional[Tuple[str, ...]] = None  # None when the file does not exist (< 5.15)
    has_reset: bool = False  # the older ``reset`` file
    has_pci_bus: bool = False  # a bridge's ``pci_bus`` directory
    notes: Tuple[str, ...] = field(default=())
    #: why the device's state is unknown (its directory, ``driver`` or ``iommu_group`` link is
    #: unreadable or garbage): then ``driver`` None does not mean unbound, nor ``iommu_group`` None
    #: "in no group"
    reason: Optional[str] = None

    @property
    def ids(self) -> str:
        return f"{self.vendor or '????'}:{self.device or '????'}"

    @property
    def slot(self) -> str:
        return slot_of(self.address)

    @property
    def is_bridge(self) -> bool:
        return bool(self.pci_class and self.pci_class[:4] in BRIDGE_CLASSES) or self.has_pci_bus

    @property
    def is_vf(self) -> bool:
        return self.physfn is not None

    @property
    def is_pf(self) -> bool:
        return bool(self.sriov_totalvfs)

    def unreadable(self, *attributes: str) -> list:
        """Notes for those attributes that exist but could not be read (a rule skips on them)."""
        return [n for n in self.notes if any(f"/{name}:" in n for name in attributes)]


#: Names of common PCI classes (class + subclass), used when no pci.ids is installed.
CLASS_NAMES = {
    "0000": "Non-VGA unclassified device", "0100": "SCSI storage controller", "0101": "IDE interface",
    "0104": "RAID bus controller", "0106": "SATA controller", "0107": "Serial Attached SCSI controller",
    "0108": "Non-Volatile memory controller", "0180": "Mass storage controller",
    "0200": "Ethernet controller", "0207": "Infiniband controller", "0280": "Network controller",
    "0300": "VGA compatible controller", "0301": "XGA compatible controller", "0302": "3D controller",
    "0380": "Display controller", "0400": "Multimedia video controller", "0401": "Multimedia audio controller",
    "0403": "Audio device", "0480": "Multimedia controller", "0500": "RAM memory", "0580": "Memory controller",
    "0600": "Host bridge", "0601": "ISA bridge", "0604": "PCI bridge", "0609": "PCI bridge (semi-transparent)",
    "0680": "Bridge", "0700": "Serial controller", "0780": "Communication controller", "0805": "SD Host controller",
    "0806": "IOMMU", "0880": "System peripheral", "0c03": "USB controller", "0c05": "SMBus",
    "0c80": "Serial bus controller", "0d00": "IRDA controller", "0d11": "Bluetooth", "0d80": "Wireless controller",
    "1080": "Encryption controller", "1101": "Signal processing controller", "1180": "Signal processing controller",
    "1200": "Processing accelerators", "1300": "Non-Essential Instrumentation",
}


#: Names of the base classes (the first byte), for a subclass CLASS_NAMES does not know (as lspci does).
BASE_CLASS_NAMES = {
    "00": "Unclassified device", "01": "Mass storage controller", "02": "Network controller",
    "03": "Display controller", "04": "Multimedia controller", "05": "Memory controller", "06": "Bridge",
    "07": "Communication controller", "08": "Generic system peripheral", "09": "Input device controller",
    "0a": "Docking station", "0b": "Processor", "0c": "Serial bus controller", "0d": "Wireless controller",
    "0e": "Intelligent controller", "0f": "Satellite communications controller", "10": "Encryption controller",
    "11": "Signal processing controller", "12": "Processing accelerators", "13": "Non-Essential Instrumentation",
    "40": "Coprocessor", "ff": "Unassigned class",
}


def class_name(pci_class: Optional[str], base_fallback: bool = False) -> str:
    """``030000`` -> ``VGA compatible controller`` (or ``class 0xNNNN`` when unknown).

    With ``base_fallback``, an unknown subclass of a known base class gets the base class's name
    (``000200`` -> ``Unclassified device``, as lspci prints it).
    """
    if not pci_class:
        return "unknown class"
    known = CLASS_NAMES.get(pci_class[:4])
    if not known and base_fallback:
        known = BASE_CLASS_NAMES.get(pci_class[:2])
    return known or f"class 0x{pci_class[:4]}"


def describe(device: PciDevice) -> str:
    """One line for messages: ``10de:2204 VGA compatible controller (driver nvidia)``."""
    driver = f"driver {device.driver}" if device.driver else "no driver"
    return f"{device.ids} {class_name(device.pci_class)} ({driver})"
