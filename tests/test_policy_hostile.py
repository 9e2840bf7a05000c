"""Hostile policy files: whatever the file holds, the user gets one line naming the file and what is
wrong in it, exit 2, before anything is scanned; never a traceback, never a rule that errors later."""

from __future__ import annotations

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
