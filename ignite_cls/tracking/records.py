"""What a run records besides metrics: params (every config key, the flags, versions),
tags (command, config, launcher, the user's git commit), the datasets as run inputs, and the
per-class table of a test."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.metadata
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ignite_cls.config import flatten

VERSIONS = {  # param name -> distribution name
    "torch": "torch",
    "torchvision": "torchvision",
    "pytorch_ignite": "pytorch-ignite",
    "ignite_cls": "ignite_cls",
}
GIT_TAGS = ("mlflow.source.git.commit", "mlflow.source.git.branch", "mlflow.source.git.repoURL")
# MLflow's limits for a param: key length and value length (longer ones are rejected)
PARAM_KEY_LIMIT = 250
PARAM_VALUE_LIMIT = 6000
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")


def param_entries(values: dict[str, Any]) -> dict[str, str]:
    """MLflow-safe params: keys with odd characters replaced, long values truncated."""
    entries = {}
    for key, value in values.items():
        text = value if isinstance(value, str) else repr(value)
        if len(text) > PARAM_VALUE_LIMIT:
            text = text[: PARAM_VALUE_LIMIT - 3] + "..."
        entries[_BAD_KEY_CHARS.sub("_", str(key))[:PARAM_KEY_LIMIT]] = text
    return entries


def common_params(job: Any) -> dict[str, Any]:
    """Every merged config key (dotted), the CLI flags (``cli.*``) and package versions."""
    import ignite.distributed as idist

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


def common_tags(job: Any) -> dict[str, str]:
    """Command, config and launcher (the tracking agent adds the git tags)."""
    return {
        "ignite_cls.command": job.command,
        "ignite_cls.config": str(Path(job.config_path).resolve()),
        "ignite_cls.launcher": job.launcher,
    }


def checkpoint_identity(source: str, train_run_id: str | None) -> tuple[dict, dict[str, str]]:
    """Params naming a checkpoint (its path or URL; the agent adds its sha256) and the tag
    naming the train run that wrote it."""
    tags = {"ignite_cls.train_run_id": str(train_run_id)} if train_run_id else {}
    return {"cli.checkpoint": source}, tags


def dataset_digest(dataset: Any) -> str:
    """A fingerprint of the sample list (names and labels), not of the pixels."""
    digest = hashlib.sha256()
    for index in range(len(dataset)):
        digest.update(f"{dataset.sample_name(index)}\t{dataset.targets[index]}\n".encode())
    return digest.hexdigest()[:16]


def dataset_facts(dataset: Any) -> dict[str, Any]:
    """What a run input records of a dataset: its size, classes and a fingerprint."""
    return {
        "num_samples": len(dataset),
        "num_classes": len(dataset.classes),
        "digest": dataset_digest(dataset),
    }


def described_dataset(
    split_cfg: dict, split: str, num_samples: int, num_classes: int, digest: str
) -> Any:
    """An MLflow dataset (metadata only) for a split: source, name, digest, size profile."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    class ImageDataset(MetaDataset):
        @property
        def profile(self) -> dict:
            return {"num_samples": num_samples, "num_classes": num_classes}

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
    return ImageDataset(source, name=name, digest=digest)


@contextlib.contextmanager
def warnings_silenced() -> Iterator[None]:
    """MLflow warns that a local path matches both its "" and "file" sources; both are local."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def per_class_table(metrics: dict[str, Any], classes: list[str], matrix: np.ndarray) -> str:
    """CSV: class, precision, recall, f1 (percent), support (true samples of the class)."""
    precision = metrics["per_class/precision"].cpu().double().numpy() * 100
    recall = metrics["per_class/recall"].cpu().double().numpy() * 100
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    support = matrix.sum(axis=1)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["class", "precision", "recall", "f1", "support"])
    for i, name in enumerate(classes):
        writer.writerow(
            [name, f"{precision[i]:.4f}", f"{recall[i]:.4f}", f"{f1[i]:.4f}", int(support[i])]
        )
    return text.getvalue()
