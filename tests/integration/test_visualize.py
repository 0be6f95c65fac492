"""`test --show-dir/--show/--interval/--wait-time` end to end: checkpoints trained for one
epoch (quickstart digits; CIFAR-10 JPEGs with a light model), the images checked pixel by
pixel against the dataset's originals, windows watched on a virtual X server."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import NO_MLFLOW, QUICKSTART, cli, cpu_env, free_port, ok, run_cli, unavailable

from ignite_cls.data import DigitsDataset, FolderDataset

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CIFAR_CONFIG = str(ROOT / "configs" / "resnet18_cifar10.py")
MIN_SIDE = 224
DIGITS_FACTOR, CIFAR_FACTOR = 28, 7  # 8 px and 32 px up to 224


def metrics_of(work_dir: Path) -> dict:
    (path,) = work_dir.glob("test_*.json")
    return json.loads(path.read_text())


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def logged_test_runs(folder: Path) -> list[tuple[str, set[str], set[str]]]:
    """The test runs MLflow recorded in `folder`'s default store: (--show-dir value, files
    under predictions/, files under plots/) each."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = []
    for run_info in client.search_runs(experiments, "tags.`ignite_cls.command` = 'test'"):
        run_id = run_info.info.run_id

        def names(path: str, run_id: str = run_id) -> set[str]:
            return {Path(a.path).name for a in client.list_artifacts(run_id, path)}

        show_dir = run_info.data.params["cli.show_dir"]
        found.append((show_dir, names("predictions"), names("plots")))
    return found


def check_drawn(path: Path, source: np.ndarray, factor: int, correct: bool) -> None:
    """The file is the source enlarged in sharp blocks under a green (right) or red (wrong)
    banner that carries text."""
    drawn = rgb(path)
    expected = source.repeat(factor, axis=0).repeat(factor, axis=1)
    height, width = expected.shape[:2]
    assert min(drawn.shape[:2]) >= MIN_SIDE and drawn.shape[1] == width
    banner, image = drawn[:-height], drawn[-height:]
    assert np.array_equal(image, expected), path.name
    assert banner.shape[0] > 0
    assert (banner != expected[: banner.shape[0]]).any(axis=2).mean() > 0.5
    assert (banner == 255).all(axis=2).sum() > 50  # white text
    red, green = banner[..., 0].mean(), banner[..., 1].mean()
    assert (green > red) if correct else (red > green), (path.name, correct, red, green)


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    options = ["schedule.max_epochs=1", "schedule.validate=False", NO_MLFLOW]
    ok(run_cli("train", QUICKSTART, "--work-dir", "work", "--cfg-options", *options, cwd=folder))
    return folder / "work" / "epoch_1.pt"


CIFAR_OPTIONS = [
    "model.arch=mobilenet_v3_small",
    "model.cifar_stem=False",
    "schedule.max_epochs=1",
    "schedule.validate=False",
    "data.train.num_workers=0",
    "data.test.num_workers=0",
]


@pytest.fixture(scope="module")
def cifar(cifar10_subset, tmp_path_factory) -> tuple[Path, Path]:
    """(subset root with train/ and test/, checkpoint trained one epoch on train/)."""
    root = cifar10_subset(20, 10)
    folder = tmp_path_factory.mktemp("cifar")
    roots = [
        f"data.train.root={root / 'train'}",
        f"data.val.root={root / 'test'}",
        f"data.test.root={root / 'test'}",
        NO_MLFLOW,
    ]
    args = ["train", CIFAR_CONFIG, "--work-dir", "work", "--cfg-options", *CIFAR_OPTIONS, *roots]
    ok(run_cli(*args, cwd=folder))
    return root, folder / "work" / "epoch_1.pt"


def test_digits_show_dir_every_interval_th_sample_same_metrics_any_process_count(
    digits_checkpoint, tmp_path
):
    dataset = DigitsDataset("test")
    n = len(dataset)
    base = ["test", QUICKSTART, str(digits_checkpoint)]
    ok(run_cli(*base, "--work-dir", "plain", "--out", "preds.json", cwd=tmp_path, tracked=True))
    ok(run_cli(*base, "--work-dir", "all", "--show-dir", "every", cwd=tmp_path, tracked=True))
    two = [*base, "--work-dir", "two", "--show-dir", "sevenths", "--interval", 7]
    two += ["--nproc-per-node", 2]
    ok(run_cli(*two, cwd=tmp_path, env={"PORT": str(free_port())}, tracked=True))

    plain = metrics_of(tmp_path / "plain")
    assert metrics_of(tmp_path / "all") == plain  # visualising changes no metric
    assert metrics_of(tmp_path / "two") == pytest.approx(plain, rel=1e-6)

    every = sorted((tmp_path / "every").iterdir())
    assert [p.name for p in every] == [f"{i:06d}.png" for i in range(n)]
    records = json.loads((tmp_path / "preds.json").read_text())
    correct = [r["gt_label"] == r["pred_label"] for r in records]
    assert any(correct) and not all(correct)  # both colours get checked
    for index, path in enumerate(every):
        check_drawn(path, dataset.load_rgb(index), DIGITS_FACTOR, correct[index])

    # Every 7th sample of the dataset, drawn the same by 2 processes as by 1.
    sevenths = sorted((tmp_path / "sevenths").iterdir())
    assert len(sevenths) == math.ceil(n / 7)
    assert [p.name for p in sevenths] == [f"{i:06d}.png" for i in range(0, n, 7)]
    for path in sevenths:
        assert path.read_bytes() == (tmp_path / "every" / path.name).read_bytes()

    # The mistakes grid is written with or without visualisation flags, the same each time.
    grids = [next((tmp_path / w).glob("mistakes_*.png")) for w in ("plain", "all", "two")]
    assert grids[0].read_bytes() == grids[1].read_bytes()
    grid = rgb(grids[0])
    tiles = min(64, correct.count(False))
    columns, rows = min(8, tiles), math.ceil(tiles / 8)
    assert grid.shape[1] == columns * (MIN_SIDE + 4) + 4 and grid.shape[0] > rows * MIN_SIDE
    assert np.array_equal(rgb(grids[2]), grid)

    # MLflow: each test run holds the images it drew and the mistakes grid.
    runs = sorted(logged_test_runs(tmp_path))
    drawn = [set(), {p.name for p in every}, {p.name for p in sevenths}]
    plots = [{"confusion_matrix.png", path.name} for path in grids]
    assert runs == list(zip(["None", "every", "sevenths"], drawn, plots, strict=True))


def test_cifar_show_dir_names_sizes_colours_and_a_second_run_into_the_same_folder(cifar, tmp_path):
    root, checkpoint = cifar
    test_set, train_set = FolderDataset(root / "test"), FolderDataset(root / "train")
    base = ["test", CIFAR_CONFIG, str(checkpoint), "--show-dir", "shown", "--interval", "3"]
    options = ["--cfg-options", *CIFAR_OPTIONS]
    args = [*base, "--out", "test.json", *options, f"data.test.root={root / 'test'}"]
    ok(run_cli(*args, cwd=tmp_path, tracked=True))
    first = sorted((tmp_path / "shown").iterdir())
    chosen = range(0, len(test_set), 3)
    # 0000.jpg exists in every class folder: the sample index tells them apart.
    assert [p.name for p in first] == sorted(
        f"{Path(test_set.paths[i]).stem}_{i}.png" for i in chosen
    )
    records = json.loads((tmp_path / "test.json").read_text())
    for index in chosen:
        path = tmp_path / "shown" / f"{Path(test_set.paths[index]).stem}_{index}.png"
        right = records[index]["gt_label"] == records[index]["pred_label"]
        check_drawn(path, test_set.load_rgb(index), CIFAR_FACTOR, right)
    before = {p.name: p.read_bytes() for p in first}

    # The train folder reuses the test folder's file names for other images.
    ok(run_cli(*base, *options, f"data.test.root={root / 'train'}", cwd=tmp_path, tracked=True))
    after = {p.name: p.read_bytes() for p in (tmp_path / "shown").iterdir()}
    assert {name: after[name] for name in before} == before  # nothing of the first run lost
    assert len(after) == len(before) + math.ceil(len(train_set) / 3)
    # The second run's MLflow run holds its own images only, not the whole folder.
    logged = sorted((files for _, files, _ in logged_test_runs(tmp_path)), key=len)
    assert logged == [set(before), set(after) - set(before)]  # 34 then 67 files


def window_states(display: str) -> dict[str, bool]:
    """Title -> mapped (viewable) for each ignite_cls window on `display`."""
    env = {**os.environ, "DISPLAY": display}
    tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True)
    states = {}
    for window_id, title in re.findall(r"(0x[0-9a-f]+) \"ignite_cls: ([^\"]+)\"", tree.stdout):
        info = subprocess.run(
            ["xwininfo", "-id", window_id], env=env, capture_output=True, text=True
        )
        states[title] = "IsViewable" in info.stdout or states.get(title, False)
    return states


def test_show_opens_one_window_per_sample_for_wait_time_seconds(
    digits_checkpoint, xvfb_display, tmp_path
):
    if shutil.which("xwininfo") is None:
        unavailable("xwininfo absent (Debian: apt-get install x11-utils)")
    wait = 1.5
    args = [
        "test",
        QUICKSTART,
        str(digits_checkpoint),
        "--work-dir",
        "w",
        "--show",
        "--interval",
        "120",
        "--wait-time",
        str(wait),
        "--cfg-options",
        NO_MLFLOW,
    ]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            cli(*args),
            cwd=tmp_path,
            env=cpu_env(DISPLAY=xvfb_display),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    seen: dict[str, list[float]] = {}  # title -> times it was seen viewable
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            states = window_states(xvfb_display)
            visible = [title for title, viewable in states.items() if viewable]
            assert len(visible) <= 1, visible  # one at a time: each closes before the next
            for title in visible:
                seen.setdefault(title, []).append(now)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert list(seen) == ["000000", "000120", "000240"]
    for title, times in seen.items():
        shown = times[-1] - times[0]
        assert wait - 0.5 <= shown <= wait + 10, (title, shown)  # loose: a loaded machine
    assert not window_states(xvfb_display)  # all closed


def test_show_without_a_display_stops_before_inference_with_one_line(digits_checkpoint, tmp_path):
    env = {k: v for k, v in cpu_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    args = ["test", QUICKSTART, str(digits_checkpoint), "--work-dir", "w", "--show"]
    args += ["--cfg-options", NO_MLFLOW]
    result = subprocess.run(
        cli(*args),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert "--show needs a display" in errors[0] and "DISPLAY" in errors[0]
    assert "Traceback" not in result.stderr
    assert not re.search(r" on \d+ images", result.stderr)  # the line logged before inference
    assert not list((tmp_path / "w").glob("test_*.json"))
