"""Hostile inputs: no file named on the command line and no file inside ``--root`` can hang a run,
be opened when it is no regular file, or lead a read out of the tree -- not even while the tree
changes under the scan.

* A FIFO (or a device node) given as ``--policy``, ``--snapshot``, ``--kernel-log``, ``-i`` or
  ``--hosts-file`` is refused at once: one line naming the file and what it is, exit 2. Every such
  command runs under a timeout, so that a regression fails instead of hanging the suite.
* A FIFO or a character device inside the tree (``proc/cmdline``) is never opened: its type is
  checked first. The live host reads the same way (``/dev/zero`` is never opened).
* A directory of the tree swapped for a link to an outside directory while the scan reads never
  makes the scan return the outside file's content: from a thread in a loop, and step by step at
  each point of the walk where a swap could slip in.
* The walk stays bounded: few directory descriptors open at a time, no path deeper than a host has.
* ``--root ""`` and a folder with nothing of a host in it are usage errors, in every command that
  takes ``--root``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clihelpers import REPO, cli_env, stderr_lines
from hardening import as_nobody, require_nobody, world_readable_base
from hosttree import HostTree, ready_host
from scanner.host.live import LiveHost
from scanner.host.tree import CHANGED, OPEN_DIRECTORIES, TreeHost
from scanner.host.inputfile import InputFileError, check_input_file, read_input_file

MARKER = "MARKER: the real machine's file, outside the tree\n"
RUN_TIMEOUT = 60


def run_bounded(*args) -> subprocess.CompletedProcess:
    """``python -m scanner ARGS``, failed (not hung) when it has not ended in RUN_TIMEOUT seconds."""
    try:
        return subprocess.run([sys.executable, "-m", "scanner", *map(str, args)], cwd=REPO, env=cli_env(),
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vfio-scan {' '.join(map(str, args))} still running after {RUN_TIMEOUT} s (blocked?)")


def one_usage_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The single stderr line of a usage error (exit 2, nothing on stdout, no traceback)."""
    lines = stderr_lines(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def bounded(call, seconds: float = 30):
    """``call()`` in a thread; fail when it has not returned in ``seconds`` (a blocking open)."""
    box = {}

    def target():
        try:
            box["value"] = call()
        except Exception as exc:  # raised again in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"{call} blocked for {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "input.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture(scope="module")
def host_tree(tmp_path_factory) -> HostTree:
    return ready_host(tmp_path_factory.mktemp("hostile") / "host")


# -- files named on the command line -------------------------------------------------------------

@pytest.mark.parametrize("option, command", [
    ("--policy", ("scan",)),
    ("--snapshot", ("scan",)),
    ("--kernel-log", ("scan", "--root", "{root}")),
    ("--kernel-log", ("collect", "--root", "{root}")),
    ("-i", ("fleet",)),
    ("--hosts-file", ("fleet",)),
])
def test_a_fifo_given_as_an_input_file_is_refused_at_once(option, command, fifo, host_tree):
    argv = [arg.format(root=host_tree.root) for arg in command] + [option, fifo]
    line = one_usage_error(run_bounded(*argv), str(fifo), "not a regular file (a FIFO)")
    assert line.startswith(f"vfio-scan {command[0]}: error: ")


def test_a_fifo_among_several_snapshots_is_refused_before_any_scanning(fifo, tmp_path, host_tree):
    snapshot = tmp_path / "host.json"
    collected = run_bounded("collect", "--root", host_tree.root, "-o", snapshot)
    assert collected.returncode == 0, collected.stderr
    one_usage_error(run_bounded("scan", "--snapshot", snapshot, fifo), f"--snapshot {fifo}: not a regular file")


def test_a_character_device_as_an_input_file_is_refused_without_reading_it():
    one_usage_error(run_bounded("scan", "--policy", "/dev/zero"), "/dev/zero: not a regular file (a character device)")
    one_usage_error(run_bounded("scan", "--kernel-log", "/dev/null"), "--kernel-log /dev/null: not a regular file")


def test_the_input_helper_refuses_what_is_no_regular_file(fifo, tmp_path):
    for path, words in ((fifo, "not a regular file (a FIFO)"), (tmp_path, "is a directory"),
                        (tmp_path / "nope", "no such file"), ("", "no such file"),
                        ("/dev/null", "not a regular file (a character device)")):
        with pytest.raises(InputFileError, match=words.replace("(", r"\(").replace(")", r"\)")):
            bounded(lambda: read_input_file(str(path), 1024))


def test_the_input_helper_caps_the_size(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2049)
    assert read_input_file(str(big), 2049) == b"x" * 2049
    with pytest.raises(InputFileError, match=r"too large \(over 2048 bytes\)"):
        read_input_file(str(big), 2048)
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as handle:
        handle.truncate((1 << 20) + 1)
    with pytest.raises(InputFileError, match=r"too large \(over 1 MiB\)"):
        check_input_file(str(sparse), 1 << 20)  # told by its size, without reading it


def test_the_input_helper_checks_again_once_open(fifo, monkeypatch):
    # a FIFO swapped in after the name was checked: the non-blocking open returns at once, and
    # the check of the open file refuses it
    regular = os.stat(__file__)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **kw: regular if str(path) == str(fifo) else real_stat(path, *a, **kw))
    with pytest.raises(InputFileError, match="a FIFO"):
        bounded(lambda: read_input_file(str(fifo), 1024))


# -- swapping a file or directory at a given step ------------------------------------------------

def swap_after_type_check(monkeypatch, name: str, swap) -> None:
    """Run ``swap()`` once, right after the type of the file ``name`` was looked up."""
    import scanner.host.tree as tree_module

    real = tree_module._mode_in
    done = []

    def then_swap(dir_fd, looked_up):
        mode = real(dir_fd, looked_up)
        if looked_up == name and not done:
            done.append(True)
            swap()
        return mode

    monkeypatch.setattr(tree_module, "_mode_in", then_swap)


def swap_after(monkeypatch, owner, name: str, swap) -> None:
    """Run ``swap()`` once, right after the first call of ``owner.name`` returns."""
    real = getattr(owner, name)
    done = []

    def then_swap(*args, **kwargs):
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            swap()
        return result

    monkeypatch.setattr(owner, name, then_swap)



# -- device nodes inside the tree -----------------------------------------------------------------

def _opened_names(monkeypatch) -> list:
    """Record the name of every os.open from now on."""
    names, real_open = [], os.open

    def recording(path, flags, mode=0o777, *, dir_fd=None):
        names.append(os.path.basename(os.fsdecode(path)))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", recording)
    return names


def test_a_fifo_in_the_tree_is_never_opened(tree, monkeypatch):
    tree.mkdir("/proc")
    os.mkfifo(tree.path("/proc/cmdline"))
    host = TreeHost(str(tree.root))
    opened = _opened_names(monkeypatch)
    assert bounded(lambda: host.read("/proc/cmdline")).reason == "not a regular file"
    assert "cmdline" not in opened


def test_a_scan_of_a_tree_whose_cmdline_is_a_fifo_ends_and_says_why(tmp_path):
    tree = ready_host(tmp_path / "host")
    tree.remove("/proc/cmdline")
    os.mkfifo(tree.path("/proc/cmdline"))
    proc = run_bounded("scan", "--root", tree.root, "--format", "json")
    assert proc.returncode in (0, 1, 3) and "Traceback" not in proc.stderr, proc.stderr
    assert "/proc/cmdline: not a regular file" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a character device node (mknod) needs root")
def test_a_character_device_in_the_tree_is_never_opened(tree, monkeypatch):
    tree.mkdir("/proc")
    os.mknod(tree.path("/proc/cmdline"), stat.S_IFCHR | 0o666, os.makedev(1, 5))  # what /dev/zero is
    host = TreeHost(str(tree.root))
    opened = _opened_names(monkeypatch)
    assert bounded(lambda: host.read("/proc/cmdline")).reason == "not a regular file"
    assert "cmdline" not in opened


def test_the_live_host_never_opens_a_device_node_or_waits_on_a_fifo(fifo, monkeypatch):
    host = LiveHost()
    opened = _opened_names(monkeypatch)
    for path in ("/dev/zero", "/dev/null", str(fifo)):
        assert bounded(lambda: host.read(path)).reason == "not a regular file", path
    assert not {"zero", "null", fifo.name} & set(opened)


def test_a_fifo_swapped_in_after_the_type_check_is_not_read(tree, monkeypatch):
    tree.write("/proc/cmdline", "quiet\n")
    host = TreeHost(str(tree.root))
    swap_after_type_check(monkeypatch, "cmdline", lambda: _replace_with_fifo(tree.path("/proc/cmdline")))
    assert bounded(lambda: host.read("/proc/cmdline")).reason == "not a regular file"


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


# -- a directory swapped for a link while the scan reads -----------------------------------------

@pytest.fixture
def swappable(tmp_path):
    """A tree whose /etc/conf holds ``value`` ("tree"), and a directory outside it whose ``value``
    is the MARKER; ``swap()`` puts a link to the outside directory where /etc/conf was,
    ``restore()`` puts the directory back."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "value").write_text(MARKER)
    (outside / "outside-only").write_text(MARKER)
    tree = HostTree(tmp_path / "root")
    tree.write("/etc/conf/value", "tree\n")
    conf, away = tree.path("/etc/conf"), tree.path("/etc/conf.away")

    def swap():
        os.rename(conf, away)
        os.symlink(str(outside), conf)

    def restore():
        os.unlink(conf)
        os.rename(away, conf)

    return tree, swap, restore


def test_swapped_between_the_walk_and_the_open_the_read_is_refused(swappable, monkeypatch):
    tree, swap, _ = swappable
    host = TreeHost(str(tree.root))
    swap_after(monkeypatch, host, "_resolve_dir", swap)
    got = host.read("/etc/conf/value")
    assert got.text != MARKER
    assert got.reason == CHANGED


def test_swapped_between_the_walk_and_the_listing_the_listing_is_refused(swappable, monkeypatch):
    tree, swap, _ = swappable
    host = TreeHost(str(tree.root))
    swap_after(monkeypatch, host, "_resolve", swap)
    got = host.listdir("/etc/conf")
    assert "outside-only" not in got.entries()
    assert got.reason == CHANGED


def test_a_file_swapped_for_a_link_after_its_type_check_is_not_followed(swappable, monkeypatch):
    tree, _, _ = swappable
    value = tree.path("/etc/conf/value")

    def to_link():
        value.unlink()
        os.symlink(str(Path(tree.root).parent / "outside" / "value"), value)

    host = TreeHost(str(tree.root))
    swap_after_type_check(monkeypatch, "value", to_link)
    got = host.read("/etc/conf/value")
    assert got.text != MARKER and got.reason == CHANGED


def test_a_directory_already_walked_stays_the_one_walked(swappable):
    tree, swap, restore = swappable
    host = TreeHost(str(tree.root))
    assert host.read("/etc/conf/value").text == "tree\n"
    swap()
    try:
        # the walk went through /etc/conf already: the directory it opened is read, never the link
        assert host.read("/etc/conf/value").text == "tree\n"
        assert host.listdir("/etc/conf").names == ("value",)
        assert TreeHost(str(tree.root)).read("/etc/conf/value").reason == "missing"  # a new walk: in-root link
    finally:
        restore()


def race(swap, restore, attempt) -> None:
    """Swap the directory in and out in a thread for 3 s while ``attempt()`` reads: it returns
    (the file's text or None, the directory's names); the outside must never show."""
    stop = threading.Event()
    swaps = []

    def swapper():
        while not stop.is_set():
            swap()
            restore()
            swaps.append(1)

    worker = threading.Thread(target=swapper, daemon=True)
    worker.start()
    seen, deadline = set(), time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            text, names = attempt()
            assert text != MARKER, "a read followed the swapped-in link out of the tree"
            assert "outside-only" not in names, "a listing followed the link out of the tree"
            seen.add(text)
    finally:
        stop.set()
        worker.join(10)
    assert len(swaps) > 10 and "tree\n" in seen  # the race really ran, and reads still succeeded


def test_a_directory_swapped_in_a_loop_never_leaks_the_outside_file(swappable):
    tree, swap, restore = swappable

    def attempt():
        host = TreeHost(str(tree.root))  # a fresh walk every time: no cache hides the race
        got, listed = host.read("/etc/conf/value"), host.listdir("/etc/conf")
        host.close()
        return got.text, listed.entries()

    race(swap, restore, attempt)


# -- the tree's descriptors ------------------------------------------------------------------------

def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count descriptors")
def test_directory_descriptors_stay_bounded_and_are_closed(tree):
    import gc

    for n in range(OPEN_DIRECTORIES * 2):
        tree.write(f"/sys/devices/d{n}/vendor", "0x8086\n")
    # Hosts of earlier tests left in reference cycles close their descriptors when the collector frees
    # them: now, and not while this host's are counted.
    gc.collect()
    gc.disable()
    try:
        before = _open_descriptors()
        host = TreeHost(str(tree.root))
        for n in range(OPEN_DIRECTORIES * 2):
            assert host.read(f"/sys/devices/d{n}/vendor").text == "0x8086\n"
        assert _open_descriptors() - before <= OPEN_DIRECTORIES + 1  # the cache and the root
        host.close()
        assert _open_descriptors() == before
    finally:
        gc.enable()
    assert host.read("/sys/devices/d0/vendor").ok  # a closed host opens them again


def test_a_path_nested_deeper_than_any_host_has_is_refused(tree):
    from scanner.host.tree import MAX_DEPTH, TOO_DEEP

    deep = "/".join(["d"] * (MAX_DEPTH + 5))
    tree.write(f"/{deep}/file", "bottom\n")
    tree.symlink("/sys/deep", "/" + deep)  # one link: the walk goes all the way down
    host = TreeHost(str(tree.root))
    assert host.read("/sys/deep/file").reason == TOO_DEEP
    shallow = "/".join(["d"] * (MAX_DEPTH - 1))
    assert host.read(f"/{shallow}/d").reason == "not a regular file (a directory)"


SNIPPET = """
import json, sys
from scanner.host.tree import TreeHost
h = TreeHost(sys.argv[1])
print(json.dumps([h.read("/passage/file").text, h.listdir("/passage").reason]))
"""


def test_a_directory_that_may_be_searched_but_not_listed_is_walked_as_the_kernel_walks_it():
    require_nobody()
    base = world_readable_base("vfio-scan-search-")
    try:
        tree = HostTree(base / "root")
        os.chmod(tree.root, 0o755)
        tree.write("/passage/file", "through\n", mode=0o644)
        os.chmod(tree.path("/passage"), 0o711)  # search, no read
        proc = as_nobody(["-c", SNIPPET, str(tree.root)])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == '["through\\n", "permission denied"]'
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


# -- --root that is no host's tree -----------------------------------------------------------------

ROOT_COMMANDS = [("scan",), ("groups",), ("qemu-args", "--device", "01:00.0"), ("fix",), ("collect",)]


@pytest.mark.parametrize("command", ROOT_COMMANDS, ids=lambda c: c[0])
def test_an_empty_root_option_is_a_usage_error(command):
    one_usage_error(run_bounded(*command, "--root", ""), "--root: empty")


@pytest.mark.parametrize("command", ROOT_COMMANDS, ids=lambda c: c[0])
def test_a_folder_with_nothing_of_a_host_is_a_usage_error(command, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "etc").mkdir()  # something, but nothing that every host's tree has
    one_usage_error(run_bounded(*command, "--root", empty), f"--root {empty}: does not look like a host's tree",
                    "/proc/cmdline", "/sys/bus/pci/devices")


def test_one_sign_of_a_host_is_enough(tmp_path):
    tree = HostTree(tmp_path / "bare")
    tree.write("/proc/cmdline", "quiet\n")
    proc = run_bounded("scan", "--root", tree.root, "--format", "json")
    assert proc.returncode in (0, 1, 3) and proc.stdout.startswith("{"), proc.stderr


def test_an_empty_root_beside_a_snapshot_is_refused(tmp_path):
    snapshot = tmp_path / "s.json"
    snapshot.write_text("{}")
    one_usage_error(run_bounded("scan", "--snapshot", snapshot, "--root", ""), "cannot be combined")



# -- the collector walks beneath the root the same way -----------------------------------------------

@pytest.mark.parametrize("descriptors_kept", [True, False])
def test_the_collector_never_follows_a_directory_swapped_after_its_walk(swappable, monkeypatch, descriptors_kept):
    """Kept open, the walked directory is the one read (as TreeHost does); opened again, the link
    that replaced it is refused with the scanner's words."""
    from scanner import collector

    tree, swap, restore = swappable
    walker = collector.Collector(str(tree.root))
    real_resolve = walker._resolve

    def resolve_then_swap(path):
        parts = real_resolve(path)
        if not descriptors_kept:
            walker.close()
        swap()
        return parts

    monkeypatch.setattr(walker, "_resolve", resolve_then_swap)
    try:
        data = walker.read("/etc/conf/value")
        if descriptors_kept:
            assert data == b"tree\n"
        else:
            assert data is None and walker.entries["/etc/conf/value"]["read_error"] == CHANGED
    finally:
        restore()
        walker.close()


def test_the_collector_never_leaks_an_outside_file_while_a_directory_is_swapped_in_a_loop(swappable):
    from scanner import collector

    tree, swap, restore = swappable

    def attempt():
        walker = collector.Collector(str(tree.root))  # a fresh walk every time
        data, names = walker.read("/etc/conf/value"), walker.listdir("/etc/conf") or []
        walker.close()
        return (data.decode() if data is not None else None), names

    race(swap, restore, attempt)
