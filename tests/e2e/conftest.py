"""Fixtures of the end-to-end tests: real kernel boots under the QEMU harness (see guest.py).

Each scenario boots once (a module- or session-scoped fixture) and every test of the scenario
asserts on what that one boot left in its out folder. The boots run one after the other.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guest  # noqa: E402
from closed_loop import CLOSED_LOOP_BODY, POLICY_TEXT, collect_available  # noqa: E402


@pytest.fixture(scope="session")
def closed_loop(tmp_path_factory):
    """The closed loop on VT-d with ``intel_iommu=on iommu=pt``: scan, fix, rescan, QEMU, collect."""
    out = tmp_path_factory.mktemp("e2e-closed-loop")
    (out / "tcg-waiver.toml").write_text(POLICY_TEXT)
    env = {"E2E_COLLECT": "1" if collect_available() else "0"}
    return guest.boot("closed-loop", CLOSED_LOOP_BODY, out, cmdline="intel_iommu=on iommu=pt", env=env)


def pytest_terminal_summary(terminalreporter):
    if guest.BOOTS:
        total = sum(wall for _, wall in guest.BOOTS)
        each = ", ".join(f"{name} {wall:.0f}s" for name, wall in guest.BOOTS)
        terminalreporter.write_line(f"e2e: {len(guest.BOOTS)} guest boot(s), {total:.0f}s in all ({each})")
