"""One flooding host in a fleet: ``vfio-scan fleet``'s peak memory is bounded by the cap on what a
host may send (``MAX_REPLY_BYTES``, scanner/fleet/collection.py), not by the flood.

The hosts are a fake ``ssh`` first on PATH, so that nothing but vfio-scan is measured: the word
after ``--`` is the host; ``node-NNNN`` answers with its snapshot from a fleet that
``fleetgen.py`` built (real collector output), ``flood`` sends zeros on stdout for ever, ``errflood``
on stderr. The same fleet runs without the flooding host, with the stdout flood and with the stderr
flood, ``--parallel 10``; ``run.py`` reports the three side by side.

Usage: ``python3 benchmarks/fleet_flood.py SNAPSHOT_DIR [--work DIR] [--vfio-scan PATH]`` prints
the three runs; ``benchmarks/run.py`` measures them into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from scanner.fleet.collection import ERROR_KEPT_BYTES, MAX_ERROR_BYTES, MAX_REPLY_BYTES, MIB

#: the flooding host of each run (None: the fleet without one)
FLOODS = {"no flooding host": None, "a host flooding stdout": "flood", "a host flooding stderr": "errflood"}
MAX_HOSTS = 100
CAPS = (f"A host may send {MAX_REPLY_BYTES // MIB} MiB on stdout and {MAX_ERROR_BYTES // MIB} MiB on stderr "
        f"(of which {ERROR_KEPT_BYTES >> 10} KiB are kept); past that it is stopped and reported.")

FAKE_SSH = """#!/bin/sh
# a fake ssh for the benchmark: the word after "--" is the host
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
cat >/dev/null  # the collector's source
case $2 in
  flood) exec cat /dev/zero ;;
  errflood) exec cat /dev/zero >&2 ;;
  *) exec cat "$FLEET_SNAPSHOTS/$2.json" ;;
esac
"""


@dataclass
class Setup:
    """The fake ssh's directory, the snapshots it answers with, and the hosts of the fleet."""

    bin_dir: Path
    snapshots: Path
    hosts: List[str]
    work: Path


def prepare(work: Path, snapshots: Path, hosts: int = MAX_HOSTS) -> Setup:
    """The fake ssh and ``hosts - 1`` well-behaved hosts (at most as many as there are snapshots)."""
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    names = sorted(p.stem for p in snapshots.glob("*.json"))[:hosts - 1]
    return Setup(bin_dir, snapshots, names, work)


def command(setup: Setup, vfio_scan: str, flooder: Optional[str]) -> List[str]:
    """The fleet run, with ``flooder`` as the last host; its report goes to a file beside the others."""
    hosts = setup.hosts + ([flooder] if flooder else [])
    hosts_file = setup.work / f"hosts-{flooder or 'clean'}.txt"
    hosts_file.write_text("".join(f"{host}\n" for host in hosts))
    return ["env", f"PATH={setup.bin_dir}:{os.environ.get('PATH', '')}", f"FLEET_SNAPSHOTS={setup.snapshots}",
            vfio_scan, "fleet", "--hosts-file", str(hosts_file), "--parallel", "10", "--timeout", "120",
            "--format", "json", "-o", str(report_path(setup, flooder))]


def report_path(setup: Setup, flooder: Optional[str]) -> Path:
    return setup.work / f"fleet-{flooder or 'clean'}.json"


def outcome(setup: Setup, flooder: Optional[str]) -> str:
    """What the run's report says: hosts scanned, and why the flooding host was not."""
    try:
        doc = json.loads(report_path(setup, flooder).read_text())
    except (OSError, ValueError) as exc:
        return f"no report ({exc})"
    scanned = sum(1 for host in doc["hosts"] if not host.get("notes"))
    reasons = [item["reason"] for item in doc["summary"]["host_errors"]]
    return f"{scanned} of {len(doc['hosts'])} hosts scanned" + (f"; {reasons[0]}" if reasons else "")


def main(argv=None) -> int:
    import shutil
    import subprocess

    from fleetgen import default_vfio_scan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshots", help="a directory of snapshots (fleetgen.py's)")
    parser.add_argument("--work", default=str(Path(__file__).resolve().parent / ".work" / "flood"))
    parser.add_argument("--vfio-scan", default=default_vfio_scan())
    args = parser.parse_args(argv)
    gnu_time = shutil.which("time") or "/usr/bin/time"  # GNU time (apt-get install time): wall and peak
    setup = prepare(Path(args.work), Path(args.snapshots))
    for label, flooder in FLOODS.items():
        done = subprocess.run([gnu_time, "-f", "%e s %M KB"] + command(setup, args.vfio_scan, flooder),
                              capture_output=True, text=True)
        print(f"{label}: exit {done.returncode}, {done.stderr.strip().splitlines()[-1]}; {outcome(setup, flooder)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
