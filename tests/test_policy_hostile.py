"""Hostile policy files: whatever the file holds, the user gets one line naming the file and what is
wrong in it, exit 2, before anything is scanned; never a traceback, never a rule that errors later."""

from __future__ import annotations

import json

import pytest
from clihelpers import run_cli, stderr_lines

DEEP = 100000


def _deep_policies():
    yield "deep.json", "[" * DEEP, "objects"                                  # the C decoder's RecursionError
    yield "moderate.json", '{"version": 1, "description": ' + "[" * 500 + "]" * 500 + "}", "objects"
    yield "deep.toml", "x = " + "[" * DEEP, "tables"                          # tomllib recurses per array
    yield "inline.toml", "x = " + "{a = " * DEEP, "tables"                    # ... and per inline table
    yield "dotted.toml", "[" + "a." * 50000 + "a]\n", "tables"                  # parsed flat, nested deep
    yield "moderate.toml", "version = 1\nx = " + "[" * 100 + "]" * 100 + "\n", "tables"


@pytest.mark.parametrize("command", ["scan", "qemu-args"])
@pytest.mark.parametrize("name, text, kinds", list(_deep_policies()), ids=[p[0] for p in _deep_policies()])
def test_a_deeply_nested_policy_is_one_line_exit_2(tmp_path, intel_host, command, name, text, kinds):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    proc = run_cli(command, "--root", intel_host.root, "--device", "00:02.0", "--policy", path)
    assert "Traceback" not in proc.stderr
    assert stderr_lines(proc) == [f"vfio-scan {command}: error: policy {path}: too deeply nested "
                                  f"(arrays or {kinds} over 32 levels deep; a policy has 4)"]
    assert proc.returncode == 2 and proc.stdout == ""


TARGET = {"address": "0000:01:00.0"}
WAIVER = {"rule": "VFIO-015", "justification": "BIOS update pending"}


def _with(field, value):
    """A valid JSON policy but for ``value`` at ``field`` (a JSON pointer)."""
    cases = {
        "/description": {"description": value},
        "/targets/0/driver": {"targets": [dict(TARGET, driver=value)]},
        "/targets/0/address": {"targets": [{"address": value}]},
        "/targets/0/match/vendor": {"targets": [{"match": {"vendor": value}}]},
        "/targets/0/match/class": {"targets": [{"match": {"class": value}}]},
        "/rules/only/0": {"rules": {"only": [value]}},
        "/rules/severity/VFIO-006": {"rules": {"severity": {"VFIO-006": value}}},
        "/waivers/0/rule": {"waivers": [dict(WAIVER, rule=value)]},
        "/waivers/0/subject": {"waivers": [dict(WAIVER, subject=value)]},
        "/waivers/0/host": {"waivers": [dict(WAIVER, host=value)]},
        "/waivers/0/justification": {"waivers": [dict(WAIVER, justification=value)]},
        "/waivers/0/expires": {"waivers": [dict(WAIVER, expires=value)]},
    }
    return dict({"version": 1}, **cases[field])


CONTROL = [("/description", "GPU box\n"), ("/targets/0/driver", "vfio-pci\n"),
           ("/targets/0/address", "0000:01:00.0\n"), ("/targets/0/match/vendor", "10de\n"),
           ("/targets/0/match/class", "03\r\n"), ("/rules/only/0", "VFIO-013\n"),
           ("/rules/severity/VFIO-006", "high\n"), ("/waivers/0/rule", "VFIO-015\n"),
           ("/waivers/0/subject", "01:00.0\n"), ("/waivers/0/host", "ws-*\x1b[2J"),
           ("/waivers/0/justification", "ok\x00"), ("/waivers/0/expires", "2027-06-30\n")]


@pytest.mark.parametrize("pointer, value", CONTROL, ids=[c[0] for c in CONTROL])
def test_a_control_character_in_any_policy_string_is_refused_at_load(tmp_path, pointer, value):
    """A trailing newline passes a schema pattern (Python's '$' matches before it) and reached the
    remediation commands; any control character in any string is refused, naming where it is."""
    from scanner.policy.file import PolicyError, load_policy

    path = tmp_path / "policy.json"
    path.write_text(json.dumps(_with(pointer, value)), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(str(path), known_rules={"VFIO-006", "VFIO-013", "VFIO-015"})
    assert str(info.value) == (f"policy {path}: at {pointer}: {value!r} holds a control character "
                               f"(U+{ord(next(c for c in value if ord(c) < 32)):04X}); no policy value has one")


def test_a_driver_with_a_trailing_newline_is_exit_2_before_scanning(tmp_path, intel_host):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(_with("/targets/0/driver", "vfio-pci\n")), encoding="utf-8")
    proc = run_cli("scan", "--root", intel_host.root, "--policy", path)
    assert stderr_lines(proc) == [f"vfio-scan scan: error: policy {path}: at /targets/0/driver: 'vfio-pci\\n' "
                                  "holds a control character (U+000A); no policy value has one"]
    assert proc.returncode == 2 and proc.stdout == ""


def test_toml_names_the_key_and_line_of_a_control_character(tmp_path, intel_host):
    path = tmp_path / "policy.toml"
    path.write_text('version = 1\n\n[[targets]]\naddress = "01:00.0"\ndriver = "vfio-pci\\n"\n'
                    '"dri\\tver" = "x"\n', encoding="utf-8")
    proc = run_cli("qemu-args", "--root", intel_host.root, "--policy", path)
    assert stderr_lines(proc) == [f"vfio-scan qemu-args: error: policy {path}: targets[0].driver (line 5): "
                                  "'vfio-pci\\n' holds a control character (U+000A); no policy value has one "
                                  "(and 1 more problem)"]
    assert proc.returncode == 2 and proc.stdout == ""
