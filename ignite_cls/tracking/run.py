"""One MLflow run around a command: opening (or re-opening on ``--resume``), buffered
metrics, files, and the ending.

Only rank 0 opens a run (other ranks never import MLflow). Metrics are buffered and written
with one ``log_batch`` at a time, never one database write per iteration.

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
import secrets
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ignite.distributed as idist

from ignite_cls.config import format_config, setting
from ignite_cls.errors import Interrupted, one_line
from ignite_cls.tracking.records import GIT_TAGS, described_dataset, param_entries
from ignite_cls.tracking.store import experiment_name, open_store, resolve_tracking_uri, view_hint

logger = logging.getLogger("ignite_cls")

ERROR_TAG = "ignite_cls.error"
FLUSH_SECONDS = 30.0  # buffered metrics reach the store at least this often
STOP_EXCEPTIONS = (KeyboardInterrupt, SystemExit, Interrupted)


def run_status(error: BaseException | None) -> str:
    if error is None:
        return "FINISHED"
    return "KILLED" if isinstance(error, STOP_EXCEPTIONS) else "FAILED"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class RunTracker:
    """One MLflow run around a command; inactive (every method a no-op) off rank 0 or with
    ``mlflow.enabled=False``. The run opens in ``start`` and ends when the ``with`` block ends.

    ``log_artifact``, ``log_text`` and ``log_dict`` add files to the open run (other
    handlers use them, e.g. for visualised predictions).
    """

    command = ""

    def __init__(self, job: Any):
        self.job = job
        self.active = bool(setting(job.cfg, "mlflow.enabled")) and idist.get_rank() == 0
        self.run_id: str | None = None
        self.client: Any = None
        self._pending: list = []
        self._pending_since = 0.0
        self._previous_sigterm: Any = None

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: Any, error: BaseException | None, traceback: Any) -> None:
        if self.run_id is None:
            return
        import mlflow

        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        status = run_status(error)
        problem = None
        try:
            self._close(error)
        except Exception as e:
            problem = e
            status = status if error is not None else "FAILED"
        try:
            mlflow.end_run(status)
        except Exception as e:
            problem = problem or e
        if problem is not None and error is None:
            raise problem
        if problem is not None:
            logger.warning(f"mlflow: could not finish run {self.run_id}: {one_line(problem)}")
        logger.info(f"mlflow: run {self.run_id} ended {status}")

    # ------------------------------------------------------------ opening and closing

    def _open(self, params: dict[str, Any], tags: dict[str, str], resume_id: str | None) -> None:
        import mlflow
        from mlflow.entities import Param, RunTag

        cfg = self.job.cfg
        uri, origin = resolve_tracking_uri(cfg)
        self.client, experiment_id = open_store(uri, experiment_name(self.job), origin)
        mlflow.set_tracking_uri(uri)
        previous = self._resumable(resume_id)
        if previous is not None:
            run = mlflow.start_run(run_id=previous.info.run_id)
            logged = previous.data.params
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = setting(cfg, "mlflow.run_name") or (
                f"{self.job.config_stem}-{self.command}-{stamp}-{secrets.token_hex(2)}"
            )
            run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags)
            logged = {}
        self.run_id = run.info.run_id
        entries = param_entries(params)
        changed = {k: (logged[k], v) for k, v in entries.items() if k in logged and logged[k] != v}
        if changed:
            text = "; ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
            tags = {**tags, "ignite_cls.changed_on_resume": text[:5000]}
        self.client.log_batch(
            self.run_id,
            params=[Param(k, v) for k, v in entries.items() if k not in logged],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        # MLflow's git guess names ignite_cls's checkout, not the user's; a resumed run's
        # error belongs to the attempt that stopped (its log is in the artifacts)
        for key in (*GIT_TAGS, ERROR_TAG):
            if key in run.data.tags and key not in tags:
                self.client.delete_tag(self.run_id, key)
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        verb = "continuing" if previous is not None else "recording"
        logger.info(
            f"mlflow: {verb} run '{run.info.run_name}' ({self.run_id}) in experiment "
            f"'{experiment_name(self.job)}'; view with: {view_hint(uri, origin)}"
        )

    def _resumable(self, run_id: str | None) -> Any:
        """The run to continue, if the checkpoint names one this store still holds."""
        if not run_id:
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            run = None
        if run is None or run.info.lifecycle_stage == "deleted":
            logger.warning(f"mlflow: run {run_id} of the checkpoint is not in this store; new run")
            return None
        return run

    def _close(self, error: BaseException | None) -> None:
        """Flush metrics, note the error, attach the merged config and the log file."""
        self.flush()
        if error is not None:
            message = f"{type(error).__name__}: {one_line(error)}"
            self.client.set_tag(self.run_id, ERROR_TAG, message[:5000])
        self.log_text(format_config(self.job.cfg), f"config/{self.job.config_stem}.py")
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.flush()
                self.log_artifact(handler.baseFilename, "logs")

    def _log_datasets(self, splits: dict[str, tuple[dict, str, Any]]) -> None:
        import mlflow

        for context, (split_cfg, split, dataset) in splits.items():
            mlflow.log_input(described_dataset(split_cfg, split, dataset), context=context)

    # ------------------------------------------------------------ metrics

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer metrics; they reach the store at the next ``flush``, or now when the oldest
        waits longer than ``FLUSH_SECONDS``."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        if not self._pending:
            self._pending_since = time.monotonic()
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if time.monotonic() - self._pending_since > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []

    # ------------------------------------------------------------ files

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.run_id is not None:
            self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if self.run_id is not None:
            self.client.log_dict(self.run_id, data, artifact_file)

    def _log_figure(self, draw: Any, name: str, artifact_path: str) -> None:
        """Draw a PNG with ``draw(path)`` in a temp folder and attach it."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            draw(path)
            self.log_artifact(path, artifact_path)
