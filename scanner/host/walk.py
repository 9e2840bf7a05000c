"""The chroot-style path walk every host read from a tree or a snapshot resolves its paths with.

Every symlink is followed by hand, an absolute target is taken relative to the root, ``..`` never
climbs above it, a chain of more than :data:`MAX_LINK_HOPS` links is a loop and a path more than
:data:`MAX_DEPTH` directories down is refused: whatever a tree holds, a path resolves to names
inside it. The walk only *names*: it asks its host two questions about one in-root path at a time
(``_lstat_mode`` and ``_readlink``), and the host opens what is read its own way (a tree one
name at a time through directory descriptors, scanner/host/tree.py; a snapshot from its records,
scanner/host/snapshot.py). Sharing the walk makes both answer a path identically.

What the walk keeps (per host, for one scan): the directories and links it met, and the state
each walked directory path ended in. A scan passes through the same few directories and the same
``/sys/bus/pci/devices/<address>`` links thousands of times; asking the filesystem again each
time was most of a scan's time. What is kept are names, never a way in: a stale answer can make
a read fail, never lead it out of the root, since every name it produces is the walk's own.
"""

from __future__ import annotations

import stat
from typing import Dict, Optional, Tuple

from scanner.host import MISSING

MAX_LINK_HOPS = 40  # the kernel's own limit (ELOOP)
#: Directories one path may go down: sysfs's deepest are some 20; a hostile tree nesting thousands
#: (reached through links) would make every step of the walk longer than the one before.
MAX_DEPTH = 256
TOO_DEEP = f"too deep: over {MAX_DEPTH} directories down"
SYMLINK_LOOP = "symlink loop"

Components = Tuple[str, ...]
#: Where a walk stands: (components, links followed so far, ended on a non-directory).
_State = Tuple[Components, int, bool]


class _Unresolvable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConfinedWalk:
    """Path resolution over two primitives a host provides; see the module docstring.

    ``_lstat_mode(parts)``: the mode of the in-root path ``parts`` without following a link there;
    ``_readlink(parts)``: the target of the link there. Both raise :class:`_Unresolvable`.
    """

    #: components -> lstat mode, of the directories met so far (``sys/bus/pci/drivers/...``,
    #: ``sys/devices/pci0000:00``: a scan passes them thousands of times).
    _known: Optional[dict] = None
    #: components -> (where following the link there leads, links that took, ended on a file), for
    #: the links followed so far: ``/sys/bus/pci/devices/<address>`` is walked for its listing, its
    #: attributes and its links' parent, each once per device, and its target is seven names long.
    #: Only walks that got through are kept: files are read about once, and a path missing now
    #: may be there for the next read.
    _links: Optional[Dict[Components, _State]] = None
    #: path -> the walk's state there, or the reason it cannot be walked (see :meth:`_dir_state`).
    _dir_cache: Optional[dict] = None

    def _lstat_mode(self, parts: Components) -> int:
        raise NotImplementedError

    def _readlink(self, parts: Components) -> str:
        raise NotImplementedError

    def _walk(self, pending: list, resolved: Components, follow_last: bool) -> Components:
        return self._advance(pending, resolved, 0, follow_last)[0]

    def _advance(self, pending: list, resolved: Components, hops: int, follow_last: bool) -> _State:
        """The walk: (components, links followed so far, whether it ended on a non-directory).

        ``hops`` and the last flag let :meth:`_dir_state` go on from a walked prefix exactly where
        a walk of the whole path would be at that point (see there).
        """
        known, links = self._known, self._links
        if known is None:
            known = self._known = {}
        if links is None:
            links = self._links = {}
        pending = pending[::-1]  # a stack: the next name last
        on_file = False
        while pending:
            name = pending.pop()
            on_file = False
            if name in ("", "."):
                continue
            if name == "..":
                resolved = resolved[:-1]
                continue
            key = resolved + (name,)
            if key in known:
                resolved = key
                continue
            if len(key) > MAX_DEPTH:
                raise _Unresolvable(TOO_DEEP)
            followed = links.get(key)
            if followed is None:
                mode = self._lstat_mode(key)
                if stat.S_ISDIR(mode):
                    known[key] = mode
                    resolved = key
                    continue
                if not stat.S_ISLNK(mode):
                    if pending:
                        raise _Unresolvable(MISSING)  # a path through a regular file
                    on_file = True
                    resolved = key
                    continue
                if not (pending or follow_last):
                    resolved = key  # the last name, a link not to follow
                    continue
                followed = links[key] = self._follow(key, hops)
            elif not (pending or follow_last):
                resolved = key
                continue
            resolved, hops = followed[0], hops + followed[1]
            if hops > MAX_LINK_HOPS:
                raise _Unresolvable(SYMLINK_LOOP)
            if followed[2]:
                if pending:
                    raise _Unresolvable(MISSING)  # a path through a regular file
                on_file = True
        return resolved, hops, on_file

    def _follow(self, key: Components, hops: int) -> _State:
        """Where the link at ``key``, met after ``hops`` links, leads: (components, the links it
        took itself included, whether it ends on a non-directory); raises _Unresolvable.

        Its target is walked on its own, every name followed, as the whole walk would walk it
        with more names pending (or the link last and followed). What a walk met after ``hops``
        links meets does not depend on ``hops`` but for the loop limit: the same walk, once got
        through, fits under the limit from any start where the links it took still do, and from
        any other start the whole walk is a loop as well -- so the answer is kept by the link.
        """
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise _Unresolvable(SYMLINK_LOOP)
        target = self._readlink(key)
        resolved, after, on_file = self._advance(target.split("/"), () if target.startswith("/") else key[:-1],
                                                 hops, True)
        return resolved, after - hops + 1, on_file

    def _keep_link(self, key: Components) -> None:
        """Follow the link at ``key`` and keep where it leads, as the walk does when it meets it
        with no link followed before (what a resolve of the path names first): for a host that
        met the link another way (a look-up of its name). A failure keeps nothing, and the walk
        meets it again in its own time."""
        links = self._links
        if links is None:
            links = self._links = {}
        if key in links or len(key) > MAX_DEPTH:
            return
        try:
            links[key] = self._follow(key, 0)
        except _Unresolvable:
            pass

    def _dir_state(self, path: str) -> _State:
        """What ``_advance(path.split("/"), (), 0, True)`` returns, one component at a time from
        the longest prefix already walked (raises _Unresolvable).

        Why: a scan reads some twenty attributes of each of thousands of devices under the same
        few directories; walking each directory from the root again was most of a scan's time.
        The answer is the same as the whole walk's: after a prefix, a whole walk is in the very
        state the prefix's walk ended in (the same components, the same hop count toward the loop
        limit), except that a prefix ending on a regular file is "missing" as soon as anything
        follows it -- the flag in the state. A failure is kept too: a prefix that cannot be walked
        fails every path under it with the same reason.
        """
        cache = self._dir_cache
        if cache is None:
            cache = self._dir_cache = {}
        chain = []  # (path, name): from ``path`` up to the first prefix already walked
        while True:
            state = cache.get(path)
            if state is not None:
                break
            if not path:
                state = ((), 0, False)  # the root
                break
            parent, _, name = path.rpartition("/")
            chain.append((path, name))
            path = parent
        for path, name in reversed(chain):
            if isinstance(state, str):
                break
            if state[2]:
                state = MISSING  # a path through a regular file
            else:
                try:
                    state = self._advance([name], state[0], state[1], True)
                except _Unresolvable as exc:
                    state = exc.reason
            cache[path] = state
        if isinstance(state, str):
            raise _Unresolvable(state)
        return state

    def _resolve_dir(self, path: str) -> Components:
        """The directory ``path`` leads to, to go on from (raises _Unresolvable)."""
        cache = self._dir_cache
        state = cache.get(path) if cache is not None else None
        if state is None or state.__class__ is str:
            state = self._dir_state(path)
        if state[2]:
            raise _Unresolvable(MISSING)  # a path through a regular file, as the kernel's ENOTDIR
        return state[0]

    def _resolve(self, path: str, follow_last: bool = True) -> Components:
        """Components of ``path`` inside the root, every link followed (raises _Unresolvable)."""
        path = "/" + path.strip("/")
        parent, _, leaf = path.rpartition("/")
        base = self._resolve_dir(parent) if parent else ()
        known = self._known
        if known is not None and leaf not in ("", ".", ".."):
            # the last name met before as a directory or a link followed: the walk's own answer
            # from its caches (an entry is kept only once within the depth and loop limits)
            key = base + (leaf,)
            if key in known:
                return key
            followed = self._links.get(key) if follow_last else None
            if followed is not None and followed[1] <= MAX_LINK_HOPS:
                return followed[0]
        return self._walk([leaf], base, follow_last)
