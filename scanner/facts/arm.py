"""What an arm64 host's firmware says about its SMMUs: the ACPI IORT, or the device tree.

x86 firmware names its IOMMUs in the DMAR (Intel) or IVRS (AMD) table. An arm64 server names its
SMMUs in the IORT (IO Remapping Table), which also maps each PCI root complex's requester IDs to
an SMMU or straight to the GICv3 ITS. The table alone proves nothing: QEMU's virt board (and
firmware with the SMMU switched off) still has an IORT, whose root complex maps to the ITS only.
What counts is a root complex mapped *through* an SMMU node. A device-tree boot has no ACPI at
all: there the PCIe host node's ``iommu-map`` property points at an ``arm,smmu-v3`` node.

Pure parsers; the Facts layer does the reading. Every offset and length of the binary table is
checked before use: a truncated or hostile table is None plus a reason, never an exception.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from scanner.base.record import record

#: IORT node types (ACPI IORT spec, issue E).
ITS_GROUP, NAMED_COMPONENT, ROOT_COMPLEX, SMMU_V1_V2, SMMU_V3, PMCG, RMR = range(7)
_HEADER = 48  # the ACPI header (36 bytes) + node count, node array offset, reserved
_NODE_HEADER = 16  # type, length, revision, identifier, ID mapping count, ID array offset
_ID_MAPPING = 20  # input base, ID count, output base, output reference, flags
MAX_NODES = 4096


@record(frozen=True)
class Iort:
    """The parts of an IORT that say whether PCI DMA goes through an SMMU."""

    smmu_v3: Tuple[int, ...]  # base addresses of the SMMUv3 nodes
    smmu_v2: Tuple[int, ...]  # base addresses of SMMUv1/v2 nodes
    its_groups: int
    root_complexes: int
    routed_root_complexes: int  # root complexes with an ID mapping whose output is an SMMU node

    @property
    def smmus(self) -> int:
        return len(self.smmu_v3) + len(self.smmu_v2)

    def describe(self) -> str:
        parts = [f"SMMUv3 at {', '.join(hex(b) for b in self.smmu_v3)}" if self.smmu_v3 else "",
                 f"SMMUv1/v2 at {', '.join(hex(b) for b in self.smmu_v2)}" if self.smmu_v2 else "",
                 f"{self.its_groups} ITS group(s)" if self.its_groups else "",
                 f"{self.routed_root_complexes} of {self.root_complexes} PCI root complex(es) mapped through an SMMU"]
        return "; ".join(p for p in parts if p)


def parse_iort(data: Optional[bytes]) -> Tuple[Optional[Iort], Optional[str]]:
    """(the table, None), or (None, why it cannot be read as an IORT)."""
    if not data or len(data) < _HEADER:
        return None, "garbled: shorter than an IORT header"
    if data[:4] != b"IORT":
        return None, f"garbled: signature {data[:4]!r}, not IORT"
    length, = struct.unpack_from("<I", data, 4)
    count, offset = struct.unpack_from("<II", data, 36)
    end = min(length, len(data))
    if count > MAX_NODES:
        return None, f"garbled: {count} nodes"
    nodes = {}
    position = offset
    for _ in range(count):
        if position < _HEADER or position + _NODE_HEADER > end:
            return None, "garbled: a node lies outside the table"
        kind, size = struct.unpack_from("<BH", data, position)
        if size < _NODE_HEADER or position + size > end:
            return None, "garbled: a node's length does not fit the table"
        nodes[position] = (kind, size)
        position += size
    v3, v2, routed = [], [], 0
    for where, (kind, size) in nodes.items():
        if kind in (SMMU_V3, SMMU_V1_V2) and size >= _NODE_HEADER + 8:
            base, = struct.unpack_from("<Q", data, where + _NODE_HEADER)
            (v3 if kind == SMMU_V3 else v2).append(base)
        elif kind == ROOT_COMPLEX:
            mappings, array = struct.unpack_from("<II", data, where + 8)
            for index in range(min(mappings, MAX_NODES)):
                entry = where + array + index * _ID_MAPPING
                if array < _NODE_HEADER or entry + _ID_MAPPING > where + size:
                    break
                output, = struct.unpack_from("<I", data, entry + 12)
                if nodes.get(output, (None,))[0] in (SMMU_V3, SMMU_V1_V2):
                    routed += 1
                    break
    kinds = [kind for kind, _ in nodes.values()]
    return Iort(smmu_v3=tuple(v3), smmu_v2=tuple(v2), its_groups=kinds.count(ITS_GROUP),
                root_complexes=kinds.count(ROOT_COMPLEX), routed_root_complexes=routed), None


#: Device-tree node names of SMMUs (``smmuv3@9050000``, ``iommu@15000000``) and PCIe hosts.
SMMU_NODE_PREFIXES = ("smmu", "iommu@")
PCIE_NODE_PREFIXES = ("pcie@", "pci@")


def is_smmu_node(name: str) -> bool:
    return name.startswith(SMMU_NODE_PREFIXES) and "@" in name


def is_pcie_node(name: str) -> bool:
    return name.startswith(PCIE_NODE_PREFIXES)


__all__ = ["Iort", "parse_iort", "is_smmu_node", "is_pcie_node", "SMMU_V3", "ROOT_COMPLEX", "ITS_GROUP"]
