"""The undo script's own runtime: what each run's ``undo.sh`` starts with (its commands follow, last first).

Written by the fix's runtime (scanner/remediation/script_runtime.py) into the run's backup directory,
after every change it records. What it promises the operator: it restores the files the fix changed
from their copies, removes the ones the fix created, gives devices back to their drivers and VF
counts back to their PFs, then regenerates what reads the restored files. A file changed since the
fix wrote it (the operator's own later edit) is left as it is, with a line naming its backup: an
undo never throws away work done after the fix.
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
flag() { : > "$STATE/flag.$1"; }
flagged() { [ -e "$STATE/flag.$1" ]; }
# what a restored file was for: regenerate or reload what reads it
touched() {
    case $1 in
        /etc/default/grub* | /etc/kernel/cmdline) flag boot ;;
        /etc/modprobe.d/*) flag initramfs ;;
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
# rebind ADDR DRIVER OVERRIDE: give a device back to the driver it had, with its old driver_override
rebind() {
    local dev=/sys/bus/pci/devices/$1 disk
    disk=$(inroot "$dev") || return
    sysfs_write "$3" "$dev/driver_override"
    if [ -L "$disk/driver" ]; then sysfs_write "$1" "$dev/driver/unbind"; fi
    if [ -n "$2" ]; then
        sysfs_write "$1" /sys/bus/pci/drivers_probe
        if [ -z "$ROOT" ] && [ "$DRY_RUN" != 1 ] && [ ! -L "$disk/driver" ]; then
            sysfs_write "$1" "/sys/bus/pci/drivers/$2/bind"
        fi
    fi
}
# set_numvfs ADDR COUNT AUTOPROBE: the PF's VF count and autoprobe as they were
set_numvfs() {
    local dev=/sys/bus/pci/devices/$1
    sysfs_write 0 "$dev/sriov_numvfs"
    if [ -n "$3" ]; then sysfs_write "$3" "$dev/sriov_drivers_autoprobe"; fi
    if [ "$2" != 0 ]; then sysfs_write "$2" "$dev/sriov_numvfs"; fi
}
finish_undo() {
    if flagged boot; then
@@REGENERATE@@
    fi
    if flagged initramfs; then
@@INITRAMFS@@
    fi
    if flagged udev; then run udevadm control --reload; fi
    if [ "$PROBLEMS" = 0 ]; then say "Undone. Reboot if the fix asked for one, then run 'vfio-scan scan' again."
    else warn "Some steps could not be undone (see above)."; exit 1; fi
}
'''
