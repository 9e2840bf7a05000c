"""PCI functions read from sysfs (``/sys/bus/pci/devices/<address>``) through the Host layer, as far as asked.

Why on demand: a host with thousands of functions (SR-IOV VFs) has a dozen files per function,
yet a scan with a handful of targets needs only those targets (and their groups' members) in
full. Of every other device it needs a field or two: its class or ids to match a selector, its
ids to tell twins apart and name it from ``pci.ids``, its driver to index who keeps it. Reading
every device in full was most of such a scan's time.

:class:`PciDevices` is the mapping ``Facts.pci``: its keys are the directory's listing (asking
for them, their number or membership reads nothing) and a device is read in full on first
access (:func:`read_pci_device`). :attr:`PciDevices.fields` maps the same addresses to
:class:`PciFields`, which reads each attribute it is asked for from the same file with the same
parser: the value is the one the full read gives, whichever way it was read. An id or class a field
already holds is not read again when the device is then read in full (a target chosen by its
class): the report cannot show a class other than the one that chose the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Dict, Iterable, Iterator, Optional, Tuple, Union

from scanner.base.cached import cached_property
from scanner.facts.pci import (
    ADDRESS,
    PciDevice,
    parse_hex_id,
    parse_int,
    parse_override,
    parse_reset_method,
)

DEVICES = "/sys/bus/pci/devices"


def link_target(host, path: str, where=None) -> Tuple[Optional[str], Optional[str]]:
    """(last component of what the link at ``path`` points to, None), or (None, why there is none).

    A ``driver`` or ``iommu_group`` that is a plain file or directory instead of a link is
    garbage, not a driver named ``driver``: comparing with the path itself is not enough, since
    ``/sys/bus/pci/devices/<addr>`` is a link and resolves elsewhere. ``where``: the parent
    directory already resolved, when the caller reads several links of one directory.
    """
    got = host.resolve(path)
    if not got.ok:
        return None, got.reason
    parent, _, leaf = path.rstrip("/").rpartition("/")
    if where is None:
        where = host.resolve(parent or "/")
    if got.text == path or (where.ok and got.text == where.text.rstrip("/") + "/" + leaf):
        return None, "not a symlink"
    name = got.text.rstrip("/").rsplit("/", 1)[-1]
    home = LINK_HOMES.get(leaf)
    if home is not None and not _in_home(got.text, home):  # a rewritten link: "bound to passwd" is no driver
        return None, f"garbled: leads to {got.text[:80]}, not {home[1]}"
    return (name, None) if name else (None, "not a symlink")


#: Where the kernel's links of a device lead: (the path's parts, what the place is).
LINK_HOMES = {"driver": (("sys", "bus", None, "drivers", None), "a driver's directory"),
              "iommu_group": (("sys", "kernel", "iommu_groups", None), "an IOMMU group's directory")}


def _in_home(path: str, home) -> bool:
    parts = path.strip("/").split("/")
    return len(parts) == len(home[0]) and all(want is None or part == want for part, want in zip(parts, home[0]))


def read_pci_device(host, address: str, known: Optional[Dict[str, str]] = None) -> PciDevice:
    """Every attribute of one function, with a note for each file that exists but is garbled or
    unreadable, and the ``reason`` its state cannot be known (directory, driver or group link).

    ``known``: ids and class already read and parsed (:class:`PciFields`, by file name), taken as
    they are. Only a value that parsed is known: a file that was missing, unreadable or garbled is
    read again, for its note.
    """
    base = f"{DEVICES}/{address}"
    notes = []
    known = known or {}

    def attr(name: str) -> Optional[str]:
        got = host.read(f"{base}/{name}")
        if got.ok:
            return got.text
        if not got.missing:
            notes.append(f"{base}/{name}: {got.reason}")
        elif name in names:  # listed, yet missing: a dangling link, not an absent attribute
            notes.append(f"{base}/{name}: {got.reason} (a dangling link)")
        return None

    def hex_attr(name: str, width: int) -> Optional[str]:
        if known.get(name) is not None:
            return known[name]
        text = attr(name)
        value = parse_hex_id(text, width)
        if text is not None and value is None:
            notes.append(f"{base}/{name}: garbled: {text.strip()[:40]!r}")
        return value

    def int_attr(name: str) -> Optional[int]:
        text = attr(name)
        value = parse_int(text)
        if text is not None and value is None:
            notes.append(f"{base}/{name}: garbled: {text.strip()[:40]!r}")
        return value

    listing = host.listdir(base)
    names = set(listing.entries())
    # what makes the device's state unknowable: its directory, its driver or its group link
    problems = [] if listing.ok else [f"{base}: {listing.reason}"]
    if listing.ok and not names & {"vendor", "device", "class"}:
        problems.append(f"{base}: not a PCI device directory (no vendor, device or class)")

    resolved_base = []  # resolved once for all of the device's links (a virtfn link per VF of a PF)

    def link(name: str, vital: bool = False) -> Optional[str]:
        if not resolved_base:
            resolved_base.append(host.resolve(base))
        value, why = link_target(host, f"{base}/{name}", resolved_base[0])
        if why:
            (problems if vital else notes).append(f"{base}/{name}: {why}")
        return value
    virtfns = sorted((n for n in names if n.startswith("virtfn") and n[6:].isascii() and n[6:].isdigit()
                      and len(n) <= 16),
                     key=lambda n: int(n[6:]))
    vendor, device, pci_class = hex_attr("vendor", 4), hex_attr("device", 4), hex_attr("class", 6)
    # ids or a class that cannot be read make the device unknowable too: which driver claims it, which
    # twins ids= takes at boot, whether it is a display are all told by them
    identity = {f"{base}/vendor", f"{base}/device", f"{base}/class"}
    problems += [note for note in notes if note.split(": ", 1)[0] in identity]
    boot_vga = attr("boot_vga") if "boot_vga" in names else None
    if boot_vga is not None and boot_vga.strip() not in ("0", "1"):
        notes.append(f"{base}/boot_vga: garbled: {boot_vga.strip()[:40]!r}")
        boot_vga = None
    return PciDevice(
        address=address,
        vendor=vendor,
        device=device,
        pci_class=pci_class,
        subsystem_vendor=hex_attr("subsystem_vendor", 4) if "subsystem_vendor" in names else None,
        subsystem_device=hex_attr("subsystem_device", 4) if "subsystem_device" in names else None,
        driver=link("driver", vital=True) if "driver" in names else None,
        driver_override=parse_override(attr("driver_override")) if "driver_override" in names else None,
        iommu_group=link("iommu_group", vital=True) if "iommu_group" in names else None,
        sriov_totalvfs=int_attr("sriov_totalvfs") if "sriov_totalvfs" in names else None,
        sriov_numvfs=int_attr("sriov_numvfs") if "sriov_numvfs" in names else None,
        sriov_drivers_autoprobe=int_attr("sriov_drivers_autoprobe") if "sriov_drivers_autoprobe" in names else None,
        sriov_vf_device=hex_attr("sriov_vf_device", 4) if "sriov_vf_device" in names else None,
        physfn=link("physfn") if "physfn" in names else None,
        virtfns=tuple(v for v in (link(n) for n in virtfns) if v),
        boot_vga=(boot_vga.strip() == "1") if boot_vga is not None else None,
        reset_method=parse_reset_method(attr("reset_method")) if "reset_method" in names else None,
        has_reset="reset" in names,
        has_pci_bus="pci_bus" in names,
        notes=tuple(notes),
        reason="; ".join(problems) or None,
    )


class PciFields:
    """The attributes of one function that selectors, indexes and the ``groups`` table ask of every
    device, each read on first use; same names and values as :class:`PciDevice`'s (no notes, no
    reason: what a device's trouble is, only its full read tells)."""

    ids = PciDevice.ids
    slot = PciDevice.slot
    is_bridge = PciDevice.is_bridge

    #: the fields read from one file each, by file name: what the full read may take over
    HEX_FILES = {"vendor": "vendor", "device": "device", "class": "pci_class",
                 "subsystem_vendor": "subsystem_vendor", "subsystem_device": "subsystem_device"}

    def __init__(self, host, address: str):
        self.host = host
        self.address = address
        self.base = f"{DEVICES}/{address}"

    def known(self) -> Dict[str, str]:
        """The ids and class read so far that parsed, by file name (for :func:`read_pci_device`)."""
        held = self.__dict__
        return {name: held[field] for name, field in self.HEX_FILES.items() if held.get(field) is not None}

    def _hex(self, name: str, width: int) -> Optional[str]:
        got = self.host.read(f"{self.base}/{name}")
        return parse_hex_id(got.text if got.ok else None, width)

    def _listed(self, name: str) -> bool:
        """Does the device directory list ``name``? The full read takes the subsystem ids, the driver
        and ``pci_bus`` only where it does; asked of the Host layer name by name
        (``host.lists``), which answers as the listing would without listing the directory."""
        return self.host.lists(self.base, name)

    @cached_property
    def vendor(self) -> Optional[str]:
        return self._hex("vendor", 4)

    @cached_property
    def device(self) -> Optional[str]:
        return self._hex("device", 4)

    @cached_property
    def pci_class(self) -> Optional[str]:
        return self._hex("class", 6)

    @cached_property
    def subsystem_vendor(self) -> Optional[str]:
        return self._hex("subsystem_vendor", 4) if self._listed("subsystem_vendor") else None

    @cached_property
    def subsystem_device(self) -> Optional[str]:
        return self._hex("subsystem_device", 4) if self._listed("subsystem_device") else None

    @cached_property
    def driver(self) -> Optional[str]:
        if not self._listed("driver"):
            return None
        return link_target(self.host, f"{self.base}/driver", self.host.resolve(self.base))[0]

    @cached_property
    def has_pci_bus(self) -> bool:
        return self._listed("pci_bus")


class _ByAddress(Mapping):
    """A mapping over one host's PCI addresses: listing them, counting them, asking for one reads nothing."""

    _addresses: Dict[str, None]

    def __contains__(self, address) -> bool:
        return address in self._addresses

    def __iter__(self) -> Iterator[str]:
        return iter(self._addresses)

    def __len__(self) -> int:
        return len(self._addresses)


class PciDevices(_ByAddress):
    """Every PCI function by address, read on first access; see the module docstring.

    Names that are not PCI addresses are not keys; the order is the listing's.
    """

    def __init__(self, host, names: Iterable[str]):
        self._host = host
        self._addresses = dict.fromkeys(n for n in names if ADDRESS.match(n))
        self._read: Dict[str, PciDevice] = {}
        self.fields = _FieldsView(self)

    def __getitem__(self, address: str) -> PciDevice:
        device = self._read.get(address)
        if device is None:
            if address not in self._addresses:
                raise KeyError(address)
            fields = self.fields._fields.get(address)
            device = self._read[address] = read_pci_device(self._host, address, fields and fields.known())
        return device

    def __repr__(self) -> str:
        return f"<PciDevices: {len(self)} functions, {len(self._read)} read>"


class _FieldsView(_ByAddress):
    """``PciDevices.fields``: the same addresses, each to its :class:`PciFields` (or to the device
    itself once it was read in full: nothing is read twice)."""

    def __init__(self, devices: PciDevices):
        self._devices = devices
        self._addresses = devices._addresses
        self._fields: Dict[str, PciFields] = {}

    def __getitem__(self, address: str) -> Union[PciDevice, PciFields]:
        full = self._devices._read.get(address)
        if full is not None:
            return full
        found = self._fields.get(address)
        if found is None:
            if address not in self._addresses:
                raise KeyError(address)
            found = self._fields[address] = PciFields(self._devices._host, address)
        return found


__all__ = ["PciDevices", "PciFields", "link_target", "read_pci_device"]
