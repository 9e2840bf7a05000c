"""The plugin guard: a plugin cannot take the CLI down, fake a verdict, or hang a scan.

Each attack goes through a real entry point and the real CLI (``python -m scanner`` in a
subprocess, as a user runs it): ``sys.exit(0)`` / ``sys.exit(1)`` / a BaseException of its own at
import, a KeyboardInterrupt at import, ``SystemExit`` and an endless loop inside a rule's check, an
import that never ends, format plugins that raise, exit or return something other than text, and
one whose renderer cannot be imported. The exit code is always the documented one (DESIGN: 0
ready, 1 not ready, 2 usage, 3 incomplete; 130 for Ctrl-C). Runs that could hang get a
deadline of their own (``VFIO_SCAN_PLUGIN_TIMEOUT``) and a subprocess timeout, so that a
regression fails instead of hanging the test run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import types

import pytest

from clihelpers import (ACME_RULE, HOST_IDS, READY_HOST_IDS, REPO, by_rule, cli_env, make_plugin, no_dmar_host, plugin_with_rule,
                        run_cli, stderr_lines)
from hardening import scan as scan_tree
from hosttree import ready_host
from scanner import hookimpl
from scanner.engine.runner import TIMEOUT_ENV, Deadline, PluginCrash, Scan, describe, run_rules
from scanner.engine.model import Finding, Rule
from scanner.output.formats import RenderFailed, render_all
from scanner.engine.plugins import load_plugins

#: What a hanging plugin is given in these tests, and how long a run may take before it counts as hung.
SHORT = "0.3"
HUNG_AFTER_S = 90


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    return ready_host(tmp_path_factory.mktemp("guard") / "ready")


@pytest.fixture(scope="module")
def not_ready(tmp_path_factory):
    return no_dmar_host(tmp_path_factory.mktemp("guard") / "no-dmar")


def run_bounded(*args, site, **env) -> subprocess.CompletedProcess:
    """``python -m scanner ARGS`` with the plugins in ``site``, failing the test (not hanging it) past HUNG_AFTER_S."""
    try:
        return subprocess.run([sys.executable, "-m", "scanner", *map(str, args)], cwd=REPO,
                              env=cli_env(site, **env), capture_output=True, text=True, timeout=HUNG_AFTER_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vfio-scan {' '.join(map(str, args))} hung for {HUNG_AFTER_S} s")


def listed(site) -> dict:
    proc = run_cli("plugins", "--format", "json", pythonpath=site)
    assert proc.returncode == 0, proc.stderr
    return {p["name"]: p for p in json.loads(proc.stdout)}


# -- at import ------------------------------------------------------------------------------------

AT_IMPORT = {
    "exit-0": ("import sys\nsys.exit(0)\n", "SystemExit: 0"),
    "exit-1": ("import sys\nsys.exit(1)\n", "SystemExit: 1"),
    "exit-bare": ("import sys\nsys.exit()\n", "SystemExit"),
    "own-baseexception": ("class Boom(BaseException):\n    pass\n\nraise Boom('acme went boom')\n",
                          "Boom: acme went boom"),
    "generatorexit": ("raise GeneratorExit('closing')\n", "GeneratorExit: closing"),
}


@pytest.mark.parametrize("case", sorted(AT_IMPORT))
@pytest.mark.parametrize("host, verdict", [("ready", 0), ("not_ready", 1)])
def test_an_exit_at_import_is_a_warning_and_the_verdict_stays_the_hosts(case, host, verdict, request, tmp_path):
    source, words = AT_IMPORT[case]
    site = make_plugin(tmp_path / "site", source)
    proc = run_bounded("scan", "--root", request.getfixturevalue(host).root, "--format", "json", site=site)
    assert proc.returncode == verdict, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = stderr_lines(proc)
    assert line == f"vfio-scan: warning: plugin 'acme' (entry point acme_vfio (acme-vfio 1.0)) failed to load: {words}"
    assert set(by_rule(json.loads(proc.stdout))) >= set(HOST_IDS)  # the scan itself ran whole


@pytest.mark.parametrize("case", sorted(AT_IMPORT))
def test_an_exit_at_import_is_an_error_under_strict_plugins(case, ready, tmp_path):
    source, words = AT_IMPORT[case]
    site = make_plugin(tmp_path / "site", source)
    proc = run_bounded("scan", "--root", ready.root, "--strict-plugins", site=site)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = stderr_lines(proc)
    assert "'acme'" in line and words in line and line.endswith("[--strict-plugins]")


@pytest.mark.parametrize("case", ["exit-0", "own-baseexception"])
def test_plugins_lists_an_exit_at_import_as_failed(case, tmp_path):
    source, words = AT_IMPORT[case]
    site = make_plugin(tmp_path / "site", source)
    acme = listed(site)["acme"]
    assert acme["error"] == words and acme["rules"] == [] and acme["source"].startswith("entry point acme_vfio")
    table = run_cli("plugins", pythonpath=site)
    assert table.returncode == 0 and "FAILED" in table.stdout and "Traceback" not in table.stderr


def test_a_keyboard_interrupt_at_import_is_the_users_ctrl_c(ready, tmp_path):
    """Decided: a plugin's KeyboardInterrupt cannot be told from the user's Ctrl-C, so it ends the run
    as Ctrl-C does (exit 130) -- never as a verdict."""
    site = make_plugin(tmp_path / "site", "raise KeyboardInterrupt\n")
    proc = run_bounded("scan", "--root", ready.root, site=site)
    assert proc.returncode == 130 and stderr_lines(proc) == ["vfio-scan: interrupted"]


def test_an_import_that_never_ends_is_stopped_at_the_deadline(ready, tmp_path):
    site = make_plugin(tmp_path / "site", "while True:\n    pass\n")
    proc = run_bounded("scan", "--root", ready.root, site=site, **{TIMEOUT_ENV: SHORT})
    assert proc.returncode == 0, proc.stderr
    (line,) = stderr_lines(proc)
    assert "'acme'" in line and f"did not finish within {SHORT} s" in line


def test_a_registration_hook_that_exits_is_a_failure(tmp_path):
    site = make_plugin(tmp_path / "site", '''
        from scanner import hookimpl

        @hookimpl
        def vfio_scan_register_formats(register):
            raise SystemExit(0)
    ''')
    assert listed(site)["acme"]["error"] == "SystemExit: 0"


# -- inside a rule's check ------------------------------------------------------------------------

IN_CHECK = {
    "exit-0": ("import sys\n        sys.exit(0)\n        yield", "failed: SystemExit: 0"),
    "own-baseexception": ("class Boom(BaseException):\n            pass\n        raise Boom('mid-scan')\n        yield",
                          "failed: Boom: mid-scan"),
    "endless-loop": ("while True:\n            pass\n        yield", f"did not finish within {SHORT} s"),
    "endless-sleep": ("import time\n        time.sleep(3600)\n        yield", f"did not finish within {SHORT} s"),
    # catches the deadline and says "pass": its answer is not trusted
    "swallows-the-deadline": ("try:\n            while True:\n                pass\n        except BaseException:\n"
                              "            pass\n        yield Finding.passed('all good')",
                              f"did not finish within {SHORT} s"),
}


@pytest.mark.parametrize("case", sorted(IN_CHECK))
def test_a_check_that_exits_or_hangs_is_that_rules_error(case, ready, tmp_path):
    body, words = IN_CHECK[case]
    site = make_plugin(tmp_path / "site", plugin_with_rule(ACME_RULE, body))
    started = time.monotonic()
    proc = run_bounded("scan", "--root", ready.root, "--format", "json", site=site, **{TIMEOUT_ENV: SHORT})
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ""
    found = by_rule(json.loads(proc.stdout))
    assert found["ACME-100"]["status"] == "error" and words in found["ACME-100"]["message"]
    assert "plugin acme" in found["ACME-100"]["message"]
    assert all(found[r]["status"] == "pass" for r in READY_HOST_IDS)  # the scan went on
    assert time.monotonic() - started < 30


def test_a_hanging_check_in_worker_processes(ready, tmp_path):
    """Many snapshots are scanned in forked workers (scanner/engine/hostpool.py): each is its own main
    thread, so the deadline holds there too. A second rule reports the process it ran in."""
    snapshot = tmp_path / "ready.json"
    assert run_cli("collect", "--root", ready.root, "-o", snapshot).returncode == 0
    many = tmp_path / "many"
    many.mkdir()
    for n in range(16):
        (many / f"h{n:02d}.json").write_text(snapshot.read_text())
    site = make_plugin(tmp_path / "site", '''
        """ACME-100 / ACME-101: a rule that hangs, and one that names its process."""
        import os
        from scanner import hookimpl
        from scanner.engine.model import Finding, Rule

        @hookimpl
        def vfio_scan_register_rules(register):
            register(Rule(id="ACME-100", name="acme-hang", scope="host", severity="low", title="hangs",
                          check=hang, docs=__doc__))
            register(Rule(id="ACME-101", name="acme-pid", scope="host", severity="low", title="pid",
                          check=pid, docs=__doc__))

        def hang(facts, scan):
            while True:
                pass

        def pid(facts, scan):
            yield Finding.passed(f"pid {os.getpid()}")
    ''')
    proc = run_bounded("scan", "--snapshot", many, "--format", "json", site=site,
                       VFIO_SCAN_PROCESSES="2", **{TIMEOUT_ENV: SHORT})
    assert proc.returncode == 3, proc.stderr
    hosts = json.loads(proc.stdout)["hosts"]
    assert len(hosts) == 16
    for host in hosts:
        assert "did not finish within" in by_rule(host)["ACME-100"]["message"]
    pids = {by_rule(host)["ACME-101"]["message"] for host in hosts}
    if len(pids) == 1:
        pytest.skip("scanned in one process here (one CPU, or no fork): the in-process deadline was tested above")


# -- format plugins ---------------------------------------------------------------------------------

def format_plugin(body: str, target: str = "acme_vfio:render") -> str:
    return f'''
        from scanner import hookimpl

        @hookimpl
        def vfio_scan_register_formats(register):
            register("acme", "{target}", "the ACME dashboard's format")

        def render(reports, options):
            {body}
    '''


RENDERERS = {
    "raises": ("raise RuntimeError('dashboard down')", "RuntimeError: dashboard down"),
    "exits-0": ("import sys\n            sys.exit(0)", "SystemExit: 0"),
    "own-baseexception": ("class Boom(BaseException):\n                pass\n            raise Boom('render')",
                          "Boom: render"),
    "returns-bytes": ("return b'<dashboard/>'", "returned a bytes, not text"),
    "returns-none": ("return None", "returned a NoneType, not text"),
    "hangs": ("while True:\n                pass", f"did not finish within {SHORT} s ({TIMEOUT_ENV})"),
}


@pytest.mark.parametrize("case", sorted(RENDERERS))
@pytest.mark.parametrize("host", ["ready", "not_ready"])
def test_a_broken_format_plugin_is_one_line_and_exit_3(case, host, request, tmp_path):
    body, words = RENDERERS[case]
    site = make_plugin(tmp_path / "site", format_plugin(body))
    proc = run_bounded("scan", "--root", request.getfixturevalue(host).root, "--format", "acme", site=site,
                       **{TIMEOUT_ENV: SHORT})
    assert proc.returncode == 3, proc.stderr
    assert stderr_lines(proc) == [f"vfio-scan scan: error: format 'acme' from plugin acme failed: {words}"]


def test_the_other_outputs_are_written_when_a_format_plugin_fails(ready, tmp_path):
    site = make_plugin(tmp_path / "site", format_plugin("raise RuntimeError('dashboard down')"))
    report, junit = tmp_path / "report.json", tmp_path / "report.xml"
    proc = run_bounded("scan", "--root", ready.root, "--format", "acme", "--json", report, "--junit", junit, site=site)
    assert proc.returncode == 3
    assert stderr_lines(proc) == ["vfio-scan scan: error: format 'acme' from plugin acme failed: RuntimeError: "
                                  "dashboard down"]
    assert json.loads(report.read_text())["summary"]["readiness"] == "READY"
    assert junit.read_text().startswith("<?xml")


def test_a_format_whose_renderer_cannot_be_imported_is_listed_as_failed(ready, tmp_path):
    site = make_plugin(tmp_path / "site", format_plugin("return ''", target="acme_missing:render"))
    acme = listed(site)["acme"]
    assert acme["formats"] == ["acme"]
    assert acme["error"] == "format 'acme': ModuleNotFoundError: No module named 'acme_missing'"
    assert "FAILED" in run_cli("plugins", pythonpath=site).stdout
    strict = run_cli("plugins", "--strict-plugins", pythonpath=site)
    assert strict.returncode == 2 and "acme_missing" in strict.stderr and "[--strict-plugins]" in strict.stderr
    proc = run_bounded("scan", "--root", ready.root, "--format", "acme", site=site)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and "format 'acme'" in proc.stderr


def test_render_all_keeps_the_outputs_that_rendered(ready):
    """What a caller writes when one format fails: the others, rendered in full."""
    module = types.ModuleType("broken_format_plugin")
    module.render = lambda reports, options: b"not text"
    sys.modules["broken_format_plugin"] = module

    @hookimpl
    def vfio_scan_register_formats(register):
        register("broken", "broken_format_plugin:render", "a format that returns bytes")

    module.vfio_scan_register_formats = vfio_scan_register_formats
    try:
        registry = load_plugins(extra=[module], autoload=False)
        _, report = scan_tree(ready.root, rules=registry.sorted_rules(), devices=(), vfs=())
        with pytest.raises(RenderFailed) as caught:
            render_all(registry, [report], [("broken", "-"), ("json", "out.json"), ("table", "t.txt")])
    finally:
        sys.modules.pop("broken_format_plugin", None)
    assert str(caught.value) == "format 'broken' from plugin broken_format_plugin failed: returned a bytes, not text"
    assert [path for _, path in caught.value.rendered] == ["out.json", "t.txt"]
    assert json.loads("".join(caught.value.rendered[0][0]))["host"]  # the JSON report streams: its pieces


# -- the guard itself -------------------------------------------------------------------------------

def _rule(check, rule_id="GRD-100"):
    rule = Rule(id=rule_id, name="guarded-rule", scope="host", severity="low", title="guarded", check=check,
                docs=f"{rule_id} guarded-rule: a rule for the guard's tests.")
    object.__setattr__(rule, "plugin", "guard_tests")
    return rule


def _hang(facts, scan):
    while True:
        pass


def _passes(facts, scan):
    return [Finding.passed("fine")]


def test_run_rules_restores_sigalrm_and_leaves_no_timer(monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "0.2")
    before = signal.getsignal(signal.SIGALRM)
    findings = run_rules([_rule(_hang), _rule(_passes, "GRD-101")], facts=None, scan=Scan())
    assert [(f.rule_id, f.status) for f in findings] == [("GRD-100", "error"), ("GRD-101", "pass")]
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_timer_left_by_a_call_that_ended_early_fires_on_nothing(monkeypatch):
    """One timer call per rule: a call that ends early leaves its timer to the next call, so the alarm
    may come between calls, in the engine's own code. There it is ignored; each call gets its whole
    deadline; leaving stops the timer."""
    import _signal  # what the guard calls

    calls = []
    real_setitimer = _signal.setitimer
    monkeypatch.setattr(_signal, "setitimer", lambda *args: calls.append(args) or real_setitimer(*args))
    with Deadline(0.1) as deadline:
        assert deadline.call(time.sleep, 0.06) is None  # ends with 0.04 s of its timer left
        time.sleep(0.15)  # the engine's own code meanwhile: the alarm comes here, and is ignored
        assert deadline.call(time.sleep, 0.08) is None  # under its own 0.1 s, whatever the last one left
        with pytest.raises(PluginCrash, match="did not finish within 0.1 s"):
            deadline.call(time.sleep, 5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert len(calls) == 3 + 1  # one per call, and one to stop it on leaving


def test_an_alarm_handled_late_never_cuts_the_next_call_short():
    """Python runs a signal's handler some bytecodes after the signal: an alarm of an earlier call's timer
    may be handled just after the next call has started. It is ignored; that call still has its time."""
    with Deadline(0.2) as deadline:
        stale = lambda: deadline._on_alarm(signal.SIGALRM, None) or "answered"  # noqa: E731
        assert deadline.call(stale) == "answered"
        with pytest.raises(PluginCrash, match="did not finish within 0.2 s"):
            deadline.call(time.sleep, 5)


def test_someone_elses_timer_is_left_alone(monkeypatch):
    """A real-time timer already running (pytest-timeout's, a caller's alarm): no deadline, nothing touched."""
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        with Deadline(0.1) as deadline:
            assert deadline.call(lambda: 42) == 42
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 20
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == []


def test_outside_the_main_thread_no_deadline_but_still_a_guard():
    """Only the main thread gets signals (``vfio-scan fleet`` scans in threads): there the guard has no
    deadline, yet still turns an exit() into the rule's error, and nothing crashes."""
    results = {}

    def scan_in_a_thread():
        with Deadline(0.1) as deadline:
            results["value"] = deadline.call(lambda: (time.sleep(0.3), "finished")[1])
        results["findings"] = run_rules([_rule(lambda facts, scan: sys.exit(0))], facts=None, scan=Scan())

    thread = threading.Thread(target=scan_in_a_thread, daemon=True)
    thread.start()
    thread.join(30)
    assert results["value"] == "finished"
    (finding,) = results["findings"]
    assert finding.status == "error" and "SystemExit: 0" in finding.message


def test_ctrl_c_goes_through_the_guard():
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Deadline().call(interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_rules([_rule(lambda facts, scan: interrupted())], facts=None, scan=Scan())


def test_an_exception_whose_text_fails_is_still_described():
    class Nasty(BaseException):
        def __str__(self):
            raise SystemExit("not even this")

    def crash():
        raise Nasty()

    assert describe(Nasty()) == "Nasty"
    with pytest.raises(PluginCrash, match="^Nasty$"):
        Deadline().call(crash)


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "1e10", "86400.5"])
def test_a_bad_timeout_is_a_usage_error(value, ready):
    """1e10 s overflowed setitimer's time_t: every rule errored (exit 3) instead of one line, exit 2."""
    proc = run_cli("scan", "--root", ready.root, **{TIMEOUT_ENV: value})
    assert proc.returncode == 2 and proc.stdout == ""
    assert stderr_lines(proc) == [f"vfio-scan scan: error: {TIMEOUT_ENV}={value}: expected a number of seconds "
                                  "up to 86400, a day (0: no deadline)"]


def test_a_day_is_the_longest_timeout_taken(ready):
    proc = run_cli("scan", "--root", ready.root, "--format", "json", **{TIMEOUT_ENV: "86400"})
    assert proc.returncode == 0, proc.stderr
    assert '"status": "error"' not in proc.stdout


def test_zero_turns_the_deadline_off(monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "0")
    before = signal.getsignal(signal.SIGALRM)
    seen = []
    run_rules([_rule(lambda facts, scan: seen.append(signal.getsignal(signal.SIGALRM)) or _passes(facts, scan))],
              facts=None, scan=Scan())
    assert seen == [before]


# -- the command line's last line of defence --------------------------------------------------------

@pytest.mark.parametrize("raised, words", [
    (SystemExit(0), "stopped by SystemExit: 0"),
    (GeneratorExit(), "stopped by GeneratorExit"),
    (ValueError("a bug"), "internal error"),
])
def test_whatever_escapes_a_command_is_exit_3_never_a_verdict(raised, words, monkeypatch, capsys):
    from scanner import cli
    from scanner.commands import rules

    def run(args):
        raise raised

    monkeypatch.setattr(rules, "run", run)
    assert cli.main(["rules"]) == 3
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("vfio-scan rules: error: ") and words in last and last.endswith("the result is incomplete")

