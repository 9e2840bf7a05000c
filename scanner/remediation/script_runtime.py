"""The bash every remediation script starts with: how it acts, refuses, keeps backups and can be undone.

An operator runs the script as root on a production host, so its runtime is built around four
promises, each kept here once for every block:

* **Tree mode touches only the tree.** With ``ROOT=/path/to/tree`` every file is reached through
  ``inroot`` (scanner/remediation/script_paths.py), so no symlink in the tree leads out of it, and no host tool
  (``update-grub``, ``modprobe``, ``udevadm``, ...) runs: :func:`run` prints
  ``not run (tree mode): CMD`` instead.
* **One failure stops one fix, not the script half-way.** Each block runs in its own subshell with
  ``set -e``: a failing command ends that block (``FAILED``), a deliberate no ends it as
  ``REFUSED``, and the next block still runs. The summary at the end lists both, and the exit
  status is 1 when any block did not complete.
* **Nothing is clobbered.** A configuration file is replaced by ``put_file`` only while it still
  holds what the scan read (its sha256); the dry run shows a unified diff; before any change the
  file is copied into this run's backup directory, and every new file is written beside its
  target and renamed over it, so an interrupted run leaves the old file or the new one.
* **Everything can be undone.** Before each change an undo command is recorded, and
  ``undo.sh`` beside the backups is rewritten after every record: it restores the files, gives
  devices back to their drivers, restores VF counts, and regenerates what depends on them.
"""

from scanner.remediation.script_guard import HOST_GUARD
from scanner.remediation.script_paths import SYSFS_READERS
from scanner.remediation.script_undo import UNDO_RUNTIME as _UNDO_RUNTIME

#: The runtime proper. ``@@...@@`` markers are filled in by :func:`runtime`.
_RUNTIME = r'''set -euo pipefail
umask 022

DRY_RUN=${DRY_RUN:-1}        # 1: only print what would be done; 0: do it
ROOT=${ROOT:-}               # a copy of a host's tree to fix instead of this machine (tree mode)
BACKUPS=${BACKUPS:-/var/backups/vfio-scan}   # where each run keeps its backups and undo.sh (inside ROOT)

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
@@DRY_RUN_CHECK@@
# inside a block: stop this block (FAILED), or decline it on purpose (REFUSED); later blocks still run
fail() { warn "FAILED: $*"; exit 1; }
refuse() { warn "REFUSED: $*"; exit 3; }

if [ -n "$ROOT" ]; then
    if [ ! -d "$ROOT" ]; then warn "ROOT=$ROOT: no such directory"; exit 2; fi
    ROOT=$(cd "$ROOT" && pwd -P)
    if [ "$ROOT" = / ]; then ROOT=''; fi
fi
if [ -z "$ROOT" ] && [ "$DRY_RUN" != 1 ] && [ "$(id -u)" != 0 ]; then
    warn "run it as root to apply it on this host: sudo DRY_RUN=0 bash $0"
    exit 2
fi
if [ -n "$ROOT" ]; then say "tree mode: changing files under $ROOT only; no host tool is run"; fi
if [ "$DRY_RUN" = 1 ]; then say "dry run: nothing is changed (DRY_RUN=0 applies it)"; fi

STATE=$(mktemp -d "${TMPDIR:-/tmp}/vfio-scan-fix.XXXXXX")
RUN_DIR=$BACKUPS/$(date +%Y%m%dT%H%M%S)-$$   # made at the first change
FAILED_BLOCKS=()
REFUSED_BLOCKS=()
trap 'rm -rf "$STATE"' EXIT
trap 'interrupted' INT TERM HUP

interrupted() {
    trap - INT TERM
    warn "interrupted: the blocks after this point did not run"
    undo_hint
    exit 130
}

# run CMD ARGS...: run a host tool (or say it would be run); never in tree mode
run() {
    if [ -n "$ROOT" ]; then say "not run (tree mode): $*"; return 0; fi
    if [ "$DRY_RUN" = 1 ]; then say "would run: $*"; return 0; fi
    say "+ $*"
    "$@"
}

# block NAME FUNCTION: one fix, in a subshell of its own: a failure stops this fix and no other
block() {
    local rc
    set +e
    (set -e; "$2")
    rc=$?
    set -e
    case $rc in
        0) ;;
        3) REFUSED_BLOCKS+=("$1") ;;
        129 | 130 | 143) interrupted ;;
        *) FAILED_BLOCKS+=("$1") ;;
    esac
}

# flags shared by the blocks (each runs in a subshell): flag NAME, flagged NAME. The boot configuration
# and the initramfs are regenerated once, at the end of their phase: what a change owes them is also
# kept on disk (BACKUPS/pending.NAME) until it is done, so that a run cut short before it (Ctrl-C, a
# dropped ssh) leaves the work to the next run, which would otherwise find its files unchanged and
# regenerate nothing.
flag() {
    : > "$STATE/flag.$1"
    case $1 in boot | initramfs) ;; *) return 0 ;; esac
    local owed
    if [ "$DRY_RUN" != 1 ] && owed=$(pending_file "$1"); then mkdir -p -- "${owed%/*}" && : > "$owed"; fi
}
flagged() {
    local owed
    [ -e "$STATE/flag.$1" ] && return 0
    owed=$(pending_file "$1") && [ -e "$owed" ] || return 1
    say "an earlier run changed what the $1 is made from but stopped before it was regenerated: this run does it"
    : > "$STATE/flag.$1"
}
# pending_file NAME: where BACKUPS keeps the work a change owes NAME; done_pending NAME: it is done
pending_file() {
    case $1 in boot | initramfs) ;; *) return 1 ;; esac
    local disk
    disk=$(inroot "$BACKUPS") || return 1
    printf '%s\n' "$disk/pending.$1"
}
done_pending() {
    local owed
    if [ "$DRY_RUN" != 1 ] && owed=$(pending_file "$1"); then rm -f -- "$owed"; fi
}
needs_reboot() { printf '%s\n' "$1" >> "$STATE/reboot"; }

# sha_of DISKPATH: sha256 of a file, 'absent', or 'not-a-file'
sha_of() {
    local sum
    if [ -f "$1" ]; then sum=$(sha256sum < "$1"); printf '%s\n' "${sum%% *}"
    elif [ -e "$1" ] || [ -L "$1" ]; then printf '%s\n' not-a-file
    else printf '%s\n' absent; fi
}

# show_diff PATH DISKPATH NEWFILE: the change as a unified diff, indented
show_diff() {
    local old=$2
    [ -f "$old" ] || old=/dev/null
    if command -v diff > /dev/null 2>&1; then
        { diff -u -L "$1 (now)" -L "$1 (after)" "$old" "$3" || true; } | sed 's/^/    /'
    else
        sed 's/^/    /' "$3"
    fi
}

# install_file DISKPATH NEWFILE: replace a file whole or not at all (a copy beside it, then rename)
install_file() {
    local dir tmp
    dir=$(dirname -- "$1")
    mkdir -p -- "$dir"
    tmp=$(mktemp "$dir/.vfio-scan.XXXXXX")
    if [ -f "$1" ]; then cp -p -- "$1" "$tmp"; else chmod 644 "$tmp"; fi
    if ! cat -- "$2" > "$tmp" || ! mv -f -- "$tmp" "$1"; then
        rm -f -- "$tmp"
        fail "could not write $1"
    fi
}

# run_dir: this run's backup directory on disk (made on first use)
run_dir() {
    local disk
    disk=$(inroot "$RUN_DIR") || fail "cannot resolve $RUN_DIR"
    mkdir -p -- "$disk/files"
    printf '%s\n' "$disk"
}

# undo_step WORDS...: record one command for the undo script (which runs them last-first)
undo_step() {
    local disk line
    [ "$DRY_RUN" = 1 ] && return 0
    disk=$(run_dir)
    printf -v line '%q ' "$@"
    printf '%s\n' "${line% }" >> "$disk/undo.list"
    write_undo_script "$disk"
}

# keep_backup PATH DISKPATH: before the first change of a file, keep a copy and tell the undo script
keep_backup() {
    local disk copy
    disk=$(run_dir)
    if [ -e "$disk/kept.list" ] && grep -qxF -- "$1" "$disk/kept.list"; then return 0; fi
    if [ -f "$2" ]; then
        copy=$disk/files$1
        mkdir -p -- "$(dirname -- "$copy")"
        cp -p -- "$2" "$copy"
        undo_step restore_file "$1"
    else
        undo_step remove_file "$1"
    fi
    printf '%s\n' "$1" >> "$disk/kept.list"
}

# put_file PATH BEFORE AFTER FINAL < CONTENT: give the host file PATH the content on stdin (sha256
# AFTER), but only while it still holds what the scan read (BEFORE, 'absent' for no file). FINAL is
# what later blocks of this script make of it: a file already there is done. Sets CHANGED=1.
put_file() {
    local path=$1 before=$2 after=$3 final=$4 disk new now
    new=$(mktemp "$STATE/new.XXXXXX")
    cat > "$new"
    [ "$(sha_of "$new")" = "$after" ] || fail "$path: the new content in this script is damaged"
    disk=$(inroot "$path") || fail "cannot resolve $path"
    now=$(sha_of "$disk")
    if [ "$now" = "$after" ] || [ "$now" = "$final" ]; then say "unchanged: $path"; return 0; fi
    not_a_link "$path"
    [ "$now" != not-a-file ] || fail "$path exists and is not a regular file: not touching it"
    if [ "$now" != "$before" ]; then
        fail "$path changed since the scan: not touching it; run 'vfio-scan fix' again for a script that knows it"
    fi
    CHANGED=1
    if [ "$DRY_RUN" = 1 ]; then
        say "would change $path:"
        show_diff "$path" "$disk" "$new"
        return 0
    fi
    keep_backup "$path" "$disk"
    install_file "$disk" "$new"
    [ "$(sha_of "$disk")" = "$after" ] || fail "$path was written but does not read back as intended"
    undo_step wrote "$path" "$after"
    say "wrote $path"
}

# not_a_link PATH: fail when the host path PATH is itself a symbolic link: a write would land in the
# file it points to, which may be any file on the host (the link's own directory is resolved as usual)
not_a_link() {
    local parent
    parent=$(inroot "${1%/*}") || fail "cannot resolve ${1%/*}"
    if [ -L "$parent/${1##*/}" ]; then
        fail "$1 is a symbolic link: not writing through it to the file it points to; change that file by hand"
    fi
}

# same_names DIR GLOB NAME...: fail unless DIR holds exactly these GLOB files (as when scanned)
same_names() {
    local dir=$1 glob=$2 disk f now=() want
    shift 2
    disk=$(inroot "$dir") || fail "cannot resolve $dir"
    for f in "$disk"/$glob; do [ -e "$f" ] && now+=("${f##*/}"); done
    want=" $* "
    if [ "${#now[@]}" != "$#" ]; then fail "$dir changed since the scan (now: ${now[*]:-none}; scanned: ${*:-none})"; fi
    for f in "${now[@]}"; do
        case $want in *" $f "*) ;; *) fail "$dir changed since the scan (new: $f)" ;; esac
    done
}

# -- sysfs -------------------------------------------------------------------------------------

@@SYSFS_READERS@@

# sysfs_write VALUE PATH: write one value to a sysfs file (PATH a host path)
sysfs_write() {
    local disk
    disk=$(inroot "$2") || fail "cannot resolve $2"
    if [ "$DRY_RUN" = 1 ]; then say "would write '$1' to $2"; return 0; fi
    say "+ echo $1 > $2"
    printf '%s\n' "$1" > "$disk"
}

# module_loaded NAME: is the module loaded (or built in with a /sys/module entry)?
module_loaded() {
    local modules
    modules=$(inroot /proc/modules) || return 1
    grep -q "^$1 " "$modules" 2> /dev/null || [ -d "$(inroot "/sys/module/$1")" ]
}

# applied: is this run changing the live host (not a dry run, not a tree)?
applied() { [ -z "$ROOT" ] && [ "$DRY_RUN" != 1 ]; }

# generated_has PARAM...: after a live regeneration, the generated GRUB configuration carries each
# parameter (else another file overrides the edit, and the reboot would not bring it)
generated_has() {
    local cfg p
    applied || return 0
    for cfg in /boot/grub/grub.cfg /boot/grub2/grub.cfg; do
        [ -f "$(inroot "$cfg")" ] || continue
        for p in "$@"; do
            grep -qE "^[[:space:]]*linux.*[[:space:]]$(printf '%s' "$p" | sed 's/[.+]/\\&/g')([[:space:]]|$)" \
                "$(inroot "$cfg")" || fail "$cfg does not carry $p after regenerating it: another file overrides the edit"
        done
        return 0
    done
}

# undo_live WORDS...: record the undo of a host tool that ran (none runs in tree mode)
undo_live() {
    if [ -z "$ROOT" ]; then undo_step "$@"; fi
}

# load_module NAME: load a module unless it is there; the undo script unloads it again
load_module() {
    module_loaded "$1" && return 0
    run modprobe "$1"
    undo_live unload_module "$1"
}

# undo_hint: where this run's undo script is, and the earlier runs' that were not undone (a run cut
# short, then run again, changed things in both: each run's undo.sh undoes only its own)
undo_hint() {
    local disk base dir earlier=()
    disk=$(inroot "$RUN_DIR") || return 0
    if [ -f "$disk/undo.sh" ]; then
        say "Backups and the undo script: $RUN_DIR (review it, then: ${ROOT:+ROOT=$ROOT }DRY_RUN=0 bash $RUN_DIR/undo.sh)"
    fi
    base=$(inroot "$BACKUPS") || return 0
    for dir in "$base"/*/; do
        dir=${dir%/}
        if [ "$dir" != "$disk" ] && [ -f "$dir/undo.sh" ] && [ ! -e "$dir/undone" ]; then
            earlier=("$BACKUPS/${dir##*/}" ${earlier[@]+"${earlier[@]}"})
        fi
    done
    if [ "${#earlier[@]}" -gt 0 ]; then
        say "Earlier runs not undone, each with its own undo.sh (undo this run's first, then these, newest first): ${earlier[*]}"
    fi
}

# finish: the summary, the re-check line, and the exit status
finish() {
    local reason
    if [ -e "$STATE/reboot" ]; then
        say "A reboot is needed for:"
        sort -u "$STATE/reboot" | while IFS= read -r reason; do say "  - $reason"; done
    fi
    if [ "${#REFUSED_BLOCKS[@]}" -gt 0 ]; then warn "Refused at run time: ${REFUSED_BLOCKS[*]}"; fi
    if [ "${#FAILED_BLOCKS[@]}" -gt 0 ]; then warn "Did not complete: ${FAILED_BLOCKS[*]}"; fi
    undo_hint
    say "Done. Run 'vfio-scan scan' again to check the result."
    if [ "${#FAILED_BLOCKS[@]}" -gt 0 ] || [ "${#REFUSED_BLOCKS[@]}" -gt 0 ]; then exit 1; fi
    exit 0
}

# write_undo_script DISKDIR: undo.sh = its runtime, then the recorded steps last-first
write_undo_script() {
    {
        printf '%s\n' '#!/usr/bin/env bash' "# Undoes the vfio-scan remediation run that made $RUN_DIR." \
            '# Review it, then: DRY_RUN=0 bash THIS_SCRIPT (it only prints what it would do by default).'
        printf 'MADE_FOR_ROOT=%q\n' "$ROOT"
        printf 'RUN_DIR=%q\n' "$RUN_DIR"
        cat << 'VFIO_SCAN_UNDO_RUNTIME'
@@UNDO_RUNTIME@@
VFIO_SCAN_UNDO_RUNTIME
        tac -- "$1/undo.list"
        printf '%s\n' finish_undo
    } > "$1/undo.sh.new"
    mv -f -- "$1/undo.sh.new" "$1/undo.sh"
}
'''

#: Both scripts do what DRY_RUN says only when it says 0 or 1: an operator who types ``DRY_RUN=true``
#: or ``DRY_RUN=yes`` to be safe means a dry run, and a test of "is it 1" would have applied it.
_DRY_RUN_CHECK = r'''if [ "$DRY_RUN" != 0 ] && [ "$DRY_RUN" != 1 ]; then
    printf '%s\n' "DRY_RUN=$DRY_RUN: expected 1 (only print what would be done, the default) or 0 (do it); nothing was done" >&2; exit 2
fi'''


def runtime(inroot: str, regenerate, initramfs) -> str:
    """The runtime with the undo script's runtime inside it; ``regenerate`` and ``initramfs`` are the
    script lines that apply a restored boot configuration and rebuild the initramfs."""
    def body(lines):
        return "\n".join("        " + line for line in lines) if lines else "        :"
    undo = (_UNDO_RUNTIME.replace("@@INROOT@@", inroot.strip("\n")).replace("@@HOST_GUARD@@", HOST_GUARD.strip("\n"))
            .replace("@@SYSFS_READERS@@", SYSFS_READERS.strip("\n"))
            .replace("@@REGENERATE@@", body(regenerate)).replace("@@INITRAMFS@@", body(initramfs)))
    return (_RUNTIME.replace("@@UNDO_RUNTIME@@", undo.strip("\n")).replace("@@DRY_RUN_CHECK@@", _DRY_RUN_CHECK)
            .replace("@@SYSFS_READERS@@", SYSFS_READERS.strip("\n")))


__all__ = ["runtime"]
