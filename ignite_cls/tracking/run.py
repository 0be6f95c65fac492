"""One MLflow run around a command, as the command sees it: a few calls that hand the work to
the tracking agent (``agent.py``), which records it while the command goes on.

Only rank 0 records (other ranks, and ``mlflow.enabled=False``, make every method a no-op).
Metrics are buffered and handed over in one batch at a time, never one write per iteration.
A run ends FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM (``Interrupted``
from the training's signals handler, ``KeyboardInterrupt``, or ``SystemExit``: where no
handler owns SIGTERM, as in a test run, the tracker turns it into ``SystemExit(143)``).
``--resume`` re-opens the run whose id the checkpoint carries; params already logged keep
their first value (MLflow rejects changes) and the changes are listed in the tag
``ignite_cls.changed_on_resume``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from ignite_cls.config import format_config
from ignite_cls.errors import Interrupted, UserError, one_line
from ignite_cls.tracking import agent

logger = logging.getLogger("ignite_cls")

FLUSH_SECONDS = 30.0  # buffered metrics reach the store at least this often
STOP_EXCEPTIONS = (KeyboardInterrupt, SystemExit, Interrupted)


def run_status(error: BaseException | None) -> str:
    if error is None:
        return "FINISHED"
    return "KILLED" if isinstance(error, STOP_EXCEPTIONS) else "FAILED"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class RunTracker:
    """One MLflow run around a command. The run opens in ``start`` (``_open``) and ends when
    the ``with`` block ends; ``log_artifact``, ``log_text`` and ``log_dict`` add files to it
    (other handlers use them, e.g. for visualised predictions)."""

    command = ""

    def __init__(self, job: Any):
        self.job = job
        self.agent = agent.start(job)  # None off rank 0 or with mlflow.enabled=False
        self.active = self.agent is not None
        self.run_id: str | None = None
        self._pending: list[tuple[str, float, int, int]] = []
        self._pending_since = 0.0
        self._previous_sigterm: Any = None

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> None:
        if self.run_id is None:
            return
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self.flush()
        self.log_text(format_config(self.job.cfg), f"config/{self.job.config_stem}.py")
        files = []
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.flush()
                files.append((handler.baseFilename, "logs"))
        message = None if error is None else f"{type(error).__name__}: {one_line(error)}"
        answer = self.agent.call("close", run_status(error), message, files)
        self.agent.finish()
        status, problem = (
            answer.get("status", "FAILED"),
            answer.get("problem") or answer.get("error"),
        )
        if problem is not None and error is None:
            raise UserError(f"mlflow: could not finish run {self.run_id}: {problem}")
        if problem is not None:
            logger.warning(f"mlflow: could not finish run {self.run_id}: {problem}")
        logger.info(f"mlflow: run {self.run_id} ended {status}")

    def _open(
        self,
        params: dict[str, Any],
        tags: dict[str, str],
        resume_id: str | None,
        datasets: list[tuple[str, dict, str, dict]] = (),
    ) -> None:
        """Open (or continue) the run; the agent prepared the store while the command
        started, so this waits only for the run's own creation."""
        answer = self.agent.call("open", params, tags, resume_id, list(datasets))
        if "error" in answer:
            raise UserError(f"MLflow store: {answer['error']}")
        if resume_id and not answer["continuing"]:
            logger.warning(
                f"mlflow: run {resume_id} of the checkpoint is not in this store; new run"
            )
        if answer["notice"]:
            logger.warning(answer["notice"])
        self.run_id = answer["run_id"]
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        verb = "continuing" if answer["continuing"] else "recording"
        logger.info(
            f"mlflow: {verb} run '{answer['run_name']}' ({self.run_id}) in experiment "
            f"'{answer['experiment']}'; view with: {answer['view']}"
        )

    # ------------------------------------------------------------ metrics

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer metrics; they go to the agent at the next ``flush``, or now when the oldest
        waits longer than ``FLUSH_SECONDS``."""
        if self.run_id is None:
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        now = int(time.time() * 1000)
        self._pending += [(k, float(v), now, step) for k, v in metrics.items()]
        if time.monotonic() - self._pending_since > FLUSH_SECONDS:
            self.flush()

    def set_tag(self, name: str, value: str) -> None:
        if self.run_id is not None:
            self.agent.send("tag", name, value)

    def flush(self) -> None:
        if self._pending:
            self.agent.send("metrics", self._pending)
            self._pending = []

    # ------------------------------------------------------------ files

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self.agent.send("artifact", str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.run_id is not None:
            self.agent.send("text", text, artifact_file)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if self.run_id is not None:
            self.agent.send("dict", data, artifact_file)
