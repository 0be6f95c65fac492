"""Every train and test run is an MLflow run: params, tags, metrics, artifacts and the model.

Where runs go: ``mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's own
default (``sqlite:///<current dir>/mlflow.db``), so a plain ``mlflow ui`` started in the
training folder lists them. A leftover ``./mlruns`` file store (which MLflow 3 refuses to
open, and which MLflow's default would pick) is left alone: runs go to ``./mlflow.db`` and a
notice names the ``mlflow migrate-filestore`` command.

Only rank 0 opens a run (other ranks never import MLflow). Before any worker starts, the
launching process creates the store and the experiment, under a lock on the database's
folder, because two processes creating one sqlite store at once fail. Metrics are buffered
and written with one ``log_batch`` per epoch (and at least every ``FLUSH_SECONDS``), never
one database write per iteration.

A run ends FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM (``Interrupted``
from the training's signals handler, ``KeyboardInterrupt``, or ``SystemExit``: where no
handler owns SIGTERM, as in a test run, the tracker turns it into ``SystemExit(143)``). ``--resume`` re-opens the run
whose id the checkpoint carries; params already logged keep their first value (MLflow
rejects changes) and the changes are listed in the tag ``ignite_cls.changed_on_resume``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn

from ignite_cls.config import flatten, format_config
from ignite_cls.errors import Interrupted, UserError

logger = logging.getLogger("ignite_cls")

DEFAULT_DB = "mlflow.db"
FILE_STORE = "mlruns"
FLUSH_SECONDS = 30.0  # buffered metrics reach the store at least this often
VERSIONS = {  # param name -> distribution name
    "torch": "torch",
    "torchvision": "torchvision",
    "pytorch_ignite": "pytorch-ignite",
    "ignite_cls": "ignite_cls",
}
GIT_TAGS = ("mlflow.source.git.commit", "mlflow.source.git.branch", "mlflow.source.git.repoURL")
ERROR_TAG = "ignite_cls.error"
STOP_EXCEPTIONS = (KeyboardInterrupt, SystemExit, Interrupted)
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")


# ---------------------------------------------------------------- where runs go


def file_store_in(folder: Path) -> bool:
    """Whether ``folder`` holds MLflow file-store data (``<experiment id>/meta.yaml``)."""
    if not folder.is_dir():
        return False
    return any(
        entry.name.isdigit() and (entry / "meta.yaml").exists()
        for entry in folder.iterdir()
        if entry.is_dir()
    )


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def resolve_tracking_uri(cfg: dict) -> tuple[str, str]:
    """The tracking URI and where it came from: config, env, fallback (old ./mlruns) or default."""
    configured = cfg["mlflow"]["tracking_uri"]
    if configured:
        return str(configured), "config"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "env"
    if file_store_in(Path(FILE_STORE)):
        return sqlite_uri(Path(DEFAULT_DB)), "fallback"
    import mlflow

    return mlflow.get_tracking_uri(), "default"


def view_hint(uri: str, origin: str) -> str:
    """How a person looks at runs stored at ``uri``."""
    if origin == "default":
        return "mlflow ui"
    if uri.startswith(("http://", "https://")):
        return uri
    return f"mlflow ui --backend-store-uri {uri}"


def experiment_name(job: Any) -> str:
    return job.cfg["mlflow"]["experiment"] or job.config_stem


def launching_rank() -> int:
    """This process's rank as its launcher (torchrun, srun, mpirun) set it; 0 otherwise."""
    from ignite_cls.launch import detect_launch

    found = detect_launch()
    return found.rank if found else 0


def prepare_store(job: Any) -> None:
    """Create the store and the experiment in the launching process, before any worker.

    Called by ``launch`` for train and test; store problems (an unreachable server, a file
    store URI) surface here as one-line errors instead of inside a worker.
    """
    if job.command not in ("train", "test") or not job.cfg["mlflow"]["enabled"]:
        return
    if launching_rank() != 0:
        return
    uri, origin = resolve_tracking_uri(job.cfg)
    if origin == "fallback":
        logger.warning(
            f"notice: ./{FILE_STORE} holds an MLflow file store, which MLflow 3 no longer opens; "
            f"runs go to {uri} (view: {view_hint(uri, origin)}); to keep the old runs, "
            f"move them into a database: mlflow migrate-filestore --source {FILE_STORE} "
            f"--target sqlite:///{FILE_STORE}.db"
        )
    open_store(uri, experiment_name(job), origin)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise store creation for a sqlite URI with a flock on the database's folder."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(urllib.parse.unquote(uri.removeprefix("sqlite:///"))).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_reachable(uri: str) -> None:
    """Fail fast when a tracking server is down (MLflow's own retries take minutes)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=15):
            pass
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"MLflow tracking server {uri} is not reachable: {reason}") from None


def open_store(uri: str, experiment: str, origin: str) -> tuple[Any, str]:
    """An ``MlflowClient`` on ``uri`` and the experiment's id (created when missing)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if uri.startswith(("http://", "https://")):
        _check_reachable(uri)
    # Beside an old file store, keep new artifacts out of ./mlruns (the migration reads it).
    location = Path("mlartifacts").resolve().as_uri() if origin == "fallback" else None
    try:
        with _store_lock(uri):
            client = MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                try:
                    return client, client.create_experiment(experiment, location)
                except MlflowException:  # created by another process meanwhile
                    found = client.get_experiment_by_name(experiment)
                    if found is None:
                        raise
    except Exception as e:  # a bad URI, an unwritable folder, a refused file store...
        raise UserError(f"MLflow store {uri}: {_first_line(e)}") from e
    if found.lifecycle_stage == "deleted":
        raise UserError(
            f"MLflow experiment '{experiment}' is deleted in {uri}: restore it "
            f"(mlflow experiments restore --experiment-id {found.experiment_id}) "
            "or set mlflow.experiment"
        )
    return client, found.experiment_id


# ---------------------------------------------------------------- params and tags


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def param_entries(values: dict[str, Any]) -> dict[str, str]:
    """MLflow-safe params: keys with odd characters replaced, long values truncated."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

    entries = {}
    for key, value in values.items():
        text = value if isinstance(value, str) else repr(value)
        if len(text) > MAX_PARAM_VAL_LENGTH:
            text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
        entries[_BAD_KEY_CHARS.sub("_", str(key))[:MAX_ENTITY_KEY_LENGTH]] = text
    return entries


def common_params(job: Any) -> dict[str, Any]:
    """Every merged config key (dotted), the CLI flags (``cli.*``) and package versions."""
    params: dict[str, Any] = dict(flatten(job.cfg))
    params.update({f"cli.{name}": value for name, value in job.flags.items()})
    for name, dist in VERSIONS.items():
        try:
            params[f"version.{name}"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            params[f"version.{name}"] = "unknown"
    params["run.world_size"] = idist.get_world_size()
    params["run.device"] = str(idist.device())
    return params


def _git(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = result.stdout.strip()
    return text if result.returncode == 0 and text else None


def git_tags(folder: Path) -> dict[str, str]:
    """MLflow's git tags for the repository ``folder`` is in; {} outside a repository.

    MLflow's own guess looks at the entry point's file, i.e. at ignite_cls's checkout, not
    at the user's project."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {}
    tags = {GIT_TAGS[0]: commit}
    branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        tags[GIT_TAGS[1]] = branch
    remote = _git(folder, "config", "--get", "remote.origin.url")
    if remote:
        tags[GIT_TAGS[2]] = remote
    return tags


def launcher_name(job: Any) -> str:
    """none | spawn (--nproc-per-node) | pytorch | slurm | mpi, as the job really ran."""
    from ignite_cls.launch import detect_launch

    found = detect_launch()
    if found is not None and found.world_size > 1:
        return found.launcher
    if job.cfg["launcher"] != "none":
        return job.cfg["launcher"]
    return "spawn" if idist.get_world_size() > 1 else "none"


def common_tags(job: Any) -> dict[str, str]:
    tags = {
        "ignite_cls.command": job.command,
        "ignite_cls.config": str(Path(job.config_path).resolve()),
        "ignite_cls.launcher": launcher_name(job),
    }
    return {**tags, **git_tags(Path.cwd())}


def run_status(error: BaseException | None) -> str:
    if error is None:
        return "FINISHED"
    return "KILLED" if isinstance(error, STOP_EXCEPTIONS) else "FAILED"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- datasets


def dataset_digest(dataset: Any) -> str:
    """A fingerprint of the sample list (names and labels), not of the pixels."""
    digest = hashlib.sha256()
    for index in range(len(dataset)):
        digest.update(f"{dataset.sample_name(index)}\t{dataset.targets[index]}\n".encode())
    return digest.hexdigest()[:16]


def described_dataset(split_cfg: dict, split: str, dataset: Any) -> Any:
    """An MLflow dataset (metadata only) for a split: source, name, digest, size profile."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    class ImageDataset(MetaDataset):
        @property
        def profile(self) -> dict:
            return {"num_samples": len(dataset), "num_classes": len(dataset.classes)}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    kind, root = split_cfg["type"], split_cfg["root"]
    if root is None:
        source = CodeDatasetSource({"loader": f"ignite_cls {kind} dataset", "split": split})
        name = f"{kind}/{split}"
    else:
        path = Path(root).resolve()
        with warnings_silenced():
            source = resolve_dataset_source(str(path))
        name = f"{path.parent.name}/{path.name}" if kind == "folder" else f"{kind}/{split}"
    return ImageDataset(source, name=name, digest=dataset_digest(dataset))


@contextlib.contextmanager
def warnings_silenced() -> Iterator[None]:
    """MLflow warns that a local path matches both its "" and "file" sources; both are local."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------- trackers


class RunTracker:
    """One MLflow run around a command; inactive (every method a no-op) off rank 0 or with
    ``mlflow.enabled=False``. The run opens in ``start`` and ends when the ``with`` block ends.

    ``log_artifact``, ``log_artifacts``, ``log_image``, ``log_text`` and ``log_dict`` add
    files to the open run (other handlers use them, e.g. for visualised predictions).
    """

    command = ""

    def __init__(self, job: Any):
        self.job = job
        self.active = bool(job.cfg["mlflow"]["enabled"]) and idist.get_rank() == 0
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
            logger.warning(f"mlflow: could not finish run {self.run_id}: {_first_line(problem)}")
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
            name = cfg["mlflow"]["run_name"] or (
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
            message = f"{type(error).__name__}: {_first_line(error)}"
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
        """Buffer metrics; they reach the store at the next ``flush``."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        if not self._pending:
            self._pending_since = time.monotonic()
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []

    # ------------------------------------------------------------ files

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.run_id is not None:
            self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        """An HxWx3 uint8 RGB array as an image file in the run."""
        if self.run_id is not None:
            self.client.log_image(self.run_id, image, artifact_file=artifact_file)

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


class TrainTracker(RunTracker):
    """The train run: params, datasets, per-interval and per-epoch metrics, and at the end
    the training curves, the best checkpoint and the best model as an MLflow model."""

    command = "train"

    def __init__(self, job: Any, run_state: Any):
        super().__init__(job)
        self.run_state = run_state
        self._last_record: dict | None = None
        self._last_val: dict | None = None

    def start(
        self,
        trainer: Engine,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: dict[str, tuple[Any, Any]],
        best_checkpointer: Any,
        amp_mode: str,
    ) -> None:
        """Open (or, on resume, re-open) the run and attach the metric handlers; call after
        the resume checkpoint is loaded and after every other handler is attached."""
        if not self.active:
            return
        cfg = self.job.cfg
        train_set = data["train"][0]
        self.model, self.data, self.best_checkpointer = model, data, best_checkpointer
        self.classes = list(train_set.classes)
        self.num_classes = cfg["model"]["num_classes"] or len(self.classes)
        params = common_params(self.job)
        params.update(
            {
                "run.effective_lr": optimizer.defaults["lr"],
                "run.amp": amp_mode,
                "dataset.num_classes": self.num_classes,
                **{f"dataset.{split}.size": len(ds) for split, (ds, _) in data.items()},
            }
        )
        self._open(params, common_tags(self.job), self.run_state.mlflow_run_id)
        self.run_state.mlflow_run_id = self.run_id
        contexts = {"train": "training", "val": "validation"}
        self._log_datasets(
            {
                contexts[split]: (cfg["data"][split], cfg["data"][split]["split"], ds)
                for split, (ds, _) in data.items()
            }
        )
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch)
        trainer.add_event_handler(Events.COMPLETED, self._on_completed)

    def _on_iteration(self, engine: Engine) -> None:
        """Pick up the loss/lr/throughput record the training log sets every log.interval."""
        record = getattr(engine.state, "train_log", None)
        if record is None or record is self._last_record:
            return
        self._last_record = record
        self.log_metrics({f"train/{k}": v for k, v in record.items()}, engine.state.iteration)
        if time.monotonic() - self._pending_since > FLUSH_SECONDS:
            self.flush()

    def _on_epoch(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        self.log_metrics({"train/epoch_time": engine.state.times["EPOCH_COMPLETED"]}, epoch)
        val = getattr(engine.state, "val_metrics", None)
        if val is not None and val is not self._last_val:
            self._last_val = val
            self.log_metrics({f"val/{k}": v for k, v in val.items()}, epoch)
        self.flush()

    def _on_completed(self, engine: Engine) -> None:
        from ignite_cls.handlers.plots import save_training_curves

        self.flush()
        names = ["train/loss", "train/lr", "val/loss", "val/accuracy/top1", "val/accuracy/top5"]
        histories = {
            name: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, name)]
            for name in names
        }
        self._log_figure(
            lambda path: save_training_curves(histories, path), "training_curves.png", "plots"
        )
        best = self.best_checkpointer.last_checkpoint if self.best_checkpointer else None
        if best is not None and self.job.cfg["mlflow"]["log_checkpoint"]:
            self.log_artifact(best, "checkpoints")
        if self.job.cfg["mlflow"]["log_model"]:
            self._log_model(best)

    def _log_model(self, best: str | os.PathLike | None) -> None:
        """The best weights (the final ones without validation) as an MLflow model that takes
        float32 RGB images (N, 3, H, W) on the 0-255 scale and applies data.mean/std itself."""
        import mlflow.pytorch
        from mlflow.models import infer_signature
        from torchvision.transforms import v2

        from ignite_cls.checkpoint_io import load_checkpoint
        from ignite_cls.models import build_model, load_weights

        cfg = self.job.cfg
        if best is not None:
            state, source = load_checkpoint(best)["model"], str(best)
        else:
            state, source = getattr(self.model, "module", self.model).state_dict(), "final weights"
        arch = {**cfg["model"], "pretrained": None, "compile": False, "channels_last": False}
        network = build_model(arch, self.num_classes)
        load_weights(network, {k: v.cpu() for k, v in state.items()}, source)
        served = nn.Sequential(v2.Normalize(cfg["data"]["mean"], cfg["data"]["std"]), network)
        served.eval()
        images = self.data.get("val", self.data["train"])[0]
        example = torch.stack([images[i][0] for i in range(min(2, len(images)))]).float()
        with torch.no_grad():
            logits = served(example)
        options = dict(
            name="model",
            signature=infer_signature(example.numpy(), logits.numpy()),
            input_example=example.numpy(),
            pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
            metadata={
                "classes": self.classes,
                "input": "float32 RGB images (N, 3, H, W), values 0-255; normalised inside",
                "output": "logits (N, number of classes)",
                "weights": Path(source).name,
            },
        )
        try:
            mlflow.pytorch.log_model(served, serialization_format="pt2", **options)
        except Exception as e:  # an architecture torch.export cannot trace
            logger.warning(f"mlflow: torch.export failed ({_first_line(e)}); logging a pickle")
            mlflow.pytorch.log_model(served, serialization_format="pickle", **options)


class TestTracker(RunTracker):
    """The test run: checkpoint identity, the test metrics, a per-class table, the confusion
    matrix and the ``--out`` file."""

    command = "test"

    def start(self, checkpoint: dict, test_set: Any) -> None:
        """Open the run once the checkpoint and the test data are loaded."""
        if not self.active:
            return
        from ignite_cls.checkpoint_io import resolve, sha256_of

        cfg = self.job.cfg
        params = common_params(self.job)
        params.update(
            {
                "cli.checkpoint": self.job.checkpoint,
                "run.checkpoint_sha256": sha256_of(resolve(self.job.checkpoint)),
                "dataset.test.size": len(test_set),
                "dataset.num_classes": len(test_set.classes),
            }
        )
        tags = common_tags(self.job)
        train_run = (checkpoint.get("run_state") or {}).get("mlflow_run_id")
        if train_run:
            tags["ignite_cls.train_run_id"] = str(train_run)
        self._open(params, tags, resume_id=None)
        self._log_datasets(
            {"testing": (cfg["data"]["test"], cfg["data"]["test"]["split"], test_set)}
        )

    def log_results(self, metrics: dict[str, Any], classes: list[str]) -> None:
        """``metrics`` as the evaluator left them (scalars, per-class tensors, confusion matrix)."""
        if self.run_id is None:
            return
        from ignite_cls.engines import scalar_metrics
        from ignite_cls.handlers.plots import save_confusion_matrix

        scalars = scalar_metrics(metrics)
        self.log_metrics({f"test/{k}": v for k, v in scalars.items()}, step=0)
        self.flush()
        self.log_dict(scalars, "metrics/test_metrics.json")
        matrix = metrics["confusion_matrix"].cpu().numpy().astype(np.int64)
        self.log_text(per_class_table(metrics, classes, matrix), "metrics/per_class.csv")
        self._log_figure(
            lambda path: save_confusion_matrix(matrix, classes, path),
            "confusion_matrix.png",
            "plots",
        )
        out = self.job.cfg["test"]["out"]
        if out and Path(out).is_file():
            self.log_artifact(out, "outputs")


def per_class_table(metrics: dict[str, Any], classes: list[str], matrix: np.ndarray) -> str:
    """CSV: class, precision, recall, f1, support (true samples of the class)."""
    precision = metrics["per_class/precision"].cpu().double().numpy()
    recall = metrics["per_class/recall"].cpu().double().numpy()
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    support = matrix.sum(axis=1)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["class", "precision", "recall", "f1", "support"])
    for i, name in enumerate(classes):
        writer.writerow(
            [name, f"{precision[i]:.6f}", f"{recall[i]:.6f}", f"{f1[i]:.6f}", int(support[i])]
        )
    return text.getvalue()
