"""What the next boot brings: the boot entry's command line, and what binds devices to vfio-pci at boot.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact). A scan
judges the running kernel, but an operator acts on READY for days: what works now only through a
runtime ``driver_override``, a parameter typed at the boot prompt, or a VF count written by hand
is gone after the next reboot. These facts say what the boot configuration will really do, for
the rules that compare it with now (VFIO-016, VFIO-017).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Dict, FrozenSet, List, Optional, Tuple

from scanner.facts.cmdline import Cmdline, parse_cmdline
from scanner.host import LARGE_CAP
from scanner.base.numbers import decimal
from scanner.facts.boot_lines import loads_vfio_pci, loads_vfio_pci_early, modprobe_vfio_lines

class NextBoot:
    """The boot configuration's side of things (``self.host`` is the Host layer)."""

    # -- the kernel command line of the next boot, per boot stack -----------------------------
    def bls_cmdline(self) -> Optional[Cmdline]:
        """The ``options`` of the BLS entry (``/boot/loader/entries/*.conf``) that boots the running
        release, with ``$kernelopts`` from ``/boot/grub2/grubenv`` (RHEL 8) expanded; None when none."""
        release = self.release
        if not release:
            return None
        for name in self.host.listdir("/boot/loader/entries").entries():
            if not name.endswith(".conf"):
                continue
            path = f"/boot/loader/entries/{name}"
            text = self.host.read(path).value()
            fields = dict(f for f in map(_bls_field, text.splitlines()) if f)
            if not re.search(rf"[-_/]{re.escape(release)}(\s|$)", fields.get("linux", "") + " "):
                continue
            options = fields.get("options", "")
            if "$kernelopts" in options:
                env = self.host.read("/boot/grub2/grubenv").value()
                found = re.search(r"^kernelopts=(.*)$", env, re.M)
                options = options.replace("$kernelopts", found.group(1) if found else "")
            return parse_cmdline(options, source=path)
        return None

    def systemd_boot_cmdline(self) -> Optional[Cmdline]:
        """The ``options`` of the systemd-boot entry the next boot starts (entries written by hand, as
        on Arch), or None when there is none or which one cannot be told.

        Which entry: the ``LoaderEntryDefault`` EFI variable (``bootctl set-default``), else
        ``default`` of ``loader/loader.conf`` (a glob), else ``LoaderEntrySelected``, the entry this
        boot started from (the EFI variables are systemd-boot's own, readable by everyone)."""
        import fnmatch

        entries = {}  # entry id (file name) -> path, first ESP or XBOOTLDR mount point wins
        loader_conf = None
        for esp in ESP_MOUNTS:
            for name in self.host.listdir(f"{esp}/loader/entries").entries():
                if name.endswith(".conf") and self._plain_name(name):
                    entries.setdefault(name, f"{esp}/loader/entries/{name}")
            if loader_conf is None:
                got = self.host.read(f"{esp}/loader/loader.conf")
                loader_conf = got.text if got.ok else None
        if not entries:
            return None
        chosen = _efi_string(self.host.read_bytes(f"{EFIVARS}/LoaderEntryDefault-{LOADER_GUID}").data)
        if chosen is None and loader_conf:
            pattern = next((line.split(None, 1)[1].strip() for line in loader_conf.splitlines()
                            if line.split(None, 1)[:1] == ["default"] and len(line.split(None, 1)) == 2), None)
            if pattern:
                chosen = next((n for n in sorted(entries, reverse=True)
                               if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n[:-5], pattern)), None)
        if chosen is None:
            chosen = _efi_string(self.host.read_bytes(f"{EFIVARS}/LoaderEntrySelected-{LOADER_GUID}").data)
        path = entries.get(chosen) or entries.get(f"{chosen}.conf") if chosen else None
        if path is None:
            return None
        fields = [f for f in map(_bls_field, self.host.read(path).value().splitlines()) if f]
        options = " ".join(value for key, value in fields if key == "options")
        return parse_cmdline(options, source=path)

    def kernelstub_cmdline(self) -> Optional[Cmdline]:
        """``/etc/kernelstub/configuration``'s user kernel options (Pop!_OS)."""
        import json

        got = self.host.read("/etc/kernelstub/configuration")
        if not got.ok:
            return None
        try:
            options = json.loads(got.text).get("user", {}).get("kernel_options", [])
        except (ValueError, AttributeError):
            return None
        words = [o for o in options if isinstance(o, str)] if isinstance(options, list) else []
        return parse_cmdline(" ".join(words), source=got.path)

    # -- what binds a device to vfio-pci at boot ---------------------------------------------
    @cached_property
    def driverctl_overrides(self) -> Dict[str, str]:
        """PCI address -> driver from ``/etc/driverctl.d/pci-ADDR`` (driverctl re-applies them at boot)."""
        found = {}
        for name in self.host.listdir("/etc/driverctl.d").entries():
            if name.startswith("pci-"):
                found[name[4:]] = self.host.read(f"/etc/driverctl.d/{name}").value().strip()
        return found

    @cached_property
    def udev_rule_lines(self) -> Tuple[Tuple[str, str], ...]:
        """(file, line) of every rule line in ``/etc/udev/rules.d/*.rules`` (comments left out)."""
        lines = []
        for name in self.host.listdir("/etc/udev/rules.d").entries():
            if name.endswith(".rules"):
                path = f"/etc/udev/rules.d/{name}"
                lines += [(path, line.strip()) for line in self.host.read(path).value().splitlines()
                          if line.strip() and not line.lstrip().startswith("#")]
        return tuple(lines)

    def udev_rules_for(self, address: str, *words: str) -> List[str]:
        """Files whose rules name ``KERNEL=="address"`` together with every one of ``words``."""
        key = f'KERNEL=="{address}"'
        return sorted({path for path, line in self.udev_rule_lines if key in line and all(w in line for w in words)})

    @cached_property
    def sysfs_settings(self) -> Tuple[Tuple[str, str, str], ...]:
        """(file, attribute, value) of every setting sysfsutils applies at boot (``/etc/sysfs.conf`` and
        ``/etc/sysfs.d/*.conf``: ``bus/pci/devices/ADDR/sriov_numvfs = 4``, the attribute under /sys)."""
        paths = ["/etc/sysfs.conf"] + [f"/etc/sysfs.d/{n}" for n in sorted(self.host.listdir("/etc/sysfs.d").entries())
                                       if n.endswith(".conf") and self._plain_name(n)]
        found = []
        for path in paths:
            for line in self.host.read(path).value().splitlines():
                attribute, equals, value = line.partition("=")
                if equals and not line.lstrip().startswith("#"):
                    found.append((path, attribute.strip().strip("/"), value.strip()))
        return tuple(found)

    def vf_count_at_boot(self, address: str) -> Optional[str]:
        """What writes the PF ``address``'s ``sriov_numvfs`` at boot (a udev rule naming it, a sysfsutils
        setting), or None when nothing this tool reads does."""
        rules = self.udev_rules_for(address, "sriov_numvfs")
        if rules:
            return f"udev rule {rules[0]}"
        wanted = self.host.resolve(f"/sys/bus/pci/devices/{address}/sriov_numvfs")
        for path, attribute, value in self.sysfs_settings:
            # any path to the attribute (bus/pci/devices/ADDR/..., devices/pci0000:00/.../...) names it
            if attribute.endswith("/sriov_numvfs") and (decimal(value) or 0) > 0 and wanted.ok \
                    and self.host.resolve(f"/sys/{attribute}").text == wanted.text:
                return f"sysfsutils {path} ({attribute} = {value})"
        return None

    @cached_property
    def modprobe_vfio(self) -> Tuple[Optional[Tuple[str, Tuple[str, ...]]], Tuple[Tuple[str, str], ...]]:
        """((file, ids) of the ``options vfio-pci ids=`` modprobe keeps, or None; ((file, module), ...) of
        every ``softdep MODULE pre: vfio-pci``), from ``/etc/modprobe.d/*.conf`` in the order modprobe reads them."""
        winner, softdeps = None, []
        for path, text, _ in self.modprobe_files:
            ids, modules = modprobe_vfio_lines(text or "")
            if ids is not None:
                winner = (path, ids)
            softdeps += [(path, module) for module in modules]
        return winner, tuple(softdeps)

    # -- what loads vfio-pci at boot ---------------------------------------------------------
    @cached_property
    def initramfs_config(self) -> Tuple[Tuple[str, str], ...]:
        """(file, text) of the initramfs tools' own module lists: initramfs-tools'
        ``/etc/initramfs-tools/modules``, dracut's ``/etc/dracut.conf.d/*.conf``, ``/etc/mkinitcpio.conf``."""
        paths = ["/etc/initramfs-tools/modules", "/etc/mkinitcpio.conf"]
        paths += [f"/etc/dracut.conf.d/{n}" for n in self.host.listdir("/etc/dracut.conf.d").entries()
                  if n.endswith(".conf") and self._plain_name(n)]
        return tuple((path, got.text) for path, got in ((p, self.host.read(p)) for p in paths) if got.ok)

    def vfio_pci_boot_loaders(self) -> Tuple[List[str], List[str]]:
        """(what loads vfio_pci at every boot, configuration that could not be read). A loaded
        vfio_pci that nothing loads again is gone after a reboot, and with it every binding."""
        found = [f"{path} lists vfio_pci" for path in self.loads_at_boot("vfio_pci")]
        found += [f"softdep {module} pre: vfio-pci in {path}" for path, module in self.modprobe_vfio[1]]
        found += [f"driverctl override /etc/driverctl.d/pci-{address}" for address, driver
                  in sorted(self.driverctl_overrides.items()) if driver.replace("_", "-") == "vfio-pci"]
        found += [f"udev rule {path} loads vfio-pci" for path in sorted({p for p, line in self.udev_rule_lines
                                                                         if loads_vfio_pci(line)})]
        found += [f"{path} loads vfio_pci early" for path, text in self.initramfs_config
                  if loads_vfio_pci_early(text)]
        if found:  # what could not be read matters only when nothing was found
            return found, []
        return found, self.boot_config_unread()

    def boot_config_unread(self) -> List[str]:
        """The boot configuration that could load vfio-pci or bind a device at boot and could not be read
        (``path: why``): a file there but garbled, too large or no file at all, a directory denied. With any,
        "nothing does it at boot" is no verdict (a scan unprivileged, a capture cut short)."""
        unread = [f"{path}: {reason}" for path, _, reason in self.modprobe_files if reason]
        candidates = ["/etc/modules", "/etc/initramfs-tools/modules", "/etc/mkinitcpio.conf"]
        for directory, prefix, suffix in (("/etc/modprobe.d", "", None), ("/etc/modules-load.d", "", ".conf"),
                                          ("/etc/udev/rules.d", "", ".rules"), ("/etc/dracut.conf.d", "", ".conf"),
                                          ("/etc/driverctl.d", "pci-", "")):
            listing = self.host.listdir(directory)
            if not listing.ok and not listing.missing:
                unread.append(f"{directory}: {listing.reason}")
            if suffix is not None:  # modprobe.d's files are read above
                candidates += [f"{directory}/{n}" for n in listing.entries() if n.startswith(prefix) and n.endswith(suffix)]
        for path in candidates:
            got = self.host.read(path)
            if not got.ok and not got.missing:
                unread.append(f"{path}: {got.reason}")
        return unread

    # -- the initramfs of the next boot ------------------------------------------------------
    @cached_property
    def initramfs_image(self):
        """What the running release's initramfs image holds (``InitramfsRead``), or None when no image
        by the names initramfs-tools, dracut, SUSE and mkinitcpio give it exists."""
        release = self.release
        names = ([f"/boot/initrd.img-{release}", f"/boot/initramfs-{release}.img", f"/boot/initrd-{release}"]
                 if release and "/" not in release else [])
        for path in names + ["/boot/initramfs-linux.img"]:
            got = self.host.initramfs(path)
            if not got.missing:
                return got
        return None

    @cached_property
    def module_aliases_read(self):
        """The running release's modules.alias (about 1 MB): read only when a target needs a vfio
        driver chosen or an initramfs holds modules to match, never on a scan with nothing to bind."""
        if not self.release or "/" in self.release:
            return None
        return self.host.read(f"/lib/modules/{self.release}/modules.alias", cap=LARGE_CAP)

    def pci_aliases(self) -> Tuple[Tuple[str, str], ...]:
        """(pattern, module) of each ``alias pci:...`` line of the running release's modules.alias."""
        return self._module_aliases()[0]

    def vfio_aliases(self) -> Tuple[Tuple[str, str], ...]:
        """(pattern, module) of each ``alias vfio_pci:...`` line: vfio-pci and its variant drivers."""
        return self._module_aliases()[1]

    def _module_aliases(self):
        from scanner.facts.variants import aliases, vfio_aliases

        kept = self.__dict__.get("_module_aliases_memo")
        if kept is None:
            got = self.module_aliases_read
            lines = got.value().splitlines() if got is not None else []
            kept = self.__dict__["_module_aliases_memo"] = (aliases(lines, "pci:"), vfio_aliases(lines))
        return kept

    def vfio_pci_loaders(self) -> List[str]:
        """What loads vfio-pci at boot before a host driver could take a device it names in ``ids=``: a
        ``softdep MODULE pre: vfio-pci``, a boot-time module list (empty for a built-in vfio-pci: check that first)."""
        found = [f"softdep {module} pre: vfio-pci in {path}" for path, module in self.modprobe_vfio[1]]
        return found + [f"vfio_pci in {path}" for path in self.loads_at_boot("vfio_pci")]

    def vfio_driver_for(self, device) -> VfioChoice:
        """The vfio driver a binding should use for ``device``: the variant libvirt would pick from
        modules.alias, else vfio-pci (also when the file cannot be read: then ``note`` says so)."""
        from scanner.facts.variants import PLAIN, VfioChoice, best_alias, driver_of

        got = self.module_aliases_read
        source = got.path if got is not None else "modules.alias"
        if got is None or not got.ok:
            why = got.reason if got is not None else "the kernel release is unknown"
            return VfioChoice(PLAIN, None, source, f"cannot read {source} ({why}) to look for a vfio-pci variant driver")
        best = best_alias(self.vfio_aliases(), modalias(device))
        driver = driver_of(best[1]) if best else None
        if best is None or driver is None:
            return VfioChoice(PLAIN, best[0] if best else None, source, None)
        return VfioChoice(driver, best[0], source, None)

    def early_host_drivers(self, device, modules: FrozenSet[str]) -> List[str]:
        """The modules among ``modules`` (those an initramfs holds) that would claim ``device`` by its
        modalias: its host drivers, loaded before the real root. vfio's own are left out."""
        import fnmatch

        alias = modalias(device)
        if alias is None:
            return []
        return sorted({module for pattern, module in self._aliases_among(modules) if fnmatch.fnmatchcase(alias, pattern)})

    def _aliases_among(self, modules: FrozenSet[str]) -> Tuple[Tuple[str, str], ...]:
        """The pci aliases of ``modules`` (vfio's left out), filtered once per image rather than once per
        target: modules.alias has some 15,000 pci lines, an initramfs a few hundred modules."""
        kept = self.__dict__.get("_aliases_among_memo")
        if kept is None or kept[0] != modules:
            kept = (modules, tuple((p, m) for p, m in self.pci_aliases() if m in modules and "vfio" not in m))
            self.__dict__["_aliases_among_memo"] = kept
        return kept[1]

    def loads_at_boot(self, module: str) -> List[str]:
        """Where a boot-time load list names ``module`` (``/etc/modules-load.d/*.conf``, ``/etc/modules``)."""
        name = module.replace("-", "_")
        return [path for path, names in self.modules_load_config.items() if name in names]


#: Where systemd-boot's entries live: the ESP or XBOOTLDR partition, as systemd mounts them.
ESP_MOUNTS = ("/efi", "/boot", "/boot/efi")
EFIVARS = "/sys/firmware/efi/efivars"
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"  # systemd-boot's vendor GUID (the Boot Loader Interface)


def _efi_string(data: Optional[bytes]) -> Optional[str]:
    """An efivarfs string variable: 4 bytes of attributes, then UTF-16LE ending in NUL."""
    if not data or len(data) < 6:
        return None
    try:
        text = data[4:].decode("utf-16-le").split("\0", 1)[0]
    except UnicodeDecodeError:
        return None
    return text if text and text.isprintable() and "/" not in text else None


def modalias(device) -> Optional[str]:
    """The ``pci:v...d...sv...sd...bc..sc..i..`` the kernel gives a device, from its ids and class."""
    try:
        vendor, product = int(device.vendor, 16), int(device.device, 16)
        klass = int(device.pci_class, 16)
        sub_vendor = int(device.subsystem_vendor or "0", 16)
        sub_device = int(device.subsystem_device or "0", 16)
    except (TypeError, ValueError):
        return None
    return (f"pci:v{vendor:08X}d{product:08X}sv{sub_vendor:08X}sd{sub_device:08X}"
            f"bc{klass >> 16:02X}sc{(klass >> 8) & 0xFF:02X}i{klass & 0xFF:02X}")


def _bls_field(line: str) -> Optional[Tuple[str, str]]:
    parts = line.strip().split(None, 1)
    if len(parts) == 2 and not parts[0].startswith("#"):
        return parts[0], parts[1]
    return None


__all__ = ["NextBoot"]
