"""The Markdown page a benchmark run writes: its sections' tables, its verdict on each target, the machine.

Why apart from the runner (benchmarks/run.py): the sections there measure and judge; how a
verdict or a table is written down, and what the page says about the machine it ran on, is here.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import List
from timing import installed_editable


class Results:
    """The page being built: one section per measurement, one verdict line per target."""

    def __init__(self, runs: int, vfio_scan: str):
        self.runs = runs
        self.vfio_scan = vfio_scan
        self.lines: List[str] = []
        self.verdicts: List[str] = []

    def check(self, what: str, met: bool, measured: str) -> None:
        self.verdicts.append(f"| {what} | {measured} | {'met' if met else '**missed**'} |")

    def section(self, title: str, text: str, header: List[str], rows: List[str]) -> None:
        self.lines += [f"## {title}", "", text, "", "| " + " | ".join(header) + " |",
                       "|" + "|".join("---" for _ in header) + "|"] + rows + [""]

    def write(self, path: Path, started: float) -> None:
        head = ["# vfio-scan benchmarks", "",
                f"Written by `benchmarks/run.py` on {datetime.date.today().isoformat()} in "
                f"{time.perf_counter() - started:.0f} s: medians of {self.runs} runs after a warm-up; "
                "peak = the largest resident set (GNU time's %M).", "", "Machine: " + machine(self.vfio_scan), "",
                "## Targets", "", "| target | measured | |", "|---|---|---|"] + self.verdicts + [""]
        path.write_text("\n".join(head + self.lines))


def machine(vfio_scan: str) -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    version = subprocess.run([vfio_scan, "--version"], capture_output=True, text=True).stdout.strip()
    tools = []
    for tool, flag in (("lspci", "--version"), ("virt-host-validate", "--version")):
        if shutil.which(tool):
            out = subprocess.run([tool, flag], capture_output=True, text=True)
            tools.append(f"{tool} {(out.stdout or out.stderr).strip().split()[-1]}")
    install = ("installed editable (`pip install -e`: its finder starts with every process of the venv)"
               if installed_editable(vfio_scan) else "installed with `pip install .`")
    return (f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB; Linux {platform.release()}; "
            f"Python {platform.python_version()}; {version}, {install}" + ("; " + ", ".join(tools) if tools else ""))
