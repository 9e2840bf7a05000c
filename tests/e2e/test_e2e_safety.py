"""The remediation script's promises on a real kernel (VT-d, ``intel_iommu=on iommu=pt``), in one boot.

The guest is set up as a host someone already uses: an ``/etc/modprobe.d/vfio.conf`` with another
GPU's ``ids=``, a blacklist line and a comment; the e1000e at 00:02.0 carrying the default route.
Then, in this order (each output lands in /out):

1. ``vfio-scan fix --device 00:02.0 --device 01:00.0 --device 02:00.0`` -> ``fix.sh``, ``before.json``:
   00:02.0 is refused when the script is written; 02:00.0 (the same e1000e model) is kept on
   vfio-pci at boot by address, never by ``ids=``, which would take the host's NIC as well.
2. The default route moves to 02:00.0, through a bridge ``br0`` (``state0``).
3. ``bash fix.sh`` (dry run: the diff), then ``DRY_RUN=0 bash fix.sh`` (``apply``, ``state1``):
   02:00.0 is refused at run time; the NVMe PF 01:00.0 goes to vfio-pci; the modprobe.d file is
   merged; a backup and ``undo.sh`` are kept.
4. ``DRY_RUN=0 bash undo.sh`` (``undo``, ``state2``): the files as they were, the NVMe back on nvme.
"""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guest  # noqa: E402
from test_e2e_closed_loop import state  # noqa: E402

pytestmark = pytest.mark.e2e

HOST_NIC, NVME, NIC = "0000:00:02.0", "0000:01:00.0", "0000:02:00.0"
OTHER = "# another GPU, passed through since last year\nblacklist nouveau\noptions vfio-pci ids=1002:67df\n"

SAFETY_BODY = r'''
DEVS="0000:00:02.0 0000:01:00.0 0000:02:00.0"
state() {
    local d p v drv override
    for d in $DEVS; do
        p=/sys/bus/pci/devices/$d
        drv=
        for v in /sys/bus/pci/drivers/*/"$d"; do [ -e "$v" ] && { v=${v%/*}; drv=${v##*/}; }; done
        read -r override < "$p/driver_override"
        echo "$d driver=$drv override=$override"
    done
    ip -o route show default
}
netif() { local n; for n in /sys/bus/pci/devices/$1/net/*; do echo "${n##*/}"; done; }

ground_truth
modprobe -a vfio vfio_iommu_type1 vfio_pci
mkdir -p /etc/modprobe.d
printf '%s\n' '# another GPU, passed through since last year' 'blacklist nouveau' 'options vfio-pci ids=1002:67df' \
    > /etc/modprobe.d/vfio.conf
for tool in update-initramfs update-grub; do   # they only log their calls here
    printf '#!/bin/sh\necho "%s $*" >> /out/tools.log\n' "$tool" > "/usr/sbin/$tool"
    chmod 755 "/usr/sbin/$tool"
done
: > "$OUT/tools.log"

HOST_IF=$(netif 0000:00:02.0); NIC_IF=$(netif 0000:02:00.0)
echo "$HOST_IF $NIC_IF" > "$OUT/interfaces.txt"
ip link set "$HOST_IF" up
ip addr add 10.0.2.15/24 dev "$HOST_IF"
ip route add default via 10.0.2.2 dev "$HOST_IF"

vs fix fix --device 00:02.0 --device 01:00.0 --device 02:00.0 -o "$OUT/fix.sh" --json "$OUT/before.json"

# the host's network moves: a bridge over 02:00.0 carries the default route now
ip route del default
ip link add br0 type bridge
ip link set "$NIC_IF" master br0
ip link set "$NIC_IF" up
ip link set br0 up
ip addr add 10.0.3.15/24 dev br0
ip route add default via 10.0.3.2 dev br0
state > "$OUT/state0.txt"

step dry bash "$OUT/fix.sh"
step apply env DRY_RUN=0 bash "$OUT/fix.sh"
state > "$OUT/state1.txt"
cp /etc/modprobe.d/vfio.conf "$OUT/vfio.conf.after"
cp "$OUT/tools.log" "$OUT/tools-after-apply.log"
RUN=$(for d in /var/backups/vfio-scan/*/; do echo "$d"; done | head -n 1)
cp "$RUN/files/etc/modprobe.d/vfio.conf" "$OUT/vfio.conf.backup"
cp "$RUN/undo.sh" "$OUT/undo.sh"
step undo env DRY_RUN=0 bash "$RUN/undo.sh"
state > "$OUT/state2.txt"
cp /etc/modprobe.d/vfio.conf "$OUT/vfio.conf.undone"
'''


@pytest.fixture(scope="module")
def safety(tmp_path_factory):
    return guest.boot("safety", SAFETY_BODY, tmp_path_factory.mktemp("e2e-safety"), cmdline="intel_iommu=on iommu=pt")


def test_the_host_nic_is_refused_when_the_script_is_written(safety):
    assert safety.rc_of("fix") == 0, safety.text("fix.err")  # a script was written
    before = safety.report("before.json")
    finding = before.finding("VFIO-013", HOST_NIC)
    assert finding["status"] == "fail" and "default route" in finding["message"]
    script = safety.text("fix.sh")
    block = script.split(f"# BEGIN VFIO-013 {HOST_NIC}")[1].split("# END")[0]
    assert "REFUSED" in block and "bind_vfio" not in block


def test_ids_never_take_the_host_nic_s_twin(safety):
    """02:00.0 has the host NIC's vendor:device: it is kept on vfio-pci at boot by address."""
    script = safety.text("fix.sh")
    ids = [line for line in script.splitlines() if line.startswith("options vfio-pci")]
    assert ids == ["options vfio-pci ids=1002:67df,1b36:0010"], ids
    assert f'KERNEL=="{NIC}", ATTR{{driver_override}}="vfio-pci"' in script


def test_the_nic_that_carries_the_route_by_now_is_refused_at_run_time(safety):
    s0, s1 = state(safety, "state0.txt"), state(safety, "state1.txt")
    assert "dev br0" in safety.text("state0.txt")
    assert safety.rc_of("apply") == 1, safety.text("apply.out") + safety.text("apply.err")
    err = safety.text("apply.err")
    nic_if = safety.text("interfaces.txt").split()[1]
    assert f"REFUSED: not binding {NIC}: it carries the host's default route ({nic_if} under br0)" in err
    assert f"Refused at run time: VFIO-013 {NIC}" in err
    assert s1[NIC] == s0[NIC] and s1[NIC]["driver"] == "e1000e"
    assert s1[HOST_NIC] == s0[HOST_NIC] and s1[HOST_NIC]["driver"] == "e1000e"
    assert "dev br0" in safety.text("state1.txt"), "the host kept its network"
    # what was not refused was done: the NVMe PF is on vfio-pci
    assert s1[NVME]["driver"] == "vfio-pci" and s1[NVME]["override"] == "vfio-pci"


def test_the_existing_modprobe_config_survives_and_gains_the_ids(safety):
    dry = safety.text("dry.out")
    assert "-options vfio-pci ids=1002:67df" in dry and "+options vfio-pci ids=1002:67df,1b36:0010" in dry
    assert safety.text("vfio.conf.after") == (
        "# another GPU, passed through since last year\nblacklist nouveau\n"
        "options vfio-pci ids=1002:67df,1b36:0010\nsoftdep nvme pre: vfio-pci\n")
    assert safety.text("vfio.conf.backup") == OTHER
    assert safety.text("tools-after-apply.log").splitlines() == ["update-initramfs -u -k all"]


def test_undo_gives_everything_back(safety):
    assert safety.rc_of("undo") == 0, safety.text("undo.out") + safety.text("undo.err")
    assert safety.text("vfio.conf.undone") == OTHER
    s0, s2 = state(safety, "state0.txt"), state(safety, "state2.txt")
    assert s2[NVME]["driver"] == "nvme" and s2[NVME]["override"] == "(null)", s2[NVME]
    assert s2[NIC] == s0[NIC] and s2[HOST_NIC] == s0[HOST_NIC]
    # the initramfs is rebuilt again, from the restored file
    assert safety.text("tools.log").splitlines() == ["update-initramfs -u -k all"] * 2
    assert re.search(r"^restored /etc/modprobe.d/vfio.conf$", safety.text("undo.out"), re.M)
