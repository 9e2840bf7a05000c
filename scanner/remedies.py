"""Remediation steps shared by rules: firmware menus, command-line edits per boot stack, modules.

Each step has human commands (validated, quoted, guarded so that running them twice is
harmless) and an ``action`` in machine form for the remediation-script export.
"""

from __future__ import annotations

import shlex
from typing import List, Optional, Sequence

from scanner.facts.boot import BootStack
from scanner.model import Step
from scanner.shell import KERNEL_PARAM, MODULE_NAME, checked, quote

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


def _sed_ere(param: str) -> str:
    """Escape a validated parameter for a sed/grep extended regular expression."""
    return "".join("\\" + ch if ch in ".+" else ch for ch in param)


def _grub_commands(stack: BootStack, add: Sequence[str], remove: Sequence[str]) -> List[str]:
    path = stack.config_file or "/etc/default/grub"
    lines = []
    for p in remove:
        rx = _sed_ere(p)
        lines.append(f"sed -i -E '/^GRUB_CMDLINE_LINUX/ s/([\"[:space:]]){rx}([[:space:]\"])/\\1\\2/g' {path}")
    for p in add:
        rx = _sed_ere(p)
        lines.append(
            f"grep -Eq '^GRUB_CMDLINE_LINUX_DEFAULT=.*[\"[:space:]]{rx}([[:space:]\"]|$)' {path} || "
            f"sed -i -E 's|^GRUB_CMDLINE_LINUX_DEFAULT=\"|&{p} |' {path}"
        )
    return lines + list(stack.regenerate)


def _kernel_cmdline_commands(stack: BootStack, add: Sequence[str], remove: Sequence[str]) -> List[str]:
    path = stack.config_file or "/etc/kernel/cmdline"
    lines = []
    for p in remove:
        lines.append(f"sed -i -E 's/(^|[[:space:]]){_sed_ere(p)}([[:space:]]|$)/\\1\\2/g' {path}")
    for p in add:
        lines.append(f"grep -Eq '(^|[[:space:]]){_sed_ere(p)}([[:space:]]|$)' {path} || sed -i '1 s|$| {p}|' {path}")
    return lines + list(stack.regenerate)


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
    if stack.stack == "grub":
        commands = _grub_commands(stack, add, remove)
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
    elif stack.stack in ("proxmox-boot-tool", "kernel-cmdline"):
        commands = _kernel_cmdline_commands(stack, add, remove)
    else:
        commands = []
    manual = not commands
    if stack.stack == "nixos":
        summary = (f"In /etc/nixos/configuration.nix, boot.kernelParams: {change}; "
                   "then run nixos-rebuild boot and reboot")
    elif manual:
        summary = f"In your boot loader's configuration: {change} on the kernel command line; then reboot"
    return [Step(summary=summary, phase="boot", commands=commands, requires_reboot=True, persistent=True,
                 manual=manual,
                 action={"kind": "kernel-cmdline", "stack": stack.stack, "add": add, "remove": remove,
                         "config_file": stack.config_file, "regenerate": list(stack.regenerate)})]


def modules_steps(missing: Sequence[str], persist: Sequence[str] = VFIO_MODULES) -> List[Step]:
    """Load the missing modules now, and on every boot through one modules-load.d file."""
    names = [checked(m, MODULE_NAME, "module name") for m in missing]
    persist = [checked(m, MODULE_NAME, "module name") for m in persist]
    listing = " ".join(quote(m, MODULE_NAME, "module name") for m in persist)
    return [
        Step(summary=f"Load {', '.join(names)} now", phase="modules",
             commands=["modprobe -a " + " ".join(quote(m, MODULE_NAME, "module name") for m in names)],
             action={"kind": "modprobe", "modules": names}),
        Step(summary=f"Load {', '.join(persist)} at every boot ({MODULES_LOAD_FILE})", phase="modules",
             commands=[f"printf '%s\\n' {listing} > {MODULES_LOAD_FILE}"], persistent=True,
             undo=[f"rm -f {MODULES_LOAD_FILE}"],
             action={"kind": "modules-load", "file": MODULES_LOAD_FILE, "modules": persist}),
    ]


def modprobe_option_step(module: str, option: str, conf: str, summary: str, initramfs: Optional[str] = None) -> Step:
    """An ``options MODULE X=Y`` line in /etc/modprobe.d (used for last-resort overrides)."""
    module = checked(module, MODULE_NAME, "module name")
    checked(option, KERNEL_PARAM, "module option")
    line = f"options {module} {option}"
    return Step(summary=summary, phase="modules", persistent=True, requires_reboot=True,
                commands=[f"echo {shlex.quote(line)} > {conf}"], undo=[f"rm -f {conf}"],
                action={"kind": "modprobe-options", "file": conf, "line": line, "initramfs": initramfs})
