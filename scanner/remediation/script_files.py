"""Configuration-file changes in the remediation script: each one a guarded ``put_file`` of exact content.

A block never edits a file in place with ``sed``: scanner/remediation/confedit.py computes the file's whole
new text from the text the scan read, and the block hands that text to the runtime's
``put_file`` (scanner/remediation/script_runtime.py) together with the sha256 the file must still have.
When several blocks change one file (the kernel command line for VFIO-004, then ``vfio-pci.ids=``
for VFIO-013), :class:`FileLedger` chains them: each block starts from what the previous one
made, and every block knows the file's final content, so a second run finds each step done.
"""

from __future__ import annotations

import shlex
from typing import Dict, List, Mapping, Optional

from scanner.remediation.confedit import EditError, digest, writable_text

#: Files a script may change, by prefix: nothing else is ever written (udev rules and modprobe.d
#: files by name, the boot loader's two configuration files, systemd units, limits.d files).
ALLOWED_FILES = ("/etc/modules-load.d/", "/etc/modprobe.d/", "/etc/udev/rules.d/", "/etc/systemd/system/",
                 "/etc/default/grub", "/etc/kernel/cmdline", "/etc/security/limits.d/",
                 "/etc/initramfs-tools/modules", "/etc/dracut.conf.d/")


class Raw(str):
    """A script line written at column 0 (heredoc content), never indented by the assembler."""


def allowed_file(path: str) -> str:
    """``path`` if the script may write it: a known configuration location, plain characters, no ``..``."""
    if not isinstance(path, str) or not path.startswith(ALLOWED_FILES) or ".." in path or not all(
            ch.isalnum() or ch in "/._-" for ch in path):
        raise EditError(f"refusing to write {path!r}: not a configuration file this script may change")
    return path


class FileLedger:
    """What each file holds at each point of the script: scanned, then as each block leaves it."""

    def __init__(self):
        self._now: Dict[str, Optional[str]] = {}
        self._finals: Dict[str, str] = {}  # path -> marker replaced by the final digest at the end

    def know(self, state: Mapping) -> None:
        """Learn a file as the scan read it (the first time it is named)."""
        path = allowed_file(state.get("path"))
        if path in self._now:
            return
        if state.get("reason"):
            raise EditError(f"{path} could not be read when scanned ({state['reason']}): make this change by hand")
        text = state.get("text")
        self._now[path] = text if text is None else writable_text(path, text)

    def text(self, path: str) -> Optional[str]:
        """What the file holds at this point of the script (None: it does not exist)."""
        if path not in self._now:
            raise EditError(f"{path}: not read by the scan, so the change cannot be merged into it")
        return self._now[path]

    def put(self, path: str, new: str) -> List[str]:
        """Lines of a ``put_file`` giving ``path`` the text ``new``; nothing when it already has it."""
        path = allowed_file(path)
        before = self.text(path)
        if new and not new.endswith("\n"):
            new += "\n"  # a heredoc ends every line; the digest must be of what lands on disk
        writable_text(path, new)
        if new == before:
            return [f"say {_quote('unchanged: ' + path)}"]
        self._now[path] = new
        marker = self._finals.setdefault(path, f"@@FINAL{len(self._finals)}@@")
        delimiter = "VFIO_SCAN_EOF"
        while delimiter in new.split("\n"):
            delimiter += "_"
        return ([f"put_file {path} {digest(before)} {digest(new)} {marker} <<'{delimiter}'"]
                + [Raw(line) for line in new.split("\n")[:-1]] + [Raw(delimiter)])

    def finish(self, script: str) -> str:
        """The script with each file's final digest in place of its marker."""
        for path, marker in self._finals.items():
            script = script.replace(marker, digest(self._now[path]))
        return script


def _quote(text: str) -> str:
    return shlex.quote(text)


__all__ = ["ALLOWED_FILES", "FileLedger", "Raw", "allowed_file"]
