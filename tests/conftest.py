"""Shared fixtures: fixture host trees built by code, and the real inputs in ../shared/data."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hosttree import SHARED_DATA, HostTree, ready_host  # noqa: E402
from systools import require_tool  # noqa: E402,F401  (kept importable from here)


@pytest.fixture
def tree(tmp_path):
    """An empty host tree to fill."""
    return HostTree(tmp_path / "root")


@pytest.fixture
def intel_host(tmp_path):
    """A complete Intel host on which every host rule passes."""
    return ready_host(tmp_path / "intel")


@pytest.fixture
def amd_host(tmp_path):
    return ready_host(tmp_path / "amd", vendor="amd")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA

