"""Device targets: which PCI functions a scan is about, from what the user typed.

Accepted selectors (``--device``): a full address ``0000:01:00.0``, a short one ``01:00.0``
(domain 0000), or ``vendor:device`` ids ``10de:2204`` (every match). ``--class 0300`` selects by
class-code prefix; ``--vfs 0000:3b:00.0=8`` asks for 8 virtual functions on that PF (and makes it
a target). A malformed selector is a usage error; a selector that matches nothing is reported by
rule VFIO-010, not a crash.

A policy file's targets (:func:`policy_selector`) are selectors too: an address, or a ``match`` on
vendor, device, class prefix and subsystem ids, each with the driver the device must be on and,
for a PF, the VFs it must have; the command line's selectors are added to them.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from scanner.base.record import record

FULL = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")
SHORT = re.compile(r"^[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")
IDS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
CLASS = re.compile(r"^(0x)?[0-9a-fA-F]{2,6}$")
MAX_VFS = 65535

DEVICE_FORMS = "a full PCI address (0000:01:00.0), a short one (01:00.0) or vendor:device ids (10de:2204)"


class SelectorError(ValueError):
    """A selector that is not of any accepted form."""


@record(frozen=True)
class Selector:
    kind: str  # address | ids | class | match
    value: str  # normalized: 0000:01:00.0 | 10de:2204 | 0300 | vendor=10de,device=2204
    text: str  # as typed
    driver: Optional[str] = None  # the driver the selected devices must be on (a policy's ``driver``)
    vfs: Optional[int] = None  # VFs the selected PFs must have enabled (a policy's ``vfs``)
    fields: Tuple[Tuple[str, str], ...] = ()  # kind "match": (PciDevice attribute, value) pairs, all must hold

    def matches(self, device) -> bool:
        if self.kind == "address":
            return device.address == self.value
        if self.kind == "ids":
            return device.ids == self.value
        if self.kind == "match":
            return all(_field_matches(device, attr, value) for attr, value in self.fields)
        return bool(device.pci_class) and device.pci_class.startswith(self.value)

    @property
    def specificity(self) -> int:
        """How precisely it names a device: an address, then ids, then a class (for conflicting drivers)."""
        if self.kind == "address":
            return 3
        if self.kind == "ids" or (self.kind == "match" and any(a == "device" for a, _ in self.fields)):
            return 2
        return 1

    def __str__(self) -> str:
        return self.text


@record(frozen=True)
class Target:
    address: str
    selectors: Tuple[str, ...]  # what the user typed that selected it
    vfs: Optional[int] = None  # requested number of VFs (only for PFs given with --vfs)
    expected_driver: Optional[str] = None  # a policy's ``driver`` (None: vfio-pci, or the host's for a PF with vfs)

    def __str__(self) -> str:
        return self.address

    @property
    def for_passthrough(self) -> bool:
        """Is the device itself to be handed to a VM? A PF asked for VFs stays on its host driver,
        and so does a device a policy expects on a host driver (``driver = "ixgbe"``)."""
        if self.expected_driver:
            from scanner.facts.pci import is_vfio_driver

            return is_vfio_driver(self.expected_driver)
        return self.vfs is None

    def stays_on_host_reason(self, device=None) -> str:
        """Why the device is not judged for passthrough; ``device`` (its PciDevice) tells a VF from a PF."""
        if self.expected_driver:
            return (f"{self.address} stays on the host: the policy expects it on {self.expected_driver}, "
                    "not passed through")
        physfn = getattr(device, "physfn", None)
        if physfn:
            return (f"follows from VFIO-011: {self.address} is a VF (of {physfn}), not a physical function, so it "
                    f"cannot create VFs; ask --vfs {physfn}={self.vfs} on its PF")
        return (f"{self.address} is the physical function asked to create {self.vfs} VFs (--vfs): it stays on its "
                "host driver, and its VFs are what goes to VMs")


def normalize_address(text: str) -> Optional[str]:
    text = text.strip().lower()
    if FULL.match(text):
        domain, rest = text.split(":", 1)
        return f"{domain.zfill(4)}:{rest}"
    if SHORT.match(text):
        return f"0000:{text}"
    return None


def parse_device(text: str) -> Selector:
    value = (text or "").strip().lower()
    address = normalize_address(value)
    if address:
        return Selector("address", address, text)
    if IDS.match(value):
        return Selector("ids", value, text)
    raise SelectorError(f"--device {text!r}: expected {DEVICE_FORMS}")


def parse_class(text: str) -> Selector:
    value = (text or "").strip().lower()
    if not CLASS.match(value):
        raise SelectorError(f"--class {text!r}: expected a class-code prefix of 2 to 6 hex digits (0300 = VGA, 02 = network)")
    return Selector("class", value[2:] if value.startswith("0x") else value, text)


def parse_vfs(text: str) -> Tuple[str, int]:
    addr, sep, count = (text or "").partition("=")
    address = normalize_address(addr)
    if not sep or not address or not (count.strip().isascii() and count.strip().isdigit()) \
            or len(count.strip()) > 6 or int(count) > MAX_VFS:
        raise SelectorError(f"--vfs {text!r}: expected ADDRESS=COUNT, e.g. 0000:3b:00.0=8")
    return address, int(count)


#: The keys of a policy target's ``match`` and the device attribute each one compares.
MATCH_FIELDS = {"vendor": "vendor", "device": "device", "class": "pci_class",
                "subsystem_vendor": "subsystem_vendor", "subsystem_device": "subsystem_device"}
HEX4 = re.compile(r"^(0x)?[0-9a-fA-F]{4}$")


def _field_matches(device, key: str, value: str) -> bool:
    have = getattr(device, MATCH_FIELDS[key], None)
    if not have:
        return False
    return have.startswith(value) if key == "class" else have == value


def parse_match(match: Mapping[str, str], driver: Optional[str] = None, vfs: Optional[int] = None) -> Selector:
    """A policy target's ``match`` table (vendor, device, class prefix, subsystem ids; all must hold)."""
    fields = []
    for key in MATCH_FIELDS:
        if key not in match:
            continue
        value = str(match[key]).strip().lower()
        if not (CLASS if key == "class" else HEX4).match(value):
            raise SelectorError(f"match {key} {match[key]!r}: expected "
                                + ("a class-code prefix of 2 to 6 hex digits" if key == "class" else "4 hex digits"))
        fields.append((key, value[2:] if value.startswith("0x") else value))
    unknown = sorted(set(match) - set(MATCH_FIELDS))
    if unknown or not fields:
        raise SelectorError(f"match: expected some of {', '.join(MATCH_FIELDS)}"
                            + (f", not {unknown[0]!r}" if unknown else ""))
    text = ",".join(f"{k}={v}" for k, v in fields)
    return Selector("match", text, text, driver=driver, vfs=vfs, fields=tuple(fields))


def policy_selector(address: Optional[str] = None, match: Optional[Mapping[str, str]] = None,
                    driver: Optional[str] = None, vfs: Optional[int] = None) -> Selector:
    """A policy's target: an ``address`` or a ``match``, with the expected driver and VF count.

    ``vfio_pci``, the module's name, is the driver ``vfio-pci``: sysfs names the driver with a dash,
    and taking the module name literally would fail a correctly bound device and offer
    ``echo vfio_pci > driver_override``, which leaves it with no driver at all."""
    if isinstance(driver, str) and driver.replace("-", "_") == "vfio_pci":
        driver = "vfio-pci"
    if address is not None:
        normalized = normalize_address(str(address))
        if not normalized:
            raise SelectorError(f"address {address!r}: expected a full PCI address (0000:01:00.0) or a short one "
                                "(01:00.0)")
        return Selector("address", normalized, normalized, driver=driver, vfs=vfs)
    return parse_match(match or {}, driver=driver, vfs=vfs)


def resolve(selectors: Sequence[Selector], vfs: Mapping[str, int], devices: Mapping[str, object]
            ) -> Tuple[List[Target], List[Selector]]:
    """Match selectors against the host's devices: (targets in address order, unmatched selectors).

    A ``--vfs`` address is a target even when no ``--device`` names it; if it does not exist it
    is reported as unmatched. When several selectors name a driver (or a VF count) for one device,
    the most specific one wins (an address over ids over a class), the first one among equals;
    ``--vfs`` wins over a policy's ``vfs``.
    """
    chosen: Dict[str, List[str]] = {}
    drivers: Dict[str, Selector] = {}
    counts: Dict[str, Selector] = {}
    unmatched: List[Selector] = []
    by_class = _class_index(devices) if sum(sel.kind == "class" for sel in selectors) > 1 else None
    for sel in selectors:
        if sel.kind == "class" and by_class is not None:
            hits = _class_hits(by_class, sel.value)
        else:
            hits = [a for a, d in devices.items() if sel.matches(d)]
        if not hits:
            unmatched.append(sel)
        for a in hits:
            chosen.setdefault(a, []).append(sel.text)
            for wanted, pick in ((sel.driver, drivers), (sel.vfs, counts)):
                if wanted is not None and (a not in pick or sel.specificity > pick[a].specificity):
                    pick[a] = sel
    for address in vfs:
        if address in devices:
            chosen.setdefault(address, []).append(f"--vfs {address}={vfs[address]}")
        elif not any(s.kind == "address" and s.value == address for s in unmatched):
            unmatched.append(Selector("address", address, address))
    targets = [Target(a, tuple(chosen[a]), vfs[a] if a in vfs else (counts[a].vfs if a in counts else None),
                      drivers[a].driver if a in drivers else None) for a in sorted(chosen)]
    return targets, unmatched


def _class_index(devices: Mapping[str, object]) -> Dict[str, List[Tuple[int, str]]]:
    """Each class code the host's devices have, to its devices (position in ``devices``, address).

    Why: every ``--class`` selector would otherwise ask every device its class (six selectors on
    ten thousand functions: sixty thousand matches); indexed, each device is asked once."""
    index: Dict[str, List[Tuple[int, str]]] = {}
    for position, (address, device) in enumerate(devices.items()):
        pci_class = device.pci_class
        if pci_class:
            index.setdefault(pci_class, []).append((position, address))
    return index


def _class_hits(index: Mapping[str, List[Tuple[int, str]]], prefix: str) -> List[str]:
    """The addresses whose class begins with ``prefix``, in the devices' order (as a scan over them gives)."""
    found = [hit for pci_class, hits in index.items() if pci_class.startswith(prefix) for hit in hits]
    found.sort()
    return [address for _, address in found]


def parse_all(devices: Iterable[str] = (), classes: Iterable[str] = (), vfs: Iterable[str] = ()
              ) -> Tuple[List[Selector], Dict[str, int]]:
    """Parse every selector up front so a typo is exit 2 before any scanning."""
    selectors = [parse_device(d) for d in devices] + [parse_class(c) for c in classes]
    requests: Dict[str, int] = {}
    for item in vfs:
        address, count = parse_vfs(item)
        if requests.get(address, count) != count:  # 02:00.0=2 and 0000:02:00.0=4: which one was meant?
            raise SelectorError(f"--vfs {item!r}: {address} is asked for {requests[address]} VFs already")
        requests[address] = count
    return selectors, requests


def unknown_to(fields, selector) -> list:
    """The devices (of ``fields``, address -> PciFields) ``selector`` cannot be matched against: the ids,
    class or attributes it asks cannot be read. One of them may be the device asked for."""
    if selector.kind == "address":
        return []
    names = {"ids": ("vendor", "device"), "class": ("pci_class",)}.get(selector.kind) or \
        tuple(name for name, _ in selector.fields)
    return [address for address, device in fields.items() if any(getattr(device, name, "") is None for name in names)]
