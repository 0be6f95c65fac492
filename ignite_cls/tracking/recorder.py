"""What the tracking agent does with MLflow: the store, the run's opening (or re-opening on
``--resume``), metrics, files, figures, the model, and the ending.

Everything here runs in the agent process (``agent.py``), which never imports PyTorch. While
the command starts up, a thread imports what the end of the run will need (MLflow's model
code, matplotlib for the figures), so the command waits for none of it. Files already on
a local disk go into a local artifact store as hard links (nothing is copied).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ignite_cls.config import setting
from ignite_cls.errors import one_line
from ignite_cls.tracking.records import GIT_TAGS, described_dataset, git_tags, param_entries
from ignite_cls.tracking.store import (
    experiment_name,
    fallback_notice,
    open_store,
    resolve_tracking_uri,
    view_hint,
)

ERROR_TAG = "ignite_cls.error"
FIGURES = ["matplotlib.figure", "matplotlib.backends.backend_agg", "ignite_cls.tracking.plots"]
MODEL = ["ignite_cls.serving", "mlflow.pyfunc", "mlflow.models.utils", "pandas"]
WARM_UP = {"train": [*MODEL, *FIGURES], "test": FIGURES, "predict": []}  # imported while the
# command starts up (importing PyTorch, building data and model): what the end of its run
# needs. None of it is PyTorch.


def _warm_up(modules: list[str]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)
    if "ignite_cls.serving" in modules:
        from ignite_cls.compat import warm_mlflow_requirements_check

        warm_mlflow_requirements_check()


class Recorder:
    def __init__(self, job: Any, workspace: Path):
        self.job = job
        self.run_id: str | None = None
        self.local_artifacts: Path | None = None  # the run's artifact folder, if on this disk
        self.recorded_steps: dict[str, int] = {}  # a continued run's last step per metric
        self.problems: list[str] = []  # what failed in work nobody waited for
        self.workspace = workspace  # the command's files for this agent (the model's)
        self.warming = threading.Thread(target=_warm_up, args=(WARM_UP[job.command],))
        self.warming.daemon = True
        logging.getLogger("alembic").setLevel(logging.WARNING)  # store creation's steps
        self.uri, self.origin = resolve_tracking_uri(job.cfg)
        try:
            self.client, self.experiment_id = open_store(
                self.uri, experiment_name(job), self.origin
            )
            self.store_error = None
        except Exception as e:  # reported when the command opens the run
            self.store_error = one_line(e)
        self.warming.start()

    def handle(self, operation: str, args: tuple) -> dict | None:
        try:
            return getattr(self, operation)(*args)
        except Exception as e:
            if operation in ("open", "close"):
                raise
            self.problems.append(f"{operation}: {type(e).__name__}: {one_line(e)}")
            return None

    # ------------------------------------------------------------ the run

    def open(self, params: dict, tags: dict, resume_id: str | None, datasets: list) -> dict:
        """Start (or continue) the run: params (and the checkpoint's sha256 when one is
        named), tags with the git commit, datasets. The answer names the run."""
        import mlflow
        from mlflow.entities import Param, RunTag

        from ignite_cls.checkpoint_io import resolve, sha256_of

        if self.store_error is not None:
            return {"error": self.store_error}
        mlflow.set_tracking_uri(self.uri)
        tags = {**tags, **git_tags(Path.cwd())}
        if "cli.checkpoint" in params:
            params["run.checkpoint_sha256"] = sha256_of(resolve(params["cli.checkpoint"]))
        previous = self._resumable(resume_id)
        if previous is not None:
            run = mlflow.start_run(run_id=previous.info.run_id)
            logged = previous.data.params
            self.recorded_steps = {
                key: max(m.step for m in self.client.get_metric_history(run.info.run_id, key))
                for key in previous.data.metrics
            }
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = setting(self.job.cfg, "mlflow.run_name") or (
                f"{self.job.config_stem}-{self.job.command}-{stamp}-{secrets.token_hex(2)}"
            )
            run = mlflow.start_run(experiment_id=self.experiment_id, run_name=name, tags=tags)
            logged = {}
        self.run_id = run.info.run_id
        self.local_artifacts = _local_folder(run.info.artifact_uri)
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
        for context, split_cfg, split, facts in datasets:
            mlflow.log_input(described_dataset(split_cfg, split, **facts), context=context)
        return {
            "run_id": self.run_id,
            "run_name": run.info.run_name,
            "continuing": previous is not None,
            "experiment": experiment_name(self.job),
            "view": view_hint(self.uri, self.origin),
            "notice": fallback_notice(self.uri, self.origin),
        }

    def _resumable(self, run_id: str | None) -> Any:
        """The run to continue, if the checkpoint names one this store still holds."""
        if not run_id:
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return None
        return None if run.info.lifecycle_stage == "deleted" else run

    def close(self, status: str, error: str | None, files: list[tuple[str, str]]) -> dict:
        """Attach the last files, note the error, end the run with ``status``."""
        import mlflow

        for path, artifact_path in files:
            self.handle("artifact", (path, artifact_path))
        if error is not None:
            self.handle("set_error", (error,))
        problem = self.problems[0] if self.problems else None
        if problem is not None and status == "FINISHED":
            status = "FAILED"
        try:
            mlflow.end_run(status)
        except Exception as e:
            problem = problem or one_line(e)
        shutil.rmtree(self.workspace, ignore_errors=True)
        return {"status": status, "problem": problem}

    def abandon(self) -> None:
        """The command went away without closing the run (killed): end it KILLED."""
        shutil.rmtree(self.workspace, ignore_errors=True)
        if self.run_id is None:
            return
        import mlflow

        self.handle("set_error", ("the command stopped without closing the run (killed?)",))
        mlflow.end_run("KILLED")

    def set_error(self, message: str) -> None:
        self.client.set_tag(self.run_id, ERROR_TAG, message[:5000])

    def tag(self, name: str, value: str) -> None:
        self.client.set_tag(self.run_id, name, value)

    # ------------------------------------------------------------ metrics and files

    def metrics(self, rows: list[tuple[str, float, int, int]]) -> None:
        """(key, value, timestamp in ms, step) rows, in one write. A resumed run trains again
        from its checkpoint, which may be older than the last metrics the stopped attempt
        recorded (a checkpoint every few epochs, or one still being written at a kill): its
        steps already in the run are left out (they repeat what was recorded: bit for bit on
        the CPU)."""
        from mlflow.entities import Metric

        new = [row for row in rows if row[3] > self.recorded_steps.get(row[0], -1)]
        if new:
            self.client.log_batch(self.run_id, metrics=[Metric(*row) for row in new])

    def artifact(self, path: str, artifact_path: str | None) -> None:
        """A file into the run: a hard link in a local artifact store, else an upload."""
        folder = self.local_artifacts
        if folder is None:
            self.client.log_artifact(self.run_id, path, artifact_path)
            return
        target = folder / (artifact_path or "") / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another file system
            shutil.copyfile(path, target)

    def text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def dict(self, data: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def _figure(self, draw: Any, name: str) -> None:
        """A PNG drawn by ``draw(path)``, under ``plots/``."""
        self.warming.join()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            draw(path)
            self.client.log_artifact(self.run_id, str(path), "plots")

    def curves(self, names: list[str]) -> None:
        """The training curves, from the whole history in the store (a resumed run's too)."""
        from ignite_cls.tracking.plots import save_training_curves

        histories = {
            name: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, name)]
            for name in names
        }
        self._figure(lambda path: save_training_curves(histories, path), "training_curves.png")

    def confusion(self, matrix: Any, classes: list[str]) -> None:
        from ignite_cls.tracking.plots import save_confusion_matrix

        self._figure(
            lambda path: save_confusion_matrix(matrix, classes, path), "confusion_matrix.png"
        )

    def model(self, folder: str, weights: str) -> None:
        """The model the command prepared in ``folder`` as the run's MLflow model."""
        self.warming.join()
        from ignite_cls.serving import log_served_model

        log_served_model(Path(folder), weights)


def _local_folder(artifact_uri: str) -> Path | None:
    """The folder of a local artifact store (a path or file: URI); None for a remote one."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(urllib.parse.unquote(parsed.path))
