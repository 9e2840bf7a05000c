"""What keeps start-up cheap gives the same answers as what it stands in for.

* :mod:`scanner.engine.entrypoints` finds exactly the entry points ``importlib.metadata`` finds (same
  entry points, same order, same distribution name and version), and hands over to it for
  anything it does not read itself (a zip on ``sys.path``, a malformed file...);
* :func:`scanner.engine.report.local_timestamp` writes what ``datetime`` would;
* the parser built for one subcommand is that subcommand's parser in the full one;
* a plain scan leaves out the modules only other commands, options or findings need, and compiles
  no regular expression it does not use (:func:`scanner.base.lazyre.lazy_compile`);
* the live host's kernel-log command (scanner/host/command.py) answers what ``subprocess.run`` answered.

No timings here: speed is measured in ``benchmarks/``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timezone

import pytest

from clihelpers import GOOD_PLUGIN, REPO, cli_env, make_plugin
from scanner.engine import entrypoints
from scanner.cli import COMMANDS, build_parser
from scanner.host import LARGE_CAP
from scanner.host.live import run_command
from scanner.base.lazyre import lazy_compile
from scanner.engine.report import local_timestamp

GROUP = "vfio_scan"
needs_fast_path = pytest.mark.skipif(sys.version_info < (3, 11), reason="the reader mirrors importlib.metadata 3.11+")


def python_output(code: str) -> str:
    """What ``python -c code`` prints, run from the repository in a clean environment; it must succeed."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def described(eps):
    return [(ep.name, ep.value, ep.group, ep.dist.name if ep.dist else None, ep.dist.version if ep.dist else None)
            for ep in eps]


def reference(group):
    importlib.invalidate_caches()  # importlib.metadata caches directory listings by mtime
    return described(importlib.metadata.entry_points(group=group))


def write_dist(where, dist, version="1.0", entry_points="", metadata=None, suffix=".dist-info", dirname=None):
    info = where / (dirname or f"{dist.replace('-', '_')}-{version}{suffix}")
    info.mkdir(parents=True)
    name = "PKG-INFO" if suffix == ".egg-info" else "METADATA"
    text = metadata if metadata is not None else f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    (info / name).write_text(text, encoding="utf-8")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return info


@pytest.fixture
def syspath(monkeypatch, tmp_path):
    """A sys.path of our own: ``syspath(dir, ...)`` sets it."""
    def set_path(*entries):
        monkeypatch.setattr(sys, "path", [str(e) for e in entries])
        importlib.invalidate_caches()
    yield set_path
    importlib.invalidate_caches()


# -- entry points ------------------------------------------------------------------------------

@needs_fast_path
@pytest.mark.parametrize("group", [GROUP, "console_scripts", "pytest11", "no_such_group"])
def test_this_environment(group):
    assert described(entrypoints.entry_points(group)) == reference(group)
    try:
        found = entrypoints._discover(group, sys.path)
    except entrypoints._Unusual as exc:  # e.g. a zip on this sys.path: handed over, as checked above
        pytest.skip(f"this environment is read by importlib.metadata ({exc})")
    assert described(found) == reference(group)


@needs_fast_path
def test_an_installed_plugin(tmp_path, syspath):
    site = make_plugin(tmp_path / "site", GOOD_PLUGIN)
    syspath(site, *sys.path)
    found = described(entrypoints._discover(GROUP, sys.path))
    assert found[0] == ("acme", "acme_vfio", GROUP, "acme-vfio", "1.0")
    assert found == reference(GROUP)


@needs_fast_path
def test_first_on_sys_path_wins_by_normalized_name(tmp_path, syspath):
    one, two = tmp_path / "one", tmp_path / "two"
    write_dist(one, "Acme.VFIO", "2.0", f"[{GROUP}]\nfirst = acme_first\n")
    write_dist(one, "acme_vfio", "3.0", f"[{GROUP}]\nsame-dir = acme_same\n")  # same name, same entry
    write_dist(two, "acme-vfio", "1.0", f"[{GROUP}]\nshadowed = acme_shadowed\n")
    write_dist(one, "quiet", "1.0")  # no entry_points.txt at all...
    write_dist(two, "Quiet", "2.0", f"[{GROUP}]\nhidden = quiet_hidden\n")  # ...still shadows this one
    write_dist(two, "other", "1.0", f"[{GROUP}]\nlater = other_mod:attr.sub [extra]\n")
    syspath(one, tmp_path / "missing", two)
    found = described(entrypoints._discover(GROUP, sys.path))
    assert found == reference(GROUP)
    assert [f[0] for f in found] == ["first", "later"] or [f[0] for f in found] == ["same-dir", "later"]


@needs_fast_path
def test_entry_points_txt_syntax(tmp_path, syspath):
    site = tmp_path / "site"
    write_dist(site, "acme", "1.0", "\n".join([
        "# a comment", "", f"[{GROUP}]", "  spaced   =   acme.mod : func  ", "# = not an entry", "bare=acme",
        "[console_scripts]", "acme = acme.cli:main", f"[[{GROUP}]]", "brackets = acme.b", "[]", "empty = x"]))
    write_dist(site, "beta", "0.1", f"[{GROUP}]\nbeta = beta_mod\n", suffix=".egg-info")
    (site / "old-1.0.egg-info").write_text("Metadata-Version: 1.0\nName: old\nVersion: 1.0\n")  # a file, not a dir
    syspath(site)
    assert described(entrypoints._discover(GROUP, sys.path)) == reference(GROUP)
    assert len(reference(GROUP)) == 4


@needs_fast_path
@pytest.mark.parametrize("metadata, read_here", [
    ("Metadata-Version: 2.1\nname:   acme-vfio  \nVERSION: 1.0\nName: second\n", True),
    ("Metadata-Version: 2.1\nSummary: folded\n  over two lines\nName: acme\nVersion: 1.0\n", True),
    ("Metadata-Version: 2.1\n:no name\nName: acme\nVersion: 1.0\n\nName: in the body\n", True),
    ("Metadata-Version: 2.1\r\nName: acme\r\nVersion: 1.0\r\n", True),
    ("Metadata-Version: 2.1\nName: acme\n\tcontinued\nVersion: 1.0\n", False),  # re-indented by importlib
    ("Metadata-Version: 2.1\nName: acme\nbody starts here\nVersion: 9\n", False),  # no Version header
])
def test_metadata_headers(tmp_path, syspath, metadata, read_here):
    write_dist(tmp_path / "site", "acme", "1.0", f"[{GROUP}]\nacme = acme_mod\n", metadata=metadata)
    syspath(tmp_path / "site")
    expected = reference(GROUP)
    assert described(entrypoints.entry_points(GROUP)) == expected
    if read_here:
        assert described(entrypoints._discover(GROUP, sys.path)) == expected
    else:
        with pytest.raises(entrypoints._Unusual):
            entrypoints._discover(GROUP, sys.path)


@needs_fast_path
@pytest.mark.parametrize("case", ["zip", "upper-case suffix", "no name", "egg dir", "bad line", "not utf-8",
                                  "no metadata"])
def test_what_it_leaves_to_importlib_metadata(tmp_path, syspath, case):
    site = tmp_path / "site"
    write_dist(site, "plain", "1.0", f"[{GROUP}]\nplain = plain_mod\n")
    entries = [site]
    if case == "zip":
        archive = tmp_path / "plugins.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n")
            z.writestr("zipped-1.0.dist-info/entry_points.txt", f"[{GROUP}]\nzipped = zipped_mod\n")
        entries.insert(0, archive)
    elif case == "upper-case suffix":
        write_dist(site, "Loud", "1.0", f"[{GROUP}]\nloud = loud_mod\n", dirname="Loud-1.0.DIST-INFO")
    elif case == "no name":
        write_dist(site, "anon", "1.0", f"[{GROUP}]\nanon = anon_mod\n", dirname="-1.0.dist-info")
    elif case == "egg dir":
        egg = tmp_path / "eggy-1.0-py3.11.egg"
        write_dist(egg, "eggy", "1.0", f"[{GROUP}]\neggy = eggy_mod\n", suffix=".egg-info", dirname="EGG-INFO")
        entries.append(egg)
    elif case == "bad line":
        write_dist(site, "broken", "1.0", "[other]\nno equals sign here\n")
    elif case == "not utf-8":
        (write_dist(site, "latin", "1.0") / "entry_points.txt").write_bytes(b"[vfio_scan]\nl\xe9 = latin_mod\n")
    elif case == "no metadata":
        info = write_dist(site, "bare", "1.0", f"[{GROUP}]\nbare = bare_mod\n")
        (info / "METADATA").unlink()
    syspath(*entries)
    with pytest.raises(entrypoints._Unusual):
        entrypoints._discover(GROUP, sys.path)
    try:
        expected = reference(GROUP)
    except Exception as exc:  # importlib.metadata fails on it: so must we, the same way
        with pytest.raises(type(exc)):
            entrypoints.entry_points(GROUP)
    else:
        assert described(entrypoints.entry_points(GROUP)) == expected


@needs_fast_path
def test_a_custom_metadata_finder_hands_over(monkeypatch):
    class Finder:
        @staticmethod
        def find_distributions(context=None):
            return iter(())

        @staticmethod
        def find_spec(*args):
            return None

    monkeypatch.setattr(sys, "meta_path", sys.meta_path + [Finder])
    with pytest.raises(entrypoints._Unusual):
        entrypoints._discover(GROUP, sys.path)
    assert described(entrypoints.entry_points(GROUP)) == reference(GROUP)


@needs_fast_path
@pytest.mark.parametrize("value", ["acme_ep_target", "acme_ep_target:thing", "acme_ep_target : thing.inner [x]",
                                   "not a value!"])
def test_load_is_importlib_metadatas(tmp_path, syspath, value):
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_ep_target.py").write_text("class thing:\n    inner = 42\n")
    write_dist(site, "acme", "1.0", f"[{GROUP}]\nacme = {value}\n")
    syspath(site, *sys.path)
    ours = entrypoints._discover(GROUP, sys.path)[0]
    theirs = next(iter(importlib.metadata.entry_points(group=GROUP)))
    try:
        expected = theirs.load()
    except Exception as exc:
        with pytest.raises(type(exc)) as raised:
            ours.load()
        assert str(raised.value) == str(exc)
    else:
        assert ours.load() is expected
    sys.modules.pop("acme_ep_target", None)


@needs_fast_path
def test_plugins_listing_through_the_cli(tmp_path):
    """The real CLI, a real plugin distribution: what `vfio-scan plugins` reports about its source."""
    site = make_plugin(tmp_path / "site", GOOD_PLUGIN)
    proc = subprocess.run([sys.executable, "-m", "scanner", "plugins", "--format", "json"], cwd=REPO,
                          env=cli_env(site), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    acme = {p["name"]: p for p in json.loads(proc.stdout)}["acme"]
    assert acme["source"] == "entry point acme_vfio (acme-vfio 1.0)"


# -- the report's timestamp --------------------------------------------------------------------------

@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Pacific/Chatham",
                                  "Africa/Monrovia", "right/UTC"])
def test_local_timestamp_is_datetimes(monkeypatch, zone):
    if not os.path.exists(os.path.join("/usr/share/zoneinfo", zone)):
        pytest.skip(f"no zoneinfo for {zone}")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for secs in [0, -1, 1_000_000_000, 1_483_228_799, 1_483_228_800, 1_711_846_799, 1_711_846_800,
                     1_729_990_799, 1_729_990_800, -2_000_000_000, 78_796_799, 4_000_000_000]:
            expected = datetime.fromtimestamp(secs, timezone.utc).astimezone().isoformat(timespec="seconds")
            assert local_timestamp(secs * 1_000_000_000 + 999_999_999) == expected, secs
        for _ in range(3):  # now: equal unless the second turned in between
            before = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
            ours = local_timestamp()
            after = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
            if before == after:
                assert ours == before
                break
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# -- the parser built for one command ------------------------------------------------------------------

def _subparser(parser, name):
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def test_top_level_help_is_the_same_whichever_command_is_built():
    full = build_parser().format_help()
    for name in list(COMMANDS) + [""]:
        assert build_parser(only=name).format_help() == full


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_commands_own_parser_is_the_full_parsers(name):
    assert _subparser(build_parser(only=name), name).format_help() == _subparser(build_parser(), name).format_help()


# -- what a plain scan does not import -----------------------------------------------------------------

NOT_FOR_A_PLAIN_SCAN = ("importlib.metadata", "email", "zipfile", "csv", "concurrent.futures", "logging", "socket",
                        "tomllib", "tomli", "scanner.policy.file", "scanner.policy.schema", "scanner.policy.toml",
                        "difflib", "jsonschema", "datetime", "shutil",
                        "scanner.facts.targets", "scanner.commands.fleet", "scanner.commands.groups", "tabulate",
                        # what only device targets, failing checks or other platforms need
                        "hashlib", "shlex", "struct", "subprocess", "scanner.remediation.binding", "scanner.remediation.early_binding",
                        "scanner.remediation.persistent_binding",
                        "scanner.facts.groups", "scanner.remediation.shell", "scanner.remediation.sriov", "scanner.remediation.vm_access", "scanner.facts.pci",
                        "scanner.facts.accounts", "scanner.facts.arm", "scanner.facts.memlock",
                        "scanner.facts.variants")


@needs_fast_path  # before 3.11 entry points come from importlib.metadata, which imports email, zipfile...
@pytest.mark.parametrize("fmt", ["json", "table"])  # the table lays itself out: tabulate is for other commands
def test_a_plain_scan_leaves_other_commands_modules_alone(intel_host, fmt):
    code = ("import sys\nfrom scanner.cli import main\n"
            f"code = main(['scan', '--root', {str(intel_host.root)!r}, '--format', {fmt!r}, '-o', '/dev/null'])\n"
            "print(code, ' '.join(sorted(sys.modules)))")
    out = python_output(code)
    code, modules = out.split(" ", 1)
    assert code == "0"
    loaded = set(modules.split())
    assert sorted(m for m in NOT_FOR_A_PLAIN_SCAN if m in loaded) == []


#: the plugin API's classes: plugins may hand them to ``dataclasses`` functions
PLUGIN_API_DATACLASSES = ["scanner.engine.model.Evidence", "scanner.engine.model.Finding",
                          "scanner.engine.model.Rule", "scanner.engine.model.Step"]


def test_a_plain_scan_makes_no_dataclass_but_the_plugin_apis(intel_host):
    """Every other class a scan defines is a record (scanner/base/record.py): a dataclass costs ten
    times as much to define, on every run."""
    code = ("import sys\nfrom scanner.cli import main\n"
            f"code = main(['scan', '--root', {str(intel_host.root)!r}, '--device', '01:00.0', '--format', 'json', "
            "'-o', '/dev/null'])\n"
            "ours = [m for name, m in list(sys.modules.items()) if name.split('.')[0] in ('scanner', 'rules', 'reports')]\n"
            "found = {f'{c.__module__}.{c.__qualname__}' for m in ours for c in vars(m).values()\n"
            "         if isinstance(c, type) and '__dataclass_fields__' in vars(c)}\n"
            "print(code, len(ours), ' '.join(sorted(found)))")
    out = python_output(code)
    code, modules, *dataclasses = out.split()
    assert code in ("0", "1") and int(modules) > 50  # the scan ran, with its facts and rules loaded
    assert dataclasses == PLUGIN_API_DATACLASSES


def test_a_plain_scan_compiles_only_the_patterns_it_uses():
    """Loading the scan's modules and plugins compiles no pattern of ours but the two that check each
    registered rule's id and name: the others wait for their first use."""
    code = ("import re, sys\ncallers = []\nreal = re._compile\n"
            "def counting(pattern, flags):\n"
            "    where = sys._getframe(2).f_code.co_filename.replace('\\\\', '/')\n"
            "    if any(f'/{p}/' in where for p in ('scanner', 'rules', 'reports')):\n"
            "        callers.append(pattern)\n"
            "    return real(pattern, flags)\n"
            "re._compile = counting\n"
            "from scanner.cli import build_parser\nbuild_parser(only='scan')\n"
            "import scanner.commands.scan, scanner.engine.scanning, scanner.output.formats, scanner.host.tree, scanner.host.live\n"
            "from scanner.engine.plugins import load_plugins\nload_plugins(autoload=False)\n"
            "print(len(set(callers)))")
    out = python_output(code)
    assert int(out) <= 2


@pytest.mark.parametrize("regex, flags, text", [
    (r"^(?P<domain>[0-9a-f]{4}):(?P<bus>[0-9a-f]{2})\Z", 0, "0000:01"),
    (r"[0-9]+", 0, "no digits here"),
    (r"^\s*(\d+)\s*([kmg]?)", re.I, "  16G and 8k"),
])
def test_lazy_compile_answers_as_re_compile(regex, flags, text):
    lazy, eager = lazy_compile(regex, flags), re.compile(regex, flags)
    for name in ("match", "search", "fullmatch"):
        got, expected = getattr(lazy, name)(text), getattr(eager, name)(text)
        assert (got and (got.group(0), got.groups(), got.span())) == (expected and (expected.group(0),
                                                                                    expected.groups(), expected.span()))
    assert lazy.findall(text) == eager.findall(text)
    assert lazy.sub("#", text) == eager.sub("#", text)
    assert lazy.split(text) == eager.split(text)
    assert (lazy.pattern, lazy.flags, lazy.groupindex) == (eager.pattern, eager.flags, eager.groupindex)


def test_lazy_compile_reports_a_bad_pattern_when_used():
    broken = lazy_compile("(unclosed")
    with pytest.raises(re.error):
        broken.match("x")


# -- the kernel log's command, without the subprocess module -------------------------------------------

def reference_run_command(argv, timeout):
    """What the live host's run_command answered with subprocess.run (its former implementation)."""
    env = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", PAGER="cat")
    source = " ".join(argv)
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        return (source, None, "command not found")
    except subprocess.TimeoutExpired:
        return (source, None, f"timed out after {timeout} s")
    except OSError as exc:
        return (source, None, f"could not run: {exc.strerror or exc}")
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0:
        return (source, None, err[-1] if err else f"exit status {proc.returncode}")
    out = proc.stdout[:LARGE_CAP].decode("utf-8", "replace")
    if not out.strip():
        return (source, None, "printed nothing" + (f" ({err[-1]})" if err else ""))
    return (source, out, None)


@pytest.mark.parametrize("argv, timeout", [
    (("sh", "-c", "echo 'kernel: line'; echo warn >&2"), 15),
    (("sh", "-c", "echo err >&2; echo more >&2; exit 3"), 15),
    (("sh", "-c", "exit 4"), 15),
    (("sh", "-c", "kill -9 $$"), 15),
    (("sh", "-c", "echo only stderr >&2"), 15),
    (("sh", "-c", "printf '\\377\\376 not utf-8\\n'"), 15),
    (("sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; head -c 200000 /dev/zero | tr '\\0' y >&2"), 15),
    (("sh", "-c", "cat; echo stdin was empty"), 15),
    (("sh", "-c", "sleep 5"), 1),
    (("no-such-command-vfio-scan",), 15),
    ((os.devnull,), 15),  # not executable
])
def test_run_command_answers_as_subprocess_did(argv, timeout):
    got = run_command(argv, timeout=timeout)
    assert (got.path, got.text, got.reason) == reference_run_command(argv, timeout)


def test_an_interrupted_command_is_killed_and_reaped(monkeypatch):
    from scanner.host import command

    spawned = []
    real_spawn, real_poll = os.posix_spawnp, command.select.poll

    def spawn(*args, **kwargs):
        spawned.append(real_spawn(*args, **kwargs))
        return spawned[-1]

    class Interrupted:
        def __init__(self):
            self.inner = real_poll()
            self.register = self.inner.register

        def poll(self, *args):
            raise KeyboardInterrupt  # the user's Ctrl-C (or a rule's deadline) while the command runs

    monkeypatch.setattr(command.os, "posix_spawnp", spawn)
    monkeypatch.setattr(command.select, "poll", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        command.run(["sleep", "30"], dict(os.environ), 30)
    assert len(spawned) == 1
    with pytest.raises(ChildProcessError):  # killed and reaped: no such child any more
        os.waitpid(spawned[0], os.WNOHANG)


def test_reading_the_kernel_log_imports_no_subprocess():
    code = ("import sys\nfrom scanner.host.live import run_command\n"
            "got = run_command(('sh', '-c', 'echo kernel'))\n"
            "print(got.text.strip(), 'subprocess' in sys.modules)")
    out = python_output(code)
    assert out.split() == ["kernel", "False"]
