"""What the test modules share (the tests folder is on sys.path: ``import helpers``): the one
way to run the command line, and small readers of what it leaves behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.py")
NO_MLFLOW = "mlflow.enabled=False"
TRACKED_COMMANDS = ("train", "test", "predict")  # the commands that open an MLflow run


def free_port() -> int:
    """A TCP port nobody listens on now: each multi-process job gets its own rendezvous port,
    so jobs of tests running side by side never meet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: object) -> list[str]:
    """The argv of ``python -m ignite_cls ARGS`` with this interpreter."""
    return [sys.executable, "-m", "ignite_cls", *map(str, args)]


def cpu_env(**extra: str) -> dict[str, str]:
    """This environment with CUDA hidden (the suite runs on the CPU) and no tracking URI
    (runs go to MLflow's default store in the working folder, never to a user's server),
    plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "CUDA_VISIBLE_DEVICES": "", **extra}


def run_cli(
    *args: object,
    cwd: Path,
    env: dict[str, str] | None = None,
    tracked: bool = False,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """Run ``python -m ignite_cls ARGS`` to its end on the CPU, output captured (so stderr is
    not a terminal), stdin closed. Without an MLflow run unless ``tracked``: a tracked run
    costs seconds, and test_mlflow.py covers the runs. ``env`` adds variables."""
    argv = list(map(str, args))
    if not tracked and argv[0] in TRACKED_COMMANDS and "--help" not in argv:
        argv += ["--cfg-options", NO_MLFLOW]
    return subprocess.run(
        cli(*argv),
        cwd=cwd,
        env=cpu_env(**(env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed run (asserting exit code 2, exactly one such
    line, printed last, and no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert lines[-1] == errors[0], "the error is the last thing printed"
    return errors[0]


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights a checkpoint holds."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose service or data is missing on this machine; in CI (``CI`` set, as
    ``.ci/run`` sets it, providing every service) fail it instead, so a broken service
    cannot turn into a green run."""
    if os.environ.get("CI"):
        pytest.fail(f"CI runs this test, but: {reason}", pytrace=False)
    pytest.skip(reason)
