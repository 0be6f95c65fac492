"""The stall watchdog (handlers/watchdog.py), in a process of its own since it ends it: a
stuck iteration ends the process with the error line and the stacks; steady progress, and
time outside a run, do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, time
from pathlib import Path
from ignite.engine import Engine
from ignite_cls.handlers.watchdog import StallWatchdog

stuck_at = int(sys.argv[1])

def slow_step(engine, batch):
    time.sleep(30 if engine.state.iteration == stuck_at else 0.3)

engine = Engine(slow_step)
watchdog = StallWatchdog(1.0, Path(sys.argv[2]))
watchdog.attach({"test": engine})
engine.run(range(8))  # 8 x 0.3 s: longer than the timeout, but never 1 s without progress
time.sleep(2.5)  # no engine running: nothing to watch
print("finished")
"""


def run(stuck_at: int, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(stuck_at), str(log)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_stuck_iteration_ends_the_process_with_the_stacks(tmp_path):
    log = tmp_path / "run.log"
    result = run(3, log)
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: rank 0 made no progress for 1 s after test iteration 2 (dist.stall_timeout=1)"
    ), last
    assert last.endswith(f"the stacks of its threads are in {log}")
    assert "finished" not in result.stdout
    assert "in slow_step" in log.read_text()  # where the main thread was stuck


def test_steady_progress_and_idle_time_outside_a_run_are_not_stalls(tmp_path):
    result = run(0, tmp_path / "run.log")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "finished" in result.stdout and "error" not in result.stderr
