"""Whether the initramfs hands a target to its host driver before vfio-pci can claim it.

The initramfs loads drivers before the root filesystem is mounted, with its own copy of the
module configuration taken when the image was built. When it holds the target's host driver
(``amdgpu`` for a Radeon, ``nvme``, ``mlx5_core``), that driver binds the device first unless the
image also holds vfio-pci, the ``ids=`` line, and something that loads vfio-pci before the host
driver (a ``softdep``, initramfs-tools' ``/etc/initramfs-tools/modules``, dracut's
``force_drivers``). This is the "works until the next initramfs rebuild / reboot" problem the
Arch wiki and every passthrough guide warn about; VFIO-017 reports it.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from scanner.remediation.confedit import edit_commands, ensure_lines, file_state, module_name_equal
from scanner.facts.boot_lines import loads_vfio_pci_early, modprobe_vfio_lines
from scanner.base.lazyre import lazy_compile
from scanner.engine.model import Evidence, Step

#: What the fix lists early, in load order (vfio_pci needs the other two).
EARLY_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")
INITRAMFS_TOOLS_MODULES = "/etc/initramfs-tools/modules"
DRACUT_FILE = "/etc/dracut.conf.d/vfio-scan.conf"
DRACUT_LINE = 'force_drivers+=" vfio vfio_iommu_type1 vfio_pci "'
_DRIVER_PRE = lazy_compile(r"\brd\.driver\.pre=(?:\S*,)?vfio[-_]pci\b")


def judge(facts, device, mechanism: str) -> Tuple[Optional[Tuple[str, str, List[Step]]], List[Evidence]]:
    """((status, message, steps) when the initramfs breaks the binding, else None; evidence).

    ``mechanism`` is what binds the device at boot (VFIO-017's first line: ``ids=... in FILE``,
    ``ids=... on the next boot's command line``, a driverctl override or a udev rule).
    """
    image = facts.initramfs_image
    if image is None:
        return None, []
    if not image.ok:
        return None, [Evidence(image.path, f"<{image.reason}: whether its drivers load before vfio-pci is not known>")]
    contents = image.contents
    modules = frozenset(contents.modules)
    early = facts.early_host_drivers(device, modules)
    builtin = facts.modules.state("vfio_pci") == "builtin"
    has_vfio = "vfio_pci" in modules or builtin
    evidence = [Evidence(image.path, f"{' + '.join(contents.formats)}, {contents.entries} entries; "
                                     f"{', '.join(early) or 'no driver'} for {device.ids}; "
                                     f"vfio_pci {'built in' if builtin else 'in it' if has_vfio else 'not in it'}")]
    if not early:
        return None, evidence
    drivers = ", ".join(early)
    where = f"the initramfs {image.path} loads {drivers}, which binds {device.address} before the root filesystem is mounted"
    if not mechanism.startswith("ids="):
        return ("warn", f"{where}; {mechanism} applies only after that, in the real root: check that "
                        f"{device.address} is on vfio-pci after a reboot, or bind it with vfio-pci ids= loaded early",
                [_early_step(facts)] if not has_vfio else []), evidence
    if not has_vfio:
        return ("fail", f"works now, lost at next boot: {where}, and the image holds no vfio-pci to claim it first",
                [_early_step(facts)]), evidence
    from_modprobe = "command line" not in mechanism
    if from_modprobe and not _ids_in(contents, device.ids):
        return ("fail", f"works now, lost at next boot: {where}; it holds vfio_pci but not the ids={device.ids} "
                        "line (built before /etc/modprobe.d said it): rebuild it", [_rebuild_step(facts)]), evidence
    if not _loads_vfio_first(contents, early):
        return ("warn", f"{where}; it holds vfio_pci and ids=, but nothing in it that loads vfio_pci first (no softdep "
                        f"{early[0]} pre: vfio-pci, no early module list)", [_early_step(facts)]), evidence
    return None, evidence


def _ids_in(contents, ids: str) -> bool:
    """Does the image's copy of modprobe.d give vfio-pci these ids?"""
    return any(ids in (modprobe_vfio_lines(text)[0] or ()) for name, text in contents.files if "modprobe.d/" in name)


def _loads_vfio_first(contents, early: List[str]) -> bool:
    """A softdep of one of ``early`` on vfio-pci, a module list that loads vfio_pci, or dracut's
    ``rd.driver.pre=vfio_pci`` in the image."""
    for name, text in contents.files:
        if "modprobe.d/" in name and set(modprobe_vfio_lines(text)[1]) & set(early):
            return True
        if (name == "conf/modules" or "modules-load.d/" in name or name == "etc/modules") and loads_vfio_pci_early(text):
            return True
        if name.startswith("etc/cmdline.d/") and _DRIVER_PRE.search(text):
            return True
    return False


def _early_step(facts) -> Step:
    """vfio-pci (and what it needs) loaded first in the initramfs, then a rebuild: per tool."""
    tool = facts.initramfs_tool
    if tool in ("update-initramfs", "dracut"):
        path, lines = early_file(tool)
        state = file_state(*facts.etc_file(path))
        if state["reason"]:
            return Step(summary=f"Add {' / '.join(lines)} to {path} by hand ({state['reason']}), rebuild the initramfs "
                                "and reboot", phase="binding", persistent=True, requires_reboot=True, manual=True)
        new = ensure_lines(state["text"], lines, module_name_equal)
        from scanner.remediation.persistent_binding import INITRAMFS_COMMANDS

        how = "initramfs-tools loads them before any other driver" if tool == "update-initramfs" else \
            "dracut loads them before udev starts"
        return Step(summary=f"Load vfio-pci first in the initramfs: {' / '.join(lines)} in {path} ({how}), then "
                            f"{INITRAMFS_COMMANDS[tool]} and reboot",
                    phase="binding", persistent=True, requires_reboot=True,
                    commands=edit_commands(path, state["text"], new) + [INITRAMFS_COMMANDS[tool]],
                    action={"kind": "initramfs-modules", "tool": tool, "file": path, "lines": lines, "files": [state]})
    if tool == "mkinitcpio":
        return Step(summary="Put vfio_pci vfio vfio_iommu_type1 first in MODULES=() of /etc/mkinitcpio.conf (before "
                            "the host driver, if listed), then mkinitcpio -P and reboot", phase="binding",
                    persistent=True, requires_reboot=True, manual=True)
    return Step(summary="Make the initramfs load vfio, vfio_iommu_type1 and vfio_pci before any other driver "
                        "(no initramfs tool was detected), rebuild it and reboot", phase="binding", persistent=True,
                requires_reboot=True, manual=True)


def early_file(tool: str) -> Tuple[str, List[str]]:
    """(file, lines) that make ``tool``'s initramfs load vfio-pci before any other driver."""
    if tool == "update-initramfs":
        return INITRAMFS_TOOLS_MODULES, list(EARLY_MODULES)
    if tool == "dracut":
        return DRACUT_FILE, [DRACUT_LINE]
    raise ValueError(tool)


def _rebuild_step(facts) -> Step:
    tool = facts.initramfs_tool
    from scanner.remediation.persistent_binding import INITRAMFS_COMMANDS

    command = INITRAMFS_COMMANDS.get(tool or "")
    if not command:
        return Step(summary="Rebuild the initramfs with your distribution's tool (none detected) and reboot",
                    phase="binding", persistent=True, requires_reboot=True, manual=True)
    return Step(summary=f"Rebuild the initramfs so that it carries /etc/modprobe.d as it is now: {command}, then reboot",
                phase="binding", persistent=True, requires_reboot=True, commands=[command],
                action={"kind": "initramfs-rebuild", "tool": tool})


__all__ = ["judge", "early_file", "EARLY_MODULES", "DRACUT_FILE", "DRACUT_LINE", "INITRAMFS_TOOLS_MODULES"]
