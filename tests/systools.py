"""System tools the tests need (shellcheck, setpriv, sshd, ...): found, skipped, or a CI failure."""

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of a system tool a test needs: skipped when absent, but a failure under CI (which installs it)."""
    found = shutil.which(name)
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed, and .ci/run should have installed it")
        pytest.skip(f"{name} is not installed")
    return found
