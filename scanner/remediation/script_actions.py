"""Bash for each kind of host-level remediation action, every block guarded so that a second run does nothing.

``emit(action, context)`` returns the lines of one block, or None for a kind this module does not
automate (the caller then writes a NO AUTOMATED FIX note). Values are validated again here:
they come from a scanned host and end up in a script that runs as root. A change that cannot be
made safely raises :class:`~scanner.remediation.shell.UnsafeValue` or :class:`~scanner.remediation.confedit.EditError`,
and the caller writes the reason as a NO AUTOMATED FIX note instead.

Configuration files are changed only through :class:`scanner.remediation.script_files.FileLedger` (exact
content, guarded by what the scan read); host tools only through the runtime's ``run``, which
does not run them in tree mode.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional

from scanner.remediation.script_files import FileLedger, allowed_file
from scanner.remediation.confedit import EditError, cmdline_file_edit, ensure_lines, grub_edit, module_name_equal
from scanner.remediation.shell import KERNEL_PARAM, MODULE_NAME, UnsafeValue, checked

#: Boot-configuration regeneration commands the script knows, as script lines.
REGENERATE = {
    "update-grub": "run update-grub",
    "grub2-mkconfig -o /boot/grub2/grub.cfg": "run grub2-mkconfig -o /boot/grub2/grub.cfg",
    "grub-mkconfig -o /boot/grub/grub.cfg": "run grub-mkconfig -o /boot/grub/grub.cfg",
    "proxmox-boot-tool refresh": "run proxmox-boot-tool refresh",
    'kernel-install add "$(uname -r)" "/lib/modules/$(uname -r)/vmlinuz"':
        'run kernel-install add "$(uname -r)" "/lib/modules/$(uname -r)/vmlinuz"',
}
INITRAMFS = {
    "update-initramfs": "run update-initramfs -u -k all",
    "dracut": "run dracut -f --regenerate-all",
    "mkinitcpio": "run mkinitcpio -P",
}


@dataclass
class Context:
    report: object
    regenerate: List[str] = field(default_factory=list)  # script lines, deferred to the end of the boot phase
    grub_params: List[str] = field(default_factory=list)  # what the generated GRUB configuration must then carry
    initramfs: Optional[str] = None  # tool name, when some step needs a rebuild
    initramfs_used: bool = False  # some block may flag the initramfs
    udev_used: bool = False  # some block may flag udev's rules
    access_used: bool = False  # some block may flag the vfio nodes' udev rules (phase access)
    fixed_rules: set = field(default_factory=set)  # rule ids this script has blocks for
    emitted: set = field(default_factory=set)  # actions already written (one step can serve several findings)
    encoded: dict = field(default_factory=dict)  # id(action) -> (action, its JSON): one action many steps share
    files: FileLedger = field(default_factory=FileLedger)  # what each configuration file holds, block by block
    blocks: int = 0  # blocks written so far (each is a function fix_N)

    def rebuild_line(self) -> Optional[str]:
        return INITRAMFS.get(self.initramfs or "")


def file_block(ctx: Context, changes: Mapping[str, str], then: Optional[str] = None) -> List[str]:
    """``put_file`` of each changed file; ``then`` runs when one of them changed (a flag, a reboot note)."""
    lines = ["CHANGED=0"] if then else []
    for path, text in changes.items():
        lines += ctx.files.put(path, text)
    if not changes:
        lines.append("say 'unchanged: the configuration files already say it'")
    if then:
        ctx.udev_used = ctx.udev_used or "flag udev" in then
        lines.append(f'if [ "$CHANGED" = 1 ]; then {then}; fi')
    return lines


def _params(action, key) -> List[str]:
    return [checked(p, KERNEL_PARAM, "kernel parameter") for p in action.get(key) or ()]


def _known(ctx: Context, files) -> List[dict]:
    """The files as they stand at this point of the script (learned from the scan the first time)."""
    for state in files:
        ctx.files.know(state)
    return [{"path": f["path"], "text": ctx.files.text(f["path"])} for f in files]


def _cmdline_grub(action, ctx) -> List[str]:
    files = list(action.get("files") or ())
    if not files:
        raise EditError("the scan could not read /etc/default/grub: edit the command line by hand")
    added = _params(action, "add")
    changes = grub_edit(_known(ctx, files), added, _params(action, "remove"))
    ctx.grub_params += [p for p in added if p not in ctx.grub_params]
    dropins = [f["path"].rsplit("/", 1)[1] for f in files[1:]]
    guard = ("same_names /etc/default/grub.d '*.cfg'" + "".join(f" {shlex.quote(n)}" for n in dropins)
             + "  # the drop-ins decide which file wins: as scanned")
    return [guard] + file_block(ctx, changes, then="flag boot")


def _cmdline_file(action, ctx) -> List[str]:
    path = allowed_file(action.get("config_file") or "/etc/kernel/cmdline")
    _known(ctx, [f for f in action.get("files") or () if f.get("path") == path])
    new = cmdline_file_edit(ctx.files.text(path), _params(action, "add"), _params(action, "remove"))
    return file_block(ctx, {path: new}, then="flag boot")


def _tool_edits(action, has: Callable[[str], str], add: Callable[[str], str], remove: Callable[[str], str]) -> List[str]:
    """Blocks for a boot tool that edits the command line itself: act when the files say so, record the
    undo, and check the files afterwards (a tool that did nothing is a failure, not a change)."""
    lines = []
    for p in _params(action, "add"):
        lines += [f"if ! {has(p)}; then", f"    run {add(p)}", f"    undo_live run {remove(p)}",
                  f"    if applied && ! {has(p)}; then fail {shlex.quote(f'{add(p)} left {p} out of the boot entries')}; fi",
                  "    needs_reboot 'the kernel command line'", "fi"]
    for p in _params(action, "remove"):
        lines += [f"if {has(p)}; then", f"    run {remove(p)}", f"    undo_live run {add(p)}",
                  f"    if applied && {has(p)}; then fail {shlex.quote(f'{remove(p)} left {p} in the boot entries')}; fi",
                  "    needs_reboot 'the kernel command line'", "fi"]
    return lines


def _ere(param: str) -> str:
    return "".join("\\" + ch if ch in ".+" else ch for ch in param)


def _cmdline_grubby(action, ctx) -> List[str]:
    def has(p):
        return (f"grep -Eqs '^options .*(^|[[:space:]]){_ere(p)}([[:space:]]|$)' "
                '"$(inroot /boot/loader/entries)"/*.conf')
    return _tool_edits(action, has, lambda p: f"grubby --update-kernel=ALL --args={shlex.quote(p)}",
                       lambda p: f"grubby --update-kernel=ALL --remove-args={shlex.quote(p)}")


def _cmdline_kernelstub(action, ctx) -> List[str]:
    def has(p):
        return f'grep -qF {shlex.quote(chr(34) + p + chr(34))} "$(inroot /etc/kernelstub/configuration)"'
    return _tool_edits(action, has, lambda p: f"kernelstub --add-options {shlex.quote(p)}",
                       lambda p: f"kernelstub --delete-options {shlex.quote(p)}")


def _cmdline_ostree(action, ctx) -> List[str]:
    added, removed = _params(action, "add"), _params(action, "remove")
    args = [f"--append-if-missing={p}" for p in added] + [f"--delete-if-present={p}" for p in removed]
    if not args:
        return ["needs_reboot 'the kernel command line'"]
    back = [f"--delete-if-present={p}" for p in added] + [f"--append-if-missing={p}" for p in removed]
    return ["# rpm-ostree's --append-if-missing / --delete-if-present make this idempotent",
            "run rpm-ostree kargs " + " ".join(shlex.quote(a) for a in args),
            "undo_live run rpm-ostree kargs " + " ".join(shlex.quote(a) for a in back),
            "needs_reboot 'the kernel command line'"]


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
    return _spare_host_ids(action) + handler(action, ctx)


def _spare_host_ids(action) -> List[str]:
    """``vfio-pci.ids=`` added to the command line (vfio-pci built into the kernel) takes every function with
    those ids at every boot: as the modprobe.d line does, it is refused when the host needs one right now."""
    ids = [i for p in _params(action, "add") if p.replace("_", "-").startswith("vfio-pci.ids=")
           for i in p.split("=", 1)[1].split(",") if i]
    return [f"spare_host_ids {' '.join(ids)}"] if ids else []


#: Where each GRUB flavour writes its generated configuration.
GRUB_CFG = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")


def _already_configured(action) -> List[str]:
    """The next boot already gets the parameters: regenerate only if the generated file is stale."""
    lines = ["# the configuration already has the parameters"]
    if action.get("stack") == "grub":
        for cfg in GRUB_CFG:
            lines += [f'if [ -f "$(inroot {cfg})" ] && [ "$(inroot /etc/default/grub)" -nt "$(inroot {cfg})" ]; then',
                      f"    say 'stale: {cfg} is older than /etc/default/grub'", "    flag boot", "fi"]
    lines.append("needs_reboot 'the kernel command line (already configured, not yet booted)'")
    return lines


def _modprobe(action, ctx) -> List[str]:
    return [f"load_module {checked(m, MODULE_NAME, 'module name')}" for m in action.get("modules") or ()]


def _modules_load(action, ctx) -> List[str]:
    path = allowed_file(action.get("file"))
    names = [checked(m, MODULE_NAME, "module name") for m in action.get("modules") or ()]
    _known(ctx, [f for f in action.get("files") or () if f.get("path") == path])
    return file_block(ctx, {path: ensure_lines(ctx.files.text(path), names, module_name_equal)})


def _modprobe_options(action, ctx) -> List[str]:
    path = allowed_file(action.get("file"))
    line = action["line"]
    words = line.split()
    if len(words) < 3 or words[0] not in ("options", "softdep") or not all(
            KERNEL_PARAM.match(w) or w in ("pre:", "post:") for w in words[1:]):
        raise UnsafeValue(f"refusing modprobe.d line {line!r}")
    _known(ctx, [f for f in action.get("files") or () if f.get("path") == path])
    ctx.initramfs_used = True
    ctx.initramfs = ctx.initramfs or action.get("initramfs")
    return file_block(ctx, {path: ensure_lines(ctx.files.text(path), [line])},
                      then='flag initramfs; needs_reboot "module options"')


def _depmod(action, ctx) -> List[str]:
    return ["run depmod -a"]


def _limits_memlock(action, ctx) -> List[str]:
    """The VM user's memlock lines, merged into our limits.d file (pam_limits reads it at the next login)."""
    from scanner.remediation.vm_access import MEMLOCK_FILE, merged_memlock

    if action.get("file") != MEMLOCK_FILE:
        raise UnsafeValue(f"refusing to write {action.get('file')!r}: not the memlock file of this tool")
    _known(ctx, [f for f in action.get("files") or () if f.get("path") == MEMLOCK_FILE])
    new = merged_memlock(ctx.files.text(MEMLOCK_FILE), action.get("user"), action.get("kib"))
    return file_block(ctx, {MEMLOCK_FILE: new}) + [
        "say 'the memlock limit applies from the next login of that user'"]


def _initramfs_modules(action, ctx) -> List[str]:
    """vfio-pci first in the initramfs: the exact file and lines of the tool (nothing else is accepted)."""
    from scanner.remediation.early_binding import early_file

    tool = action.get("tool")
    if tool not in INITRAMFS:
        raise UnsafeValue(f"refusing initramfs tool {tool!r}")
    path, lines = early_file(tool) if tool != "mkinitcpio" else (None, None)
    if path is None or action.get("file") != path or list(action.get("lines") or ()) != lines:
        raise UnsafeValue(f"refusing to write {action.get('file')!r}: not {tool}'s early-module file of this tool")
    _known(ctx, [f for f in action.get("files") or () if f.get("path") == path])
    ctx.initramfs_used = True
    ctx.initramfs = ctx.initramfs or tool
    return file_block(ctx, {path: ensure_lines(ctx.files.text(path), lines, module_name_equal)},
                      then='flag initramfs; needs_reboot "vfio-pci loaded first in the initramfs"')


def _initramfs_rebuild(action, ctx) -> List[str]:
    tool = action.get("tool")
    if tool not in INITRAMFS:
        raise UnsafeValue(f"refusing initramfs tool {tool!r}")
    ctx.initramfs_used = True
    ctx.initramfs = ctx.initramfs or tool
    return ["flag initramfs", "needs_reboot 'the initramfs, rebuilt with the module configuration as it is now'"]


HANDLERS: Dict[str, Callable] = {
    "initramfs-modules": _initramfs_modules,
    "initramfs-rebuild": _initramfs_rebuild,
    "depmod": _depmod,
    "kernel-cmdline": _kernel_cmdline,
    "modprobe": _modprobe,
    "modules-load": _modules_load,
    "modprobe-options": _modprobe_options,
    "limits-memlock": _limits_memlock,
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


def after_phase(phase: str, ctx: Context) -> List[tuple]:
    """Deferred work of a phase as (name, lines) blocks: regenerate the boot configuration once, after
    every edit; reload udev's rules once, after the bindings."""
    if phase == "boot" and ctx.regenerate:
        return [("boot configuration", ["if flagged boot; then"] + [f"    {line}" for line in ctx.regenerate]
                 + [f"    generated_has {' '.join(shlex.quote(p) for p in ctx.grub_params)}" if ctx.grub_params else "",
                    "    needs_reboot 'the kernel command line'", "    done_pending boot", "fi"])]
    if phase == "binding" and ctx.udev_used:
        return [("udev rules", ["if flagged udev; then",
                                "    run udevadm control --reload || say \"note: udev did not reload its rules (not "
                                "running here?); they apply at the next boot\"", "fi"])]
    if phase == "access" and ctx.access_used:
        from scanner.remediation.vm_access import NODE_MATCH, trigger_commands

        return [("udev rules of the vfio nodes", ["if flagged vfio-access; then",
                                                  "    run udevadm control --reload || say 'note: udev did not reload "
                                                  "its rules (not running here?)'"]
                 + [f"    run {line} || say 'note: udev did not apply the rules now; they apply at the next boot'"
                    for line in trigger_commands(list(NODE_MATCH))] + ["fi"])]
    return []


def after_all(ctx: Context) -> List[tuple]:
    """Rebuild the initramfs once, at the end, if module options or early binding changed."""
    if not ctx.initramfs_used:
        return []
    rebuild = ctx.rebuild_line()
    return [("initramfs", ["if flagged initramfs; then",
                           f"    {rebuild}" if rebuild else
                           "    say 'MANUAL: rebuild the initramfs with your distribution tool'",
                           "    done_pending initramfs", "fi"])]


__all__ = ["Context", "emit", "after_phase", "after_all", "register", "file_block"]
