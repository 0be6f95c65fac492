"""Nothing lost: atomic checkpoints, exact resume after SIGKILL / SIGTERM / Ctrl-C, the work
dir lock, the NaN stop, a full disk, and safe loading of checkpoints."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import QUICKSTART, ROOT, cli, cpu_env, model_weights, run_cli, unavailable

from ignite_cls.workdir import lock_work_dir

pytestmark = pytest.mark.integration

# Small and fast, with dropout (mobilenet's head) so RNG state matters, and BN.
FAST = [
    "model.arch=mobilenet_v3_small",
    "schedule.max_epochs=2",
    "schedule.validate=False",
    "log.interval=2",
    "data.train.batch_size=64",
    "checkpoint.keep=2",
    "mlflow.enabled=False",  # test_mlflow.py covers the runs of killed jobs
]


# EMA, MixUp/CutMix, accumulation over 2 batches (checkpoints every 3 iterations land
# inside a window) and clipping: all of it must resume exactly too.
RECIPE = str(ROOT / "tests" / "integration" / "configs" / "quickstart_recipe.py")


def train_args(
    work_dir: Path, *options: str, resume: str | None = None, config: str = QUICKSTART
) -> list[str]:
    args = ["train", config, "--work-dir", str(work_dir)]
    if resume is not None:
        args += ["--resume"] + ([resume] if resume else [])
    return args + ["--cfg-options", *FAST, *options]


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    """The command started in the background on the CPU, stderr readable."""
    return subprocess.Popen(
        cli(*args), cwd=cwd, env=cpu_env(), stdout=subprocess.DEVNULL, text=True, **kwargs
    )


def trained_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's weights and their moving average, as one dict."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert "ema_model" in checkpoint, sorted(checkpoint)
    ema = {f"ema.{k}": v for k, v in checkpoint["ema_model"].items()}
    return {**checkpoint["model"], **ema}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run: the weights every interrupted-and-resumed run must reproduce.
    Its mid-epoch checkpoints (every 3 iterations, all kept) change nothing in training."""
    folder = tmp_path_factory.mktemp("reference")
    options = ["checkpoint.interval_iters=3", "checkpoint.keep=50"]
    result = run_cli(*train_args(folder / "work", *options, config=RECIPE), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "work" / "epoch_2.pt"


def test_resume_from_mid_epoch_checkpoint_is_bit_exact(reference, tmp_path):
    mid = reference.parent / "epoch_1_iter_9.pt"
    assert mid.is_file(), sorted(p.name for p in reference.parent.iterdir())
    held = torch.load(mid, map_location="cpu", weights_only=True)
    assert any(g is not None for g in held["pending_gradients"]["grads"]), "inside a window"
    resumed = run_cli(*train_args(tmp_path / "work", resume=str(mid), config=RECIPE), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "iteration 9 done" in resumed.stderr
    final = tmp_path / "work" / "epoch_2.pt"
    assert_identical(trained_weights(reference), trained_weights(final))


def _log(work: Path) -> str:
    return "".join(p.read_text() for p in work.glob("train_*.log"))


def _wait_for_log(work: Path, proc: subprocess.Popen, text: str, count: int) -> None:
    """Wait until ``text`` occurs ``count`` times in the work dir's logs (or the run ends)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if _log(work).count(text) >= count:
            return
        time.sleep(0.1)


def test_kill_loop_resumes_to_identical_weights(reference, tmp_path):
    """SIGKILL at seeded random moments of training (checkpoint writes included), resume
    each time; every resume succeeds and the run ends equal to the uninterrupted one."""
    rng = random.Random(1234)
    work = tmp_path / "work"
    options = ["checkpoint.interval_iters=2", "checkpoint.keep=2", "log.interval=1"]
    kills = resumes = 0
    for _ in range(40):
        has_checkpoint = any(work.glob("epoch_*.pt"))
        resumes += has_checkpoint
        records = _log(work).count(" iter ")
        args = train_args(work, *options, resume="" if has_checkpoint else None, config=RECIPE)
        proc = start(args, tmp_path, stderr=subprocess.PIPE)
        if kills < 10:
            # two iterations into this run (so a checkpoint was written), then a random moment
            _wait_for_log(work, proc, " iter ", records + 2)
            time.sleep(rng.uniform(0.0, 1.0))
            if proc.poll() is None:
                proc.kill()
                kills += 1
        _, stderr = proc.communicate(timeout=600)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    assert kills == 10 and resumes >= 10
    assert proc.returncode == 0, stderr[-3000:]
    assert_identical(trained_weights(reference), trained_weights(work / "epoch_2.pt"))


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_writes_checkpoint_and_resume_finishes_identically(
    reference, tmp_path, signum, code
):
    work = tmp_path / "work"
    proc = start(train_args(work, config=RECIPE), tmp_path, stderr=subprocess.PIPE)
    _wait_for_log(work, proc, "train: ", 1)
    time.sleep(3.0)
    logged = max(map(int, re.findall(r" iter (\d+): ", _log(work))), default=0)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr[-3000:]
    message = stderr.strip().splitlines()[-1]
    stop = re.fullmatch(
        rf"interrupted: stopped by {signal.Signals(signum).name} at iteration (\d+); "
        r"checkpoint (\S+); continue with --resume",
        message,
    )
    assert stop, message
    # the checkpoint named is the one written on the signal, at the iteration it arrived in
    iteration, saved = int(stop.group(1)), Path(stop.group(2))
    assert iteration >= logged
    held = torch.load(saved, map_location="cpu", weights_only=True)["trainer"]["iteration"]
    assert held == iteration
    assert_unlocked(work)
    resumed = run_cli(*train_args(work, resume="", config=RECIPE), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_identical(trained_weights(reference), trained_weights(work / "epoch_2.pt"))


def assert_unlocked(work: Path) -> None:
    """The work dir's lock is free: no process of the stopped job holds it any more."""
    handle = lock_work_dir(work)
    handle.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_at_once(tmp_path, signum):
    """Iterations of ten seconds or more (ResNet-18, 64 px, batch 512): the first signal asks
    for a checkpoint at the end of the iteration; a second one, right after, ends the process
    at once, before any checkpoint is written, and frees the work dir."""
    work = tmp_path / "work"
    slow = [
        "model.arch=resnet18",
        "data.train.pipeline.0.size=64",
        "data.train.batch_size=512",
        "log.interval=1",
    ]
    proc = start(train_args(work, *slow), tmp_path, stderr=subprocess.PIPE)
    _wait_for_log(work, proc, "train: ", 1)
    time.sleep(2.0)  # inside the first iteration
    proc.send_signal(signum)
    time.sleep(0.5)
    assert proc.poll() is None, "the first signal waits for the iteration to end"
    proc.send_signal(signum)
    second = time.monotonic()
    _, stderr = proc.communicate(timeout=300)
    assert time.monotonic() - second < 5, stderr[-3000:]
    assert proc.returncode in (-signum, 128 + signum), (proc.returncode, stderr[-3000:])
    assert " iter 1: " not in _log(work)  # the iteration never finished
    assert not list(work.glob("*.pt*")), "no checkpoint, whole or partial"
    assert_unlocked(work)


def test_second_job_on_same_work_dir_refuses_and_dead_lock_is_free(tmp_path):
    work = tmp_path / "work"
    first = start(train_args(work, "schedule.max_epochs=5"), tmp_path, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (work / ".lock").exists():
            time.sleep(0.2)
        time.sleep(0.5)
        second = run_cli(*train_args(work), cwd=tmp_path, timeout=120)
        assert second.returncode == 2
        assert (
            second.stderr.strip()
            .splitlines()[-1]
            .startswith(
                f"error: work dir {work} is in use by another training job (pid {first.pid})"
            )
        )
    finally:
        first.kill()
        first.wait()
    third = run_cli(*train_args(work, "schedule.max_epochs=1"), cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]


@pytest.mark.parametrize("amp", [False, True])
def test_nan_loss_stops_with_iteration_and_keeps_last_good_checkpoint(tmp_path, amp):
    work = tmp_path / "work"
    explode_in_epoch_2 = [
        "schedule.warmup_epochs=0",
        "schedule.lr_policy.type=multistep",
        "schedule.lr_policy.milestones=[1]",
        "schedule.lr_policy.gamma=1e30",
    ]
    args = train_args(work, *explode_in_epoch_2)
    result = run_cli(*args, *(["--amp"] if amp else []), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: loss became non-finite (nan or inf) at iteration "), line
    iteration = int(line.split("at iteration ")[1].split(":")[0])
    assert 22 < iteration <= 44  # in epoch 2 (22 iterations per epoch at batch 64)
    advice = "(try a lower optimizer.lr, or train without --amp (--cfg-options amp.enabled=False))"
    assert line.endswith(advice if amp else "(try a lower optimizer.lr)"), line
    assert sorted(p.name for p in work.glob("epoch_*.pt")) == ["epoch_1.pt"]
    kept = model_weights(work / "epoch_1.pt")
    assert all(torch.isfinite(t).all() for t in kept.values() if t.is_floating_point())


def test_disk_full_keeps_previous_checkpoint_and_names_the_place(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    size = 30 * 1024 * 1024  # one mobilenet checkpoint (~12 MB) fits, two and a log do not
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)])
    if mounted.returncode != 0:
        unavailable("cannot mount a small tmpfs here (needs root)")
    try:
        work = mount / "work"
        filler = mount / "filler"
        args = train_args(work, "schedule.max_epochs=2", "checkpoint.keep=5")
        result = start(args, tmp_path, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (work / "epoch_1.pt").exists():
            time.sleep(0.1)
        # leave less room than one more checkpoint needs
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 1024 * 1024))
        _, stderr = result.communicate(timeout=300)
        assert result.returncode == 2, stderr[-3000:]
        line = stderr.strip().splitlines()[-1]
        assert line.startswith("error: no space left on the device while writing"), line
        assert str(work) in line
        assert sorted(p.name for p in work.glob("*.pt")) == ["epoch_1.pt"]
        assert not list(work.glob(".*.tmp"))
        model_weights(work / "epoch_1.pt")  # still loads
    finally:
        subprocess.run(["umount", str(mount)])
