"""Which host driver takes a PCI function at the next boot, what keeps it off, and what sets a module option.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact). A member
of a target's IOMMU group that someone unbound by hand (``echo ADDR > driver/unbind``) holds
nothing while this boot lasts, so the group is viable now; at the next boot udev loads the module
whose ``modules.alias`` line matches the member's modalias (a built-in driver needs no loading),
the driver binds it again, and QEMU refuses the group ("group N is not viable"). Only what the
next boot reads keeps it off: a driverctl override or a udev ``driver_override`` rule naming a
vfio driver or pci-stub for its address, its vendor:device in vfio-pci's ``ids=`` (with vfio-pci
loaded first) or in ``pci-stub.ids=``, or every matching module blacklisted (``blacklist`` /
``install MOD /bin/false`` in modprobe.d, ``modprobe.blacklist=`` / ``module_blacklist=`` on the
command line; a built-in driver cannot be).

The same goes for a module parameter written at run time (``echo Y > /sys/module/M/parameters/P``):
the next boot sets it only from its command line or from modprobe.d (:meth:`BootClaims.module_option_at_boot`).
"""

from __future__ import annotations

import fnmatch
from typing import Dict, List, Optional, Tuple

from scanner.base.record import record
from scanner.facts.boot_lines import modprobe_logical_lines
from scanner.facts.next_boot import modalias
from scanner.host import LARGE_CAP

#: What a driverctl override or a udev driver_override rule may name to keep a device off host drivers.
KEEPERS = ("vfio-pci", "vfio_pci", "pci-stub", "pci_stub")
#: ``install MOD CMD`` lines that make modprobe load nothing (a common way to blacklist for good).
_NO_OP_INSTALL = ("/bin/true", "/bin/false", "/usr/bin/true", "/usr/bin/false", "true", "false")


@record(frozen=True)
class BootClaim:
    """What the next boot does with one PCI function that no host driver holds now."""

    #: host drivers whose alias matches the function's modalias (vfio's own and pci-stub left out)
    modules: Tuple[str, ...] = ()
    #: what keeps it off those drivers at boot, or None
    kept_off: Optional[str] = None
    #: why the drivers that would claim it cannot be told (modules.alias unreadable), or None
    reason: Optional[str] = None
    #: the file the aliases come from
    source: str = "modules.alias"


@record(frozen=True)
class ModuleOption:
    """The value the next boot gives one module parameter, and where that was read."""

    value: Optional[str] = None  # None: not set (the module's default); "" for a bare boolean flag
    where: Optional[str] = None  # the file or command line that sets it
    #: where it was looked for and not found, each with why (for the evidence of a finding)
    missing: Tuple[str, ...] = ()
    #: configuration that could not be read: the value may be set there
    unread: Tuple[str, ...] = ()


class BootClaims:
    """Host drivers that claim a device at boot (``self.host`` is the Host layer)."""

    @property
    def next_cmdline(self):
        """The kernel command line of the next boot: the boot configuration's, else (no boot loader
        configuration this tool reads: a direct kernel boot, say) the running one, booted again."""
        configured = self.boot.configured
        return configured if configured is not None else self.cmdline

    def module_option_at_boot(self, module: str, param: str) -> ModuleOption:
        """What the next boot sets ``module.param`` to: its command line (``module.param=``, which wins,
        also for a built-in module), else the last ``options MODULE param=`` of /etc/modprobe.d (read by
        modprobe only: never for a built-in module). A value set only at run time (``echo Y >
        /sys/module/.../parameters/...``) or by hand (``modprobe MODULE param=1``) is in neither."""
        cmdline, key = self.next_cmdline, f"{module}.{param}"
        boot = self.boot
        line_source = cmdline.source if cmdline is not None else "the kernel command line"
        if boot.configured is None:
            line_source += f" (the next boot's is unknown: {boot.name}; this one's stands for it)"
        found = cmdline.last(key) if cmdline is not None else None
        if found is not None:
            return ModuleOption(found.value if found.value is not None else "", f"{found.text} on {line_source}")
        missing = [f"{line_source}: no {key}="]
        if self.modules.state(module) == "builtin":
            return ModuleOption(missing=tuple(missing + [f"/etc/modprobe.d: not read, {module} is built in"]))
        value = where = None
        name, wanted = module.replace("-", "_"), param.replace("-", "_")
        for path, text, _ in self.modprobe_files:
            for line in modprobe_logical_lines(text or ""):
                words = line.split("#", 1)[0].split()
                if len(words) < 3 or words[0] != "options" or words[1].replace("-", "_") != name:
                    continue
                for word in words[2:]:
                    key_word, equals, setting = word.partition("=")
                    if key_word.replace("-", "_") == wanted:
                        value, where = (setting if equals else ""), f"options {words[1]} {word} in {path}"
        if where is not None:
            return ModuleOption(value, where)
        listing = self.host.listdir("/etc/modprobe.d")
        unread = [f"{path}: {reason}" for path, _, reason in self.modprobe_files if reason]
        if not listing.ok and not listing.missing:
            unread.append(f"/etc/modprobe.d: {listing.reason}")
        missing.append(f"/etc/modprobe.d/*.conf: no options {module} {param}=")
        return ModuleOption(missing=tuple(missing), unread=tuple(unread))

    def boot_claim(self, device) -> BootClaim:
        """Who takes ``device`` at the next boot, unless something keeps it off; see the module docstring.
        Kept per address: every target of a shared group asks about the same members."""
        memo = self.__dict__.setdefault("_boot_claim_memo", {})
        if device.address not in memo:
            memo[device.address] = self._boot_claim(device)
        return memo[device.address]

    def _boot_claim(self, device) -> BootClaim:
        kept = self._kept_off_by_address(device) or self._kept_off_by_ids(device)
        got = self.module_aliases_read
        source = got.path if got is not None else "modules.alias"
        if kept:
            return BootClaim(kept_off=kept, source=source)
        if got is None or not got.ok:
            why = got.reason if got is not None else f"the kernel release is unknown ({self.release_read.describe()})"
            return BootClaim(reason=f"cannot read {source} ({why})", source=source)
        modules = self._claiming_modules(device)
        blocked = self._blacklisted(modules)
        if modules and blocked:
            return BootClaim(modules=modules, kept_off=blocked, source=source)
        return BootClaim(modules=modules, source=source)

    def _kept_off_by_address(self, device) -> Optional[str]:
        address = device.address
        override = self.driverctl_overrides.get(address, "")
        if override in KEEPERS or override.endswith("vfio_pci") or override.endswith("vfio-pci"):
            return f"driverctl override /etc/driverctl.d/pci-{address} ({override})"
        for driver in KEEPERS:
            rules = self.udev_rules_for(address, "driver_override", f'"{driver}"')
            if rules:
                return f"udev rule {rules[0]} ({driver})"
        return None

    def _kept_off_by_ids(self, device) -> Optional[str]:
        """vfio-pci's ``ids=`` (with what loads vfio-pci at boot) or ``pci-stub.ids=`` naming its vendor:device."""
        cmdline = self.next_cmdline
        ids = device.ids
        if cmdline is not None and ids in cmdline.options("pci_stub.ids"):
            return f"pci-stub.ids={ids} on the next boot's command line ({cmdline.source})"
        where = None
        if cmdline is not None and ids in cmdline.options("vfio_pci.ids"):
            where = f"vfio-pci.ids={ids} on the next boot's command line ({cmdline.source})"
        winner, _ = self.modprobe_vfio
        if where is None and winner and ids in winner[1] and self.modules.state("vfio_pci") != "builtin":
            where = f"vfio-pci ids={ids} in {winner[0]}"
        if where is None:
            return None
        if self.modules.state("vfio_pci") == "builtin":
            return f"{where}; vfio-pci is built in"
        loaders = self.vfio_pci_loaders()
        return f"{where}; {loaders[0]}" if loaders else None

    def _claiming_modules(self, device) -> Tuple[str, ...]:
        alias = modalias(device)
        if alias is None:
            return ()
        index = self._alias_index()
        vendor = alias[5:13]
        candidates = index.get(vendor, []) + index.get("*", [])
        return tuple(sorted({module for pattern, module in candidates if fnmatch.fnmatchcase(alias, pattern)}))

    def _alias_index(self) -> Dict[str, List[Tuple[str, str]]]:
        """The pci aliases of host drivers (modules.alias and, where the kernel has it, modules.builtin.alias)
        by the vendor they name (``*`` for any): a member is matched against its vendor's few, not 15,000."""
        kept = self.__dict__.get("_alias_index_memo")
        if kept is not None:
            return kept
        from scanner.facts.variants import aliases

        builtin = self.host.read(f"/lib/modules/{self.release}/modules.builtin.alias", cap=LARGE_CAP)
        pairs = self.pci_aliases() + (aliases(builtin.value().splitlines(), "pci:") if builtin.ok else ())
        index: Dict[str, List[Tuple[str, str]]] = {}
        for pattern, module in pairs:
            if "vfio" in module or module == "pci_stub":
                continue
            vendor = pattern[5:13] if pattern.startswith("pci:v") and "*" not in pattern[5:13] else "*"
            index.setdefault(vendor.upper() if vendor != "*" else vendor, []).append((pattern, module))
        self.__dict__["_alias_index_memo"] = index
        return index

    def _blacklisted(self, modules: Tuple[str, ...]) -> Optional[str]:
        """Where every one of ``modules`` is kept from loading at boot, or None (a built-in one never is)."""
        if any(self.modules.state(m) == "builtin" for m in modules):
            return None
        found = {}
        for path, text, _ in self.modprobe_files:
            for line in modprobe_logical_lines(text or ""):
                words = line.split("#", 1)[0].split()
                if len(words) == 2 and words[0] == "blacklist":
                    found.setdefault(words[1].replace("-", "_"), f"blacklist {words[1]} in {path}")
                elif len(words) >= 3 and words[0] == "install" and " ".join(words[2:]) in _NO_OP_INSTALL:
                    found.setdefault(words[1].replace("-", "_"), f"install {words[1]} {' '.join(words[2:])} in {path}")
        cmdline = self.next_cmdline
        if cmdline is not None:
            for key in ("modprobe.blacklist", "module_blacklist"):
                for name in cmdline.options(key):
                    found.setdefault(name.replace("-", "_"), f"{key}={name} on the command line ({cmdline.source})")
        if all(m in found for m in modules):
            return "; ".join(found[m] for m in modules)
        return None


__all__ = ["BootClaim", "BootClaims", "ModuleOption"]
