"""Bash for each kind of remediation action, every block guarded so that a second run does nothing.

``emit(action, context)`` returns the lines of one block, or None for a kind this module does not
automate (the caller then writes a NO AUTOMATED FIX note). Values are validated again here:
they come from a scanned host and end up in a script that runs as root.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from scanner.shell import KERNEL_PARAM, MODULE_NAME, UnsafeValue, checked

#: Boot-configuration regeneration commands the script knows, as script lines (ROOT-prefixed).
REGENERATE = {
    "update-grub": "run update-grub",
    "grub2-mkconfig -o /boot/grub2/grub.cfg": 'run grub2-mkconfig -o "$ROOT/boot/grub2/grub.cfg"',
    "grub-mkconfig -o /boot/grub/grub.cfg": 'run grub-mkconfig -o "$ROOT/boot/grub/grub.cfg"',
    "proxmox-boot-tool refresh": "run proxmox-boot-tool refresh",
    'kernel-install add "$(uname -r)" "/lib/modules/$(uname -r)/vmlinuz"':
        'run kernel-install add "$(uname -r)" "$ROOT/lib/modules/$(uname -r)/vmlinuz"',
}
INITRAMFS = {
    "update-initramfs": "run update-initramfs -u -k all",
    "dracut": "run dracut -f --regenerate-all",
    "mkinitcpio": "run mkinitcpio -P",
}
ALLOWED_FILES = ("/etc/modules-load.d/", "/etc/modprobe.d/", "/etc/udev/rules.d/", "/etc/systemd/system/",
                 "/etc/default/grub", "/etc/kernel/cmdline")


@dataclass
class Context:
    report: object
    regenerate: List[str] = field(default_factory=list)  # script lines, deferred to the end of the boot phase
    initramfs: Optional[str] = None  # tool name, when some step needs a rebuild
    initramfs_used: bool = False  # some block may set INITRAMFS_CHANGED
    fixed_rules: set = field(default_factory=set)  # rule ids this script has blocks for
    device_functions: bool = False  # some block uses the per-device shell functions
    emitted: set = field(default_factory=set)  # actions already written (one step can serve several findings)
    encoded: dict = field(default_factory=dict)  # id(action) -> (action, its JSON): one action many steps share


def _ere(param: str) -> str:
    return "".join("\\" + ch if ch in ".+" else ch for ch in param)


def _file(path: str) -> str:
    if not isinstance(path, str) or not path.startswith(ALLOWED_FILES) or ".." in path or not all(
            ch.isalnum() or ch in "/._-" for ch in path):
        raise UnsafeValue(f"refusing to write {path!r}: not a configuration file this script may change")
    return path


def _params(action, key) -> List[str]:
    return [checked(p, KERNEL_PARAM, "kernel parameter") for p in action.get(key) or ()]


def _grub_has(param: str) -> str:
    return (f"grep -Eq '^GRUB_CMDLINE_LINUX(_DEFAULT)?=.*[\"[:space:]]{_ere(param)}([[:space:]\"]|$)' "
            '"$ROOT/etc/default/grub"')


def _cmdline_grub(action, ctx) -> List[str]:
    lines = []
    for p in _params(action, "remove"):
        lines += [f"if {_grub_has(p)}; then",
                  f"    edit_file /etc/default/grub '/^GRUB_CMDLINE_LINUX/ s/([\"[:space:]]){_ere(p)}([[:space:]\"])/\\1\\2/g'",
                  "    BOOT_CHANGED=1", "fi"]
    for p in _params(action, "add"):
        lines += [f"if ! {_grub_has(p)}; then",
                  "    grep -q '^GRUB_CMDLINE_LINUX_DEFAULT=' \"$ROOT/etc/default/grub\" || "
                  "edit_file /etc/default/grub '$ a GRUB_CMDLINE_LINUX_DEFAULT=\"\"'",
                  f"    edit_file /etc/default/grub 's|^GRUB_CMDLINE_LINUX_DEFAULT=\"|&{p} |'",
                  "    BOOT_CHANGED=1", "fi"]
    return lines


def _cmdline_file(action, ctx) -> List[str]:
    path = _file(action.get("config_file") or "/etc/kernel/cmdline")
    lines = []
    for p in _params(action, "remove"):
        lines += [f"if grep -Eq '(^|[[:space:]]){_ere(p)}([[:space:]]|$)' \"$ROOT{path}\"; then",
                  f"    edit_file {path} 's/(^|[[:space:]]){_ere(p)}([[:space:]]|$)/\\1\\2/g'",
                  "    BOOT_CHANGED=1", "fi"]
    for p in _params(action, "add"):
        lines += [f"if ! grep -Eq '(^|[[:space:]]){_ere(p)}([[:space:]]|$)' \"$ROOT{path}\"; then",
                  f"    edit_file {path} '1 s|$| {p}|'",
                  "    BOOT_CHANGED=1", "fi"]
    return lines


def _cmdline_grubby(action, ctx) -> List[str]:
    lines = []
    for p in _params(action, "add"):
        has = (f"grep -Eqs '^options .*(^|[[:space:]]){_ere(p)}([[:space:]]|$)' \"$ROOT\"/boot/loader/entries/*.conf")
        lines += [f"if ! {has}; then", f"    run grubby --update-kernel=ALL --args={shlex.quote(p)}", "    needs_reboot 'the kernel command line'", "fi"]
    for p in _params(action, "remove"):
        has = (f"grep -Eqs '^options .*(^|[[:space:]]){_ere(p)}([[:space:]]|$)' \"$ROOT\"/boot/loader/entries/*.conf")
        lines += [f"if {has}; then", f"    run grubby --update-kernel=ALL --remove-args={shlex.quote(p)}", "    needs_reboot 'the kernel command line'", "fi"]
    return lines


def _cmdline_kernelstub(action, ctx) -> List[str]:
    lines = []
    conf = '"$ROOT/etc/kernelstub/configuration"'
    for p in _params(action, "add"):
        lines += [f"if ! grep -qF {shlex.quote(chr(34) + p + chr(34))} {conf}; then",
                  f"    run kernelstub --add-options {shlex.quote(p)}", "    needs_reboot 'the kernel command line'", "fi"]
    for p in _params(action, "remove"):
        lines += [f"if grep -qF {shlex.quote(chr(34) + p + chr(34))} {conf}; then",
                  f"    run kernelstub --delete-options {shlex.quote(p)}", "    needs_reboot 'the kernel command line'", "fi"]
    return lines


def _cmdline_ostree(action, ctx) -> List[str]:
    args = [f"--append-if-missing={p}" for p in _params(action, "add")]
    args += [f"--delete-if-present={p}" for p in _params(action, "remove")]
    if not args:
        return ["needs_reboot 'the kernel command line'"]
    return ["# rpm-ostree's --append-if-missing / --delete-if-present make this idempotent",
            "run rpm-ostree kargs " + " ".join(shlex.quote(a) for a in args), "needs_reboot 'the kernel command line'"]


CMDLINE_STACKS = {"grub": _cmdline_grub, "proxmox-boot-tool": _cmdline_file, "kernel-cmdline": _cmdline_file,
                  "grubby": _cmdline_grubby, "kernelstub": _cmdline_kernelstub, "rpm-ostree": _cmdline_ostree}


def _kernel_cmdline(action, ctx) -> Optional[List[str]]:
    handler = CMDLINE_STACKS.get(action.get("stack"))
    if handler is None:
        return None
    for cmd in action.get("regenerate") or ():
        line = REGENERATE.get(cmd)
        if line is None:
            raise UnsafeValue(f"unknown boot regeneration command {cmd!r}")
        if line not in ctx.regenerate:
            ctx.regenerate.append(line)
    if not action.get("add") and not action.get("remove"):
        return _already_configured(action)
    return handler(action, ctx)


#: Where each GRUB flavour writes its generated configuration.
GRUB_CFG = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")


def _already_configured(action) -> List[str]:
    """The next boot already gets the parameters: regenerate only if the generated file is stale."""
    lines = ["# the configuration already has the parameters"]
    if action.get("stack") == "grub":
        for cfg in GRUB_CFG:
            lines += [f'if [ -f "$ROOT{cfg}" ] && [ "$ROOT/etc/default/grub" -nt "$ROOT{cfg}" ]; then',
                      f"    say 'stale: $ROOT{cfg} is older than /etc/default/grub'", "    BOOT_CHANGED=1", "fi"]
    lines.append("needs_reboot 'the kernel command line (already configured, not yet booted)'")
    return lines


def _modprobe(action, ctx) -> List[str]:
    lines = []
    for m in action.get("modules") or ():
        name = checked(m, MODULE_NAME, "module name")
        lines += [f"if ! module_loaded {name}; then", f"    run modprobe {name}", "fi"]
    return lines


def write_file_lines(path: str, lines: List[str]) -> List[str]:
    """A ``write_file`` call giving ``path`` exactly these lines (each quoted)."""
    words = " ".join(shlex.quote(line) for line in lines)
    return [f"write_file {_file(path)} \"$(printf '%s\\n' {words})\""]


def _modules_load(action, ctx) -> List[str]:
    names = [checked(m, MODULE_NAME, "module name") for m in action.get("modules") or ()]
    return write_file_lines(action["file"], names)


def _modprobe_options(action, ctx) -> List[str]:
    path = _file(action["file"])
    line = action["line"]
    words = line.split()
    if len(words) < 3 or words[0] not in ("options", "softdep") or not all(
            KERNEL_PARAM.match(w) or w in ("pre:", "post:") for w in words[1:]):
        raise UnsafeValue(f"refusing modprobe.d line {line!r}")
    ctx.initramfs_used = True
    ctx.initramfs = ctx.initramfs or action.get("initramfs")
    return ["CHANGED=0", f"write_file {path} {shlex.quote(line)}",
            'if [ "$CHANGED" = 1 ]; then INITRAMFS_CHANGED=1; needs_reboot "module options"; fi']


HANDLERS: Dict[str, Callable] = {
    "kernel-cmdline": _kernel_cmdline,
    "modprobe": _modprobe,
    "modules-load": _modules_load,
    "modprobe-options": _modprobe_options,
}


def register(kind: str):
    """Decorator for handlers defined in other modules (SR-IOV, binding)."""
    def deco(func):
        HANDLERS[kind] = func
        return func
    return deco


def emit(action, ctx: Context) -> Optional[List[str]]:
    handler = HANDLERS.get(action.get("kind"))
    return handler(action, ctx) if handler else None


def after_phase(phase: str, ctx: Context) -> List[str]:
    """Deferred work of a phase: regenerate the boot configuration once, after every edit."""
    if phase != "boot" or not ctx.regenerate:
        return []
    return (["# regenerate the boot configuration once, after every command-line edit",
             'if [ "$BOOT_CHANGED" = 1 ]; then'] + [f"    {line}" for line in ctx.regenerate]
            + ["    needs_reboot 'the kernel command line'", "fi", ""])


def after_all(ctx: Context) -> List[str]:
    """Rebuild the initramfs once, at the end, if module options or early binding changed."""
    if not ctx.initramfs_used:
        return []
    rebuild = INITRAMFS.get(ctx.initramfs or "")
    return (["# ===== initramfs =====", 'if [ "$INITRAMFS_CHANGED" = 1 ]; then',
             f"    {rebuild}" if rebuild else "    say 'MANUAL: rebuild the initramfs with your distribution tool'",
             "fi", ""])


__all__ = ["Context", "emit", "after_phase", "after_all", "register", "write_file_lines"]
