"""Who to scan: a plain hosts file, or an Ansible inventory (INI or YAML) as operators already keep them.

Why read Ansible's formats ourselves instead of calling ``ansible-inventory``: a fleet scan must
work where Ansible is not installed, and only the static parts matter here -- groups, children,
host and group variables, host ranges (``gpu[01:40].dc1``), and the connection variables
``ansible_host``, ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file``,
``ansible_python_interpreter``, ``ansible_ssh_common_args``/``ansible_ssh_extra_args``,
``ansible_become``, ``ansible_connection=local``, plus ``vfio_scan_root`` (collect a captured tree
at that path on the host). Variables are merged as Ansible does: ``all`` first, then groups from
parent to child, then the host's own. Jinja templates in values are not evaluated.

A hosts file has one ``[user@]host[:port]`` a line (``[::1]:2222`` for IPv6), ``#`` comments,
and optionally ``key=value`` variables after the host, as on an INI inventory line.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple


#: The largest inventory or hosts file read: a line per host, and fleets of thousands are a few MB.
MAX_INVENTORY_BYTES = 16 << 20
#: The most hosts one inventory may name, ranges expanded: far above any fleet one run scans.
MAX_HOSTS = 100_000
#: The most group entries a YAML inventory's walk may go through, aliases followed (see parse_yaml_inventory).
MAX_GROUP_VISITS = 1_000_000


class InventoryError(Exception):
    """An inventory or hosts file that cannot be read: one line naming the file and the line."""


@dataclass
class InventoryHost:
    name: str  # how the operator names it: the inventory hostname, or the hosts-file entry as written
    address: str = ""  # what ssh connects to
    port: Optional[int] = None
    user: Optional[str] = None
    vars: Dict[str, str] = field(default_factory=dict)
    groups: Tuple[str, ...] = ()

    def var(self, *names: str) -> Optional[str]:
        for name in names:
            value = self.vars.get(name)
            if value not in (None, ""):
                return str(value)
        return None


# -- host specs and ranges --------------------------------------------------------------------
_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^@\s]+?))(?::(?P<port>[0-9]+))?$")


def parse_host_spec(text: str) -> Tuple[Optional[str], str, Optional[int]]:
    """``[user@]host[:port]`` -> (user, host, port); ``[v6]:port`` for IPv6, a bare IPv6 has no port."""
    text = text.strip()
    if text.count(":") > 1 and not text.split("@")[-1].startswith("["):  # a bare IPv6 address
        user, _, host = text.rpartition("@")
        return user or None, host, None
    match = _SPEC.match(text)
    if not match:
        raise ValueError(f"not a [user@]host[:port]: {text!r}")
    host = match.group("v6") or match.group("host")
    # ':' '[' ']' left in a name (h:x, an unclosed [::1) are a port or an address mistyped, never a host ssh knows
    if not host or host.startswith("-") or (not match.group("v6") and any(c in host for c in ":[]")):
        raise ValueError(f"not a host name: {text!r}")
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port out of range: {text!r}")
    return match.group("user"), host, port


_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")


def expand_range(pattern: str) -> List[str]:
    """Ansible host ranges: ``gpu[01:03]`` -> gpu01 gpu02 gpu03, ``db-[a:c]``, ``[0:10:5]``.

    Several ranges in one name multiply: how many names they make is known before any is made,
    and more than :data:`MAX_HOSTS` is a ValueError (``n[0:9999][0:9999][0:9999]`` would be a
    trillion, and the memory for them a crash).
    """
    pieces, choices, end = [], [], 0
    for match in _RANGE.finditer(pattern):
        pieces.append(pattern[end:match.start()])
        choices.append(_range_items(match))
        end = match.end()
    count = math.prod(len(items) for items in choices)
    if count > MAX_HOSTS:
        raise ValueError(f"host range {_quoted(pattern)} makes {count:,} hosts, more than the {MAX_HOSTS:,} "
                         "an inventory may have")
    tail = pattern[end:]
    return ["".join(p + str(c) for p, c in zip(pieces, chosen)) + tail for chosen in itertools.product(*choices)]


def _range_items(match) -> Sequence:
    """The items of one ``[start:end(:step)]``, lazily (a range of numbers, or letters)."""
    start, end, step = match.group(1), match.group(2), max(int(match.group(3) or 1), 1)
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        return _Padded(range(int(start), int(end) + 1, step), width)
    if len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        return [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    raise ValueError(f"bad host range {match.group(0)!r}")


class _Padded(Sequence):
    """Numbers of a range as names, zero-padded to ``width``: counted without being made."""

    def __init__(self, numbers: range, width: int):
        self.numbers, self.width = numbers, width

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index):
        return str(self.numbers[index]).zfill(self.width)


def _quoted(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# -- the group graph both Ansible formats build -----------------------------------------------
class _Inventory:
    def __init__(self):
        self.hosts: Dict[str, Dict[str, str]] = {}  # name -> own vars
        self.host_groups: Dict[str, List[str]] = {}
        self.group_vars: Dict[str, Dict[str, str]] = {"all": {}}
        self.children: Dict[str, List[str]] = {"all": []}

    def group(self, name: str) -> None:
        self.group_vars.setdefault(name, {})
        self.children.setdefault(name, [])

    def add_host(self, name: str, group: str, variables: Dict[str, str]) -> None:
        if name not in self.hosts and len(self.hosts) >= MAX_HOSTS:
            raise ValueError(f"more than {MAX_HOSTS:,} hosts, more than an inventory may have")
        self.group(group)
        self.hosts.setdefault(name, {}).update(variables)
        groups = self.host_groups.setdefault(name, [])
        if group not in groups:
            groups.append(group)

    def add_child(self, parent: str, child: str) -> None:
        self.group(parent)
        self.group(child)
        if child not in self.children[parent]:
            self.children[parent].append(child)

    def _depths(self) -> Dict[str, int]:
        """Each group's distance from ``all`` along the longest parent chain (children win over parents).

        Without recursion: a hostile chain of thousands of ``:children`` levels took the audit down with a
        RecursionError. A depth-first walk orders the groups (an edge back into the walk's own path, a
        cycle, is left out), then each group's depth is relaxed from its parents', parents first."""
        order, on_path, seen, back = [], set(), {"all"}, set()
        walk = [("all", iter(self.children.get("all", [])))]
        on_path.add("all")
        while walk:
            group, kids = walk[-1]
            kid = next(kids, None)
            if kid is None:
                walk.pop()
                on_path.discard(group)
                order.append(group)
            elif kid in on_path:
                back.add((group, kid))
            elif kid not in seen:
                seen.add(kid)
                on_path.add(kid)
                walk.append((kid, iter(self.children.get(kid, []))))
        depth: Dict[str, int] = {"all": 0}
        for group in reversed(order):  # every parent before its children
            for kid in self.children.get(group, []):
                if (group, kid) not in back:
                    depth[kid] = max(depth.get(kid, -1), depth[group] + 1)
        return depth

    def _ancestors(self, group: str) -> List[str]:
        found, todo = [], [group]
        while todo:
            g = todo.pop()
            if g in found:
                continue
            found.append(g)
            todo += [p for p, kids in self.children.items() if g in kids]
        return found

    def resolve(self) -> List[InventoryHost]:
        depth = self._depths()
        out = []
        for name, own in self.hosts.items():
            groups = set()
            for g in self.host_groups.get(name, []):
                groups.update(self._ancestors(g))
            groups.add("all")
            merged: Dict[str, str] = {}
            for g in sorted(groups, key=lambda g: (depth.get(g, 1), g)):
                merged.update(self.group_vars.get(g, {}))
            merged.update(own)
            out.append(make_host(name, merged, tuple(sorted(groups - {"all"}))))
        return out


def make_host(name: str, variables: Dict[str, str], groups: Tuple[str, ...] = ()) -> InventoryHost:
    """An InventoryHost from a name and its merged variables (ansible_host and friends win over the name)."""
    variables = {k: ("" if v is None else str(v)) for k, v in variables.items()}
    try:
        user, address, port = parse_host_spec(name)
    except ValueError:
        user, address, port = None, name, None
    host = InventoryHost(name=name, address=address, port=port, user=user, vars=variables, groups=groups)
    address = host.var("ansible_host", "ansible_ssh_host")
    if address:
        if address.startswith("-"):
            raise ValueError(f"{name}: ansible_host {address!r} is not a host name")
        host.address = address
    port_text = host.var("ansible_port", "ansible_ssh_port")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not 0 < int(port_text) < 65536:
            raise ValueError(f"{name}: ansible_port {port_text!r} is not a port number")
        host.port = int(port_text)
    host.user = host.var("ansible_user", "ansible_ssh_user") or host.user
    return host


# -- the three file formats ---------------------------------------------------------------------
def _split_vars(words: Iterable[str], where: str) -> Dict[str, str]:
    variables = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InventoryError(f"{where}: expected key=value, got {word!r}")
        variables[key] = value
    return variables


def _lines(text: str):
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")):
            yield number, stripped


def parse_hosts_file(text: str, path: str = "hosts") -> List[InventoryHost]:
    """One ``[user@]host[:port] [key=value ...]`` a line; ``#`` starts a comment."""
    hosts = []
    for number, line in _lines(text):
        where = f"{path}:{number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InventoryError(f"{where}: {exc}") from None
        if not words:
            continue
        try:
            parse_host_spec(words[0])
            hosts.append(make_host(words[0], _split_vars(words[1:], where)))
        except ValueError as exc:
            raise InventoryError(f"{where}: {exc}") from None
    return hosts


_SECTION = re.compile(r"^\[([^\]:]+)(?::(vars|children))?\]$")


def parse_ini_inventory(text: str, path: str = "inventory") -> List[InventoryHost]:
    inv = _Inventory()
    section, kind = "ungrouped", "hosts"
    for number, line in _lines(text):
        where = f"{path}:{number}"
        match = _SECTION.match(line)
        if match:
            section, kind = match.group(1).strip(), match.group(2) or "hosts"
            inv.group(section)
            if section != "all":
                inv.add_child("all", section)
            continue
        try:
            if kind == "vars":
                key, sep, value = line.partition("=")
                if not sep:
                    raise InventoryError(f"{where}: expected key=value in [{section}:vars]")
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                inv.group_vars[section][key.strip()] = value
            elif kind == "children":
                inv.add_child(section, line.split()[0])
            else:
                words = shlex.split(line, comments=True)
                if not words:
                    continue
                variables = _split_vars(words[1:], where)
                for name in expand_range(words[0]):
                    inv.add_host(name, section, variables)
        except ValueError as exc:
            raise InventoryError(f"{where}: {exc}") from None
    if "ungrouped" in inv.children and "ungrouped" not in inv.children["all"]:
        inv.add_child("all", "ungrouped")
    try:
        return inv.resolve()
    except ValueError as exc:
        raise InventoryError(f"{path}: {exc}") from None


def parse_yaml_inventory(text: str, path: str = "inventory.yml") -> List[InventoryHost]:
    """Ansible's YAML inventory (``all: {hosts:, vars:, children:}``); needs PyYAML, imported only here."""
    try:
        import yaml
    except ImportError:
        raise InventoryError(f"{path}: YAML inventories need PyYAML: pip install 'vfio-scan[yaml]' "
                             "(or use an INI inventory)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: expected a mapping of groups at the top (all: ...)")
    inv = _Inventory()

    def mapping(value, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InventoryError(f"{path}: {what} must be a mapping")
        return value

    walked = set()  # (group, id of its body): a YAML alias puts one body under many parents
    visits = [0]

    def walk(name: str, body, parent: Optional[str], seen: Tuple[str, ...]) -> None:
        """Why ``walked``: a group's body reached again through an alias adds nothing new but its
        parent, and walking it again each time is exponential in the levels of aliases (groups
        whose children alias the level below: 2**n walks). ``visits`` bounds what is left."""
        if name in seen:
            raise InventoryError(f"{path}: group {name!r} is its own child")
        visits[0] += 1
        if visits[0] > MAX_GROUP_VISITS:
            raise InventoryError(f"{path}: more than {MAX_GROUP_VISITS:,} group entries, aliases followed: "
                                 "not an inventory vfio-scan reads")
        inv.group(name)
        if parent:
            inv.add_child(parent, name)
        elif name != "all":
            inv.add_child("all", name)
        if (name, id(body)) in walked:
            return
        body = mapping(body, f"group {name!r}")
        inv.group_vars[name].update({str(k): v for k, v in mapping(body.get("vars"), f"{name}.vars").items()})
        for host, variables in mapping(body.get("hosts"), f"{name}.hosts").items():
            try:
                for one in expand_range(str(host)):
                    inv.add_host(one, name, {str(k): v for k, v in mapping(variables, f"host {host!r}").items()})
            except ValueError as exc:
                raise InventoryError(f"{path}: {exc}") from None
        for child, child_body in mapping(body.get("children"), f"{name}.children").items():
            walk(str(child), child_body, name, seen + (name,))
        walked.add((name, id(body)))

    for group, body in data.items():
        walk(str(group), body, None, ())
    try:
        return inv.resolve()
    except ValueError as exc:
        raise InventoryError(f"{path}: {exc}") from None


def read_inventory(path: str, hosts_file: bool = False) -> List[InventoryHost]:
    """Hosts from a file: a plain hosts file, or an Ansible inventory (YAML by extension, as Ansible does)."""
    from scanner.host.inputfile import InputFileError, read_input_text

    try:
        text = read_input_text(path, MAX_INVENTORY_BYTES)
    except InputFileError as exc:
        raise InventoryError(f"{path}: {exc}") from None
    if hosts_file:
        return parse_hosts_file(text, path)
    if path.endswith((".yml", ".yaml", ".json")):
        return parse_yaml_inventory(text, path)
    return parse_ini_inventory(text, path)


def limit(hosts: List[InventoryHost], patterns: Iterable[str]) -> List[InventoryHost]:
    """Ansible's simplest ``--limit``: host or group names, globs allowed, comma-separated."""
    wanted = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
    if not wanted:
        return hosts
    return [h for h in hosts if any(fnmatch.fnmatchcase(n, p) for p in wanted for n in (h.name,) + h.groups)]
