"""Mistakes a user can make end with exit code 2 and one `error:` line naming the problem,
without a traceback (IGNITE_CLS_DEBUG=1 brings the traceback back). Real subprocess runs;
most stop before any training."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import QUICKSTART, error_line, run_cli

pytestmark = pytest.mark.integration

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """`train/` and `test/` with three class folders of a few 16 px images."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                cv2.imwrite(str(root / split / name / f"{i}.png"), image)
    return root


@pytest.fixture(scope="module")
def tiny_config(tiny_folder) -> Path:
    split = "dict(type='folder', root={root!r}, batch_size=4, num_workers=0, pipeline=[])"
    path = tiny_folder / "tiny.py"
    path.write_text(
        "model = dict(arch='resnet18')\n"
        "schedule = dict(max_epochs=1)\n"
        "data = dict(\n"
        f"    train={split.format(root=str(tiny_folder / 'train'))},\n"
        f"    val={split.format(root=str(tiny_folder / 'test'))},\n"
        f"    test={split.format(root=str(tiny_folder / 'test'))},\n"
        ")\n"
    )
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_config, tmp_path_factory) -> Path:
    """A real checkpoint: one epoch of training on the tiny folder."""
    cwd = tmp_path_factory.mktemp("tiny_run")
    result = run_cli("train", tiny_config, "--work-dir", "work", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "work" / "epoch_1.pt"


def test_missing_config(tmp_path):
    line = error_line(run_cli("train", "missing.py", cwd=tmp_path))
    assert "config file not found" in line and "missing.py" in line


def test_config_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "broken.py").write_text("model = dict(arch='resnet18')\n\ndata = dict(\n")
    line = error_line(run_cli("train", "broken.py", cwd=tmp_path))
    assert "broken.py:3:" in line and "syntax error" in line


def test_unknown_arch_suggests_a_close_name(tmp_path):
    result = run_cli(
        "train", QUICKSTART, "--work-dir", "w", "--cfg-options", "model.arch=resnet81", cwd=tmp_path
    )
    line = error_line(result)
    assert "model.arch 'resnet81'" in line and "did you mean 'resnet18'" in line
    assert not list((tmp_path / "w").glob("*.pt"))


def test_malformed_cfg_options_item(tmp_path):
    result = run_cli(
        "train", QUICKSTART, "--cfg-options", "schedule.max_epochs=1", "model.arch", cwd=tmp_path
    )
    line = error_line(result)
    assert "malformed --cfg-options item 'model.arch'" in line and "key=value" in line


def _no_folder(root: Path) -> None:
    pass


def _empty_folder(root: Path) -> None:
    root.mkdir()


def _class_folder_without_images(root: Path) -> None:
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "notes.txt").write_text("not an image")


@pytest.mark.parametrize(
    "make_root, message",
    [
        (_no_folder, "not found: {root}"),
        (_empty_folder, "no class folders in {root}"),
        (_class_folder_without_images, "no images in class folder(s) cat"),
    ],
)
def test_dataset_root_without_images(make_root, message, tmp_path):
    root = tmp_path / "data"
    make_root(root)
    result = run_cli(
        "train",
        QUICKSTART,
        "--work-dir",
        "w",
        "--cfg-options",
        "data.train.type=folder",
        f"data.train.root={root}",
        cwd=tmp_path,
    )
    assert message.format(root=root) in error_line(result)


def test_missing_checkpoint(tmp_path):
    line = error_line(run_cli("test", QUICKSTART, "nowhere/epoch_3.pt", cwd=tmp_path))
    assert "checkpoint not found: nowhere/epoch_3.pt" in line


def test_checkpoint_whose_classes_do_not_match(tiny_config, tiny_checkpoint, tmp_path):
    """The same folders with a different label order would give a model that predicts the
    wrong names; the test command refuses it."""
    reordered = "data.classes=[" + ",".join(reversed(CLASSES)) + "]"
    result = run_cli(
        "test", tiny_config, tiny_checkpoint, "--work-dir", "w", "--cfg-options", reordered,
        cwd=tmp_path,
    )  # fmt: skip
    line = error_line(result)
    assert "classes" in line and "do not match" in line
    # the same checkpoint with the classes it was trained on is fine
    good = run_cli("test", tiny_config, tiny_checkpoint, "--work-dir", "w", cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-3000:]


def test_checkpoint_of_another_dataset(tiny_checkpoint, tmp_path):
    line = error_line(run_cli("test", QUICKSTART, tiny_checkpoint, cwd=tmp_path))
    assert "classes" in line and "do not match" in line


def test_out_item_without_out(tmp_path):
    result = run_cli("test", QUICKSTART, "ck.pt", "--out-item", "metrics", cwd=tmp_path)
    assert "--out-item needs --out" in error_line(result)


def test_out_with_unknown_extension(tmp_path):
    result = run_cli("test", QUICKSTART, "ck.pt", "--out", "preds.txt", cwd=tmp_path)
    line = error_line(result)
    assert "--out preds.txt" in line and "'.txt'" in line


@pytest.mark.parametrize(
    "args",
    [
        ["train", QUICKSTART, "--cfg-options", "model.arch"],  # fails before launching
        ["test", QUICKSTART, "nowhere/epoch_3.pt"],  # fails in the worker
    ],
    ids=["before-launch", "in-worker"],
)
def test_debug_variable_shows_the_traceback(tmp_path, args):
    result = run_cli(*args, cwd=tmp_path, env={"IGNITE_CLS_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "UserError" in result.stderr
