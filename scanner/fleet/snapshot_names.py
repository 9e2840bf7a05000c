"""File names for the snapshots a fleet run keeps (``--save-snapshots DIR``): one per host, safe and unique.

Why a module of its own: host names come from an inventory, and may hold anything a file name
must not (``/``, a leading dot, ``:``); two hosts must never write the same file, whatever order
the run meets them in.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Dict, Sequence

MAX_NAME_CHARS = 200  # file names are at most 255 bytes; room is left for ".json" and a temporary name


def safe_name(name: str) -> str:
    """A readable file name for a host's snapshot: ``root@10.0.0.1:2222`` -> ``root@10.0.0.1_2222``.
    Not one-to-one (``web1:22`` and ``web1_22`` meet): :func:`snapshot_file_names` settles that."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "_", name).strip(".") or "host"
    return cleaned[:MAX_NAME_CHARS]


def escaped_name(name: str) -> str:
    """A file name that is one-to-one with ``name``: every byte outside ``[A-Za-z0-9._@-]``, a leading
    and a trailing dot percent-encoded (``web1:2222`` -> ``web1%3A2222``), never hidden, never a path.
    A longer name keeps its start and ends in ``%-`` and a hash of the whole (no escape looks so)."""
    raw = name.encode("utf-8", "surrogatepass")  # lone surrogates too, without meeting real characters
    text = "".join(chr(b) if chr(b) in _KEPT else f"%{b:02X}" for b in raw) or "%"
    if text.startswith("."):
        text = "%2E" + text[1:]
    if text.endswith("."):
        text = text[:-1] + "%2E"
    if len(text) <= MAX_NAME_CHARS:
        return text
    start = re.sub(r"%[0-9A-F]?$", "", text[:MAX_NAME_CHARS - 18])
    return f"{start}%-{hashlib.sha256(raw).hexdigest()[:16]}"


_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-")


def snapshot_file_names(names: Sequence[str]) -> Dict[str, str]:
    """``DIR/NAME.json`` for each host of a run, unique among them and safe to create.

    A name that is already safe is its own file name; another one gets :func:`safe_name`'s readable
    form when no other host of the run claims that form, else :func:`escaped_name`'s, which meets
    neither (only an escaped name of a name that needed changing contains ``%``). Which host gets
    which name does not depend on the hosts' order.
    """
    readable = {name: safe_name(name) for name in names}
    claims = Counter(readable.values())
    return {name: (form if form == name or claims[form] == 1 else escaped_name(name)) + ".json"
            for name, form in readable.items()}
