"""Can this host honour an existing VM definition? One verdict per device it asks for.

Each device is judged as the scan judges a target (every rule, the definition's devices all
targets at once, so that devices of one IOMMU group given to the VM together cover each other),
with the VM manager's own way of binding: a libvirt ``managed='yes'`` hostdev and every Proxmox
``hostpciN`` are detached by the VM manager at VM start (``--managed``), a ``managed='no'``
hostdev must be on vfio-pci already. What only a reboot would lose, and a missing KVM, are cautions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Sequence, Tuple

from scanner.vm_config.existing import PVE_MAPPING_FILE, Requested, parse_pve_mappings, pve_path


@dataclass(frozen=True)
class Verdict:
    where: str
    addresses: Tuple[str, ...]
    status: str  # yes | no | unchecked
    reasons: Tuple[str, ...] = ()


def expand(facts, request: Requested) -> Tuple[Tuple[str, ...], List[str]]:
    """(the addresses asked for, problems): a whole slot is every function the host has there."""
    addresses, problems = list(request.addresses), []
    for slot in request.slots:
        functions = sorted(a for a, d in facts.pci.items() if a.rsplit(".", 1)[0] == slot and not d.is_bridge)
        if not functions:
            problems.append(f"no device at {slot} on this host")
        addresses += functions
    for address in request.addresses:
        if address not in facts.pci:
            problems.append(f"no device at {address} on this host")
    return tuple(addresses), problems


def resolve_mappings(facts, requests: Sequence[Requested]) -> List[Requested]:
    """Each Proxmox ``mapping=NAME`` as the devices its ``map`` line for this node names, or unchecked
    with the reason; a map line whose ids or IOMMU group no longer match this host is kept with them,
    and :func:`judge` says so (Proxmox refuses to start such a VM)."""
    if not any(r.mapping for r in requests):
        return list(requests)
    got = facts.host.read(PVE_MAPPING_FILE)
    mappings = parse_pve_mappings(got.text) if got.ok else {}
    node = facts.hostname.split(".")[0]
    resolved = []
    for request in requests:
        if not request.mapping:
            resolved.append(request)
            continue
        if not got.ok:
            resolved.append(replace(request, unchecked=f"mapping {request.mapping!r}: {got.describe()}"))
            continue
        lines = [m for m in mappings.get(request.mapping, []) if m.node == node]
        if request.mapping not in mappings or not lines:
            why = "no such mapping" if request.mapping not in mappings else f"no map line for node {node!r}"
            resolved.append(replace(request, unchecked=f"mapping {request.mapping!r} in {PVE_MAPPING_FILE}: {why}"))
            continue
        mapped = lines[0]
        paths = [pve_path(p) for p in mapped.paths]
        if not paths or None in paths:
            resolved.append(replace(request, unchecked=f"mapping {request.mapping!r}: its path is no PCI address"))
            continue
        resolved.append(replace(request, addresses=tuple(f"{b}.{f}" for b, f in paths if f is not None),
                                slots=tuple(b for b, f in paths if f is None), expected=(mapped.ids, mapped.group)))
    return resolved


def mapping_problems(facts, request: Requested, addresses: Sequence[str]) -> List[str]:
    """What no longer matches a mapping's ids and IOMMU group (the first device of its path)."""
    if not request.expected or not addresses or addresses[0] not in facts.pci:
        return []
    ids, group = request.expected
    device = facts.pci[addresses[0]]
    problems = []
    if ids and ids.lower() != device.ids:
        problems.append(f"mapping {request.mapping!r} expects {ids} at {addresses[0]}; this host has {device.ids} there")
    if group and group != device.iommu_group:
        problems.append(f"mapping {request.mapping!r} expects IOMMU group {group} for {addresses[0]}; it is in group "
                        f"{device.iommu_group or 'none'} now")
    return problems


def judge(facts, rules, policy, requests: Sequence[Requested], is_caution) -> Tuple[List[Verdict], List[str], bool]:
    """(one verdict per request, host-level blockers as lines, whether a rule errored)."""
    requests = resolve_mappings(facts, requests)
    from scanner.engine.runner import Scan
    from scanner.engine.scanning import scan_host
    from scanner.facts.targets import parse_all

    expanded = {r.where: expand(facts, r) for r in requests if not r.unchecked}
    present = sorted({a for addresses, _ in expanded.values() for a in addresses if a in facts.pci})
    findings = {}
    host_lines: List[str] = []
    errored = False
    for managed in sorted({r.managed for r in requests if not r.unchecked}):
        if not present:
            break
        report = scan_host(facts.host, rules, Scan(policy=policy, managed=managed),
                           selectors=parse_all(devices=present)[0], facts=facts)
        errored = errored or bool(report.notes) or any(f.status == "error" for f in report.findings)
        for finding in report.findings:
            if finding.status == "fail" and not is_caution(finding):
                if finding.subject == "host":
                    line = f"{finding.rule_id} host: {finding.message}"
                    if line not in host_lines:
                        host_lines.append(line)
                else:
                    findings.setdefault((managed, finding.subject), []).append(f"{finding.rule_id}: {finding.message}")
    verdicts = []
    for request in requests:
        if request.unchecked:
            verdicts.append(Verdict(request.where, request.addresses, "unchecked", (request.unchecked,)))
            continue
        addresses, problems = expanded[request.where]
        reasons = list(problems) + mapping_problems(facts, request, addresses)
        for address in addresses:
            reasons += [f"{address} {line}" for line in findings.get((request.managed, address), [])]
        if host_lines:
            reasons.append("this host is not ready (see the host lines above)")
        verdicts.append(Verdict(request.where, addresses, "no" if reasons else "yes", tuple(reasons)))
    return verdicts, host_lines, errored
