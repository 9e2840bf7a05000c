"""VFIO-012 group-isolation: nothing else in the target's IOMMU group is held by the host.

What: a device goes to a VM together with its whole IOMMU group. Every other member of the
target's group is classified: a **bridge** or root port (class 0x0604, or a ``pci_bus``
directory: it stays on the host on pcieport and is never bound to vfio, nor given to the VM), a
**sibling function** of the same slot (a GPU's HDMI audio, its USB-C controller: it goes to the
VM too), **another target** of the scan, or an **unrelated** endpoint that happens to share the
group. The group is viable when every non-bridge member is on a vfio driver, on pci-stub, or on
no driver at all -- and stays so at the next boot: a member unbound by hand (``echo ADDR >
driver/unbind``), or on vfio-pci through a runtime binding only, whose modalias a host driver's
``modules.alias`` (or ``modules.builtin.alias``) line matches is taken again by that driver at boot
unless something the next boot reads keeps it off (a driverctl override or udev ``driver_override``
rule to vfio-pci or pci-stub, its ids in vfio-pci ``ids=`` with vfio-pci loaded first or in
``pci-stub.ids=``, the module blacklisted): that is "works now, lost at next boot" (a fail). A member
no driver's alias matches (an ISA bridge) stays unbound; a modules.alias that cannot be read is a
warning that says so.

Why: otherwise QEMU stops with "vfio 0000:01:00.0: group 1 is not viable. Please ensure all
devices within the iommu_group are bound to their vfio bus driver." — and a guide that only
binds the GPU and its audio misses the USB-C controller of the same card.

How: ``/sys/kernel/iommu_groups/<group>/devices``, each member's class, slot and driver link;
the default-route NIC and root-filesystem disk of the host; ``pcie_acs_override`` on the kernel
command line (or the kernel log's "PCIe ACS overrides enabled"), reported as a security
downgrade: it splits groups the hardware cannot isolate, so devices may still reach each other
by peer-to-peer DMA.

Fix: keep a member the next boot would hand back to its driver on vfio-pci by address (driverctl, else
a udev rule). Bind each blocking member to vfio-pci too — the same runtime steps as VFIO-013, one device
each (a sibling function must go to the VM anyway: it is bound now and kept on vfio-pci at boot
with the target) — or move the card to a slot with an IOMMU group of its own
(``vfio-scan groups`` shows them; CPU-attached slots are usually better isolated than chipset
ones). A member the host runs on (its default route, its disks: see VFIO-013) is never offered
for binding: the only fix is another slot. A target without an IOMMU group fails here pointing
at VFIO-005.

arm64: devices behind a PCIe-to-PCI bridge share one SMMU stream ID, and the kernel puts only
the first in a group (``stream N already in tree from dev X`` in its log). The other is in no
group, so VFIO does not see it, yet its DMA goes through the group's translation: a group with
such a hidden sharer on a host driver is not isolated (fail; unbinding it is the fix), one left
unbound is a warning.
"""

from dataclasses import replace

from scanner import hookimpl
from scanner.engine.model import LOST_AT_NEXT_BOOT, Evidence, Finding, Rule, Step

ROLE_TEXT = {
    "target": "another target of this scan",
    "bridge": "bridge: stays on the host, never bound to vfio nor given to the VM",
    "sibling": "sibling function of the same slot: goes to the VM too",
    "unrelated": "unrelated device sharing the group",
}


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-012", name="group-isolation", scope="device", severity="high",
                  title="IOMMU group viable for passthrough", check=check, docs=__doc__))


def acs_override(facts):
    """Evidence of an active ACS override, or None."""
    cl = facts.cmdline
    if cl is not None and cl.has("pcie_acs_override"):
        return Evidence(cl.source, " ".join(cl.texts("pcie_acs_override")))
    line = facts.kernel_log.first(r"PCIe ACS overrides enabled")
    return Evidence(facts.kernel_log.source or "kernel log", line) if line else None


def check(facts, scan):
    override = acs_override(facts)
    for target in scan.targets:
        if not target.for_passthrough:
            yield Finding.skip(target.stays_on_host_reason(facts.pci.get(target.address)), subject=target.address)
            continue
        finding = judge(facts, scan, target.address)
        if override is not None and finding.status in ("pass", "fail"):
            finding = _with_override(finding, override)
        yield finding


def _with_override(finding, override):
    note = ("pcie_acs_override is active: a security downgrade — it splits IOMMU groups the hardware cannot "
            "isolate, so this group may look smaller than it is and devices can still reach each other by "
            "peer-to-peer DMA")
    if finding.status == "pass":
        return replace(finding, status="warn", severity="medium", message=f"{finding.message}; but {note}",
                       evidence=finding.evidence + (override,))
    return replace(finding, message=f"{finding.message}; also, {note}", evidence=finding.evidence + (override,))


def _role_of(member):
    from scanner.facts.pci import class_name

    if member.role == "bridge" and member.device is not None:
        return (f"bridge ({class_name(member.device.pci_class)}): stays on the host, never bound to vfio nor "
                "given to the VM")
    return ROLE_TEXT[member.role]


def _named(member):
    """A member as a finding names it: a PCI function by its ids and class, anything else by its driver."""
    from scanner.remediation.binding import label

    if member.device is None and member.other_driver:
        return f"{member.address} (no PCI function, driver {member.other_driver})"
    return label(member.device, member.address)


def _state(member):
    return f"on {member.driver}" if member.driver else "no driver"


def judge(facts, scan, address):
    from scanner.facts.groups import classify
    from scanner.remediation.binding import bind_now_step, critical_evidence, host_critical, label
    from scanner.remediation.persistent_binding import persistent_steps

    device = facts.pci[address]
    group = device.iommu_group
    if not group and address in facts.stream_aliases:
        sid, holder = facts.stream_aliases[address]
        return Finding.fail(f"in no IOMMU group although the IOMMU runs: the kernel log says its SMMU stream {sid} is "
                            f"already taken by {holder} (devices behind a PCIe-to-PCI bridge share one stream ID, and "
                            "the kernel groups only the first), so vfio-pci cannot take it", subject=address,
                            observed="no iommu_group link; stream ID shared", expected="an IOMMU group",
                            evidence=[Evidence(f"/sys/bus/pci/devices/{address}/iommu_group", "<missing>"),
                                      Evidence("kernel log", _alias_line(address, sid, holder))],
                            remediation=[Step(summary=f"Pass {holder}'s IOMMU group instead, with {address} left "
                                                      "unbound, or move the device to a slot not behind a "
                                                      "PCIe-to-PCI bridge", phase="binding", manual=True,
                                              action={"kind": "move-slot", "address": address, "group": None,
                                                      "members": [holder], "host_critical": None})])
    if not group:
        return Finding.fail("in no IOMMU group: the IOMMU does not run for this device, so it cannot be passed "
                            "through (see VFIO-005)", subject=address, observed="no iommu_group link",
                            expected="an IOMMU group", evidence=[Evidence(f"/sys/bus/pci/devices/{address}/iommu_group",
                                                                          "<missing>")],
                            remediation=[Step(summary="Get the IOMMU running first (see VFIO-005), reboot, then "
                                                      "run vfio-scan again", phase="kernel", manual=True,
                                              action={"kind": "see-rule", "rules": ["VFIO-005"]})])
    if device.is_bridge:
        return Finding.skip(f"not applicable: {address} is a bridge, which stays on the host and is never passed "
                            "through (see VFIO-013)", subject=address)
    info = facts.iommu.groups.get(group)
    listing = f"/sys/kernel/iommu_groups/{group}/devices"
    if info is None or getattr(info, "devices_reason", None):
        why = getattr(info, "devices_reason", None) or "not listed under /sys/kernel/iommu_groups"
        return Finding.skip(f"cannot list IOMMU group {group} ({why})", subject=address,
                            evidence=[Evidence(listing, f"<{why}>")])

    view = classify(facts, group, scan.target_set)
    others = [m for m in view.members if m.address != address]
    if len(others) == len(view.members):  # the group's own listing does not name the device: sysfs is garbled
        return Finding.skip(f"IOMMU group {group} does not list {address} among its devices: cannot tell who "
                            "shares the group", subject=address,
                            evidence=[Evidence(listing, " ".join(m.address for m in view.members) or "(empty)")])
    unknown = [m for m in others if m.unknown]
    if unknown:  # an unreadable driver link is not "no driver": the group's viability cannot be told
        return Finding.skip(f"cannot tell whether IOMMU group {group} is viable: the state of "
                            f"{', '.join(m.address for m in unknown)} cannot be read", subject=address,
                            evidence=[Evidence(f"/sys/bus/pci/devices/{m.address}" if m.device is not None
                                               else f"{listing}/{m.address}/driver", f"<{m.unknown}>")
                                      for m in unknown])
    evidence = [Evidence(listing, few([m.address for m in view.members], sep=" "))]
    blocking = {m.address for m in view.blockers}
    shown = others if len(others) <= SHOWN else [m for m in others if m.address in blocking]
    evidence += [Evidence(f"{listing}/{m.address}", f"{_named(m)}: {_role_of(m)}") for m in shown]
    if len(shown) < len(others):  # a group of hundreds: each target's finding names what blocks, not every member
        roles = {}
        for m in others:
            roles[m.role] = roles.get(m.role, 0) + 1
        evidence.append(Evidence(listing, "others: " + ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))))
    observed = f"group {group}: " + (few([f"{m.address} {m.role} ({_state(m)})" for m in others])
                                     or "only this device")
    expected = "every other endpoint of the group is a bridge, on vfio-pci or unbound"

    blockers = view.blockers
    hidden = stream_sharers(facts, view.members)
    if hidden and not blockers:
        return _hidden_sharers(facts, address, group, hidden, observed, evidence)
    if not blockers:
        return _at_next_boot(facts, scan, address, group, others, Finding.passed(
            _passing_message(group, device, others), subject=address, observed=observed, expected=expected,
            evidence=evidence))

    critical = {m.address: host_critical(facts, m.address) for m in blockers}
    named = "; ".join(f"{_named(m)} — {ROLE_TEXT[m.role]}" for m in blockers)
    message = (f"IOMMU group {group} is not viable: {len(blockers)} other device(s) on host drivers: {named}. "
               f"QEMU would refuse it (\"group {group} is not viable\")")
    for member_address, why in critical.items():
        if why:
            message += (f". {member_address} is the host's own: {why}; the only fix is a slot (or a device) "
                        "with an IOMMU group of its own")
            evidence += critical_evidence(facts, member_address)

    remediation = []
    own = host_critical(facts, address)
    if own:
        message += f". The target itself is the host's own ({own}; see VFIO-013), so nothing is offered for binding"
    for m in blockers:
        if own or any(critical.values()):
            break  # the group can never be given to a VM here: giving up other members would be for nothing
        if m.device is None:
            continue  # no PCI function: vfio-pci cannot take it; the move step below names it
        if m.role == "sibling":
            summary = (f"Bind sibling function {label(m.device, m.address)} to vfio-pci now: it goes to the VM "
                       f"with {address} (the next step keeps it there at boot too)")
        else:
            summary = (f"Or give {label(m.device, m.address)} to vfio-pci too: bind it now (the host loses it "
                       f"while it is bound; {ROLE_TEXT[m.role]})")
        remediation.append(bind_now_step(facts, m.device, role=m.role, for_target=address, summary=summary))
        if m.role == "sibling":  # it goes to the VM with the target: at every boot as well
            remediation += persistent_steps(facts, scan, m.device)
    movable = [m for m in blockers if m.role != "sibling"]
    if movable:
        remediation.append(_move_step(address, group, movable, critical))
    elif any(critical.values()):
        remediation.append(_move_step(address, group, blockers, critical))
    return Finding.fail(message, subject=address, observed=observed, expected=expected, evidence=evidence,
                        remediation=remediation)


def _at_next_boot(facts, scan, address, group, others, passed):
    """``passed`` (the group is viable now), unless a member that holds nothing now -- unbound by hand, or on
    vfio-pci through a runtime binding only -- is taken by its host driver again at the next boot: then QEMU
    refuses the group after a reboot, so the finding is lost at next boot. A modules.alias that cannot be read
    leaves that untold: a warning that says so, never a fail."""
    from scanner.facts.next_boot import modalias
    from scanner.remediation.binding import label

    idle = [m for m in others if m.device is not None and m.role in ("sibling", "unrelated") and not m.holds_group]
    claims = [(m, facts.boot_claim(m.device)) for m in idle]
    taken = [(m, claim) for m, claim in claims if claim.modules and not claim.kept_off]
    evidence = list(passed.evidence) + [Evidence("next boot", f"{m.address}: kept off by {claim.kept_off}")
                                        for m, claim in claims if claim.kept_off]
    if taken:
        named = "; ".join(f"{', '.join(claim.modules)} takes {label(m.device, m.address)} ({_state(m)} now)"
                          for m, claim in taken)
        evidence += [Evidence(claim.source, f"{modalias(m.device)} ({m.address}) matches {', '.join(claim.modules)}")
                     for m, claim in taken]
        return Finding.fail(f"{LOST_AT_NEXT_BOOT}: IOMMU group {group} is viable now, but at the next boot {named}: "
                            "nothing keeps it off its host driver at boot (no driverctl override or udev "
                            "driver_override rule for it, no vfio-pci ids= or pci-stub.ids= with its ids, its driver not "
                            f"blacklisted), so after a reboot QEMU refuses the group (\"group {group} is not viable\")",
                            subject=address, observed=passed.observed,
                            expected="every other endpoint of the group kept off host drivers at boot too",
                            evidence=evidence, remediation=[_keep_off_step(facts, scan, m, claim) for m, claim in taken])
    unknown = [(m, claim) for m, claim in claims if claim.reason]
    if unknown:
        reason = unknown[0][1].reason
        return Finding.warn(f"{passed.message}; but whether a host driver takes {few(m.address for m, _ in unknown)} "
                            f"again at the next boot cannot be told: {reason}", subject=address,
                            observed=passed.observed, expected=passed.expected,
                            evidence=evidence + [Evidence(unknown[0][1].source, f"<{reason}>")])
    return replace(passed, evidence=tuple(evidence))


def _keep_off_step(facts, scan, member, claim):
    """The persistent step that keeps a group mate off its host driver at boot: on vfio-pci by address."""
    from scanner.remediation.persistent_binding import persistent_steps, udev_step

    if facts.has_tool("driverctl"):
        return persistent_steps(facts, scan, member.device)[0]
    step = udev_step(facts, member.device, scan.target_set)
    path = step.action["file"]
    return replace(step, summary=f"Keep {member.address} off {', '.join(claim.modules)} at every boot, as it is now: a "
                                 f"udev rule ({path}) sets its driver_override to {step.action['driver']} when it "
                                 "appears, so its host driver does not take it back (bind it now too, or reboot)")


def stream_sharers(facts, members):
    """Devices outside every group that share an SMMU stream ID with a member (arm64, behind a PCIe-to-PCI
    bridge): VFIO does not see them, yet their DMA is translated by whatever domain the group gets."""
    addresses = {m.address for m in members}
    return [(dev, sid, holder) for dev, (sid, holder) in sorted(facts.stream_aliases.items())
            if holder in addresses and dev not in addresses and dev in facts.pci]


def _alias_line(dev, sid, holder):
    return f"{dev}: stream {sid} already in tree from dev {holder}"


def _hidden_sharers(facts, address, group, hidden, observed, evidence):
    """Fail (a sharer on a driver: the VM would take over its DMA) or warn (unbound now, but a driver may take it)."""
    from scanner.remediation.shell import PCI_ADDRESS, quote
    from scanner.facts.groups import HARMLESS_DRIVERS
    from scanner.remediation.binding import critical_evidence, host_critical, label, sysfs_device

    evidence = evidence + [Evidence("kernel log", _alias_line(dev, sid, holder)) for dev, sid, holder in hidden]
    bound = [(dev, facts.pci[dev]) for dev, _, _ in hidden
             if facts.pci[dev].driver and facts.pci[dev].driver not in HARMLESS_DRIVERS]
    names = ", ".join(f"{label(facts.pci[dev], dev)} (stream {sid}, as {holder})" for dev, sid, holder in hidden)
    expected = "no device outside the group shares its stream IDs"
    if not bound:
        return Finding.warn(f"IOMMU group {group} shares its SMMU stream ID with {names}, which is in no group and "
                            "unbound now: keep it unbound while the VM runs (a driver that takes it, at the next boot "
                            "too, would do DMA through the VM's mappings)", subject=address, observed=observed,
                            expected=expected, evidence=evidence)
    steps = []
    for dev, device in bound:
        why = host_critical(facts, dev)
        if why:
            return Finding.fail(f"IOMMU group {group} is not isolated: {names} shares its SMMU stream ID, and "
                                f"{dev} is the host's own ({why}); pass a device not behind this PCIe-to-PCI bridge",
                                subject=address, observed=observed, expected=expected,
                                evidence=evidence + critical_evidence(facts, dev))
        steps.append(Step(summary=f"Unbind {label(device, dev)} and leave it without a driver while the VM runs (it "
                                  "has no IOMMU group, so vfio-pci cannot take it)", phase="binding", manual=True,
                          commands=[f"echo {quote(dev, PCI_ADDRESS, 'PCI address')} > {sysfs_device(dev)}/driver/unbind"],
                          action={"kind": "unbind-stream-sharer", "address": dev, "driver": device.driver}))
    return Finding.fail(f"IOMMU group {group} is not isolated: {names} shares its SMMU stream ID but is in no IOMMU "
                        "group, so VFIO cannot see it, and its host driver would do DMA through the VM's mappings",
                        subject=address, observed=observed, expected=expected, evidence=evidence,
                        remediation=steps + [Step(summary=f"Or move the card at {address} out from behind the "
                                                          "PCIe-to-PCI bridge", phase="binding", manual=True,
                                                  action={"kind": "move-slot", "address": address, "group": group,
                                                          "members": [d for d, _, _ in hidden], "host_critical": None})])


def _move_step(address, group, members, critical):
    onboard = address.split(":")[1] == "00"
    names = ", ".join(m.address for m in members)
    held = {a: why for a, why in critical.items() if why}
    if onboard:
        move = (f"{address} is built into the board or chipset (bus 00) and cannot be moved: to pass a device "
                f"like it, use an add-in card in a slot with an IOMMU group of its own ('vfio-scan groups')")
    else:
        move = (f"move the card at {address} to a slot whose IOMMU group it does not share with {names} "
                "('vfio-scan groups' shows the groups; CPU-attached slots are usually better isolated)")
    if held:
        summary = f"{', '.join(held)} must stay with the host, so the only fix is this: {move}"
    elif onboard:
        summary = move
    else:
        summary = "Or " + move
    return Step(summary=summary, phase="binding", manual=True,
                action={"kind": "move-slot", "address": address, "group": group,
                        "members": [m.address for m in members], "host_critical": held or None})


#: Members named one by one in a finding; a bigger group (256 VFs of one PF) is summed up, so that a
#: report grows with targets x blockers, not with targets x members.
SHOWN = 8


def few(items, sep=", ", limit=SHOWN) -> str:
    """``a, b, c`` or, past ``limit``, ``a, b, ... (256 in all)``."""
    items = list(items)
    if len(items) <= limit:
        return sep.join(items)
    return sep.join(items[:limit]) + f"{sep}... ({len(items)} in all)"


def _passing_message(group, device, others):
    from scanner.facts.pci import is_vfio_driver
    from scanner.facts.groups import HARMLESS_DRIVERS

    pending = [m.address for m in others if m.role == "target" and m.holds_group]
    if device.driver and not is_vfio_driver(device.driver) and device.driver not in HARMLESS_DRIVERS:
        pending.insert(0, device.address)
    viable = (f"the group is viable once {few(pending)} {'is' if len(pending) == 1 else 'are'} on vfio-pci "
              "(see VFIO-013)") if pending else "the group is viable"
    if not others:
        return f"alone in IOMMU group {group}"
    parts = []
    bridges = [m for m in others if m.role == "bridge"]
    targets = [m for m in others if m.role == "target"]
    siblings = [m for m in others if m.role == "sibling"]
    unrelated = [m for m in others if m.role == "unrelated"]
    if bridges:
        parts.append(f"bridge(s) {few(m.address for m in bridges)} (stay on the host, never bound)")
    if targets:
        parts.append(f"target(s) {few(m.address for m in targets)} of this scan")
    if siblings:
        parts.append(f"its sibling function(s) {few(f'{m.address} ({_state(m)})' for m in siblings)}, "
                     "which go to the VM too")
    if unrelated:
        parts.append(f"unrelated device(s) {few(f'{m.address} ({_state(m)})' for m in unrelated)}, "
                     "which do not hold the group (unbound or on vfio)")
    if not (targets or siblings or unrelated):
        return f"alone in IOMMU group {group} but for " + parts[0]
    return f"shares IOMMU group {group} with " + "; ".join(parts) + "; " + viable
