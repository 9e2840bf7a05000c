"""VFIO-007 vfio-modules: vfio, vfio_pci and vfio_iommu_type1 are loaded or built in.

What: the three modules QEMU needs to open a device through ``/dev/vfio``. ``vfio_virqfd`` is
never demanded: it was merged into ``vfio`` in Linux 6.2, and listing it in
``/etc/modules-load.d`` on a newer kernel only produces "Failed to find module 'vfio_virqfd'",
which is reported as stale configuration.

Why: without ``vfio_pci`` nothing can bind a device for passthrough; without
``vfio_iommu_type1`` QEMU cannot set up the container's DMA mappings.

How: ``/proc/modules`` (loaded), ``modules.builtin`` and the kernel config (built in),
``modules.dep`` of the running release (installed but not loaded). Names are compared whole
(``vfio`` does not match ``vfio_pci``) with ``-`` and ``_`` equal.

Loaded now is not loaded after a reboot: when vfio_pci is a loaded module, something must load
it at every boot -- a modules-load.d or ``/etc/modules`` entry, a ``softdep ... pre: vfio-pci``,
a driverctl override, a udev rule that loads it, or the initramfs configuration
(``/etc/initramfs-tools/modules``, dracut's ``force_drivers``, mkinitcpio's ``MODULES``); else
the finding is "works now, lost at next boot". libvirt (``/etc/libvirt/qemu.conf``) and
``--managed`` VMMs load it themselves. (vfio_pci pulls vfio and vfio_iommu_type1 in.)

Fix: ``modprobe`` now and ``/etc/modules-load.d/vfio.conf`` for every boot; a module absent
from the modules tree needs a different kernel (see VFIO-003).
"""

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step
from scanner.engine.model import LOST_AT_NEXT_BOOT
from scanner.remediation.remedies import MODULES_LOAD_FILE, VFIO_MODULES, modules_steps

KCONFIG = {"vfio": "VFIO", "vfio_pci": "VFIO_PCI", "vfio_iommu_type1": "VFIO_IOMMU_TYPE1"}


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-007", name="vfio-modules", scope="host", severity="high",
                  title="vfio, vfio_pci and vfio_iommu_type1 available", check=check, docs=__doc__))


def module_states(facts):
    mods, kc = facts.modules, facts.kconfig
    states = {}
    for name in VFIO_MODULES:
        state = mods.state(name)
        if state in ("absent", "unknown") and kc.get(KCONFIG[name]) == "y":
            state = "builtin"
        elif state == "unknown" and kc.get(KCONFIG[name]) == "m":
            state = "installed"
        elif state == "unknown" and kc.found and kc.get(KCONFIG[name]) in (None, "n"):
            state = "absent"
        states[name] = state
    return states


def check(facts, scan):
    mods = facts.modules
    if mods.loaded_source is None and mods.builtin_source is None and not facts.kconfig.found:
        yield Finding.skip("cannot tell which modules are loaded or built in: " + "; ".join(mods.notes))
        return
    states = module_states(facts)
    shown = ", ".join(f"{n} ({s})" for n, s in states.items())
    evidence = [Evidence(mods.loaded_source or "/proc/modules",
                         ", ".join(f"{n}: {s}" for n, s in states.items()))]
    evidence += [Evidence("modules", note) for note in mods.notes]
    stale = [Evidence(path, "lists vfio_virqfd") for path in facts_stale_virqfd(facts)]
    absent = [n for n, s in states.items() if s == "absent"]
    missing = [n for n, s in states.items() if s in ("installed", "unknown")]
    if absent:
        yield Finding.fail(f"{', '.join(absent)} not in the running kernel's modules tree nor built in "
                           "(see VFIO-003)", observed=shown, expected="each loaded or built in", evidence=evidence,
                           remediation=[Step(summary="Boot a kernel that ships the VFIO modules (see VFIO-003)",
                                             phase="kernel", manual=True, requires_reboot=True,
                                             action={"kind": "see-rule", "rules": ["VFIO-003"]})])
        return
    if missing and mods.loaded_source is None:  # /proc/modules unreadable: "not loaded" would be a guess
        yield Finding.skip(f"cannot tell whether {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                           f"loaded: " + "; ".join(mods.notes), observed=shown, expected="each loaded or built in",
                           evidence=evidence)
        return
    if missing:
        unsure = [n for n in missing if states[n] == "unknown"]
        note = f" (could not check the modules tree for {', '.join(unsure)})" if unsure else ""
        unindexed = [n for n in missing if n in mods.unindexed]
        if unindexed:
            note += (f"; {', '.join(unindexed)} {'is' if len(unindexed) == 1 else 'are'} in the modules tree, but "
                     "modules.dep, the index modprobe reads, is missing: depmod -a rebuilds it")
        yield Finding.fail(f"{', '.join(missing)} not loaded{note}", observed=shown,
                           expected="each loaded or built in", evidence=evidence + stale,
                           remediation=modules_steps(missing, current=facts.etc_file(MODULES_LOAD_FILE),
                                                     reindex=bool(unindexed)))
        return
    if stale:
        yield Finding.warn(f"all loaded ({shown}), but vfio_virqfd is still listed for loading; it was merged into "
                           "vfio in Linux 6.2 and systemd-modules-load fails on it", observed=shown,
                           expected="no vfio_virqfd entry", evidence=evidence + stale, severity="low",
                           remediation=[Step(summary="Remove the vfio_virqfd line from " + ", ".join(e.source for e in stale),
                                             phase="modules", manual=True, persistent=True)])
        return
    if states.get("vfio_pci") == "loaded" and not (scan.managed or facts.has_libvirt):
        loaders, unread = facts.vfio_pci_boot_loaders()
        if not loaders and not unread:
            yield Finding.fail(f"{LOST_AT_NEXT_BOOT}: {shown}, but nothing loads vfio_pci at boot (no modules-load.d or "
                               "/etc/modules entry, no softdep ... pre: vfio-pci, no driverctl override, no udev rule, "
                               "nothing in the initramfs configuration), so after a reboot QEMU finds no vfio-pci",
                               observed=shown, expected="vfio_pci loaded at every boot", evidence=evidence,
                               remediation=modules_steps([], current=facts.etc_file(MODULES_LOAD_FILE))[-1:])
            return
        evidence += [Evidence("loads vfio_pci at boot", loader) for loader in loaders[:8]]
    yield Finding.passed(f"available: {shown}", observed=shown, expected="each loaded or built in", evidence=evidence)


def facts_stale_virqfd(facts):
    """Files that ask to load vfio_virqfd although the running kernel has no such module."""
    if "vfio_virqfd" in facts.modules.installed or "vfio_virqfd" in facts.modules.loaded:
        return []
    return [path for path, names in facts.modules_load_config.items() if "vfio_virqfd" in names]
