"""Run every benchmark; with ``--write``, into the tracked ``benchmarks/RESULTS.md`` and the README.

Usage (from the checkout, with vfio-scan installed in a venv)::

    .venv/bin/python benchmarks/run.py                 # everything, about 10 minutes: --work/RESULTS.md
    .venv/bin/python benchmarks/run.py --write         # ... into benchmarks/RESULTS.md and README.md
    .venv/bin/python benchmarks/run.py --sizes 10,100 --runs 3 --hosts 100   # a quick look

Every number is a whole process, started the way a user starts it (``vfio-scan`` from the
venv's ``bin``), timed from fork to exit; the median of ``--runs`` runs after one warm-up run,
so that the page cache is warm for every contender alike. Where a target is a ratio, the
contenders' runs are taken in turn (``timing.measure_together``), so that a machine speeding up
or slowing down meanwhile moves them alike. Peak memory is the largest resident
set of one more run under GNU ``time`` (``apt-get install time``). Trees and snapshots are built once into
``--work`` (default ``benchmarks/.work``, reused while the generators' version is unchanged).

What runs side by side:

* ``vfio-scan scan --format json`` over trees of 10 to 10,000 PCI functions, without device
  targets and with every device a target, against the floor (``floor.py``: only lists and reads
  the files the rules need);
* the IOMMU group loop of the passthrough guides (``iommu_groups.sh``, one ``lspci -nns`` per
  device) against ``vfio-scan groups``, on this machine and on the trees; the loop is stopped at
  ``--loop-budget`` seconds and its time for the whole tree extrapolated from the devices done
  (a lower bound: the loop is quadratic); and the command's floor (``groups_floor.py``: only reads
  what it reads, confined as vfio-scan reads a tree, and plain);
* ``vfio-scan --version`` and a scan of this machine against libvirt's ``virt-host-validate``;
* one ``vfio-scan scan --snapshot DIR`` of ``--hosts`` snapshots into a JUnit file and a table;
* ``vfio-scan fleet`` of up to 100 fake ssh hosts, one of them flooding (``fleet_flood.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fleet_flood  # noqa: E402
import fleetgen  # noqa: E402
import treegen  # noqa: E402
from results import Results  # noqa: E402
from timing import compile_bytecode, mb, measure, measure_together, ms, peak_memory, run_once  # noqa: E402

TARGET_ARGS = [arg for cls in treegen.TARGET_CLASSES for arg in ("--class", cls)]
TARGETS = {  # what a user of each path waits at most, as ratios to a reference measured in the same run
    "tree_10k_s": 1.0,  # a 10,000-function tree, host rules
    "floor_host": 1.5, "floor_targets": 2.0,  # against the Python floor: host rules / every device a target
    "targets_peak_mb": 200,  # 10,000 functions, every device a target
    "format_ratio": 1.05,  # table and JUnit no slower than JSON (5% for noise)
    "version_ratio": 1.5,  # --version against `python -c pass`
    "vhv_ratio": 2.0,  # a scan of this machine against virt-host-validate
    "fleet_s": 3.0, "fleet_peak_mb": 150,  # 1,000 snapshots into JUnit + table
    "groups_10k_s": 1.0,  # `groups` on 10,000 functions
    "group_linear": 1.5,  # a 256-member group against a 16-member one, per target: time and report bytes
}
SHARED_GROUPS = (16, 256)


class Bench(Results):
    """Everything one run measures, written into its page (:class:`results.Results`)."""

    def __init__(self, args):
        super().__init__(args.runs, args.vfio_scan)
        self.args = args
        self.python = args.python
        self.work = Path(args.work)

    # -- inputs -----------------------------------------------------------------------------
    def tree(self, functions: int) -> Path:
        path = self.work / f"tree-v{treegen.GENERATOR_VERSION}-{functions}"
        if not (path / ".complete").exists():
            shutil.rmtree(path, ignore_errors=True)
            treegen.build(path, functions)
            (path / ".complete").write_text("")
        return path

    def fleet(self, hosts: int) -> Path:
        path = self.work / f"fleet-v{treegen.GENERATOR_VERSION}-{hosts}"
        if not (path / ".complete").exists():
            shutil.rmtree(path, ignore_errors=True)
            fleetgen.build(path / "snapshots", hosts, self.vfio_scan)
            (path / ".complete").write_text("")
        return path / "snapshots"

    # -- sections ---------------------------------------------------------------------------
    def trees(self, sizes: Sequence[int]) -> None:
        runs = self.args.runs
        rows = []
        per_function = {}
        for size in sizes:
            tree = self.tree(size)
            scan = [self.vfio_scan, "scan", "--root", str(tree), "--format", "json"]
            floor = [self.python, str(HERE / "floor.py"), str(tree)]
            for label, extra, floor_extra in (("host rules", [], []), ("every device a target", TARGET_ARGS,
                                                                       ["--devices"])):
                got, base, stack = measure_together([scan + extra, floor + floor_extra,
                                                     floor + floor_extra + ["--stack"]], runs)
                ratio = got.median / base.median
                per_function[(label, size)] = got.median / size
                rows.append(f"| {size:,} | {label} | {ms(got.median)} | {mb(got.peak_kb)} | {ms(base.median)} | "
                            f"{ratio:.1f}× | {got.median / size * 1e6:,.0f} µs | {got.note or 'ok'} |")
                limit = TARGETS["floor_targets" if extra else "floor_host"]
                self.check(f"{size:,} functions, {label}: within {limit:g}× of the floor", ratio <= limit,
                           f"{ratio:.1f}× (the floor importing pluggy, argparse and json first: "
                           f"{stack.median / base.median:.1f}×)")
                if size == 10000 and not extra:
                    self.check("10,000-function tree scanned in under 1 s", got.median < TARGETS["tree_10k_s"],
                               ms(got.median))
                if size == 10000 and extra:
                    self.check(f"10,000 functions, every device a target: peak under {TARGETS['targets_peak_mb']} MB",
                               0 < got.peak_kb < TARGETS["targets_peak_mb"] * 1024, mb(got.peak_kb))
                if size == max(sizes) and extra:
                    rows += self.formats(scan + extra, size)
        self.section("Trees: `vfio-scan scan --format json` against the floor",
                      "The floor (`benchmarks/floor.py`) only lists and reads the files the rules need "
                      "(with targets: every device's files too). Per function: the scan's median over the "
                      "tree's functions.",
                      ["functions", "targets", "vfio-scan", "peak", "floor", "ratio", "per function", "status"],
                      rows)
        for label in ("host rules", "every device a target"):
            self.flatness(label, {size: per_function[(label, size)] * size for size in sizes})

    def formats(self, command: List[str], size: int) -> List[str]:
        """The same scan as a table and as JUnit, against its JSON (measured again, in turn with them): the
        human formats are no slower."""
        rows = []
        json_run, *others = measure_together([command] + [[c if c != "json" else fmt for c in command]
                                                          for fmt in ("table", "junit")], self.args.runs)
        for fmt, got in zip(("table", "junit"), others):
            ratio = got.median / json_run.median
            rows.append(f"| {size:,} | every device a target, `--format {fmt}` | {ms(got.median)} | {mb(got.peak_kb)} "
                        f"| JSON {ms(json_run.median)} | {ratio:.2f}× | | {got.note or 'ok'} |")
            self.check(f"{size:,} functions, every device a target: {fmt} no slower than JSON",
                       ratio <= TARGETS["format_ratio"], f"{ratio:.2f}×")
        return rows

    def shared_group(self) -> None:
        """Every member of one big IOMMU group a target: time and report size per target stay flat."""
        rows, per_target = [], {}
        for members in SHARED_GROUPS:
            tree = self.work / f"shared-v{treegen.GENERATOR_VERSION}-{members}"
            if not (tree / ".complete").exists():
                shutil.rmtree(tree, ignore_errors=True)
                treegen.build_shared_group(tree, members)
                (tree / ".complete").write_text("")
            command = [self.vfio_scan, "scan", "--root", str(tree), "--class", "02", "--format", "json"]
            got = measure(command, self.args.runs)
            size = len(subprocess.run(command, capture_output=True).stdout)
            per_target[members] = (got.median / members, size / members)
            rows.append(f"| {members} | {ms(got.median)} | {mb(got.peak_kb)} | {size / 1e3:,.0f} kB | "
                        f"{got.median / members * 1e3:.2f} ms | {size / members / 1e3:.1f} kB | {got.note or 'ok'} |")
        (small, big) = SHARED_GROUPS
        for index, what in ((0, "time"), (1, "report bytes")):
            growth = per_target[big][index] / per_target[small][index]
            self.check(f"a {big}-member group, every member a target: {what} per target within "
                       f"{TARGETS['group_linear']:g}× of a {small}-member group's", growth <= TARGETS["group_linear"],
                       f"{growth:.2f}×")
        self.section("One IOMMU group of many targets", "VFs of one PF in one IOMMU group, all on vfio-pci and all "
                     "targets (`--class 02`): a report grows with targets x blockers, not with targets x members.",
                     ["members", "wall", "peak", "report", "per target", "report per target", "status"], rows)

    def flatness(self, label: str, medians: dict) -> None:
        """The cost of each added function, between the two largest tree pairs: flat, not growing."""
        sizes = sorted(medians)
        if len(sizes) < 3:
            return
        (a, b, c) = sizes[-3:]
        before = (medians[b] - medians[a]) / (b - a)
        after = (medians[c] - medians[b]) / (c - b)
        growth = after / before if before > 0 else float("inf")
        self.check(f"cost per added function flat ({label}): {a:,}→{b:,} against {b:,}→{c:,}",
                   growth <= 1.5, f"{before * 1e6:,.0f} µs → {after * 1e6:,.0f} µs ({growth:.2f}×)")

    def groups(self, sizes: Sequence[int]) -> None:
        rows = []
        lspci = shutil.which("lspci")
        loop = ["bash", str(HERE / "iommu_groups.sh")]
        for label, where in [("this machine", None)] + [(f"tree of {s:,}", self.tree(s)) for s in sizes]:
            groups = [self.vfio_scan, "groups"] + (["--root", str(where)] if where else [])
            floor = [self.python, str(HERE / "groups_floor.py"), str(where or "/")]
            ours, confined, plain = measure_together([groups, floor, floor + ["--plain"]], self.args.runs)
            if lspci:
                theirs, devices = self.loop(loop + ([str(where / "sys")] if where else []), where)
                theirs_text = theirs
            else:
                theirs_text, devices = "lspci not installed (apt-get install pciutils)", "—"
            rows.append(f"| {label} | {devices} | {theirs_text} | {ms(ours.median)} | {mb(ours.peak_kb)} | "
                        f"{ms(confined.median)} | {ms(plain.median)} |")
            if where is not None and where == self.tree(10000):
                self.check("`groups` on 10,000 functions under 1 s", ours.median < TARGETS["groups_10k_s"],
                           f"{ms(ours.median)} (its reads alone in a bare loop: {ms(confined.median)} confined as "
                           f"vfio-scan reads, {ms(plain.median)} plain)")
        self.section("IOMMU groups: the guides' shell loop against `vfio-scan groups`",
                     "The loop (`benchmarks/iommu_groups.sh`) runs `lspci -nns` once per device, and each "
                     f"`lspci` reads the whole bus: quadratic. It is stopped after {self.args.loop_budget:.0f} s "
                     "and its time for the whole tree extrapolated linearly from the devices it had listed: a lower "
                     "bound, since each later `lspci` has as much to read (marked ≥). The floor "
                     "(`benchmarks/groups_floor.py`) only reads what `groups` reads, in a bare loop: with the "
                     "system calls vfio-scan's confined reads make (each directory opened by name inside its "
                     "parent, links followed by hand, each file's type checked before and after it is opened), "
                     "and plain (each path opened whole).",
                     ["host", "devices", "shell loop", "vfio-scan groups", "peak", "floor, confined",
                      "floor, plain"], rows)

    def loop(self, command, tree) -> tuple:
        """Time the shell loop once (it is slow); extrapolate when the budget stops it."""
        sysfs = (tree / "sys") if tree else Path("/sys")
        groups = sysfs / "kernel" / "iommu_groups"
        devices = sum(len(os.listdir(groups / g / "devices")) for g in os.listdir(groups)) if groups.is_dir() else 0
        output = self.work / "loop.out"
        with open(output, "wb") as sink:
            wall, _, stopped = run_once(command, budget=self.args.loop_budget, stdout=sink)
        done = output.read_bytes().count(b"\n")
        if not stopped:
            return ms(wall), f"{devices:,}"
        if not done:
            return f"> {ms(wall)} (none listed)", f"{devices:,}"
        return f"≥ {ms(wall * devices / done)} ({done:,} listed in {ms(wall)})", f"{devices:,}"

    def this_machine(self) -> None:
        runs = max(self.args.runs, 10)
        # What any command installed by pip, and any scan, costs before vfio-scan's first line: the
        # wrapper pip writes for a console script imports re; the design's plugin manager (pluggy) and
        # the standard library's argument parser and JSON come before any check. Set beside the
        # targets, they show how much of a ratio is ours.
        vhv = shutil.which("virt-host-validate")
        commands = [[self.python, "-c", "pass"], [self.python, "-c", "import re, sys"],
                    [self.python, "-c", "import pluggy, argparse, json"], [self.vfio_scan, "--version"],
                    [self.vfio_scan, "scan", "--format", "json"]] + ([[vhv], [vhv, "qemu"]] if vhv else [])
        timings = measure_together(commands, runs, oks=[(0,)] * 4 + [(0, 1)] + [range(256)] * 2)
        python, wrapper, stack, version, scan = timings[:5]
        rows = [f"| `python -c pass` | {ms(python.median)} | {mb(python.peak_kb)} | the interpreter alone |",
                f"| `python -c 'import re, sys'` | {ms(wrapper.median)} | {mb(wrapper.peak_kb)} | "
                "what pip's wrapper of any console script imports |",
                f"| `python -c 'import pluggy, argparse, json'` | {ms(stack.median)} | {mb(stack.peak_kb)} | "
                "the plugin manager, argument parser and JSON every scan needs |",
                f"| `vfio-scan --version` | {ms(version.median)} | {mb(version.peak_kb)} | {version.note or 'ok'} |",
                f"| `vfio-scan scan --format json` | {ms(scan.median)} | {mb(scan.peak_kb)} | {scan.note or 'ok'} |"]
        ratio = version.median / python.median
        self.check(f"`vfio-scan --version` within {TARGETS['version_ratio']:g}× of `python -c pass`",
                   ratio <= TARGETS["version_ratio"], f"{ms(version.median)}, {ratio:.1f}× "
                   f"(pip's wrapper alone: {wrapper.median / python.median:.1f}×)")
        if vhv:
            theirs, qemu = timings[5:]
            rows += [f"| `virt-host-validate` | {ms(theirs.median)} | {mb(theirs.peak_kb)} | checks QEMU and LXC |",
                     f"| `virt-host-validate qemu` | {ms(qemu.median)} | {mb(qemu.peak_kb)} | checks QEMU |"]
            ratio = scan.median / theirs.median
            self.check(f"scan of this machine within {TARGETS['vhv_ratio']:g}× of virt-host-validate",
                       ratio <= TARGETS["vhv_ratio"], f"{ratio:.1f}× (importing pluggy, argparse and json alone: "
                       f"{stack.median / theirs.median:.1f}×)")
        else:
            rows.append("| `virt-host-validate` | — | — | not installed (apt-get install libvirt-clients) |")
        self.section("This machine: start-up and a scan, against libvirt's `virt-host-validate`",
                     f"Median of {runs} runs each, taken in turn.", ["command", "wall", "peak", "note"], rows)

    def fleet_merge(self, hosts: int) -> None:
        snapshots = self.fleet(hosts)
        junit, table = self.work / "fleet.xml", self.work / "fleet.txt"
        got = measure([self.vfio_scan, "scan", "--snapshot", str(snapshots), "--class", "0300",
                       "--junit", str(junit), "-o", str(table)], self.args.runs)
        size = sum(p.stat().st_size for p in snapshots.glob("*.json"))
        suites = junit.read_text().count("<testsuite ") if junit.exists() else 0
        self.section(f"Fleet: {hosts:,} snapshots merged into one JUnit file and one table",
                     "`vfio-scan scan --snapshot DIR --class 0300 --junit FILE -o TABLE`: eight kinds of host "
                     "(`benchmarks/fleetgen.py`), each GPU a target.",
                     ["hosts", "snapshots", "wall", "peak", "JUnit suites", "status"],
                     [f"| {hosts:,} | {size / 1e6:.0f} MB | {ms(got.median)} | {mb(got.peak_kb)} | {suites:,} | "
                      f"{got.note or 'ok'} |"])
        if hosts >= 1000:
            self.check(f"{hosts:,} snapshots into JUnit + table in under {TARGETS['fleet_s']:g} s, peak under "
                       f"{TARGETS['fleet_peak_mb']} MB", got.median < TARGETS["fleet_s"]
                       and 0 < got.peak_kb < TARGETS["fleet_peak_mb"] * 1024, f"{ms(got.median)}, {mb(got.peak_kb)}")

    def fleet_flood(self, hosts: int) -> None:
        """Peak memory of a fleet with one flooding host: what the flood adds is at most the cap."""
        setup = fleet_flood.prepare(self.work / "flood", self.fleet(hosts), fleet_flood.MAX_HOSTS)
        rows, peaks = [], {}
        for label, flooder in fleet_flood.FLOODS.items():
            command = fleet_flood.command(setup, self.vfio_scan, flooder)
            wall, status, _ = run_once(command)
            peaks[flooder] = peak_memory(command)
            rows.append(f"| {label} | {len(setup.hosts) + bool(flooder)} | {ms(wall)} | {mb(peaks[flooder])} | "
                        f"{status} | {fleet_flood.outcome(setup, flooder)} |")
        self.section("Fleet: one flooding host among many (`vfio-scan fleet` over a fake ssh)",
                     "Every host is a fake `ssh` first on PATH (`benchmarks/fleet_flood.py`): the others answer "
                     "with a fleetgen snapshot, the flooding one sends zeros for ever, on stdout or on stderr; "
                     f"`--parallel 10`. {fleet_flood.CAPS}",
                     ["fleet", "hosts", "wall", "peak", "exit", "report"], rows)
        cap_kb = fleet_flood.MAX_REPLY_BYTES >> 10
        if all(peaks.values()):
            extra = max(peaks["flood"], peaks["errflood"]) - peaks[None]
            self.check(f"peak bounded by the cap, not by the flood: a flooding host adds at most the "
                       f"{cap_kb >> 10} MiB cap (+25%)", extra <= cap_kb * 1.25,
                       f"+{extra / 1024:.0f} MB ({mb(peaks[None])} → {mb(max(peaks['flood'], peaks['errflood']))})")
        else:
            self.check("peak bounded by the cap, not by the flood", False, "not measured (needs GNU time)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000", help="tree sizes in PCI functions (comma-separated)")
    parser.add_argument("--hosts", type=int, default=1000, help="snapshots in the fleet (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default 5)")
    parser.add_argument("--loop-budget", type=float, default=60.0,
                        help="seconds the shell loop may run on one host before it is stopped (default 60)")
    parser.add_argument("--work", default=str(HERE / ".work"), help="where trees and snapshots are built")
    parser.add_argument("--output", help="the Markdown written (default: RESULTS.md in --work; with --write, "
                                          "the tracked benchmarks/RESULTS.md)")
    parser.add_argument("--write", action="store_true",
                        help="write the tracked benchmarks/RESULTS.md and the README's table of targets")
    parser.add_argument("--vfio-scan", default=fleetgen.default_vfio_scan(), help="the vfio-scan to measure")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the floor")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: not a comma-separated list of numbers")
    if not shutil.which(args.vfio_scan):
        parser.error(f"--vfio-scan {args.vfio_scan}: not found (install vfio-scan in the venv first)")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    output = Path(args.output or (HERE / "RESULTS.md" if args.write else Path(args.work) / "RESULTS.md"))
    compile_bytecode(args.vfio_scan)
    started = time.perf_counter()
    bench = Bench(args)
    bench.trees(sizes)
    bench.groups(sizes)
    bench.shared_group()
    bench.this_machine()
    bench.fleet_merge(args.hosts)
    bench.fleet_flood(args.hosts)
    bench.write(output, started)
    print(f"wrote {output}")
    if args.write:
        readme = HERE.parent / "README.md"
        readme.write_text(with_targets(readme.read_text(), bench.verdicts))
        print(f"updated the table of targets in {readme}")
    return 0


BEGIN, END = "<!-- benchmarks: targets -->", "<!-- benchmarks: end -->"


def with_targets(readme: str, verdicts: List[str]) -> str:
    """The README with its table of targets (between the two markers) replaced by this run's."""
    if BEGIN not in readme or END not in readme:
        return readme
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    table = ["| target | measured | |", "|---|---|---|"] + verdicts
    return head + BEGIN + "\n" + "\n".join(table) + "\n" + END + tail


if __name__ == "__main__":
    sys.exit(main())
