"""The closed-loop scenario's guest script: scan, fix, rescan, QEMU, on a real kernel, in one boot.

Targets: 02:00.0, the e1000e alone in its IOMMU group; the NVMe PF 0000:01:00.0 with 2 VFs
wanted; 04:01.0, one of the two e1000 that share a group behind the PCIe-to-PCI bridge 03:00.0.

In the guest, in this order (each output lands in /out, see guest.py's ``step``):

1. ``state0``: the sysfs and /etc state the script may touch; ``groups --format json``;
2. ``vfio-scan fix TARGETS -o fix.sh --json before.json`` (the scan's report beside the script);
3. ``DRY_RUN=0 bash fix.sh`` (``apply1``), ``state1``; the same again (``apply2``), ``state2``;
4. ``scan TARGETS`` -> ``after.json``;
5. ``qemu-args --device 02:00.0`` with a policy waiving VFIO-001 (no VT-x under TCG, and the inner
   QEMU runs under TCG too), then ``qemu-system-x86_64 -S`` with those arguments, spoken to over
   QMP on stdio (``query-pci``, ``quit``);
6. the commands VFIO-012 suggests for 04:01.0's group sibling 04:02.0 (the script leaves that
   choice to a person), ``state3``; ``scan TARGETS`` -> ``final.json`` (the group viable now, lost at the
   next boot); the persistent step VFIO-012 then gives, ``scan TARGETS`` -> ``kept.json``; ``collect`` -> ``snap.json``
   (when the command exists); ``qemu-args --device 04:01.0`` and QEMU again.
"""

import subprocess
import sys
from pathlib import Path

TARGETS = ("--device", "02:00.0", "--vfs", "0000:01:00.0=2", "--device", "04:01.0")
E1000E, PF, SHARED, SIBLING, BRIDGE = "0000:02:00.0", "0000:01:00.0", "0000:04:01.0", "0000:04:02.0", "0000:03:00.0"
VFS = ("0000:01:00.1", "0000:01:00.2")

POLICY_TEXT = '''\
# vfio-scan e2e: the policy the closed loop's qemu-args runs with.
version = 1
description = "QEMU/TCG test guest: no VT-x to offer, and the QEMU started inside runs under TCG"

[[waivers]]
rule = "VFIO-001"
subject = "host"
justification = "e2e guest under QEMU/TCG has no VT-x; the QEMU it starts runs under TCG, which needs no KVM"
owner = "vfio-scan e2e tests"
'''

CLOSED_LOOP_BODY = r'''
TARGETS=(--device 02:00.0 --vfs 0000:01:00.0=2 --device 04:01.0)
DEVS="0000:01:00.0 0000:01:00.1 0000:01:00.2 0000:02:00.0 0000:03:00.0 0000:04:01.0 0000:04:02.0"

# state: everything the remediation script may change, one line per item. Bash builtins only
# (globs, read, cd -P): every fork costs tens of milliseconds under TCG.
state() {
    local d p v drv grp pf vfs numvfs probe override here=$PWD
    for d in $DEVS; do
        p=/sys/bus/pci/devices/$d
        if [ ! -e "$p" ]; then echo "$d absent"; continue; fi
        drv=; grp=; pf=; vfs=; numvfs=; probe=
        for v in /sys/bus/pci/drivers/*/"$d"; do [ -e "$v" ] && { v=${v%/*}; drv=${v##*/}; }; done
        for v in /sys/kernel/iommu_groups/*/devices/"$d"; do [ -e "$v" ] && { v=${v%/devices/*}; grp=${v##*/}; }; done
        if [ -L "$p/physfn" ] && cd -P "$p/physfn"; then pf=${PWD##*/}; cd "$here" || return; fi
        for v in "$p"/virtfn*; do [ -e "$v" ] && vfs=${vfs:+$vfs,}${v##*/}; done
        read -r override < "$p/driver_override"
        [ -e "$p/sriov_numvfs" ] && read -r numvfs < "$p/sriov_numvfs"
        [ -e "$p/sriov_drivers_autoprobe" ] && read -r probe < "$p/sriov_drivers_autoprobe"
        echo "$d driver=$drv override=$override group=$grp numvfs=$numvfs autoprobe=$probe virtfn=$vfs physfn=$pf"
    done
    v=; for d in /dev/vfio/*; do [ -e "$d" ] && v="$v ${d##*/}"; done; echo "dev-vfio:$v"
    v=; while read -r d _; do case $d in vfio*|kvm*) v="$v $d" ;; esac; done < /proc/modules; echo "modules:$v"
    for d in /etc/modules-load.d/vfio.conf /etc/modprobe.d/vfio.conf /etc/udev/rules.d/70-vfio*; do
        if [ -e "$d" ]; then v=$(< "$d"); echo "$d content=${v//$'\n'/\\n}"; fi
    done
}

# qemu NAME ARGS-FILE: QEMU paused, tiny, no KVM, with the vfio-pci arguments in ARGS-FILE; QMP on stdio
qemu() {
    printf '%s\n' '{"execute": "qmp_capabilities"}' '{"execute": "query-pci"}' \
        '{"execute": "human-monitor-command", "arguments": {"command-line": "info qtree"}}' '{"execute": "quit"}' |
        step "$1" timeout 180 qemu-system-x86_64 -S -m 64 -nodefaults -display none -no-user-config \
            -machine q35,accel=tcg $(cat "$2") -qmp stdio
}

ground_truth
state > "$OUT/state0.txt"
vs groups groups --format json
vs fix fix "${TARGETS[@]}" -o "$OUT/fix.sh" --json "$OUT/before.json"
step apply1 env DRY_RUN=0 bash "$OUT/fix.sh"
state > "$OUT/state1.txt"
step apply2 env DRY_RUN=0 bash "$OUT/fix.sh"
state > "$OUT/state2.txt"
vs after scan "${TARGETS[@]}" --format json -o "$OUT/after.json"

vs qemu-args qemu-args --device 02:00.0 --policy "$OUT/tcg-waiver.toml"
if [ "$(cat "$OUT/qemu-args.rc")" = 0 ]; then qemu qemu "$OUT/qemu-args.out"; fi

# The group sibling 04:02.0: bound with the very commands VFIO-012 suggests for it.
python3 -S - "$OUT/after.json" > "$OUT/sibling-commands.sh" 2> "$OUT/sibling-commands.err" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
finding = next(f for f in doc["findings"] if f["rule_id"] == "VFIO-012" and f["subject"] == "0000:04:01.0")
step = next(s for s in finding["remediation"] if any("0000:04:02.0" in c for c in s["commands"]))
print("\n".join(step["commands"]))
PY
step bind-sibling bash -ex "$OUT/sibling-commands.sh"
state > "$OUT/state3.txt"
vs final scan "${TARGETS[@]}" --format json -o "$OUT/final.json"
# bound at run time only, the sibling is e1000's again at the next boot: the step VFIO-012 then gives
# keeps it off e1000 at every boot (a udev driver_override rule, or driverctl)
python3 -S - "$OUT/final.json" > "$OUT/keep-commands.sh" 2> "$OUT/keep-commands.err" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
finding = next(f for f in doc["findings"] if f["rule_id"] == "VFIO-012" and f["subject"] == "0000:04:01.0")
step = next(s for s in finding["remediation"] if s.get("persistent") and any("0000:04:02.0" in c for c in s["commands"]))
print("\n".join(step["commands"]))
PY
step keep-sibling bash -ex "$OUT/keep-commands.sh"
vs kept scan "${TARGETS[@]}" --format json -o "$OUT/kept.json"
if [ "${E2E_COLLECT:-0}" = 1 ]; then vs collect collect -o "$OUT/snap.json"; fi
vs qemu-args-shared qemu-args --device 04:01.0 --policy "$OUT/tcg-waiver.toml"
if [ "$(cat "$OUT/qemu-args-shared.rc")" = 0 ]; then qemu qemu-shared "$OUT/qemu-args-shared.out"; fi
'''


def vfio_scan_host_command():
    script = Path(sys.executable).with_name("vfio-scan")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "scanner"]


def collect_available() -> bool:
    """Is ``vfio-scan collect`` there yet (issue 6, being written)?"""
    try:
        proc = subprocess.run(vfio_scan_host_command() + ["collect", "--help"], capture_output=True, text=True,
                              timeout=120)
    except OSError:
        return False
    return proc.returncode == 0
