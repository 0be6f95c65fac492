"""A test whose service is missing is skipped on a developer's machine and fails in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
NEEDS_A_SERVICE = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})
from helpers import unavailable


def test_needs_a_service():
    unavailable("the service is absent")
"""


@pytest.mark.parametrize(("ci", "outcome"), [(None, "1 skipped"), ("1", "1 failed")])
def test_a_missing_service_skips_here_and_fails_in_ci(tmp_path, ci, outcome):
    (tmp_path / "test_service.py").write_text(NEEDS_A_SERVICE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "test_service.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert outcome in result.stdout, result.stdout[-2000:]
    assert "the service is absent" in result.stdout  # the reason is printed either way
