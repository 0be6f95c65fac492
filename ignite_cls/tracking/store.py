"""Where runs go, and the store and experiment made ready for a run.

``mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's own default
(``sqlite:///<current dir>/mlflow.db``), so a plain ``mlflow ui`` started in the training
folder lists them. A leftover ``./mlruns`` file store (which MLflow 3 refuses to open, and
which MLflow's default would pick) is left alone: runs go to ``./mlflow.db`` and a notice
names the ``mlflow migrate-filestore`` command.

The tracking agent creates the store and the experiment (``open_store``) under a lock on the
database's folder, because two processes creating one sqlite store at once fail. MLflow is
imported only inside the functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ignite_cls.config import setting
from ignite_cls.errors import UserError, one_line

DEFAULT_DB = "mlflow.db"
FILE_STORE = "mlruns"


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
    configured = setting(cfg, "mlflow.tracking_uri")
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
    return setting(job.cfg, "mlflow.experiment") or job.config_stem


def fallback_notice(uri: str, origin: str) -> str | None:
    """What a person must know when a leftover ./mlruns file store is left alone."""
    if origin != "fallback":
        return None
    return (
        f"notice: ./{FILE_STORE} holds an MLflow file store, which MLflow 3 no longer opens; "
        f"runs go to {uri} (view: {view_hint(uri, origin)}); to keep the old runs, "
        f"move them into a database: mlflow migrate-filestore --source {FILE_STORE} "
        f"--target sqlite:///{FILE_STORE}.db"
    )


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
        raise UserError(f"MLflow store {uri}: {one_line(e)}") from e
    if found.lifecycle_stage == "deleted":
        raise UserError(
            f"MLflow experiment '{experiment}' is deleted in {uri}: restore it "
            f"(mlflow experiments restore --experiment-id {found.experiment_id}) "
            "or set mlflow.experiment"
        )
    return client, found.experiment_id
