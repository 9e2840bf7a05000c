"""``vfio-scan qemu-args --device SEL [--class PREFIX]``: the QEMU arguments, once nothing blocks.

Runs the full scan (host and device rules) for the selected targets. When no finding fails or
errors, prints on stdout one line of QEMU arguments for the q35 machine (``--machine pc`` for i440fx)::

    -device pcie-root-port,id=vfio-rp1,chassis=101,bus=pcie.0
    -device vfio-pci,host=0000:01:00.0,bus=vfio-rp1,addr=00.0,multifunction=on
    -device vfio-pci,host=0000:01:00.1,bus=vfio-rp1,addr=00.1

a ``-device vfio-pci,host=ADDRESS`` for each target and for each sibling function that must go
with it (a non-bridge member of the target's IOMMU group in the same slot: a GPU's HDMI audio, its
USB-C controller), the functions of one host slot in one guest slot behind a root port of its own
(scanner/vm_config/qemu.py: iommufd, the 64-bit window). ``vfio-scan vm-config`` writes the same
for other VM managers. Warnings are printed on stderr as cautions and do not block, and so are
the findings of the next-boot rules (VFIO-016, VFIO-017, and any "works now, lost at next boot"):
QEMU takes the device now; what a reboot would lose is said, not held against this start. So is
VFIO-001 (no KVM): QEMU assigns a vfio-pci device without KVM, ``-accel kvm`` is what needs it.

Otherwise nothing is printed on stdout; stderr lists what blocks, one ``RULE-ID SUBJECT: message``
per line. Beside the rules, the command checks from the same facts what QEMU itself needs of every
device it is given (bound to a vfio driver, in a real IOMMU group whose other endpoints no host
driver holds), so it never prints a line QEMU would refuse; those lines are tagged ``qemu-args``.

With ``--policy FILE`` the policy's targets are added (those it keeps on a host driver are not
handed to QEMU), with its rule selection, severities and waivers; its ``fail_on`` does not apply.

The stderr lines quote host text (driver names, messages) escaped for the terminal
(scanner/base/terminal_text.py): a hostile driver name cannot clear the screen or forge a line.

Exit codes: 0 arguments printed, 1 blocked, 2 usage error (no --device/--class, a malformed one,
an invalid policy), 3 scan incomplete (a rule errored: its verdict cannot be trusted, nothing is printed).
"""

from __future__ import annotations

import sys
from typing import Dict, List, Sequence, Tuple

from scanner.base.errors import UsageError
from scanner.commands.common import (add_host_arguments, add_plugin_arguments, add_policy_arguments, add_target_arguments,
                                     add_vm_user_arguments,
                                     load_policy, load_registry, make_host, parse_targets)
from scanner.base.terminal_text import for_terminal

EXIT_READY, EXIT_BLOCKED, EXIT_INCOMPLETE = 0, 1, 3
PROG = "vfio-scan qemu-args"


#: Rules about the next boot: a caution for a VM started now, never a block.
NEXT_BOOT_RULES = frozenset({"VFIO-016", "VFIO-017"})
#: KVM (VFIO-001) is what ``-accel kvm`` needs, not what ``-device vfio-pci`` needs: a caution.
CAUTION_RULES = NEXT_BOOT_RULES | {"VFIO-001"}


def add_arguments(parser) -> None:
    add_gate_arguments(parser)
    parser.add_argument("--machine", choices=("q35", "pc"), default="q35",
                        help="the QEMU machine the arguments are for (default q35: each slot behind a PCIe root port)")


def add_gate_arguments(parser) -> None:
    """What qemu-args and vm-config share: where the host is, the devices, the policy, plugins."""
    src = parser.add_argument_group("what to scan")
    add_host_arguments(src)
    dev = parser.add_argument_group("devices to pass through (at least one)")
    add_target_arguments(dev, vfs=False)
    vm = parser.add_argument_group("the VM")
    add_vm_user_arguments(vm)
    pol = parser.add_argument_group("policy")
    add_policy_arguments(pol, severity=False)
    add_plugin_arguments(parser)


def is_caution(finding) -> bool:
    """A failing finding that does not stop a VM started now (see the module docstring)."""
    from scanner.engine.model import LOST_AT_NEXT_BOOT

    return finding.rule_id in CAUTION_RULES or finding.message.startswith(LOST_AT_NEXT_BOOT)


# -- what QEMU will be given ------------------------------------------------------------------

def passthrough_set(facts, targets: Sequence[str], managed: bool = False) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(addresses to hand to QEMU in order, problems as (subject, message)) for ``targets``.

    The addresses are the targets plus their sibling functions; a problem is anything that makes
    QEMU refuse one of them, found from the facts alone (the rules say the same, with the fix).
    ``managed``: the VMM detaches the passed devices itself, so a host driver on one of them is none.
    """
    from scanner.facts.pci import is_vfio_driver
    from scanner.facts.groups import classify

    chosen: Dict[str, str] = {}  # address -> why it is passed ("target" or "sibling of X")
    problems: List[Tuple[str, str]] = []
    seen_groups = set()
    held_all = []  # members on host drivers, named once in their group's line
    for address in targets:
        chosen.setdefault(address, "target")
        device = facts.pci.get(address)
        group = device.iommu_group if device else None
        if group is None or group not in facts.iommu.groups:
            problems.append((address, "in no IOMMU group: VFIO cannot open it (see VFIO-005)"))
            continue
        if group in seen_groups:
            continue
        seen_groups.add(group)
        if facts.iommu.groups[group].is_noiommu:
            problems.append((address, f"IOMMU group {group} is a vfio-noiommu fake group (see VFIO-005)"))
            continue
        view = classify(facts, group, targets)
        for member in view.with_role("sibling"):
            slot_target = next(t for t in targets if t.rsplit(".", 1)[0] == member.address.rsplit(".", 1)[0])
            chosen.setdefault(member.address, f"sibling function of {slot_target}")
        held = [m for m in view.blockers if not (managed and m.address in chosen)]
        held_all.extend(held)
        if held:
            names = ", ".join(f"{m.address} ({m.driver})" for m in held)
            problems.append((address, f"IOMMU group {group} is not viable: {names} still on host drivers; "
                                      "QEMU refuses the whole group (see VFIO-012)"))
    held_elsewhere = {m.address for m in held_all}
    for address, why in sorted(chosen.items()):
        device = facts.pci.get(address)
        driver = device.driver if device else None
        if device is not None and not is_vfio_driver(driver) and address not in held_elsewhere and not managed:
            bound = f"bound to {driver}" if driver else "bound to no driver"
            role = "" if why == "target" else f"{why}, in the same IOMMU group, must be passed too; "
            problems.append((address, f"{role}{bound}, not vfio-pci: QEMU cannot open it (see VFIO-013)"))
    return sorted(chosen), problems


# -- the command ---------------------------------------------------------------------------------

def _line(finding) -> str:
    return f"  {finding.rule_id} {finding.subject}: {finding.message}"


def say(line: str) -> None:
    """One line on stderr, host text in it escaped: every line printed here quotes the host."""
    print(for_terminal(line), file=sys.stderr)


def gate(options, prog: str, managed: bool = False, nothing: str = "no arguments printed"):
    """Scan the devices ``options`` (a :class:`~scanner.commands.options.GateOptions`) select and decide:
    (exit code, facts, addresses to pass). The exit code is 0 when the addresses may be handed to the
    VM manager; otherwise what blocks is on stderr."""
    from scanner.commands.scan import guest_memory

    selectors, _ = parse_targets(options.targets)
    memory = guest_memory(options.guest_memory)
    host = make_host(options.hosts)
    registry = load_registry(options.strict_plugins)
    policy = load_policy(options.policy, registry)  # its targets, rules, severities and waivers; fail_on does not apply here
    selectors = list(policy.targets) + list(selectors)
    if not selectors:
        raise UsageError("name the devices to pass through with --device (0000:01:00.0, 01:00.0 or 10de:2204) "
                         "or --class (0300), or give a --policy with targets")

    from scanner.engine.runner import Scan, select_rules
    from scanner.facts import Facts
    from scanner.engine.scanning import scan_host

    facts = Facts(host)
    rules = select_rules(registry.sorted_rules(), policy.only, policy.skip)
    report = scan_host(host, rules, Scan(policy=policy, managed=managed, vm_user=options.vm_user, guest_memory=memory),
                       selectors=selectors, facts=facts)
    for finding in report.findings:
        if finding.status == "warn" or (finding.status == "fail" and is_caution(finding)):
            say(f"{prog}: caution: {finding.rule_id} {finding.subject}: {finding.message}")
    errors = [f for f in report.findings if f.status == "error"]
    if errors or report.notes:
        say(f"{prog}: scan incomplete, {nothing}; a rule could not judge:")
        for finding in errors:
            say(_line(finding))
        for note in report.notes:
            say(f"  {note}")
        return EXIT_INCOMPLETE, facts, []
    blocking = [f for f in report.findings if f.status == "fail" and not is_caution(f)]
    from scanner.facts.targets import resolve

    # not those kept on the host
    targets = [t.address for t in resolve(selectors, {}, facts.pci.fields)[0] if t.for_passthrough]
    if blocking:
        say(f"{prog}: not ready for passthrough, {nothing}; blocked by:")
        for finding in blocking:
            say(_line(finding))
        return EXIT_BLOCKED, facts, []
    addresses, problems = passthrough_set(facts, targets, managed=managed)
    if problems or not addresses:
        say(f"{prog}: not ready for passthrough, {nothing}; blocked by:")
        for subject, message in problems or [("-", "no device selected")]:
            say(f"  qemu-args {subject}: {message}")
        return EXIT_BLOCKED, facts, []
    return EXIT_READY, facts, addresses


def emit(prog: str, make_text) -> int:
    """Print what ``make_text()`` writes, or one line on stderr when a host value is unfit for it."""
    from scanner.remediation.shell import UnsafeValue

    try:
        text = make_text()
    except (UnsafeValue, ValueError) as exc:
        say(f"{prog}: error: {exc}")
        return EXIT_INCOMPLETE
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return EXIT_READY


def run(options) -> int:
    code, facts, addresses = gate(options, PROG)
    if code != EXIT_READY:
        return code
    from scanner.vm_config import qemu
    from scanner.vm_config.plan import make_plan

    return emit(PROG, lambda: qemu.render(make_plan(facts, addresses), machine=options.machine))
