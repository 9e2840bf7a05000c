"""The undo script's own runtime: what each run's ``undo.sh`` starts with (its commands follow, last first).

Written by the fix's runtime (scanner/remediation/script_runtime.py) into the run's backup directory,
after every change it records. What it promises the operator: it restores the files the fix changed
from their copies, removes the ones the fix created, gives devices back to their drivers and VF
counts back to their PFs, then regenerates what reads the restored files. A file changed since the
fix wrote it (the operator's own later edit) is left as it is, with a line naming its backup: an
undo never throws away work done after the fix.

Devices get the same care as files, and the fix's own guard: a device is given back only while it
is the card the fix changed (its vendor:device), on the driver the fix left it on, and not one the
host needs now (``critical_reason``, scanner/remediation/script_guard.py): undo must not cut the
host off where the fix itself would refuse to. A module is unloaded only while no device uses it.
An undo cut short can be run again: what it already gave back counts as done, and what reads it is
regenerated all the same.
"""

UNDO_RUNTIME = r'''set -uo pipefail
DRY_RUN=${DRY_RUN:-1}
@@DRY_RUN_CHECK@@
ROOT=${ROOT:-$MADE_FOR_ROOT}
STATE=$(mktemp -d "${TMPDIR:-/tmp}/vfio-scan-undo.XXXXXX")
trap 'rm -rf "$STATE"' EXIT
PROBLEMS=0
say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; PROBLEMS=1; }
run() {
    if [ -n "$ROOT" ]; then say "not run (tree mode): $*"; return 0; fi
    if [ "$DRY_RUN" = 1 ]; then say "would run: $*"; return 0; fi
    say "+ $*"
    "$@" || warn "failed: $*"
}
@@INROOT@@
@@HOST_GUARD@@
flag() { : > "$STATE/flag.$1"; }
flagged() { [ -e "$STATE/flag.$1" ]; }
# what a restored file was for: regenerate or reload what reads it
touched() {
    case $1 in
        /etc/default/grub* | /etc/kernel/cmdline) flag boot ;;
        /etc/modprobe.d/* | /etc/initramfs-tools/modules | /etc/dracut.conf.d/* | /etc/mkinitcpio.conf*) flag initramfs ;;
        /etc/udev/rules.d/*) flag udev ;;
    esac
}
# wrote PATH SHA: what the fix left in PATH; the commands run last first, so the first seen is the last written
declare -A WROTE=()
wrote() { [ -n "${WROTE[$1]+set}" ] || WROTE[$1]=$2; }
# as_the_fix_left PATH DISKPATH: is the file still what the fix wrote? (says so when it is not)
as_the_fix_left() {
    local now=absent sum
    [ -n "${WROTE[$1]+set}" ] || return 0  # nothing recorded (an undo.sh of an older vfio-scan): as before
    if [ -f "$2" ]; then sum=$(sha256sum < "$2") && now=${sum%% *}; elif [ -e "$2" ] || [ -L "$2" ]; then now=not-a-file; fi
    [ "$now" = "${WROTE[$1]}" ] && return 0
    warn "$1 changed since the fix wrote it: left as it is${3:+ (its copy from before the fix: $3)}; undo it by hand"
    return 1
}
restore_file() {
    local disk copy tmp
    if ! disk=$(inroot "$1") || ! copy=$(inroot "$RUN_DIR/files$1"); then warn "cannot resolve $1"; return; fi
    if [ -f "$disk" ] && [ -f "$copy" ] && cmp -s -- "$copy" "$disk"; then
        say "already as before the fix: $1"; touched "$1"; return  # an earlier undo restored it
    fi
    as_the_fix_left "$1" "$disk" "$RUN_DIR/files$1" || return
    touched "$1"
    if [ "$DRY_RUN" = 1 ]; then say "would restore $1 from $RUN_DIR"; return; fi
    if tmp=$(mktemp "$(dirname -- "$disk")/.vfio-scan.XXXXXX") && cp -p -- "$copy" "$tmp" && mv -f -- "$tmp" "$disk"; then
        say "restored $1"
    else
        warn "could not restore $1 from $copy"
    fi
}
remove_file() {
    local disk
    disk=$(inroot "$1") || { warn "cannot resolve $1"; return; }
    if [ ! -e "$disk" ] && [ ! -L "$disk" ]; then say "already gone: $1"; touched "$1"; return; fi
    as_the_fix_left "$1" "$disk" || return
    touched "$1"
    if [ "$DRY_RUN" = 1 ]; then say "would remove $1 (the fix created it)"; return; fi
    if rm -f -- "$disk"; then say "removed $1"; else warn "could not remove $1"; fi
}
sysfs_write() {
    local disk
    disk=$(inroot "$2") || { warn "cannot resolve $2"; return 1; }
    if [ "$DRY_RUN" = 1 ]; then say "would write '$1' to $2"; return 0; fi
    say "+ echo $1 > $2"
    printf '%s\n' "$1" > "$disk" || { warn "could not write $2"; return 1; }
}
@@SYSFS_READERS@@
# still_changed ADDR IDS: is ADDR still the card the fix changed (IDS, vendor:device; '' when not recorded)?
still_changed() {
    local dir now
    dir=$(inroot "/sys/bus/pci/devices/$1") || { warn "cannot resolve $1"; return 1; }
    [ -d "$dir" ] || { warn "$1 is not on the PCI bus any more: nothing to give back"; return 1; }
    [ -n "${2-}" ] || return 0
    now=$(read_attr "$1" vendor):$(read_attr "$1" device)
    now=${now//0x/}
    [ "$now" = "$2" ] && return 0
    warn "$1 holds $now now, not $2 as when the fix changed it: left as it is"
    return 1
}
# not_needed ADDR DOING: is the host free of any need of ADDR right now (the fix's own run-time guard)?
not_needed() {
    local why
    why=$(critical_reason "$1") || return 0
    warn "not $2 $1: $why; left as it is"
    return 1
}
# rebind ADDR DRIVER OVERRIDE [IDS [LEFT_ON]]: give a device back to the driver it had, with its old
# driver_override, while it is still the card the fix changed, on the driver the fix left it on
rebind() {
    local dev=/sys/bus/pci/devices/$1 disk now
    still_changed "$1" "${4-}" || return
    disk=$(inroot "$dev") || return
    now=$(driver_of "$1")
    if [ "$now" = "$2" ]; then
        say "already on ${2:-no driver}: $1"
        [ "$(read_attr "$1" driver_override)" = "${3:-(null)}" ] || sysfs_write "$3" "$dev/driver_override"
        return
    fi
    if [ -n "${5-}" ] && [ "$now" != "$5" ]; then
        warn "$1 is on ${now:-no driver} now, not on $5 as the fix left it: left as it is"; return
    fi
    if [ -n "$now" ]; then not_needed "$1" "unbinding" || return; fi
    sysfs_write "$3" "$dev/driver_override"
    if [ -L "$disk/driver" ]; then sysfs_write "$1" "$dev/driver/unbind"; fi
    if [ -n "$2" ]; then
        sysfs_write "$1" /sys/bus/pci/drivers_probe
        if [ -z "$ROOT" ] && [ "$DRY_RUN" != 1 ] && [ ! -L "$disk/driver" ]; then
            sysfs_write "$1" "/sys/bus/pci/drivers/$2/bind"
        fi
    fi
}
# set_numvfs ADDR COUNT AUTOPROBE [IDS [LEFT]]: the PF's VF count and autoprobe as they were, while the
# PF is the card the fix changed with the count it left (removing VFs the host uses now is refused)
set_numvfs() {
    local dev=/sys/bus/pci/devices/$1 now
    still_changed "$1" "${4-}" || return
    now=$(read_attr "$1" sriov_numvfs)
    if [ "$now" = "$2" ]; then
        say "already $2 VFs: $1"
    elif [ -n "${5-}" ] && [ "$now" != "$5" ]; then
        warn "$1 has ${now:-an unreadable number of} VFs now, not $5 as the fix left it: left as it is"; return
    elif [ "$now" != 0 ] && ! not_needed "$1" "removing the VFs of"; then
        return
    else
        sysfs_write 0 "$dev/sriov_numvfs"
    fi
    if [ -n "$3" ]; then sysfs_write "$3" "$dev/sriov_drivers_autoprobe"; fi
    if [ "$2" != 0 ] && [ "$now" != "$2" ]; then sysfs_write "$2" "$dev/sriov_numvfs"; fi
}
# unload_module NAME: unload a module the fix loaded, unless it is gone already or a device uses it now
unload_module() {
    local dir driver link users=()
    if [ -z "$ROOT" ] && ! grep -q "^$1 " /proc/modules 2> /dev/null; then say "already unloaded: $1"; return; fi
    dir=$(inroot "/sys/module/$1") || dir=/nonexistent
    for driver in "$dir"/drivers/*; do
        [ -L "$driver" ] || continue
        driver=$(inroot "/sys/module/$1/drivers/${driver##*/}") || continue
        for link in "$driver"/*; do
            [[ -L $link && ${link##*/} =~ ^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$ ]] && users+=("${link##*/}")
        done
    done
    if [ "${#users[@]}" -gt 0 ]; then say "left loaded: $1 (it drives ${users[*]} now)"; return; fi
    run modprobe -r "$1"
}
finish_undo() {
    local done_mark
    if flagged boot; then
@@REGENERATE@@
    fi
    if flagged initramfs; then
@@INITRAMFS@@
    fi
    if flagged udev; then run udevadm control --reload; fi
    if [ "$PROBLEMS" = 0 ] && [ "$DRY_RUN" != 1 ] && done_mark=$(inroot "$RUN_DIR/undone"); then
        : > "$done_mark" || true  # a later fix's hint no longer names this run
    fi
    if [ "$PROBLEMS" = 0 ]; then say "Undone. Reboot if the fix asked for one, then run 'vfio-scan scan' again."
    else warn "Some steps could not be undone (see above)."; exit 1; fi
}
'''
