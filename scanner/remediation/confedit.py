"""Exact edits of the configuration files a fix changes: merged into what is there, never clobbered.

A fix that writes ``/etc/modprobe.d/vfio.conf`` whole loses another device's ``ids=``, the
blacklist lines and the comments someone put there; a ``sed`` that assumes double quotes leaves
``GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'`` unchanged and says "edited". So every change is
computed here, from the text the scan read, as the file's whole new text: existing lines are
kept, only the lines that must change change, and an edit that cannot be made safely (quoting
this module does not rewrite, an unreadable file) raises :class:`EditError` instead of guessing.
The remediation script then writes that text only if the file still holds what was scanned
(scanner/remediation/script_files.py), and the commands shown to a person are derived from the same edit
(:func:`edit_commands`).

Pure functions of text: no file is opened here.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.facts.grub import GRUB_DROPINS, GRUB_MAIN, GRUB_VARS, grub_assignments, grub_parameters, unquoted  # noqa: F401

VFIO_CONF = "/etc/modprobe.d/vfio.conf"


class EditError(ValueError):
    """The edit cannot be made safely; the message says where and what a person must do instead."""


def file_state(path: str, text: Optional[str], reason: Optional[str] = None) -> dict:
    """A file as the scan read it, in the JSON form remediation actions carry.

    ``text`` None and ``reason`` None: the file does not exist; ``reason`` set: it could not be read.
    """
    return {"path": path, "text": text, "reason": reason}


def digest(text: Optional[str]) -> str:
    """sha256 of the file's bytes, or ``absent``: what the script compares before it writes."""
    if text is None:
        return "absent"
    return _sha256()(text.encode("utf-8", "surrogateescape")).hexdigest()


def _sha256():
    """The sha256 constructor. hashlib's is OpenSSL's, and importing hashlib loads OpenSSL: milliseconds
    and megabytes of every scan that proposes a fix. The interpreter's own module computes the same digest."""
    try:
        from _sha2 import sha256  # Python 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:  # an interpreter built without them
            from hashlib import sha256
    return sha256


def writable_text(path: str, text: str) -> str:
    """``text`` if it can go into a script verbatim (printable lines, tabs); else EditError."""
    for number, line in enumerate(text.split("\n"), 1):
        if line and not line.replace("\t", " ").isprintable():
            raise EditError(f"{path} line {number} holds control characters: edit it by hand")
    return text


def _readable(state: Mapping) -> Optional[str]:
    if state.get("reason"):
        raise EditError(f"{state['path']} could not be read ({state['reason']}): the change cannot be merged "
                        "into it; make it by hand")
    return state.get("text")


def _lines(text: Optional[str]) -> List[str]:
    return (text or "").splitlines(keepends=True)


def _append(text: Optional[str], line: str) -> str:
    text = text or ""
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line + "\n"


# -- plain line lists: modules-load.d, modprobe.d options, udev rule files -------------------

def ensure_lines(text: Optional[str], lines: Sequence[str], same=lambda a, b: a == b) -> str:
    """``text`` with each of ``lines`` appended unless a line already says it (``same``)."""
    present = [line.strip() for line in _lines(text)]
    for wanted in lines:
        if not any(same(have, wanted) for have in present):
            text = _append(text, wanted)
            present.append(wanted)
    return text or ""


def module_name_equal(a: str, b: str) -> bool:
    """modules-load.d lines: ``vfio-pci`` and ``vfio_pci`` name one module."""
    return a.replace("-", "_") == b.replace("-", "_")


def own_rule(text: Optional[str], rule: str, key: str) -> str:
    """A udev rules file with ``rule`` as the one line containing ``key`` (``KERNEL=="0000:01:00.0"``).

    An older rule of ours for the same device (another VF count) would fight the new one, so it
    is replaced; every other line (comments, rules for other devices) stays.
    """
    kept = [line for line in _lines(text) if key not in line or line.rstrip("\n") == rule]
    return ensure_lines("".join(kept), [rule])


def own_limits(text: Optional[str], domain: str, item: str, lines: Sequence[str]) -> str:
    """A limits.d file with ``lines`` as the only ones setting ``item`` for ``domain`` (``libvirt-qemu soft
    memlock 17825792``): an older value of ours would be read after it and win; every other line stays."""
    def sets_it(line: str) -> bool:
        words = line.split("#", 1)[0].split()
        return len(words) >= 3 and words[0] == domain and words[2].lower() == item
    kept = [line for line in _lines(text) if not sets_it(line) or line.rstrip("\n") in lines]
    return ensure_lines("".join(kept), lines)


# -- vfio-pci ids in /etc/modprobe.d ------------------------------------------------------------

_OPTIONS = lazy_compile(r"^(\s*options\s+)(vfio[-_]pci)(\s+)(.*?)\s*$")
#: The first line of an ``options vfio-pci`` kmod joins with the ones after it (it ends in a backslash).
_CONTINUED_VFIO = lazy_compile(r"^\s*options\s+vfio[-_]pci\b")


def _softdep_present(texts: Sequence[str], module: str) -> bool:
    pattern = re.compile(r"^\s*softdep\s+%s\s.*\bpre:.*\bvfio[-_]pci\b" % re.escape(module), re.M)
    return any(pattern.search(text) for text in texts)


def merge_vfio_ids(files: Sequence[Mapping], ids: Sequence[str], softdeps: Sequence[str] = (),
                   default_path: str = VFIO_CONF) -> Tuple[str, Dict[str, str]]:
    """(file, {path: new text}) adding ``ids`` to the ``options vfio-pci ids=`` that takes effect.

    modprobe reads /etc/modprobe.d/*.conf in name order and passes every ``options`` line; the
    kernel keeps the last ``ids=``, so the ids go into that last line (another device's ids in it
    stay). Without one, the line is added to ``default_path``. Softdeps that no file has yet go
    into the same file.
    """
    ordered = sorted(files, key=lambda f: (f["path"].rsplit("/", 1)[-1], f["path"]))
    texts = {f["path"]: _readable(f) for f in ordered}
    for path, text in texts.items():
        for line in _lines(text):
            if line.rstrip("\n").endswith("\\") and _CONTINUED_VFIO.match(line):
                # kmod joins it with the next line: an ids= there is not on this line, and one added
                # after it would be the kernel's last, dropping the ids it names
                raise EditError(f"{path}: an options line for vfio-pci goes on over several lines (a backslash at "
                                f"its end); add the ids to it by hand")
    winner: Optional[Tuple[str, int, re.Match]] = None
    for path, text in texts.items():
        for index, line in enumerate(_lines(text)):
            m = _OPTIONS.match(line)
            if m and any(tok.startswith("ids=") for tok in m.group(4).split()):
                winner = (path, index, m)
    if winner is None:
        path = default_path
        new = ensure_lines(texts.get(path), [f"options vfio-pci ids={','.join(ids)}"])
    else:
        path, index, m = winner
        tokens = m.group(4).split()
        at = max(i for i, tok in enumerate(tokens) if tok.startswith("ids="))
        have = [i for i in tokens[at][4:].split(",") if i]
        merged = have + [i for i in ids if i not in have]
        tokens[at] = "ids=" + ",".join(merged)
        lines = _lines(texts[path])
        ending = "\n" if lines[index].endswith("\n") else ""
        lines[index] = f"{m.group(1)}{m.group(2)}{m.group(3)}{' '.join(tokens)}{ending}"
        new = "".join(lines)
    for module in softdeps:
        if not _softdep_present([t or "" for t in texts.values()] + [new], module):
            new = _append(new, f"softdep {module} pre: vfio-pci")
    changes = {} if new == texts.get(path) else {path: new}
    return path, changes


# -- GRUB: /etc/default/grub and its grub.d drop-ins (read as scanner/facts/grub.py reads them) ---

def grub_edit(files: Sequence[Mapping], add: Sequence[str], remove: Sequence[str]) -> Dict[str, str]:
    """{path: new text} so that the next boot gets ``add`` and none of ``remove``.

    ``files`` are /etc/default/grub then the grub.d drop-ins in the order grub-mkconfig reads
    them. Every occurrence of a parameter to remove goes, in every file and assignment; a missing
    parameter goes first into the ``GRUB_CMDLINE_LINUX_DEFAULT`` that wins (a drop-in of a cloud
    image overrides the main file), or into a new line of the main file. The result is checked.
    """
    texts = [(f["path"], _readable(f) or "") for f in files]
    lines = {path: _lines(text) for path, text in texts}
    before = grub_parameters(texts).split()
    assignments = [a for path, text in texts for a in grub_assignments(path, text)]
    for a in assignments:
        if a.quote is None:
            if any(p in unquoted(a.inner).split() for p in remove):
                raise EditError(f"{a.where}: {a.name} is written in a form this tool does not rewrite; remove "
                                f"{' '.join(remove)} there by hand")
            continue
        kept = [w for w in a.words if w not in remove]
        if kept != a.words:
            lines[a.path][a.index] = a.with_words(kept)
    current = [(path, "".join(lines[path])) for path, _ in texts]
    have = grub_parameters(current).split()
    missing = [p for p in add if p not in have]
    if missing:
        winners = [a for a in assignments if a.name == "GRUB_CMDLINE_LINUX_DEFAULT" and a.op == "="]
        if not winners:
            # only += assignments (or none): a plain one after them would throw their words away
            name = "GRUB_CMDLINE_LINUX_DEFAULT"
            keep = f"${name} " if any(a.name == name for a in assignments) else ""
            main = texts[0][0]
            lines[main] = _lines(_append("".join(lines[main]), f'{name}="{keep}{" ".join(missing)}"'))
        else:
            winner = winners[-1]
            if winner.quote is None:
                raise EditError(f"{winner.where}: GRUB_CMDLINE_LINUX_DEFAULT is written in a form this tool does not "
                                f"rewrite; add {' '.join(missing)} there by hand")
            words = grub_assignments(winner.path, lines[winner.path][winner.index])[0].words
            lines[winner.path][winner.index] = winner.with_words(missing + words)
    result = [(path, "".join(lines[path])) for path, _ in texts]
    final = grub_parameters(result).split()
    wrong = [p for p in add if p not in final] + [p for p in remove if p in final]
    if wrong:
        raise EditError(f"editing {', '.join(p for p, _ in texts)} would not give the next boot "
                        f"{' '.join(add)} without {' '.join(remove)} ({' '.join(wrong)} left over): edit by hand")
    dropped = [p for p in dict.fromkeys(before) if p not in remove and p not in final]
    if dropped:  # the user's own parameters are never the price of an edit
        raise EditError(f"editing {', '.join(p for p, _ in texts)} would also drop {' '.join(dropped)} from the next "
                        "boot: edit by hand")
    return {path: text for (path, text), (_, old) in zip(result, texts) if text != old}


def cmdline_file_edit(text: Optional[str], add: Sequence[str], remove: Sequence[str]) -> str:
    """/etc/kernel/cmdline (one line of parameters): every ``remove`` out, each missing ``add`` appended."""
    words = [w for w in (text or "").split() if w not in remove]
    words += [p for p in add if p not in words]
    new = " ".join(words) + "\n"
    return text if text is not None and text.split() == words else new


# -- what a person types: the same edit, line by line ------------------------------------------

def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def edit_commands(path: str, old: Optional[str], new: str) -> List[str]:
    """Shell lines that turn ``old`` into ``new`` in ``path`` for a person, never clobbering the file.

    Appended lines are added only when missing; a changed line is replaced only while it still
    reads as scanned (so a file changed since stays as it is), after a backup copy that a second
    run does not overwrite. Anything else falls back to replacing the file while its checksum is
    still the scanned one. Every line succeeds when there is nothing (more) to do.
    """
    import difflib  # only a scan that offers a file change needs it

    qpath = _q(path)
    old_lines = (old or "").splitlines()
    new_lines = new.splitlines()
    ops = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False).get_opcodes()
    simple = all(tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1)
                 or (tag == "insert" and i1 == len(old_lines)) for tag, i1, i2, j1, j2 in ops)
    backup = f"[ -e {qpath}.vfio-scan.bak ] || cp -p {qpath} {qpath}.vfio-scan.bak"
    if not simple:
        return [backup, f"[ \"$(sha256sum < {qpath})\" != {_q(digest(old) + '  -')} ] || printf '%s\\n' "
                + " ".join(_q(line) for line in new_lines) + f" > {qpath}"]
    commands = []
    replaced = [(i1, i2, j1) for tag, i1, i2, j1, _ in ops if tag == "replace"]
    if replaced:
        commands.append(backup)
    for i1, i2, j1 in replaced:
        for offset in range(i2 - i1):
            number, was, now = i1 + offset + 1, old_lines[i1 + offset], new_lines[j1 + offset]
            script = str(number) + "c\\" + now.replace("\\", "\\\\")
            commands.append(f"[ \"$(sed -n '{number}p' {qpath})\" != {_q(was)} ] || sed -i {_q(script)} {qpath}")
    for tag, i1, i2, j1, j2 in ops:
        if tag == "insert":
            for line in new_lines[j1:j2]:
                commands.append(f"grep -qxF -- {_q(line)} {qpath} 2>/dev/null || printf '%s\\n' {_q(line)} >> {qpath}")
    return commands


__all__ = ["EditError", "file_state", "digest", "writable_text", "ensure_lines", "module_name_equal", "own_rule",
           "own_limits",
           "merge_vfio_ids", "grub_values", "grub_parameters", "grub_winner", "grub_edit", "cmdline_file_edit",
           "edit_commands", "GRUB_MAIN", "GRUB_DROPINS", "VFIO_CONF"]
