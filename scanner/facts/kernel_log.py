"""Kernel log lines, whatever wrapping they come in.

Accepted shapes: plain ``dmesg`` (``[    0.000000] msg``), the journal / syslog
(``Oct 31 20:09:02 host kernel: msg`` or ISO time stamps), mail quoting (``> ``), and
quoted-printable mail bodies (``=3D``, soft line breaks). Each line is reduced to the kernel's
message text. The log only ever corroborates: rules decide on sysfs.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Pattern, Tuple, Union

from scanner.base.lazyre import lazy_compile
from scanner.base.record import field, record

_QUOTE = lazy_compile(r"^(?:\s*>)+ ?")
_STAMP = lazy_compile(r"^\s*(?:<\d+>)?\[\s*[0-9]+\.[0-9]+\]\s?")
_SYSLOG = lazy_compile(
    # time and host of every journal/syslog line; ``kernel:`` too, while other senders keep their
    # name (``systemd[1]: ...``), as they appear in plain dmesg when they write to /dev/kmsg
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[0-9:.,+\-]+Z?)\s+\S+\s+(?:kernel:\s?)?"
)
_QP_SOFT_BREAK = lazy_compile(r"=\r?\n")
_QP_HEX = lazy_compile(r"=([0-9A-F]{2})")


def _undo_quoted_printable(text: str) -> str:
    text = _QP_SOFT_BREAK.sub("", text)
    return _QP_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


def message_of(line: str) -> str:
    line = _QUOTE.sub("", line)
    line = _SYSLOG.sub("", line)
    line = _STAMP.sub("", line)
    return line.strip()


@record(frozen=True)
class KernelLog:
    """The kernel log's messages, where they came from, or why there are none."""

    messages: Tuple[str, ...] = ()
    source: Optional[str] = None
    reason: Optional[str] = None  # why there is no log, when there is none
    _with: Dict[Union[str, Pattern], Tuple[str, ...]] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def available(self) -> bool:
        return self.reason is None

    def grep(self, pattern: Union[str, Pattern]) -> List[str]:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return list(filter(rx.search, self.messages))  # a scan greps a log of thousands of lines a dozen times

    def with_text(self, text: str) -> Tuple[str, ...]:
        """The messages that contain ``text``, found once per log: a rule that looks for one kind of
        line per device (``<address>: ...``) searches these few, not the whole log per device."""
        found = self._with.get(text)
        if found is None:
            found = self._with[text] = tuple(m for m in self.messages if text in m)
        return found

    def with_match(self, pattern: Union[str, Pattern]) -> Tuple[str, ...]:
        """:meth:`grep` found once per log: a rule that asks it for each device searches the log once."""
        found = self._with.get(pattern)
        if found is None:
            found = self._with[pattern] = tuple(self.grep(pattern))
        return found

    def about(self, address: str, pattern: Union[str, Pattern]) -> List[str]:
        """``grep(address + ":.*" + pattern)``, searched in the few messages ``pattern`` matches (found
        once per log), not in the whole log once per device."""
        candidates = self.with_match(pattern)
        if not candidates:
            return []
        rx = re.compile(re.escape(address) + r":.*" + (pattern if isinstance(pattern, str) else pattern.pattern))
        return [m for m in candidates if rx.search(m)]

    def first(self, pattern: Union[str, Pattern]) -> Optional[str]:
        """``grep(pattern)[0]``, or None: the log searched only as far as the first match."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return next(filter(rx.search, self.messages), None)


def parse_kernel_log(text: str, source: str) -> KernelLog:
    if text.count("=3D") >= 2 or re.search(r"=\r?\n", text) and "=3D" in text:
        text = _undo_quoted_printable(text)
    messages = tuple(m for m in (message_of(line) for line in text.splitlines()) if m)
    return KernelLog(messages=messages, source=source)
