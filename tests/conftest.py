"""Fixtures shared by the whole suite: project paths, small real-data subsets, and the
services some tests need (Slurm, an X display, mpirun). `.ci/run` provides all of them;
elsewhere a test whose service is missing is skipped (``helpers.unavailable``)."""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import unavailable

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ignite_cls_log(caplog, monkeypatch) -> Iterator[pytest.LogCaptureFixture]:
    """What the ignite_cls logger says at INFO and above, each record once (the entry point
    stops it propagating to the root)."""
    logger = logging.getLogger("ignite_cls")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="ignite_cls")
    yield caplog
    logger.removeHandler(caplog.handler)


DATASETS_DIR = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not DATASETS_DIR.is_dir():
        unavailable(f"dataset folder absent ({DATASETS_DIR}: ../shared/datasets/ from the project)")
    return DATASETS_DIR


def _extract_subset(archive: Path, dest: Path, n_train: int, n_test: int) -> None:
    """Extract the first `n_train`/`n_test` files of each class of `<top>/<split>/<class>/<file>`
    in `archive` into `dest/<split>/<class>/`, in one pass over the archive."""
    limits = {"train": n_train, "test": n_test}
    counts: dict[tuple[str, str], int] = {}
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for split in limits:
        (partial / split).mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] not in limits:
                continue
            _, split, label, name = parts
            if ".." in (label, name) or counts.get((split, label), 0) >= limits[split]:
                continue
            counts[(split, label)] = counts.get((split, label), 0) + 1
            out = partial / split / label / name
            out.parent.mkdir(exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            out.write_bytes(src.read())
    if not counts:
        raise RuntimeError(f"{archive}: no <split>/<class>/<file> members found")
    partial.rename(dest)


def _subset_factory(
    archive_name: str, datasets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    archive = datasets / archive_name
    if not archive.is_file():
        unavailable(f"dataset archive absent ({archive})")
    root = tmp_path_factory.mktemp(archive_name.split(".")[0] + "_subsets")
    cache: dict[tuple[int, int], Path] = {}

    def make(per_class_train: int = 20, per_class_test: int = 10) -> Path:
        """A folder with `train/<class>/` and `test/<class>/`, the first files of each class."""
        key = (per_class_train, per_class_test)
        if key not in cache:
            dest = root / f"train{per_class_train}_test{per_class_test}"
            _extract_subset(archive, dest, per_class_train, per_class_test)
            cache[key] = dest
        return cache[key]

    return make


@pytest.fixture(scope="session")
def cifar10_subset(shared_datasets, tmp_path_factory) -> Callable[..., Path]:
    """`cifar10_subset(per_class_train, per_class_test)`: CIFAR-10 JPEGs, 10 named classes."""
    return _subset_factory("cifar10.tar.gz", shared_datasets, tmp_path_factory)


@pytest.fixture(scope="session")
def fashion_mnist_subset(shared_datasets, tmp_path_factory) -> Callable[..., Path]:
    """`fashion_mnist_subset(per_class_train, per_class_test)`: grayscale PNGs, classes 0-9."""
    return _subset_factory("fashion-mnist.tar.gz", shared_datasets, tmp_path_factory)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The default partition of a running Slurm cluster with an idle node (.ci/start_slurm.sh)."""
    if shutil.which("sinfo") is None:
        unavailable("Slurm absent (no sinfo on PATH; .ci/start_slurm.sh starts a one-node cluster)")
    try:
        res = subprocess.run(
            ["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"Slurm unavailable (sinfo: {exc})")
    rows = [line.split() for line in res.stdout.splitlines() if line.strip()]
    idle = [part for part, state in rows if state.rstrip("*~#") in ("idle", "mix")]
    if res.returncode != 0 or not idle:
        unavailable(f"Slurm has no idle node (sinfo: {(res.stdout + res.stderr).strip()!r})")
    default = [p for p in idle if p.endswith("*")]
    return (default or idle)[0].rstrip("*")


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display, chosen by Xvfb itself (-displayfd): (process, ':N')."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        # Written once it accepts clients, as "N" then "\n" in two writes: closing the pipe
        # before the newline arrives makes Xvfb exit ("Cannot write display number").
        text = b""
        deadline = time.monotonic() + 15
        while not text.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], deadline - time.monotonic())
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                break
            text += chunk
        number = text.decode().strip()
    finally:
        os.close(read_fd)
    if not number.isdigit():
        proc.kill()
        proc.wait()
        unavailable("Xvfb did not start")
    return proc, f":{number}"


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """An X display for window tests (':N'): IGNITE_CLS_TEST_DISPLAY, else a private Xvfb.
    DISPLAY itself is left alone; tests pass the value to what they run."""
    display = os.environ.get("IGNITE_CLS_TEST_DISPLAY")
    if display:
        yield display
        return
    if shutil.which("Xvfb") is None:
        unavailable("no X display (IGNITE_CLS_TEST_DISPLAY unset and no Xvfb on PATH)")
    proc, display = _start_xvfb()
    try:
        yield display
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def mpirun_available(monkeypatch) -> str:
    """Path of mpirun; lets Open MPI run as root and oversubscribe (2-core CI machines)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        unavailable("mpirun absent (Debian: apt-get install openmpi-bin)")
    if os.geteuid() == 0:
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    monkeypatch.setenv("OMPI_MCA_rmaps_base_oversubscribe", "1")
    return mpirun
