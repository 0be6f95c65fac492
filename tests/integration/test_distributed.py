"""Two processes on the CPU (gloo), started every supported way: ``--nproc-per-node 2``,
torchrun, ``mpirun -n 2`` and Slurm (``slurm/train.sh``, ``slurm/test.sh`` on a real
one-node cluster). They must give the single-process results, write and print on rank 0
only, resume, and end together, quickly, when one of them dies or fails.

Training is compared on SqueezeNet, which has no batch norm (per-process batch statistics
would legitimately differ); a ``sitecustomize`` sets its dropout to 0 in every process of
those two runs, since dropout masks are random draws that differ with the batch split.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import QUICKSTART, cli, cpu_env, free_port, model_weights, run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
JOB_MARK = "IGNITE_CLS_TEST_JOB"  # in the environment of every process of one launched job
STEPS = 22  # training iterations per epoch: 1437 digits // 64 (1 process) or // 2 // 32

# SqueezeNet on the digits: 1437 images, batch 64 in all, a checkpoint every 8 iterations
SQUEEZENET = [
    "model.arch=squeezenet1_1",
    "optimizer.lr=0.01",
    "schedule.warmup_epochs=0",
    "schedule.max_epochs=1",
    "log.interval=4",
    "checkpoint.interval_iters=8",
    "checkpoint.keep=10",
    "mlflow.enabled=False",
]
NO_DROPOUT = '''"""Test-only: SqueezeNet without dropout (random masks differ with the batch split)."""
import functools

import torchvision.models.squeezenet as squeezenet

squeezenet.SqueezeNet.__init__ = functools.partialmethod(
    squeezenet.SqueezeNet.__init__, dropout=0.0
)
'''


def job_env(*python_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a launched job: CPU only, one thread per process (2 processes
    share 2 cores), a free rendezvous port, a mark to find its processes by."""
    paths = [*map(str, python_path), str(ROOT)]
    own = {"OMP_NUM_THREADS": "1", "PORT": str(free_port()), "PYTHONPATH": os.pathsep.join(paths)}
    return cpu_env(**{**own, JOB_MARK: uuid.uuid4().hex, **extra})


def torchrun(*args: object) -> list[str]:
    run = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return [*run, "-m", "ignite_cls", *map(str, args)]


def mpirun(mpirun_path: str, *args: object) -> list[str]:
    return [mpirun_path, "-n", "2", *cli(*args)]


def slurm_script(name: str, partition: str, *args: object) -> list[str]:
    return ["bash", str(ROOT / "slurm" / name), partition, f"ignite_cls_test_{name}", *args]


def slurm_env(gpus_per_node: int) -> dict[str, str]:
    return job_env(GPUS="2", GPUS_PER_NODE=str(gpus_per_node), CPUS_PER_TASK="1", PYTHON=PYTHON)


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a job to its end; its output (stdout and stderr), asserting it succeeded."""
    result = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600
    )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-4000:]
    return output


def read_results(work_dir: Path, out: Path) -> tuple[dict, list[dict]]:
    """The metrics JSON a test run wrote into its work dir and its --out predictions."""
    (metrics_file,) = work_dir.glob("test_*.json")
    return json.loads(metrics_file.read_text()), json.loads(out.read_text())


def assert_same_results(got: tuple[dict, list[dict]], expected: tuple[dict, list[dict]]) -> None:
    metrics, predictions = got
    assert metrics == pytest.approx(expected[0], rel=1e-6, abs=1e-9)
    assert len(predictions) == len(expected[1]) == 360  # every test digit once
    for key in ("img_path", "gt_label", "pred_label"):  # in dataset order
        assert [p[key] for p in predictions] == [p[key] for p in expected[1]], key
    scores = torch.tensor([p["pred_score"] for p in predictions])
    torch.testing.assert_close(scores, torch.tensor([p["pred_score"] for p in expected[1]]))


def copy_work_dir(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.log"))
    return target


def assert_resumed_to_epoch_2(output: str, work_dir: Path) -> None:
    assert re.search(r"resumed from \S*epoch_1\.pt", output), output[-3000:]
    state = torch.load(work_dir / "epoch_2.pt", map_location="cpu", weights_only=True)
    assert state["trainer"]["iteration"] == 2 * STEPS


# ------------------------------------------------------------------------ reference runs
@pytest.fixture(scope="module")
def no_dropout(tmp_path_factory) -> Path:
    """A folder holding the sitecustomize that removes SqueezeNet's dropout."""
    folder = tmp_path_factory.mktemp("no_dropout")
    (folder / "sitecustomize.py").write_text(NO_DROPOUT)
    return folder


@pytest.fixture(scope="module")
def one_process_training(tmp_path_factory, no_dropout) -> Path:
    """SqueezeNet, 1 epoch, 1 process, batch 64."""
    cwd = tmp_path_factory.mktemp("one_process_training")
    opts = [*SQUEEZENET, "data.train.batch_size=64"]
    run(
        cli("train", QUICKSTART, "--work-dir", "work", "--no-validate", "--cfg-options", *opts),
        cwd,
        job_env(no_dropout),
    )
    return cwd / "work"


@pytest.fixture(scope="module")
def spawned_training(tmp_path_factory, no_dropout) -> tuple[Path, str]:
    """The same with 2 spawned processes of batch 32: its work dir and output."""
    cwd = tmp_path_factory.mktemp("spawned_training")
    opts = [*SQUEEZENET, "data.train.batch_size=32"]
    cmd = cli(
        "train",
        QUICKSTART,
        "--work-dir",
        "work",
        "--no-validate",
        "--nproc-per-node",
        2,
        "--cfg-options",
        *opts,
    )
    return cwd / "work", run(cmd, cwd, job_env(no_dropout))


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory) -> Path:
    """A ResNet-18 trained 1 epoch (1 process): confident, varied predictions to compare."""
    cwd = tmp_path_factory.mktemp("resnet")
    opts = ["schedule.max_epochs=1", "schedule.warmup_epochs=0", "mlflow.enabled=False"]
    run(
        cli("train", QUICKSTART, "--work-dir", "work", "--no-validate", "--cfg-options", *opts),
        cwd,
        job_env(),
    )
    return cwd / "work" / "epoch_1.pt"


def evaluation_args(checkpoint: Path, work_dir: str, out: Path, *more: object) -> list[object]:
    return [
        "test",
        QUICKSTART,
        checkpoint,
        "--work-dir",
        work_dir,
        "--out",
        out,
        *more,
        "--cfg-options",
        "mlflow.enabled=False",
    ]


@pytest.fixture(scope="module")
def one_process_test(tmp_path_factory, resnet_checkpoint) -> tuple[dict, list[dict]]:
    cwd = tmp_path_factory.mktemp("one_process_test")
    run(cli(*evaluation_args(resnet_checkpoint, "work", cwd / "pred.json")), cwd, job_env())
    return read_results(cwd / "work", cwd / "pred.json")


# ------------------------------------------------------------------------------ training
def test_two_processes_train_like_one_with_the_whole_batch(one_process_training, spawned_training):
    """2 x batch 32 sees per step the samples of 1 x batch 64 (the sampler's shares of one
    permutation) and DDP averages the gradients: the weights agree after 8, 16, 22 steps."""
    spawned, _ = spawned_training
    for name in ("epoch_1_iter_8.pt", "epoch_1_iter_16.pt", "epoch_1.pt"):
        one, two = model_weights(one_process_training / name), model_weights(spawned / name)
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    early = model_weights(one_process_training / "epoch_1_iter_8.pt")
    final = model_weights(one_process_training / "epoch_1.pt")
    moved = max((final[k] - early[k]).abs().max().item() for k in final)
    assert moved > 100 * 1e-5, "training must move the weights well beyond the tolerance"


def test_logged_loss_is_the_mean_over_processes(one_process_training, spawned_training):
    def losses(work_dir: Path) -> list[float]:
        (log,) = work_dir.glob("train_*.log")
        return [float(x) for x in re.findall(r"iter \d+: loss ([\d.]+)", log.read_text())]

    one, two = losses(one_process_training), losses(spawned_training[0])
    assert len(one) == STEPS // 4
    assert two == pytest.approx(one, abs=2e-4)


def test_spawned_training_writes_and_prints_on_rank_0_only(spawned_training):
    work_dir, output = spawned_training
    assert output.count("train: squeezenet1_1 on cpu x2") == 1
    assert output.count("epoch 1/1 done in") == 1
    assert len(list(work_dir.glob("train_*.log"))) == 1
    assert sorted(p.name for p in work_dir.glob("*.pt")) == [
        "epoch_1.pt",
        "epoch_1_iter_16.pt",
        "epoch_1_iter_8.pt",
    ]


# ---------------------------------------------------------------------- test, every way
def test_two_spawned_test_jobs_side_by_side_match_one_process(
    tmp_path, resnet_checkpoint, one_process_test
):
    """Two 2-process jobs at once on one machine, each with its own PORT; one of them
    tracks to MLflow, which only its rank 0 does (one run)."""
    jobs = []
    for name, mlflow in (("a", "True"), ("b", "False")):
        cwd = tmp_path / name
        cwd.mkdir()
        args = [
            *evaluation_args(resnet_checkpoint, "work", cwd / "pred.json"),
            f"mlflow.enabled={mlflow}",
        ]
        cmd = cli(*args, "--nproc-per-node", 2)
        jobs.append(
            (
                cwd,
                subprocess.Popen(
                    cmd, cwd=cwd, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                ),
            )
        )
    for cwd, proc in jobs:
        output = proc.communicate(timeout=600)[0].decode(errors="replace")
        assert proc.returncode == 0, output[-4000:]
        assert output.count("cpu x2") == 1
        assert_same_results(read_results(cwd / "work", cwd / "pred.json"), one_process_test)
    with sqlite3.connect(tmp_path / "a" / "mlflow.db") as db:
        assert db.execute("select count(*) from runs").fetchone() == (1,)
    assert not (tmp_path / "b" / "mlflow.db").exists()


def test_mpirun_test_without_launcher_flag_matches_one_process(
    tmp_path, mpirun_available, resnet_checkpoint, one_process_test
):
    """``mpirun -n 2 python -m ignite_cls test CONFIG CKPT`` exactly as users type it."""
    out = tmp_path / "pred.json"
    output = run(
        mpirun(mpirun_available, *evaluation_args(resnet_checkpoint, "work", out)),
        tmp_path,
        job_env(),
    )
    assert output.count("notice: started by mpirun with 2 processes: using --launcher mpi") == 1
    assert_same_results(read_results(tmp_path / "work", out), one_process_test)


def test_slurm_test_script_matches_one_process(
    tmp_path, slurm_cluster, resnet_checkpoint, one_process_test
):
    out = tmp_path / "pred.json"
    cmd = slurm_script(
        "test.sh",
        slurm_cluster,
        QUICKSTART,
        resnet_checkpoint,
        "--work-dir",
        "work",
        "--out",
        out,
        "--cfg-options",
        "mlflow.enabled=False",
    )
    output = run(cmd, tmp_path, slurm_env(gpus_per_node=0))
    assert "--launcher slurm" in output  # the srun line the script shows
    assert_same_results(read_results(tmp_path / "work", out), one_process_test)


# ------------------------------------------------------------------- resume, lr scaling
def resume_args(work_dir: Path, max_epochs: int) -> list:
    """``train`` arguments that resume the 2-process SqueezeNet run copied into ``work_dir``
    (from ``spawned_training``) and train it on to ``max_epochs``."""
    return [
        "train",
        QUICKSTART,
        "--work-dir",
        work_dir,
        "--no-validate",
        "--resume",
        "--cfg-options",
        *SQUEEZENET,
        "data.train.batch_size=32",
        f"schedule.max_epochs={max_epochs}",
    ]


def test_torchrun_resumes(tmp_path, spawned_training):
    work_dir = copy_work_dir(spawned_training[0], tmp_path / "work")
    cmd = torchrun(*resume_args(work_dir, max_epochs=2), "--launcher", "pytorch")
    output = run(cmd, tmp_path, job_env())
    assert output.count("train: squeezenet1_1 on cpu x2") == 1
    assert_resumed_to_epoch_2(output, work_dir)


def test_slurm_train_script_resumes_on_fake_gpus(tmp_path, slurm_cluster, spawned_training):
    work_dir = copy_work_dir(spawned_training[0], tmp_path / "work")
    cmd = slurm_script(
        "train.sh", slurm_cluster, QUICKSTART, *resume_args(work_dir, max_epochs=2)[3:]
    )
    output = run(cmd, tmp_path, slurm_env(gpus_per_node=2))
    assert "--gres=gpu:2" in output and "--ntasks-per-node=2" in output
    assert output.count("train: squeezenet1_1 on cpu x2") == 1
    assert_resumed_to_epoch_2(output, work_dir)


def test_mpirun_training_scales_lr_by_world_size_times_batch(tmp_path, mpirun_available):
    cmd = mpirun(
        mpirun_available,
        "train",
        QUICKSTART,
        "--work-dir",
        "work",
        "--no-validate",
        "--auto-scale-lr",
        "--cfg-options",
        *SQUEEZENET,
        "data.train.batch_size=32",
        "auto_scale_lr.base_batch_size=32",
    )
    output = run(cmd, tmp_path, job_env())
    assert output.count("auto-scale-lr: lr 0.01 x 64 / 32 = 0.02") == 1
    assert output.count("notice: started by mpirun with 2 processes") == 1
    checkpoint = torch.load(tmp_path / "work" / "epoch_1.pt", weights_only=True)
    assert checkpoint["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.02)
    assert checkpoint["trainer"]["iteration"] == STEPS


# --------------------------------------------------------------------- failing processes
class Running:
    """A launched job whose output is collected as it arrives."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]):
        self.env = env
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(65536):
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.proc.poll() is None, f"ended before {what}: {self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout}s: {self.output[-3000:]}"
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def workers(self) -> dict[int, int]:
        """rank -> pid of the job's worker processes (found by the job's mark in their
        environment; spawned workers, whose rank is set later, by start order)."""
        found: dict[int, tuple[list[str], int, str]] = {}
        for entry in Path("/proc").iterdir():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                argv = (entry / "cmdline").read_bytes().decode().split("\0")
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            variables = dict(v.decode(errors="replace").partition("=")[::2] for v in environ)
            if variables.get(JOB_MARK) != self.env[JOB_MARK]:
                continue
            is_python = Path(argv[0]).name.startswith("python")
            if is_python and ("ignite_cls" in argv or any("spawn_main" in a for a in argv)):
                rank = next(
                    (
                        variables[k]
                        for k in ("RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
                        if k in variables
                    ),
                    "",
                )
                found[int(entry.name)] = (argv, ppid, rank)
        parents = {ppid for _, ppid, _ in found.values()}
        leaves = sorted(pid for pid in found if pid not in parents)
        return {int(found[pid][2] or i): pid for i, pid in enumerate(leaves)}

    def stop(self) -> None:
        """Leave nothing behind when a test fails half way."""
        for pid in [*self.workers().values(), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


KILL_LAUNCHES = ["spawn", "torchrun", "mpirun", "slurm"]
# how each launcher's output names the rank that died
DEATH_REPORTS = {
    "spawn": r"error: rank {rank} was killed by SIGKILL",
    "torchrun": r"rank\s*: {rank} \(local_rank: {rank}\)",
    "mpirun": r"process rank {rank} .* exited on signal 9",
    "slurm": r"task {rank}: Killed",
}


def launched_training(
    launch: str, request, work_dir: Path, *options: str
) -> tuple[list[str], dict[str, str]]:
    """A 2-process training command of ``launch`` that resumes from epoch 1 and would run long
    (``options``: more --cfg-options items)."""
    args = [*resume_args(work_dir, max_epochs=40), *options]
    if launch == "spawn":
        return cli(*args, "--nproc-per-node", 2), job_env()
    if launch == "torchrun":
        return torchrun(*args), job_env()
    if launch == "mpirun":
        return mpirun(request.getfixturevalue("mpirun_available"), *args), job_env()
    partition = request.getfixturevalue("slurm_cluster")
    return slurm_script("train.sh", partition, QUICKSTART, *args[3:]), slurm_env(0)


@pytest.mark.parametrize("launch", KILL_LAUNCHES)
def test_killed_worker_ends_the_whole_job_within_60s(launch, request, tmp_path, spawned_training):
    """SIGKILL one rank mid-run: once every rank has resumed from epoch 1 and the job has
    trained on to iteration 24's checkpoint, which shows ``--resume`` works under each
    launcher. The job exits non-zero within 60 s, naming the rank; none of it is left."""
    work_dir = copy_work_dir(spawned_training[0], tmp_path / "work")
    cmd, env = launched_training(launch, request, work_dir)
    job = Running(cmd, tmp_path, env)
    try:
        resumed = work_dir / f"epoch_2_iter_{STEPS + 2}.pt"  # 2 steps after the resume
        job.wait_until(resumed.exists, resumed.name)
        assert "resumed from" in job.output
        if launch == "torchrun":  # started without --launcher
            notice = "notice: started by torchrun with 2 processes: using --launcher pytorch"
            assert job.output.count(notice) == 1
        workers = job.workers()
        assert sorted(workers) == [0, 1], (workers, job.output[-3000:])
        os.kill(workers[1], signal.SIGKILL)
        killed = time.monotonic()
        code = job.wait(timeout=60)
        assert time.monotonic() - killed < 60
        assert code != 0, job.output[-3000:]
        assert re.search(DEATH_REPORTS[launch].format(rank=1), job.output), job.output[-3000:]
        for _ in range(50):  # srun's step daemon may take a moment
            if not job.workers():
                break
            time.sleep(0.2)
        assert not job.workers()
    finally:
        if job.proc.poll() is None or job.workers():
            job.stop()


STALL_TIMEOUT = 15


@pytest.mark.parametrize("launch", KILL_LAUNCHES)
def test_a_stopped_rank_ends_the_job_through_the_stall_watchdog(
    launch, request, tmp_path, spawned_training
):
    """SIGSTOP one rank mid-run: the other waits in a collective, makes no progress, and its
    watchdog ends the job within dist.stall_timeout plus a minute, naming itself and how long,
    with its threads' stacks (the collective it waits in) in the log; nothing is left."""
    work_dir = copy_work_dir(spawned_training[0], tmp_path / "work")
    cmd, env = launched_training(launch, request, work_dir, f"dist.stall_timeout={STALL_TIMEOUT}")
    job = Running(cmd, tmp_path, env)
    try:
        resumed = work_dir / f"epoch_2_iter_{STEPS + 2}.pt"
        job.wait_until(resumed.exists, resumed.name)
        workers = job.workers()
        assert sorted(workers) == [0, 1], (workers, job.output[-3000:])
        os.kill(workers[1], signal.SIGSTOP)
        stopped = time.monotonic()
        code = job.wait(timeout=STALL_TIMEOUT + 120)
        assert time.monotonic() - stopped < STALL_TIMEOUT + 60, job.output[-3000:]
        assert code != 0, job.output[-3000:]
        stall = re.search(
            r"error: rank 0 made no progress for (\d+) s after .* \(dist.stall_timeout=15\)",
            job.output,
        )
        assert stall and int(stall.group(1)) >= STALL_TIMEOUT, job.output[-3000:]
        if launch == "spawn":  # the parent adds nothing after the rank's own line
            assert job.output.strip().splitlines()[-1].startswith("error: rank 0 made no"), (
                job.output[-3000:]
            )
        (log,) = work_dir.glob("train_*.log")
        text = log.read_text()
        assert "the stacks of rank 0's threads" in text
        # where rank 0 waits: DDP's gradient all-reduce in the step, or a metric's all-reduce
        assert re.search(r"line \d+ in (train_step|all_reduce)\n", text), text[-3000:]
        for _ in range(50):
            if not job.workers():
                break
            time.sleep(0.2)
        assert not job.workers()
    finally:
        for pid in job.workers().values():
            os.kill(pid, signal.SIGCONT)
        if job.proc.poll() is None or job.workers():
            job.stop()


def test_killed_spawning_process_leaves_no_worker_running(request, tmp_path, spawned_training):
    """``kill -9`` of the process --nproc-per-node started: its workers are not orphaned to
    train on; they get SIGTERM, so they write a checkpoint and stop; ``--resume`` goes on."""
    work_dir = copy_work_dir(spawned_training[0], tmp_path / "work")
    cmd, env = launched_training("spawn", request, work_dir)
    job = Running(cmd, tmp_path, env)
    try:
        resumed = work_dir / f"epoch_2_iter_{STEPS + 2}.pt"
        job.wait_until(resumed.exists, resumed.name)
        assert sorted(job.workers()) == [0, 1]
        os.kill(job.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while job.workers():
            assert time.monotonic() < deadline, "workers still running 60 s after their parent"
            time.sleep(0.2)
        job.wait(timeout=10)
        stop = re.search(
            r"interrupted: stopped by SIGTERM at iteration \d+; checkpoint (\S+);", job.output
        )
        assert stop, job.output[-3000:]
        assert Path(stop.group(1)).is_file()
    finally:
        if job.workers():
            job.stop()
    # the job goes on from that checkpoint (the work dir lock was released with the workers)
    resumed = run_cli(
        *resume_args(work_dir, max_epochs=3), "--nproc-per-node", 2, cwd=tmp_path, env=job_env()
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {stop.group(1)}" in resumed.stderr
    assert (work_dir / "epoch_3.pt").is_file()


def test_rank_that_raises_ends_the_job_naming_the_rank(tmp_path, resnet_checkpoint):
    """A broken image in rank 1's shard only: rank 1 fails with the user error (exit 2,
    one line naming the rank and the file); rank 0, waiting for it, is stopped."""
    folder = tmp_path / "digits"
    rng = np.random.default_rng(0)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(
                str(folder / str(label) / f"{i}.png"), rng.integers(0, 256, (8, 8, 3), np.uint8)
            )
    broken = folder / "0" / "1.png"  # dataset index 1: rank 1's shard is 1, 3, 5, ...
    broken.write_bytes(b"not an image")
    args = [
        "test",
        QUICKSTART,
        resnet_checkpoint,
        "--work-dir",
        "work",
        "--nproc-per-node",
        2,
        "--cfg-options",
        "mlflow.enabled=False",
        "data.test.type=folder",
        f"data.test.root={folder}",
    ]
    error = the_one_error_line(Running(cli(*args), tmp_path, job_env()))
    assert error.startswith("error: rank 1: ") and str(broken) in error


def the_one_error_line(job: Running) -> str:
    """Wait for ``job`` to end with a user error: exit 2, one ``error:`` line, printed last,
    and no traceback (Ignite's "terminating" report included)."""
    try:
        code = job.wait(timeout=300)
    finally:
        if job.proc.poll() is None:
            job.stop()
    assert code == 2, job.output[-3000:]
    assert "Traceback" not in job.output and "terminating" not in job.output, job.output[-3000:]
    errors = [line for line in job.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, job.output[-3000:]
    assert job.output.strip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize("launch", KILL_LAUNCHES)
def test_the_same_error_on_every_rank_is_one_line(launch, request, tmp_path):
    """A pipeline step that fails on every image, in both ranks' loader workers: the job
    ends with exit 2 and one error line naming the step and the sample, no traceback of
    through this package. Under torchrun, srun and mpirun the first rank to fail prints it
    (the launcher then adds its own report of the failed tasks)."""
    config = tmp_path / "crop.py"
    config.write_text(
        f"_base_ = [{QUICKSTART!r}]\n"
        "data = dict(train=dict(num_workers=1, pipeline=[dict(type='RandomCrop', size=64)]))\n"
    )
    args = ["train", config, "--work-dir", "work", "--cfg-options", "mlflow.enabled=False"]
    if launch == "spawn":
        error = the_one_error_line(Running(cli(*args, "--nproc-per-node", 2), tmp_path, job_env()))
    else:
        if launch == "torchrun":
            cmd, env = torchrun(*args), job_env()
        elif launch == "mpirun":
            cmd, env = mpirun(request.getfixturevalue("mpirun_available"), *args), job_env()
        else:
            partition = request.getfixturevalue("slurm_cluster")
            cmd = slurm_script("train.sh", partition, config, tmp_path / "work", *args[4:])
            env = slurm_env(0)
        job = Running(cmd, tmp_path, env)
        try:
            code = job.wait(timeout=300)
        finally:
            if job.proc.poll() is None:
                job.stop()
        assert code != 0, job.output[-3000:]
        assert "terminating" not in job.output, job.output[-3000:]
        ours = f'File "{ROOT / "ignite_cls"}'  # a traceback through this package
        assert ours not in job.output, job.output[-3000:]
        errors = [line for line in job.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, job.output[-3000:]
        error = errors[0]
    assert re.fullmatch(
        r"error: rank [01]: data\.train\.pipeline\[0\] RandomCrop failed on digits/train/\d+: "
        r"Required crop size \(64, 64\) is larger than input image size \(8, 8\)\.?",
        error,
    ), error


def test_busy_port_is_a_one_line_error(tmp_path, resnet_checkpoint):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = evaluation_args(resnet_checkpoint, "work", tmp_path / "pred.json")
        result = subprocess.run(
            cli(*args, "--nproc-per-node", 2),
            cwd=tmp_path,
            env=job_env(PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: port {port} is in use" in result.stderr
    assert "Traceback" not in result.stderr
