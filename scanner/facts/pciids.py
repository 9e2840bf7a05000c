"""Human names of PCI vendors and devices from the system's ``pci.ids`` (pciutils / hwdata).

The format (https://pci-ids.ucw.cz/)::

    # comment
    10de  NVIDIA Corporation                       vendor: 4 hex digits, two spaces, name
    <TAB>2204  GA102 [GeForce RTX 3090]            device of the vendor above: one tab
    <TAB><TAB>1458 403b  GeForce RTX 3090 ...      subsystem: two tabs (ignored here)
    C 03  Display controller                       the class section (ignored here: the
    <TAB>00  VGA compatible controller             built-in class names are used instead)

:func:`parse_pci_ids` is pure and never raises: junk lines are skipped and counted in a note,
a device line before any vendor is ignored, a duplicate keeps the first entry (as the file is
meant to be read), and control characters in names are replaced so that a hostile file cannot
drive the terminal. The Facts layer finds and reads the file (``Facts.pci_ids``).
"""

from __future__ import annotations

from typing import Collection, Dict, Optional, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import field, record

#: Where distributions install it, in the order lspci's builds look (Debian/Ubuntu's pciutils and
#: pci.ids packages, Fedora/Arch's hwdata, older or hand-built pciutils); a ``.gz`` of each is tried too.
PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")

_VENDOR = lazy_compile(r"^([0-9A-Fa-f]{4})\s+(\S.*)$")
_DEVICE = lazy_compile(r"^\t([0-9A-Fa-f]{4})\s+(\S.*)$")
_SECTION = lazy_compile(r"^[A-Z] ")  # "C 03  Display controller" (and any other lettered section)
_CONTROL = lazy_compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


@record(frozen=True)
class PciIds:
    """Vendor and device names by lower-case hex id; empty when no pci.ids was found."""

    vendors: Dict[str, str] = field(default_factory=dict)
    devices: Dict[Tuple[str, str], str] = field(default_factory=dict)
    source: Optional[str] = None  # the file the names came from
    notes: Tuple[str, ...] = ()  # what was skipped, or why there are no names
    #: vendor lines the file had, named here or not: a file with none is no pci.ids
    vendor_lines: int = 0

    @property
    def found(self) -> bool:
        """Was it a pci.ids? Whether or not it names any of the devices asked about."""
        return self.vendor_lines > 0

    def vendor_name(self, vendor: Optional[str]) -> Optional[str]:
        return self.vendors.get(vendor.lower()) if vendor else None

    def device_name(self, vendor: Optional[str], device: Optional[str]) -> Optional[str]:
        if not vendor or not device:
            return None
        return self.devices.get((vendor.lower(), device.lower()))

    def describe(self, vendor: Optional[str], device: Optional[str]) -> Optional[str]:
        """``NVIDIA Corporation GA102 [GeForce RTX 3090]`` as lspci prints it; ``Device 2204``
        stands in for a device the file does not know; None when the vendor is unknown too."""
        vname = self.vendor_name(vendor)
        if not vname:
            return None
        dname = self.device_name(vendor, device)
        return f"{vname} {dname}" if dname else f"{vname} Device {device or '????'}"


def _clean(name: str) -> str:
    return _CONTROL.sub("?", name).strip()


def parse_pci_ids(text: str, source: Optional[str] = None,
                  wanted: Optional[Collection[Tuple[str, str]]] = None) -> PciIds:
    """Vendors and devices from the text of a pci.ids file; see the module docstring.

    ``wanted``: only these (vendor, device) ids (lower-case hex) need names -- a host's own
    devices; the file has 40,000 lines and naming them all was most of ``vfio-scan groups``'
    time. The answer for the wanted ids, and the notes, are what a full parse gives.
    """
    wanted_vendors = None if wanted is None else {v for v, _ in wanted}
    vendors: Dict[str, str] = {}
    devices: Dict[Tuple[str, str], str] = {}
    vendor: Optional[str] = None  # the vendor the following device lines belong to
    in_vendors = True  # False inside the class section (or any other lettered section)
    junk, first_junk, vendor_lines = 0, None, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.startswith("\t\t"):
            continue  # subsystems (and the class section's prog-ifs): skipped below anyway, and a third of the file
        line = raw.rstrip("\r\n ")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith("\t"):
            m = _VENDOR.match(line)
            if m:
                in_vendors = True
                vendor_lines += 1
                vendor = m.group(1).lower()
                if wanted_vendors is None or vendor in wanted_vendors:
                    name = _clean(m.group(2))
                    if name:
                        vendors.setdefault(vendor, name)
                continue
            vendor = None
            if _SECTION.match(line):
                in_vendors = False
                continue
        elif line.startswith("\t\t") or not in_vendors:
            continue  # subsystems, and the sub-entries of the class section
        else:
            m = _DEVICE.match(line)
            if m and vendor:
                key = (vendor, m.group(1).lower())
                if wanted is None or key in wanted:
                    name = _clean(m.group(2))
                    if name:
                        devices.setdefault(key, name)
                continue
            if m:
                continue  # a device line with no vendor above it (after junk): nothing to file it under
        junk += 1
        first_junk = first_junk or number
    notes = (f"skipped {junk} unparseable line(s), the first at line {first_junk}",) if junk else ()
    return PciIds(vendors=vendors, devices=devices, source=source, notes=notes, vendor_lines=vendor_lines)


def gunzip(data: bytes, cap: int) -> Tuple[Optional[bytes], Optional[str]]:
    """Decompress a ``.gz`` file of at most ``cap`` bytes: (data, None) or (None, why not)."""
    import zlib  # here: only /proc/config.gz and pci.ids.gz need it

    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        return None, f"garbled: not gzip data ({exc})"
    if len(out) > cap:
        return None, f"too large: over the {cap}-byte cap once decompressed"
    if not inflater.eof:
        return None, "garbled: truncated gzip data"
    return out, None
