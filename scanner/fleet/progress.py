"""The live progress line of a fleet run: on stderr, and only when stderr is a terminal.

Why only then: in CI logs and pipes a carriage-return line is noise (and stdout carries the
report), so nothing is drawn there; the report itself says everything the line said.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Optional, TextIO

from scanner.base.terminal_text import for_terminal


class Progress:
    """``progress(done, total, job, report)`` redraws ``vfio-scan fleet: 12/40 hosts, 2 could not be scanned; last: gpu07 NOT_READY``."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stderr
        self.problems = 0
        self.drawn = False
        self.stopped = False
        self.width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)

    @staticmethod
    def wanted(stream: Optional[TextIO] = None) -> bool:
        stream = stream or sys.stderr
        return hasattr(stream, "isatty") and stream.isatty()

    def start(self, total: int) -> None:
        self._draw(f"vfio-scan fleet: 0/{total} hosts ...")

    def __call__(self, done: int, total: int, job, report) -> None:
        if report.notes:
            self.problems += 1
        state = "could not be scanned" if report.notes else report.readiness
        extra = f", {self.problems} could not be scanned" if self.problems else ""
        self._draw(f"vfio-scan fleet: {done}/{total} hosts{extra}; last: {for_terminal(str(job.label))} {state}")
        if done == total:  # gone before the report is written to the same terminal
            self.finish()

    def stop(self) -> None:
        """The run is being stopped (a signal): the line goes and is not drawn again. Called from a
        signal handler: written to the descriptor, never into the stream's buffer it may be filling."""
        self.stopped = True
        if self.drawn:
            self.drawn = False
            try:
                os.write(self.stream.fileno(), ("\r" + " " * self.width + "\r").encode())
            except (AttributeError, OSError, ValueError):
                pass

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.drawn = False

    def _draw(self, text: str) -> None:
        if self.stopped:
            return
        self.stream.write("\r" + text[: self.width].ljust(self.width))
        self.stream.flush()
        self.drawn = True
