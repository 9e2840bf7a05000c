"""Bash for the per-device actions: SR-IOV counts, driver binding, reset methods.

Each block reads the device's current state in sysfs first and acts only when it differs, so a
second run writes nothing. Binding is done with ``driver_override`` for exactly one device —
never ``new_id`` — and is refused, at generation time *and* again at run time, for the device
that carries the host's default route or its root filesystem.
"""

from __future__ import annotations

import re
import shlex
from typing import List, Optional

from reports.script_actions import register, write_file_lines
from scanner.shell import DRIVER_NAME, PCI_ADDRESS, UnsafeValue, checked

VFIO = "vfio-pci"
IDS_LINE = re.compile(r"^options vfio-pci ids=[0-9a-f]{4}:[0-9a-f]{4}(,[0-9a-f]{4}:[0-9a-f]{4})*$")
SOFTDEP_LINE = re.compile(r"^softdep [A-Za-z0-9_\-]{1,64} pre: vfio-pci$")
RESET_METHODS = ("default", "device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus")

#: Shell functions the device blocks use; added once to the preamble.
DEVICE_FUNCTIONS = r'''
# dev ADDR: the device's sysfs directory
dev() { printf '%s\n' "$SYSFS/bus/pci/devices/$1"; }

# driver_of ADDR: the driver a device is bound to now (empty when none)
driver_of() {
    local link
    link="$(dev "$1")/driver"
    if [ -L "$link" ]; then basename "$(readlink "$link")"; fi
}

# carries_host ADDR: does the device carry the default route or the root filesystem right now?
carries_host() {
    local iface dest rest target majmin
    while read -r iface dest rest; do
        [ "$dest" = 00000000 ] || continue
        target=$(readlink -f "$SYSFS/class/net/$iface/device" 2>/dev/null) || continue
        case "$target" in */"$1") return 0 ;; esac
    done < <(tail -n +2 "$ROOT/proc/net/route" 2>/dev/null)
    majmin=$(awk '$5 == "/" { print $3; exit }' "$ROOT/proc/self/mountinfo" 2>/dev/null)
    if [ -n "$majmin" ]; then
        target=$(readlink -f "$SYSFS/dev/block/$majmin" 2>/dev/null) || target=
        case "$target" in */"$1"/*) return 0 ;; esac
    fi
    : "$rest"
    return 1
}
'''


def _addr(action) -> str:
    return checked(action.get("address"), PCI_ADDRESS, "PCI address")


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise UnsafeValue(f"refusing {what} {value!r}: not a VF count")
    return value


def refusal(action) -> List[str]:
    """Lines that refuse to bind a device the host itself runs on."""
    addr = _addr(action)
    why = "".join(ch if ch.isprintable() else "?" for ch in str(action.get("host_critical")))
    # the host's own text (an interface name) stays literal on purpose: tell shellcheck so
    literal = ["# shellcheck disable=SC2016"] if "$" in why or "`" in why else []
    return [f"# REFUSED: {addr} — {why}"] + literal + [
        f"say {shlex.quote(f'REFUSED: not binding {addr} to vfio-pci: {why}')} >&2"]


@register("bind-vfio")
def bind_vfio(action, ctx) -> Optional[List[str]]:
    addr = _addr(action)
    if action.get("host_critical"):
        return refusal(action)
    if action.get("role") == "unrelated":
        return None  # an alternative to moving the card: a person decides
    ctx.device_functions = True
    lines = [f"if carries_host {addr}; then",
             f"    say 'REFUSED: not binding {addr}: it carries the default route or the root filesystem' >&2",
             f'elif [ "$(driver_of {addr})" != {VFIO} ]; then']
    if action.get("load_module"):
        lines.append(f"    module_loaded vfio_pci || run modprobe {VFIO}")
    lines += [f'    [ "$(cat "$(dev {addr})/driver_override")" = {VFIO} ] || '
              f'sysfs_write {VFIO} "$(dev {addr})/driver_override"',
              f'    if [ -e "$(dev {addr})/driver" ]; then sysfs_write {addr} "$(dev {addr})/driver/unbind"; fi',
              f'    sysfs_write {addr} "$SYSFS/bus/pci/drivers_probe"',
              "fi"]
    return lines


@register("driverctl")
def driverctl(action, ctx) -> List[str]:
    addr = _addr(action)
    return [f'if [ "$(cat "$ROOT/etc/driverctl.d/pci-{addr}" 2>/dev/null)" != {VFIO} ]; then',
            f"    run driverctl set-override {addr} {VFIO}", "fi"]


@register("vfio-ids")
def vfio_ids(action, ctx) -> List[str]:
    lines = list(action.get("lines") or ())
    if not lines or not IDS_LINE.match(lines[0]) or not all(SOFTDEP_LINE.match(x) for x in lines[1:]):
        raise UnsafeValue(f"refusing modprobe.d lines {lines!r}")
    if action.get("file") != "/etc/modprobe.d/vfio.conf":
        raise UnsafeValue(f"refusing to write {action.get('file')!r}")
    ctx.initramfs_used = True
    ctx.initramfs = ctx.initramfs or action.get("initramfs")
    return ["CHANGED=0"] + write_file_lines("/etc/modprobe.d/vfio.conf", lines) + [
        'if [ "$CHANGED" = 1 ]; then INITRAMFS_CHANGED=1; needs_reboot "vfio-pci ids at boot"; fi']


#: Reload udev's rules after writing one. Only a convenience (udevd also picks up changed rules by
#: itself, and the rule matters at the next boot): where udev does not run (a container, a minimal
#: guest without udevadm) it must not stop the script under ``set -e`` before the binding blocks.
UDEV_RELOAD = ('if [ "$CHANGED" = 1 ]; then run udevadm control --reload || say "note: udev did not reload its '
               'rules (not running here?); the rule applies at the next boot"; fi')


def _udev_file(prefix: str, addr: str) -> str:
    return f"/etc/udev/rules.d/{prefix}-{addr.replace(':', '-')}.rules"


@register("udev-driver-override")
def udev_driver_override(action, ctx) -> List[str]:
    addr = _addr(action)
    rule = (f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{addr}", ATTR{{driver_override}}="{VFIO}", '
            f'RUN{{builtin}}+="kmod load vfio-pci"')
    path = _udev_file("70-vfio-pci", addr)
    if action.get("rule") != rule or action.get("file") != path:
        raise UnsafeValue(f"refusing an unexpected udev rule for {addr}")
    return ["CHANGED=0"] + write_file_lines(path, [rule]) + [
        UDEV_RELOAD]


@register("pci-driver-probe")
def pci_driver_probe(action, ctx) -> List[str]:
    addr = _addr(action)
    driver = action.get("driver")
    if driver is not None:
        checked(driver, DRIVER_NAME, "driver name")
    ctx.device_functions = True
    current = driver or ""
    lines = [f'if [ "$(driver_of {addr})" = {shlex.quote(current)} ]; then']
    if action.get("clear_override"):
        lines.append(f'    sysfs_write "" "$(dev {addr})/driver_override"')
    if action.get("unbind"):
        lines.append(f'    if [ -e "$(dev {addr})/driver" ]; then sysfs_write {addr} "$(dev {addr})/driver/unbind"; fi')
    else:
        lines.append(f'    run modprobe "$(cat "$(dev {addr})/modalias")"')
    lines += [f'    sysfs_write {addr} "$SYSFS/bus/pci/drivers_probe"', "fi"]
    return lines


@register("sriov-numvfs")
def sriov_numvfs(action, ctx) -> List[str]:
    addr = _addr(action)
    wanted = _count(action.get("wanted"), "VF count")
    ctx.device_functions = True
    numvfs = f'"$(dev {addr})/sriov_numvfs"'
    lines = [f'if [ "$(cat {numvfs})" != {wanted} ]; then']
    if action.get("autoprobe") == 0:
        probe = f'"$(dev {addr})/sriov_drivers_autoprobe"'
        lines.append(f'    [ "$(cat {probe})" = 0 ] || sysfs_write 0 {probe}')
    lines.append(f'    [ "$(cat {numvfs})" = 0 ] || sysfs_write 0 {numvfs}')
    if wanted:
        lines.append(f"    sysfs_write {wanted} {numvfs}")
    lines.append("fi")
    return lines


@register("sriov-persist")
def sriov_persist(action, ctx) -> List[str]:
    addr = _addr(action)
    wanted = _count(action.get("wanted"), "VF count")
    assignments = (['ATTR{sriov_drivers_autoprobe}="0"'] if action.get("autoprobe") == 0 else [])
    assignments.append(f'ATTR{{sriov_numvfs}}="{wanted}"')
    rule = f'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{addr}", ' + ", ".join(assignments)
    path = _udev_file("70-vfio-scan-sriov", addr)
    if action.get("rule") != rule or action.get("file") != path:
        raise UnsafeValue(f"refusing an unexpected udev rule for {addr}")
    return ["CHANGED=0"] + write_file_lines(path, [rule]) + [
        UDEV_RELOAD]


@register("reset-method")
def reset_method(action, ctx) -> List[str]:
    addr = _addr(action)
    method = action.get("method")
    if method not in RESET_METHODS:
        raise UnsafeValue(f"refusing reset method {method!r}")
    ctx.device_functions = True
    path = f'"$(dev {addr})/reset_method"'
    guard = f'[ -z "$(cat {path})" ]' if method == "default" else f'[ "$(cat {path})" != {method} ]'
    return [f"if {guard}; then", f"    sysfs_write {method} {path}", "fi"]


