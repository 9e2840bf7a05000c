"""Bash that finds a host path on disk the way a chroot would: the remediation script's only way to a file.

The script runs on the live machine (``ROOT`` empty) or on a copy of a host's tree
(``ROOT=/path/to/tree``). In a tree, an absolute symlink such as ``etc/modprobe.d -> /srv/x``
or ``sys/bus/pci/devices/0000:01:00.0 -> /sys/devices/...`` must lead back into the tree, never
to the machine running the script, and ``..`` must stop at the tree's top. Every file the script
reads or writes is therefore named by its host path (``/etc/default/grub``) and turned into a
path on disk only by :data:`INROOT`, which resolves each component inside ``ROOT`` itself.
With ``ROOT`` empty it is the live system's own resolution (``/`` is its own chroot), except that
``/proc/self`` is the script's own process, not that of the ``readlink`` asked about it.
"""

#: ``inroot PATH``: prints where the host path PATH is on disk (see the module docstring).
#: Components that do not exist are kept as they are, so a file about to be created has a
#: path too; the printed path is never a symlink that exists at the time of the call.
INROOT = r'''
# inroot PATH: where the host path PATH is on disk, every symlink resolved inside $ROOT as a
# chroot would (an absolute target starts again at $ROOT, '..' stops there)
inroot() {
    local rest=$1 done='' part target hops=0
    while [ -n "$rest" ]; do
        part=${rest%%/*}
        if [ "$part" = "$rest" ]; then rest=''; else rest=${rest#*/}; fi
        case $part in
            '' | .) continue ;;
            ..) done=${done%/*}; continue ;;
        esac
        if [ -L "$ROOT$done/$part" ]; then
            hops=$((hops + 1))
            if [ "$hops" -gt 40 ]; then
                printf '%s\n' "too many levels of symbolic links in $1" >&2
                return 1
            fi
            if [ -z "$ROOT" ] && [ "$done/$part" = /proc/self ]; then
                target=$$  # not readlink's own process, gone once it has answered
            else
                target=$(readlink -- "$ROOT$done/$part") || return 1
            fi
            case $target in /*) done='' ;; esac
            rest=$target${rest:+/$rest}
        else
            done=$done/$part
        fi
    done
    printf '%s\n' "$ROOT${done:-/}"
}
'''

#: ``read_attr ADDR NAME`` and ``driver_of ADDR``: a PCI function's attribute and its driver now, read
#: through ``inroot``; the fix and its undo script both start with them.
SYSFS_READERS = r'''
# read_attr ADDR NAME: one attribute of a PCI function (empty when unreadable)
read_attr() {
    local file value=''
    file=$(inroot "/sys/bus/pci/devices/$1/$2") || return 0
    if [ -r "$file" ]; then read -r value < "$file" || true; fi
    printf '%s\n' "$value"
}

# driver_of ADDR: the driver a device is bound to now (empty when none)
driver_of() {
    local dir link
    dir=$(inroot "/sys/bus/pci/devices/$1") || return 0
    if [ -L "$dir/driver" ]; then link=$(readlink -- "$dir/driver"); printf '%s\n' "${link##*/}"; fi
}
'''

__all__ = ["INROOT", "SYSFS_READERS"]
