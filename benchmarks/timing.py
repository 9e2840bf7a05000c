"""Timing one command the way a user runs it: whole processes, medians after a warm-up, peak memory.

Why apart from the runner (benchmarks/run.py): these are the measuring instruments, the same for
every section; the sections only say what is measured against what.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence


@dataclass
class Timing:
    """Median wall time and peak memory of repeated runs of one command."""

    command: Sequence[str]
    wall: List[float]
    peak_kb: int
    status: int
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.wall) if self.wall else float("nan")


def run_once(command: Sequence[str], budget: Optional[float] = None, stdout=None):
    """(wall seconds, exit status, stopped by the budget) of one run."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout if stdout is not None else subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    stopped = False
    while True:
        pid, status = os.waitpid(process.pid, os.WNOHANG if budget else 0)
        if pid:
            break
        if time.perf_counter() - started > budget:
            process.kill()
            stopped = True
            pid, status = os.waitpid(process.pid, 0)
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, process.returncode, stopped


def measure_together(commands: Sequence[Sequence[str]], runs: int, oks: Optional[Sequence] = None) -> List[Timing]:
    """:func:`measure` of each command, their runs taken in turn (A, B, C, A, B, C, ...) after a warm-up of each.

    Why in turn: the ratio of two commands is what a target checks, and a machine shared with others
    speeds up and slows down by a tenth or more within minutes. Measured one command after the other,
    such a drift showed as a ratio of 1.06 between a table and a JSON output whose code had not
    changed; taken in turn, it moves both medians alike. ``oks``: each command's accepted exit
    statuses (default 0 and 1).
    """
    oks = list(oks) if oks is not None else [(0, 1)] * len(commands)
    for command in commands:
        run_once(command)
    walls: List[List[float]] = [[] for _ in commands]
    statuses = [0] * len(commands)
    for _ in range(runs):
        for index, command in enumerate(commands):
            wall, statuses[index], _ = run_once(command)
            walls[index].append(wall)
    return [Timing(command, walls[i], peak_memory(command), statuses[i],
                   "" if statuses[i] in oks[i] else f"exit status {statuses[i]}") for i, command in enumerate(commands)]


def peak_memory(command: Sequence[str]) -> int:
    """The command's peak resident set in KB, from GNU time (0 when it is not installed).

    Not from our own ``wait4``: a child spawned by this (20 MB) Python process inherits its
    high-water mark across fork and exec, so every command would seem to need 20 MB. GNU time
    is small, and forks the command itself.
    """
    gnu_time = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if not gnu_time:
        return 0
    done = subprocess.run([gnu_time, "-f", "%M"] + list(command), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    last = done.stderr.strip().splitlines()[-1:] or ["0"]
    return int(last[0]) if last[0].isdigit() else 0


def measure(command: Sequence[str], runs: int, ok=(0, 1)) -> Timing:
    """Warm up once, then ``runs`` timed runs; a status outside ``ok`` is reported, not hidden."""
    return measure_together([command], runs, oks=[ok])[0]


def ms(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "—"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB" if kb else "— (needs GNU time)"


def interpreter_of(vfio_scan: str) -> str:
    """The Python that runs the ``vfio-scan`` script (its ``#!`` line), else this one."""
    script = Path(shutil.which(vfio_scan) or vfio_scan)
    first = script.read_text(errors="replace").splitlines()[0] if script.is_file() else ""
    return first[2:].strip() if first.startswith("#!") else sys.executable


def installed_editable(vfio_scan: str) -> bool:
    """Is vfio-scan installed editable (``pip install -e``)? Then a finder module is imported at the
    start of every process of that venv (the floor's and ``python -c pass`` too): start-up times are
    not those of the README's ``pip install .``."""
    code = ("import glob, os, site, sys\n"
            "print(any(glob.glob(os.path.join(p, '__editable__*vfio_scan*')) for p in site.getsitepackages()))")
    out = subprocess.run([interpreter_of(vfio_scan), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() == "True"


def compile_bytecode(vfio_scan: str) -> None:
    """Byte-compile vfio-scan's packages with its own interpreter first, so that no timed run pays for
    compiling (or does not, under PYTHONDONTWRITEBYTECODE) depending on what ran before."""
    python = interpreter_of(vfio_scan)
    code = ("import compileall, importlib, os, sys\n"
            "for name in ('scanner', 'rules', 'reports'):\n"
            "    compileall.compile_dir(os.path.dirname(importlib.import_module(name).__file__), quiet=1)\n")
    subprocess.run([python, "-c", code], check=False, env=dict(os.environ, PYTHONDONTWRITEBYTECODE=""))
