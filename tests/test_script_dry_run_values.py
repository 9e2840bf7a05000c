"""DRY_RUN takes 1 or 0 and nothing else: any other value changes nothing and says why.

Operators run the fix and its undo as root on production hosts. One who types ``DRY_RUN=true``,
``yes`` or ``on`` to be safe means a dry run; the scripts used to test only "is it 1", so every
such value applied the fix for real.
"""

import os
import subprocess

import pytest

from hosttree import workstation
from scriptrun import Shims, fingerprint, run_script, script_for
from test_script_tree_mode import backups

TARGETS = dict(devices=["01:00.0", "06:01.0"])
NOT_A_SWITCH = ["true", "yes", "on", "false", " 1", "01", "0 ", "1;"]


def _run(path, root, value, shims):
    env = dict(os.environ, ROOT=str(root), DRY_RUN=value, PATH=f"{shims.dir}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value", NOT_A_SWITCH)
def test_the_fix_refuses_a_dry_run_value_other_than_0_or_1_and_changes_nothing(tmp_path, value):
    tree = workstation(tmp_path / "ws")
    shims = Shims(tmp_path)
    script = tmp_path / "fix.sh"
    script.write_text(script_for(tree.root, **TARGETS))
    before = fingerprint(tree.root)
    proc = _run(script, tree.root, value, shims)
    assert proc.returncode == 2
    assert proc.stderr == (f"DRY_RUN={value}: expected 1 (only print what would be done, the default) or 0 "
                           "(do it); nothing was done\n")
    assert proc.stdout == ""
    assert fingerprint(tree.root) == before
    assert shims.calls() == []


def test_the_undo_refuses_a_dry_run_value_other_than_0_or_1_and_restores_nothing(tmp_path):
    tree = workstation(tmp_path / "ws")
    shims = Shims(tmp_path)
    assert run_script(script_for(tree.root, **TARGETS), tree.root, shims).returncode == 0
    undo = backups(tree.root) / "undo.sh"
    after_fix = fingerprint(tree.root)
    for value in NOT_A_SWITCH:
        proc = _run(undo, tree.root, value, shims)
        assert proc.returncode == 2, value
        assert proc.stderr.startswith(f"DRY_RUN={value}: expected 1 "), value
        assert fingerprint(tree.root) == after_fix, value
    # 1 and 0 still mean what they meant: a dry run, then the undo itself
    assert _run(undo, tree.root, "1", shims).returncode == 0
    assert fingerprint(tree.root) == after_fix
    assert _run(undo, tree.root, "0", shims).returncode == 0
    assert fingerprint(tree.root) != after_fix


def test_an_unset_or_empty_dry_run_is_a_dry_run(tmp_path):
    tree = workstation(tmp_path / "ws")
    shims = Shims(tmp_path)
    script = tmp_path / "fix.sh"
    script.write_text(script_for(tree.root, **TARGETS))
    before = fingerprint(tree.root)
    proc = _run(script, tree.root, "", shims)
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing is changed (DRY_RUN=0 applies it)" in proc.stdout
    assert fingerprint(tree.root) == before
