"""Run generated remediation scripts against fixture trees, and play the kernel's part afterwards.

In tree mode (``ROOT`` set) a script runs no host tool: it prints ``not run (tree mode): CMD``.
``Shims`` still puts fake ``update-grub``, ``modprobe``, ``dracut``, ... first on ``PATH``, each
recording its arguments in a log, so a test proves that none of them ran. ``tree_commands`` reads
what the script would have run; ``fake_reboot`` plays the kernel's part after a run (the next
boot's command line, the modules the script would have loaded), ``fake_kernel`` the drivers
``driver_override`` asked for, so a rescan of the tree shows what the host would look like.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from scanner.engine.runner import Scan
from scanner.facts.boot import parse_grub_files
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

from reports.script import render_report

SHIMMED = ("update-grub", "grub-mkconfig", "grub2-mkconfig", "grubby", "kernelstub", "rpm-ostree", "proxmox-boot-tool",
           "kernel-install", "modprobe", "update-initramfs", "dracut", "mkinitcpio", "driverctl", "udevadm",
           "systemctl")


class Shims:
    def __init__(self, base: Path):
        self.dir = Path(base) / "shims"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = Path(base) / "calls.log"
        for name in SHIMMED:
            shim = self.dir / name
            shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> {shlex.quote(str(self.log))}\n')
            shim.chmod(0o755)

    def calls(self) -> list:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def reset(self) -> None:
        if self.log.exists():
            self.log.unlink()


def scan(root, devices=(), vfs=(), fail_on="fail"):
    selectors, requests = parse_all(devices=devices, vfs=vfs)
    registry = load_plugins(autoload=False)
    return scan_host(TreeHost(str(root)), registry.sorted_rules(), Scan(fail_on=fail_on), selectors=selectors,
                     vfs=requests)


def script_for(root, **kw) -> str:
    return render_report(scan(root, **kw))


def run_script(script: str, root, shims: Shims, dry_run: bool = False) -> subprocess.CompletedProcess:
    path = Path(shims.dir).parent / "fix.sh"
    path.write_text(script)
    env = dict(os.environ, ROOT=str(root), DRY_RUN="1" if dry_run else "0",
               PATH=f"{shims.dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)


def fingerprint(root) -> dict:
    """Content (or link target) of every path in a tree: equal fingerprints mean nothing changed."""
    found = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                found[rel] = "dir"
    return found


TREE_MODE = "not run (tree mode): "


def tree_commands(*procs) -> list:
    """The host tools the runs would have run on a live host, in order (``not run (tree mode): CMD``)."""
    return [line[len(TREE_MODE):] for proc in procs for line in proc.stdout.splitlines() if line.startswith(TREE_MODE)]


def fake_reboot(root, commands=()) -> None:
    """What the kernel and a reboot would do with what the script changed (``commands``: what it would have run)."""
    root = Path(root)
    grub = root / "etc/default/grub"
    if grub.exists():
        dropins = sorted((root / "etc/default/grub.d").glob("*.cfg"))
        configured = parse_grub_files([(str(p), p.read_text()) for p in [grub] + dropins])
        (root / "proc/cmdline").write_text("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro " + configured.raw + "\n")
    loaded = [c.split()[1:] for c in commands if c.startswith("modprobe ") and " -r " not in f" {c} "]
    modules = root / "proc/modules"
    text = modules.read_text() if modules.exists() else ""
    for args in loaded:
        for name in (a for a in args if not a.startswith("-")):
            name = name.replace("-", "_")
            if f"\n{name} " not in "\n" + text:
                text += f"{name} 16384 0 - Live 0x0000000000000000\n"
    modules.write_text(text)


def copy_tree(src, dst) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return Path(dst)


def fake_kernel(root) -> None:
    """What the kernel does after the script's sysfs writes: drivers_probe honours driver_override
    (vfio-pci, or a variant driver such as mlx5_vfio_pci)."""
    root = Path(root)
    devices = root / "sys/bus/pci/devices"
    for entry in sorted(devices.iterdir()):
        real = Path(os.path.realpath(entry))
        override = real / "driver_override"
        wanted = override.read_text().strip() if override.exists() else ""
        if wanted != "vfio-pci" and not wanted.endswith("_vfio_pci"):  # vfio-pci or a variant of it
            continue
        link = real / "driver"
        if link.is_symlink() and os.path.basename(os.readlink(link)) == wanted:
            continue
        if link.is_symlink():
            link.unlink()
        drivers = root / "sys/bus/pci/drivers" / wanted
        drivers.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(drivers, real), link)
        group = os.path.basename(os.readlink(real / "iommu_group"))
        (root / "dev/vfio").mkdir(parents=True, exist_ok=True)
        (root / "dev/vfio" / group).write_text("")
