"""``vfio-scan vm-config --for VMM --device SEL``: the ready devices in a VM manager's own format.

The same scan and the same decision as ``qemu-args`` (scanner/commands/qemu_args.py: what blocks,
what is only a caution), then the configuration for ``--for``: ``qemu`` (the qemu-args line),
``libvirt`` (``<hostdev>`` elements), ``proxmox`` (``hostpciN`` lines and a resource mapping),
``kubevirt`` (``permittedHostDevices``), ``nova`` (``[pci] device_spec`` and ``alias``) or
``cloud-hypervisor`` (``--device path=``); the renderers live in scanner/vm_config/.

Proxmox and Nova detach the devices from their host drivers at VM start themselves, and so does
libvirt with ``--managed`` (``managed='yes'``): for those a target still on its host driver is
fine when it can be detached (``--managed`` as in ``scan``). KubeVirt, cloud-hypervisor and plain
QEMU need the devices on vfio-pci already.

``vm-config --check FILE`` goes the other way: it reads a libvirt domain XML or a Proxmox VM config
and says, per PCI device it asks for, whether this host can honour it (the device is there, its
whole IOMMU group is covered, it is on vfio-pci or the VM manager can detach it, the host is ready):
scanner/vm_config/existing.py and honour.py.

Exit codes as ``qemu-args``: 0 printed (every device honoured), 1 blocked, 2 usage error (a file that
is no VM definition), 3 incomplete (a rule errored, a device that cannot be checked here, or a host
value unfit for the configuration).
"""

from __future__ import annotations

from scanner.commands.qemu_args import EXIT_READY, add_gate_arguments, emit, gate

PROG = "vfio-scan vm-config"
FORMATS = ("qemu", "libvirt", "proxmox", "kubevirt", "nova", "cloud-hypervisor")
#: VM managers that detach each device from its host driver when the VM starts.
DETACHES_ITSELF = frozenset({"proxmox", "nova"})


def add_arguments(parser) -> None:
    parser.add_argument("--for", dest="vmm", choices=FORMATS, metavar="VMM",
                        help="the VM manager: " + ", ".join(FORMATS))
    parser.add_argument("--check", metavar="FILE",
                        help="instead: say whether this host can honour the PCI devices of a libvirt domain XML or a "
                             "Proxmox VM config (/etc/pve/qemu-server/VMID.conf)")
    parser.add_argument("--managed", action="store_true",
                        help="libvirt: managed='yes', libvirt detaches the devices at VM start (Proxmox and Nova "
                             "always do)")
    parser.add_argument("--machine", choices=("q35", "pc"), default="q35", help="qemu: the machine type (default q35)")
    add_gate_arguments(parser)


#: The largest VM definition read (a domain XML with its metadata is tens of kB).
MAX_DEFINITION = 4 << 20


def run(options) -> int:
    if (options.vmm is None) == (options.check is None):
        from scanner.base.errors import UsageError

        raise UsageError("give --for VMM (the configuration to print) or --check FILE (a definition to check), one of them")
    if options.check is not None:
        return run_check(options)
    vmm = options.vmm
    managed = vmm in DETACHES_ITSELF or (vmm == "libvirt" and options.managed)
    code, facts, addresses = gate(options, PROG, managed=managed, nothing="no configuration printed")
    if code != EXIT_READY:
        return code
    from importlib import import_module

    from scanner.vm_config.plan import make_plan

    renderer = import_module(f"scanner.vm_config.{vmm.replace('-', '_')}")

    def text():
        plan = make_plan(facts, addresses, managed=managed)
        return renderer.render(plan, machine=options.machine) if vmm == "qemu" else renderer.render(plan)

    return emit(PROG, text)


def run_check(options) -> int:
    from scanner.base.errors import UsageError
    from scanner.commands.common import load_policy, load_registry, make_host
    from scanner.commands.qemu_args import EXIT_BLOCKED, EXIT_INCOMPLETE, is_caution, say
    from scanner.engine.runner import select_rules
    from scanner.facts import Facts
    from scanner.host.inputfile import InputFileError, read_input_text
    from scanner.base.terminal_text import for_terminal
    from scanner.vm_config.existing import DefinitionError, parse_definition
    from scanner.vm_config.honour import judge

    if options.targets.devices or options.targets.classes:
        raise UsageError("--check takes its devices from the file: leave out --device and --class")
    try:
        text = read_input_text(options.check, MAX_DEFINITION)
        kind, requests = parse_definition(text, options.check)
    except InputFileError as exc:
        raise UsageError(f"--check {options.check}: {exc}") from None
    except DefinitionError as exc:
        raise UsageError(f"--check {exc}") from None
    host = make_host(options.hosts)
    registry = load_registry(options.strict_plugins)
    policy = load_policy(options.policy, registry)
    rules = select_rules(registry.sorted_rules(), policy.only, policy.skip)
    facts = Facts(host)
    verdicts, host_lines, errored = judge(facts, rules, policy, requests, is_caution)
    title = "libvirt domain" if kind == "libvirt" else "Proxmox VM config"
    out = [f"{options.check} ({title}): {len(verdicts)} PCI device(s) asked for"]
    out += [f"  host: {line}" for line in host_lines]
    for verdict in verdicts:
        named = " ".join(_label(facts, a) for a in verdict.addresses) or "-"
        out.append(f"  {verdict.where} {named}: {verdict.status}")
        out += [f"      {reason}" for reason in verdict.reasons]
    for line in out:  # each line escaped on its own: host text never reaches the terminal raw
        print(for_terminal(line))
    if any(v.status == "no" for v in verdicts) or host_lines:
        return EXIT_BLOCKED
    if errored or any(v.status == "unchecked" for v in verdicts):
        if errored:
            say(f"{PROG}: scan incomplete: a rule could not judge (see 'vfio-scan scan')")
        return EXIT_INCOMPLETE
    return EXIT_READY


def _label(facts, address: str) -> str:
    device = facts.pci.get(address)
    if device is None:
        return address
    name = facts.pci_ids.device_name(device.vendor, device.device)
    driver = f"on {device.driver}" if device.driver else "no driver"
    return f"{address} ({device.ids}{' ' + name if name else ''}, {driver})"
