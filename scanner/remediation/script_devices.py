"""Bash for the per-device actions: SR-IOV counts, driver binding, reset methods, what keeps them at boot.

Each block calls one function of :data:`DEVICE_FUNCTIONS`, which reads the device's state in
sysfs first and acts only when it differs, so a second run writes nothing. Before it unbinds
anything it checks, at run time, that the address still holds the vendor:device that was scanned
and that the host does not need the device right now (``critical_reason``, the same logic as the
scan's own refusal: scanner/remediation/script_guard.py). Binding is ``driver_override`` for exactly one
device, never ``new_id``. Every change records its undo first.
"""

from __future__ import annotations

import re
import shlex
from typing import List, Optional

from scanner.remediation.script_actions import file_block, register
from scanner.remediation.confedit import own_rule
from scanner.remediation.shell import DRIVER_NAME, PCI_ADDRESS, VFIO_DRIVER_NAME, UnsafeValue, checked

VFIO = "vfio-pci"
IDS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}\Z")
RESET_METHODS = ("default", "device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus")

#: Shell functions the device blocks use; added once to the preamble.
DEVICE_FUNCTIONS = r'''
# plain_word TEXT: TEXT when it is a plain driver or override name, else nothing (it goes into undo.sh)
plain_word() {
    case $1 in '' | *[!A-Za-z0-9_.-]*) ;; *) printf '%s\n' "$1" ;; esac
}

# ids_of ADDR: vendor:device now at that address (10de:2204)
ids_of() {
    local vendor device
    vendor=$(read_attr "$1" vendor)
    device=$(read_attr "$1" device)
    printf '%s:%s\n' "${vendor#0x}" "${device#0x}"
}

# still_the_device ADDR IDS: refuse when the address now holds another card than the one scanned
still_the_device() {
    local now
    [ -d "$(inroot "/sys/bus/pci/devices/$1")" ] || fail "$1 is not on the PCI bus any more"
    [ -n "$2" ] || return 0
    now=$(ids_of "$1")
    [ "$now" = "$2" ] || refuse "$1 holds $now now, not $2 as when it was scanned: not touching it"
}

# spare_host_ids ID...: refuse when a function the host needs right now has one of these vendor:device ids
# (ids= at boot takes every function that has them, whichever was scanned)
spare_host_ids() {
    local address why vendor device
    if [ ! -e "$STATE/host-critical.done" ] && ! guard_compute; then
        refuse "not keeping $* on vfio-pci at boot: cannot tell which devices the host needs"
    fi
    while read -r address why; do
        vendor=$(read_attr "$address" vendor)
        device=$(read_attr "$address" device)
        case " $* " in
            *" ${vendor#0x}:${device#0x} "*) refuse "not keeping $* on vfio-pci at boot: $address has those ids and $why" ;;
        esac
    done < "$STATE/host-critical"
}

# not_host_critical ADDR DOING: refuse when the host itself needs the device right now
not_host_critical() {
    local why
    if why=$(critical_reason "$1"); then refuse "not $2 $1: $why"; fi
}

# bind_vfio ADDR IDS [VFIO_DRIVER]: bind one device to vfio-pci (or the variant driver named) now
# with driver_override (this device, not its ids)
bind_vfio() {
    local addr=$1 dev=/sys/bus/pci/devices/$1 want=${3:-vfio-pci} driver override
    still_the_device "$addr" "$2"
    not_host_critical "$addr" "binding"
    driver=$(driver_of "$addr")
    if [ "$driver" = "$want" ]; then say "already on $want: $addr"; return 0; fi
    load_module "${want//-/_}"
    if [ -z "$ROOT" ] && [ "$DRY_RUN" != 1 ] && [ ! -d "/sys/bus/pci/drivers/$want" ]; then
        fail "the $want driver is not available: $addr stays on ${driver:-no driver}"
    fi
    override=$(read_attr "$addr" driver_override)
    undo_step rebind "$addr" "$(plain_word "$driver")" "$(plain_word "${override#(null)}")" "$2" "$want"
    [ "$override" = "$want" ] || sysfs_write "$want" "$dev/driver_override"
    if [ -n "$driver" ] && [ -d "$(inroot "$dev/driver")" ]; then sysfs_write "$addr" "$dev/driver/unbind"; fi
    sysfs_write "$addr" /sys/bus/pci/drivers_probe
    if [ -z "$ROOT" ] && [ "$DRY_RUN" != 1 ] && [ "$(driver_of "$addr")" != "$want" ]; then
        fail "$addr did not bind to $want (now: $(driver_of "$addr")); undo.sh gives it back"
    fi
}

# give_back ADDR IDS DRIVER CLEAR UNBIND: let a PF's own driver have it (the kernel makes VFs only
# through it): clear driver_override (CLEAR=1), leave DRIVER (UNBIND=1) or load the module, probe
give_back() {
    local addr=$1 dev=/sys/bus/pci/devices/$1 driver override alias
    still_the_device "$addr" "$2"
    driver=$(driver_of "$addr")
    if [ "$driver" != "$3" ]; then say "unchanged: $addr is on ${driver:-no driver} now"; return 0; fi
    if [ "$5" = 1 ]; then not_host_critical "$addr" "unbinding"; fi
    override=$(read_attr "$addr" driver_override)
    undo_step rebind "$addr" "$(plain_word "$driver")" "$(plain_word "${override#(null)}")" "$2"
    if [ "$4" = 1 ]; then sysfs_write '' "$dev/driver_override"; fi
    if [ "$5" = 1 ]; then
        if [ -n "$driver" ] && [ -d "$(inroot "$dev/driver")" ]; then sysfs_write "$addr" "$dev/driver/unbind"; fi
    else
        alias=$(read_attr "$addr" modalias)
        case $alias in pci:*) [[ $alias =~ ^pci:[A-Za-z0-9*]+$ ]] || fail "$addr: odd modalias" ;; *) fail "$addr: no modalias" ;; esac
        run modprobe "$alias"
    fi
    sysfs_write "$addr" /sys/bus/pci/drivers_probe
}

# set_vfs PF IDS WANTED AUTOPROBE_OFF: the VF count now (autoprobe 0 first, 0 before another count:
# the kernel refuses to change a non-zero count)
set_vfs() {
    local pf=$1 dev=/sys/bus/pci/devices/$1 wanted=$3 current probe
    still_the_device "$pf" "$2"
    current=$(read_attr "$pf" sriov_numvfs)
    case $current in '' | *[!0-9]*) fail "cannot read $dev/sriov_numvfs" ;; esac
    if [ "$current" = "$wanted" ]; then
        say "unchanged: $pf has $wanted VFs"
    else
        if [ "$current" != 0 ]; then not_host_critical "$pf" "removing the VFs of"; fi
        probe=$(read_attr "$pf" sriov_drivers_autoprobe)
        case $probe in 0 | 1) ;; *) probe='' ;; esac
        undo_step set_numvfs "$pf" "$current" "$probe" "$2" "$wanted"
        if [ "$4" = 1 ] && [ "$probe" != 0 ]; then sysfs_write 0 "$dev/sriov_drivers_autoprobe"; fi
        if [ "$current" != 0 ]; then sysfs_write 0 "$dev/sriov_numvfs"; fi
        if [ "$wanted" != 0 ]; then sysfs_write "$wanted" "$dev/sriov_numvfs"; fi
    fi
}

# bind_vfs PF [VFIO_DRIVER]: bind each VF of the PF to vfio-pci (or the variant named) now, and at every
# boot with a udev rule per VF (with sriov_drivers_autoprobe 0 they appear without a driver, and nothing
# else would probe them)
bind_vfs() {
    local pf=$1 want=${2:-vfio-pci} dir link vf rc rules=() bad=0
    dir=$(inroot "/sys/bus/pci/devices/$pf") || fail "cannot resolve $pf"
    for link in "$dir"/virtfn*; do
        [ -L "$link" ] || continue
        vf=$(readlink -- "$link")
        vf=${vf##*/}
        if ! [[ $vf =~ ^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$ ]]; then
            warn "skipping ${link##*/} of $pf: not a PCI address"
            continue
        fi
        set +e
        (set -e; bind_vfio "$vf" '' "$want")
        rc=$?
        set -e
        [ "$rc" = 0 ] || bad=1
        [ "$rc" != 3 ] || continue  # refused (the host needs it): no rule binds it at boot either
        rules+=("ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"$vf\", ATTR{driver_override}=\"$want\", RUN{builtin}+=\"kmod load $want\", RUN+=\"/bin/sh -c 'echo \$kernel > /sys/bus/pci/drivers_probe'\"")
    done
    if [ "${#rules[@]}" = 0 ]; then
        say "no VFs of $pf to bind yet${ROOT:+ (tree mode: no kernel creates them)}"
    else
        CHANGED=0
        put_own_file "/etc/udev/rules.d/70-vfio-scan-vfs-${pf//:/-}.rules" "${rules[@]}"
        if [ "$CHANGED" = 1 ]; then flag udev; fi
    fi
    [ "$bad" = 0 ] || fail "not every VF of $pf is on $want"
}

# put_own_file PATH LINE...: a file of this tool's own, named for one device, made from what this run
# found (the VFs that exist now): replaced whole, with a backup
put_own_file() {
    local path=$1 disk new
    shift
    new=$(mktemp "$STATE/new.XXXXXX")
    printf '%s\n' "$@" > "$new"
    disk=$(inroot "$path") || fail "cannot resolve $path"
    not_a_link "$path"
    if [ "$(sha_of "$disk")" = "$(sha_of "$new")" ]; then say "unchanged: $path"; return 0; fi
    CHANGED=1
    if [ "$DRY_RUN" = 1 ]; then say "would change $path:"; show_diff "$path" "$disk" "$new"; return 0; fi
    keep_backup "$path" "$disk"
    install_file "$disk" "$new"
    undo_step wrote "$path" "$(sha_of "$disk")"
    say "wrote $path"
}

# set_reset_method ADDR IDS METHOD: give the device back a reset method
set_reset_method() {
    local addr=$1 now restore
    still_the_device "$addr" "$2"
    now=$(read_attr "$addr" reset_method)
    if [ "$3" = default ] && [ -n "$now" ]; then say "unchanged: $addr can be reset ($now)"; return 0; fi
    if [ "$3" != default ] && [ "$now" = "$3" ]; then say "unchanged: $addr resets with $3"; return 0; fi
    case $now in *[!a-z_\ ]*) restore=default ;; *) restore=$now ;; esac
    undo_step sysfs_write "$restore" "/sys/bus/pci/devices/$addr/reset_method"
    sysfs_write "$3" "/sys/bus/pci/devices/$addr/reset_method"
}

# driverctl_override ADDR IDS [VFIO_DRIVER]: keep a device on vfio-pci (or the variant named) with
# driverctl (which also re-binds it now)
driverctl_override() {
    local file value='' want=${3:-vfio-pci}
    still_the_device "$1" "$2"
    not_host_critical "$1" "binding"
    file=$(inroot "/etc/driverctl.d/pci-$1") || fail "cannot resolve /etc/driverctl.d/pci-$1"
    if [ -f "$file" ]; then read -r value < "$file" || true; fi
    if [ "$value" = "$want" ]; then say "unchanged: driverctl keeps $1 on $want"; return 0; fi
    run driverctl set-override "$1" "$want"
    undo_live run driverctl unset-override "$1"
}
'''


def _addr(action) -> str:
    return checked(action.get("address"), PCI_ADDRESS, "PCI address")


def _ids(action) -> str:
    """The scanned vendor:device, re-checked at run time ('' when the action has none to check)."""
    ids = action.get("ids")
    if ids is None:
        return "''"
    if not isinstance(ids, str) or not IDS.match(ids):
        raise UnsafeValue(f"refusing ids {ids!r}: not vendor:device")
    return ids


def _driver(action) -> str:
    """The vfio driver to bind: vfio-pci (also for an action from before variants were chosen) or a
    variant driver's name, checked against the strict pattern before it reaches the script."""
    return checked(action.get("driver") or VFIO, VFIO_DRIVER_NAME, "vfio driver")


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
        f"warn {shlex.quote(f'REFUSED: not binding {addr} to vfio-pci: {why}')}"]


@register("bind-vfio")
def bind_vfio(action, ctx) -> Optional[List[str]]:
    addr = _addr(action)
    if action.get("host_critical"):
        return refusal(action)
    if action.get("role") == "unrelated":
        return None  # an alternative to moving the card: a person decides
    driver = _driver(action)
    return [f"bind_vfio {addr} {_ids(action)}" + ("" if driver == VFIO else f" {driver}")]


@register("driverctl")
def driverctl(action, ctx) -> List[str]:
    driver = _driver(action)
    return [f"driverctl_override {_addr(action)} {_ids(action)}" + ("" if driver == VFIO else f" {driver}")]


@register("vfio-ids")
def vfio_ids(action, ctx) -> List[str]:
    from scanner.remediation.confedit import merge_vfio_ids

    ids = list(action.get("ids") or ())
    softdeps = [checked(m, DRIVER_NAME, "module name") for m in action.get("softdeps") or ()]
    if not ids or not all(isinstance(i, str) and IDS.match(i) for i in ids):
        raise UnsafeValue(f"refusing vfio-pci ids {ids!r}")
    files = list(action.get("files") or ())
    known = {f.get("path") for f in files}
    if action.get("file") not in known:  # the default file, absent when scanned
        files.append({"path": action.get("file"), "text": None, "reason": None})
    for state in files:
        ctx.files.know(state)
    current = [{"path": f["path"], "text": ctx.files.text(f["path"])} for f in files]
    path, changes = merge_vfio_ids(current, ids, softdeps, default_path=action.get("file"))
    ctx.initramfs_used = True
    ctx.initramfs = ctx.initramfs or action.get("initramfs")
    # the ids take every function that has them at every boot: none may be one the host needs by now
    return [f"spare_host_ids {' '.join(ids)}"] + file_block(ctx, changes,
                                                           then='flag initramfs; needs_reboot "vfio-pci ids at boot"')


def _udev_rule_file(action, ctx, key: str) -> List[str]:
    state = next((f for f in action.get("files") or () if f.get("path") == action.get("file")), None)
    if state is None:
        raise UnsafeValue(f"refusing to write {action.get('file')!r}: not read by the scan")
    ctx.files.know(state)
    new = own_rule(ctx.files.text(state["path"]), action["rule"], key)
    return file_block(ctx, {state["path"]: new}, then="flag udev")


@register("udev-driver-override")
def udev_driver_override(action, ctx) -> List[str]:
    from scanner.remediation.persistent_binding import udev_rule

    addr = _addr(action)
    rule = udev_rule(addr, _driver(action))
    if action.get("rule") != rule or action.get("file") != _udev_file("70-vfio-pci", addr):
        raise UnsafeValue(f"refusing an unexpected udev rule for {addr}")
    return _udev_rule_file(action, ctx, f'KERNEL=="{addr}"')


def _udev_file(prefix: str, addr: str) -> str:
    return f"/etc/udev/rules.d/{prefix}-{addr.replace(':', '-')}.rules"


@register("udev-vfio-access")
def udev_vfio_access(action, ctx) -> List[str]:
    """The rules opening the vfio nodes to the VM user's group, rebuilt from the checked group and kinds."""
    from scanner.remediation.vm_access import ACCESS_RULES_FILE, ACCOUNT_NAME, NODE_MATCH, merged_access_rules

    group = checked(action.get("group"), ACCOUNT_NAME, "group name")
    kinds = list(action.get("nodes") or ())
    if not kinds or not all(kind in NODE_MATCH for kind in kinds) or action.get("file") != ACCESS_RULES_FILE:
        raise UnsafeValue(f"refusing unexpected vfio access rules {kinds!r} in {action.get('file')!r}")
    state = next((f for f in action.get("files") or () if f.get("path") == ACCESS_RULES_FILE), None)
    if state is None:
        raise UnsafeValue(f"refusing to write {ACCESS_RULES_FILE}: not read by the scan")
    ctx.files.know(state)
    ctx.access_used = True
    new = merged_access_rules(ctx.files.text(ACCESS_RULES_FILE), kinds, group)
    return file_block(ctx, {ACCESS_RULES_FILE: new}, then="flag vfio-access")


@register("pci-driver-probe")
def pci_driver_probe(action, ctx) -> List[str]:
    addr = _addr(action)
    driver = action.get("driver")
    if driver is not None:
        checked(driver, DRIVER_NAME, "driver name")
    current = shlex.quote(driver or "")
    clear, unbind = int(bool(action.get("clear_override"))), int(bool(action.get("unbind")))
    return [f"give_back {addr} {_ids(action)} {current} {clear} {unbind}"]


@register("sriov-numvfs")
def sriov_numvfs(action, ctx) -> List[str]:
    addr = _addr(action)
    wanted = _count(action.get("wanted"), "VF count")
    autoprobe_off = int(action.get("autoprobe") == 0)
    return [f"set_vfs {addr} {_ids(action)} {wanted} {autoprobe_off}"]


@register("bind-vfs")
def bind_vfs(action, ctx) -> List[str]:
    ctx.udev_used = True
    driver = _driver(action)
    return [f"bind_vfs {_addr(action)}" + ("" if driver == VFIO else f" {driver}")]


@register("sriov-persist")
def sriov_persist(action, ctx) -> List[str]:
    addr = _addr(action)
    wanted = _count(action.get("wanted"), "VF count")
    assignments = (['ATTR{sriov_drivers_autoprobe}="0"'] if action.get("autoprobe") == 0 else [])
    assignments.append(f'ATTR{{sriov_numvfs}}="{wanted}"')
    rule = f'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{addr}", ' + ", ".join(assignments)
    if action.get("rule") != rule or action.get("file") != _udev_file("70-vfio-scan-sriov", addr):
        raise UnsafeValue(f"refusing an unexpected udev rule for {addr}")
    return _udev_rule_file(action, ctx, f'KERNEL=="{addr}"')


@register("reset-method")
def reset_method(action, ctx) -> List[str]:
    addr = _addr(action)
    method = action.get("method")
    if method not in RESET_METHODS:
        raise UnsafeValue(f"refusing reset method {method!r}")
    return [f"set_reset_method {addr} {_ids(action)} {method}"]
