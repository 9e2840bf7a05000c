"""``/proc/interrupts``: remapped interrupts carry an ``IR-`` chip prefix (``IR-PCI-MSI``)."""

from __future__ import annotations

from typing import Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import record

_IR = lazy_compile(r"(?:^|\s)IR-[A-Za-z]")
_MSI = lazy_compile(r"PCI-MSI|DMAR-MSI|IO-APIC")
#: a device's MSI on the plain PCI-MSI chip (``PCI-MSI``, ``PCI-MSIX-0000:00:02.0``), not through the IR domain
_PLAIN_PCI_MSI = lazy_compile(r"(?:^|\s)PCI-MSI")


@record(frozen=True)
class Interrupts:
    """What ``/proc/interrupts`` says about interrupt remapping."""

    remapped: Tuple[str, ...]  # lines whose chip is ``IR-...``
    msi_or_ioapic: int  # lines routed through MSI or the IO-APIC (where IR would show)
    lines: int
    plain_msi: Tuple[str, ...] = ()  # device MSIs on the plain ``PCI-MSI`` chip: not remapped

    @property
    def any_remapped(self) -> bool:
        return bool(self.remapped)


def parse_interrupts(text: str) -> Interrupts:
    remapped, plain, routed, total = [], [], 0, 0
    for line in text.splitlines()[1:]:  # the first line is the CPU header
        if ":" not in line:
            continue
        total += 1
        if _IR.search(line):
            remapped.append(" ".join(line.split()))
        elif _PLAIN_PCI_MSI.search(line):
            plain.append(" ".join(line.split()))
        if _MSI.search(line):
            routed += 1
    return Interrupts(remapped=tuple(remapped), msi_or_ioapic=routed, lines=total, plain_msi=tuple(plain))
