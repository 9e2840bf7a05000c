"""Remediation steps shared by rules: firmware menus, command-line edits per boot stack, modules.

Each step has human commands (validated, quoted, guarded so that running them twice is
harmless) and an ``action`` in machine form for the remediation-script export.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from scanner.engine.model import Step

MODULES_LOAD_FILE = "/etc/modules-load.d/vfio.conf"
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")

FIRMWARE_MENUS = {
    "vt-x": {
        "intel": '"Intel Virtualization Technology" / "VT-x" / "Intel VT"',
        "amd": '"SVM Mode" / "AMD-V" / "Secure Virtual Machine"',
    },
    "iommu": {
        "intel": '"VT-d" / "Intel Virtualization Technology for Directed I/O"',
        "amd": '"IOMMU" / "AMD-Vi" (often under "NBIO Common Options" or "AMD CBS")',
    },
}


def firmware_step(feature: str, vendor: Optional[str], extra: str = "") -> Step:
    """A step only a person can do: enable a setting in the firmware setup menu."""
    menus = FIRMWARE_MENUS[feature]
    names = menus.get(vendor or "") or " or ".join(menus.values())
    summary = f"Enable {names} in the firmware (BIOS/UEFI) setup, save and reboot"
    if extra:
        summary += f"; {extra}"
    return Step(summary=summary, phase="firmware", manual=True, requires_reboot=True, persistent=True,
                action={"kind": "firmware", "feature": feature, "vendor": vendor})


def _file_commands(stack: BootStack, add: Sequence[str], remove: Sequence[str]) -> Tuple[List[str], str]:
    """(commands, note) changing the scanned boot files for a person: merged line by line (scanner/remediation/confedit.py),
    then the stack's regeneration; no commands and the reason when the change cannot be made safely."""
    from scanner.remediation.confedit import EditError, cmdline_file_edit, edit_commands, file_state, grub_edit

    states = [file_state(*f) for f in stack.files]
    try:
        if stack.stack == "grub":
            changes = grub_edit(states, add, remove)
        else:
            path = stack.config_file or "/etc/kernel/cmdline"
            state = next((f for f in states if f["path"] == path), file_state(path, None, "not read by the scan"))
            if state["reason"]:
                raise EditError(f"{path} could not be read ({state['reason']})")
            changes = {path: cmdline_file_edit(state["text"], add, remove)}
    except EditError as exc:
        return [], str(exc)
    old = {f["path"]: f["text"] for f in states}
    commands = [c for path, text in changes.items() if text != old.get(path) for c in edit_commands(path, old.get(path), text)]
    return commands + list(stack.regenerate), ""


#: Sub-options that switch a parameter back off (``intel_iommu=on ... intel_iommu=off``).
_OFF_WORDS = frozenset({"off", "0", "n", "no", "false"})


def _configured(configured, param: str) -> bool:
    """Will the next boot get ``param``? ``on`` counts in ``on,sm_on``; a later ``off`` undoes it."""
    key, sep, value = param.partition("=")
    if not sep:
        return configured.has(key)
    items = configured.options(key)
    decisive = [v for v in items if v == value or v.lower() in _OFF_WORDS]
    return bool(decisive) and decisive[-1] == value


def cmdline_steps(stack: BootStack, add: Sequence[str] = (), remove: Sequence[str] = (),
                  why: str = "") -> List[Step]:
    """Steps that change the next boot's kernel command line with the stack's own tools.

    A parameter read from the host that is unfit for a command (``intel_iommu=off,$(...)``) makes
    the whole change a manual step that names it: refused, not quoted into a command, and not a
    crash of the rule (which still reports what it found).
    """
    from scanner.remediation.shell import KERNEL_PARAM, checked
    import shlex
    from scanner.remediation.confedit import file_state

    unsafe = [p for p in list(add) + list(remove) if not (isinstance(p, str) and KERNEL_PARAM.match(p))]
    if unsafe:
        shown = ", ".join(repr(p) for p in unsafe)
        return [Step(summary=f"On the kernel command line ({stack.name}), by hand: "
                             + " and ".join(x for x in (f"add {' '.join(map(str, add))}" if add else "",
                                                        f"remove {' '.join(map(str, remove))}" if remove else "") if x)
                             + f"; then reboot (no command is offered: {shown} cannot be put into one safely)",
                     phase="boot", manual=True, requires_reboot=True, persistent=True)]
    add = [checked(p, KERNEL_PARAM, "kernel parameter") for p in add]
    remove = [checked(p, KERNEL_PARAM, "kernel parameter") for p in remove]
    configured = stack.configured
    if configured is not None:
        pending = [p for p in add if _configured(configured, p)]
        if pending and len(pending) == len(add) and not remove:
            return [Step(
                summary=f"{stack.config_file} already sets {' '.join(pending)} for the next boot; "
                        "regenerate the boot configuration if needed, then reboot",
                phase="boot", commands=list(stack.regenerate), requires_reboot=True, persistent=True,
                action={"kind": "kernel-cmdline", "stack": stack.stack, "add": [], "remove": [],
                        "config_file": stack.config_file, "regenerate": list(stack.regenerate)})]
        # a switch-off already in the file would undo the addition at the next boot: remove it too
        for p in add:
            for text in configured.texts(p.partition("=")[0]):
                items = text.partition("=")[2].split(",")
                if any(v.lower() in _OFF_WORDS for v in items) and text not in remove and KERNEL_PARAM.match(text):
                    remove.append(text)
    words = " ".join(add)
    gone = " ".join(remove)
    change = " and ".join(x for x in (f"add {words}" if add else "", f"remove {gone}" if remove else "") if x)
    summary = f"On the kernel command line ({stack.name}): {change}; then reboot"
    if why:
        summary += f" ({why})"
    note = ""
    if stack.stack in ("grub", "proxmox-boot-tool", "kernel-cmdline"):
        commands, note = _file_commands(stack, add, remove)
        if stack.stack == "grub" and stack.config_file and stack.config_file != "/etc/default/grub":
            summary += f"; {stack.config_file} sets GRUB_CMDLINE_LINUX_DEFAULT last, so the change goes there"
    elif stack.stack == "grubby":
        commands = []
        if add:
            commands.append(f"grubby --update-kernel=ALL --args={shlex.quote(words)}")
        if remove:
            commands.append(f"grubby --update-kernel=ALL --remove-args={shlex.quote(gone)}")
    elif stack.stack == "kernelstub":
        commands = []
        if add:
            commands.append(f"kernelstub --add-options {shlex.quote(words)}")
        if remove:
            commands.append(f"kernelstub --delete-options {shlex.quote(gone)}")
    elif stack.stack == "rpm-ostree":
        args = [f"--append-if-missing={p}" for p in add] + [f"--delete-if-present={p}" for p in remove]
        commands = ["rpm-ostree kargs " + " ".join(shlex.quote(a) for a in args)]
    else:
        commands = []
    manual = not commands
    if note:
        summary = f"On the kernel command line ({stack.name}), by hand: {change}; then reboot ({note})"
    elif stack.stack == "systemd-boot":
        summary = (f"In the systemd-boot entry {stack.config_file}, on its options line: {change}; then reboot "
                   "(the ESP is edited by hand: no command is offered)")
    elif stack.stack == "nixos":
        summary = (f"In /etc/nixos/configuration.nix, boot.kernelParams: {change}; "
                   "then run nixos-rebuild boot and reboot")
    elif manual:
        summary = f"In your boot loader's configuration: {change} on the kernel command line; then reboot"
    return [Step(summary=summary, phase="boot", commands=commands, requires_reboot=True, persistent=True,
                 manual=manual,
                 action={"kind": "kernel-cmdline", "stack": stack.stack, "add": add, "remove": remove,
                         "config_file": stack.config_file, "regenerate": list(stack.regenerate),
                         "files": [file_state(*f) for f in stack.files]})]


def modules_steps(missing: Sequence[str], persist: Sequence[str] = VFIO_MODULES,
                  current: Optional[Tuple[str, Optional[str], Optional[str]]] = None, reindex: bool = False) -> List[Step]:
    """Load the missing modules now, and on every boot through one modules-load.d file.

    ``current``: that file as scanned, (path, text, reason); its lines are kept and the module
    names added to them. ``reindex``: modules.dep is missing, so ``depmod -a`` comes first.
    """
    from scanner.remediation.shell import MODULE_NAME, checked, quote
    from scanner.remediation.confedit import edit_commands, ensure_lines, file_state, module_name_equal

    names = [checked(m, MODULE_NAME, "module name") for m in missing]
    persist = [checked(m, MODULE_NAME, "module name") for m in persist]
    state = file_state(*(current or (MODULES_LOAD_FILE, None, None)))
    new = ensure_lines(state["text"], persist, module_name_equal)
    first = [Step(summary="Rebuild the module index (modules.dep) so that modprobe finds the modules", phase="modules",
                  commands=["depmod -a"], persistent=True, action={"kind": "depmod"})] if reindex else []
    return first + [
        Step(summary=f"Load {', '.join(names)} now", phase="modules",
             commands=["modprobe -a " + " ".join(quote(m, MODULE_NAME, "module name") for m in names)],
             action={"kind": "modprobe", "modules": names}),
        Step(summary=f"Load {', '.join(persist)} at every boot ({MODULES_LOAD_FILE}; its other lines stay)",
             phase="modules", commands=edit_commands(MODULES_LOAD_FILE, state["text"], new), persistent=True,
             action={"kind": "modules-load", "file": MODULES_LOAD_FILE, "modules": persist, "files": [state]}),
    ]


def modprobe_option_step(module: str, option: str, conf: str, summary: str, initramfs: Optional[str] = None,
                         current: Optional[Tuple[str, Optional[str], Optional[str]]] = None) -> Step:
    """An ``options MODULE X=Y`` line in /etc/modprobe.d (used for last-resort overrides), added to what is there."""
    from scanner.remediation.shell import KERNEL_PARAM, MODULE_NAME, checked
    import shlex
    from scanner.remediation.confedit import edit_commands, ensure_lines, file_state

    module = checked(module, MODULE_NAME, "module name")
    checked(option, KERNEL_PARAM, "module option")
    line = f"options {module} {option}"
    state = file_state(*(current or (conf, None, None)))
    return Step(summary=summary, phase="modules", persistent=True, requires_reboot=True,
                commands=edit_commands(conf, state["text"], ensure_lines(state["text"], [line])),
                undo=[f"grep -vxF {shlex.quote(line)} {conf} > {conf}.new; mv {conf}.new {conf}"],
                action={"kind": "modprobe-options", "file": conf, "line": line, "initramfs": initramfs,
                        "files": [state]})
