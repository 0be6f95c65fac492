"""The README's bad-input table, case by case: each ends with exit code 2 and one `error:`
line naming the problem, and nothing already on disk is lost."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import QUICKSTART, error_line, run_cli

from . import test_bad_input as shared

# the tiny folder dataset, its config and a checkpoint trained on it (module fixtures)
tiny_folder, tiny_config, tiny_checkpoint = (
    shared.tiny_folder,
    shared.tiny_config,
    shared.tiny_checkpoint,
)

pytestmark = pytest.mark.integration


def test_base_cycle_and_missing_base(tmp_path):
    (tmp_path / "a.py").write_text("_base_ = 'b.py'\n")
    (tmp_path / "b.py").write_text("_base_ = ['a.py']\n")
    assert "_base_ cycle" in error_line(run_cli("config", tmp_path / "a.py", cwd=tmp_path))
    (tmp_path / "c.py").write_text("_base_ = 'nowhere.py'\n")
    line = error_line(run_cli("train", tmp_path / "c.py", cwd=tmp_path))
    assert "base config not found" in line and "nowhere.py" in line


@pytest.mark.parametrize(
    "options, message",
    [
        (["schedule.max_epoch=3"], "'schedule.max_epoch' (did you mean 'schedule.max_epochs'?)"),
        (["model.arch"], "malformed --cfg-options item 'model.arch': expected key=value"),
        (["data.mean=[1,2"], "unbalanced brackets"),
        (["data.train.batch_size=abc"], "'data.train.batch_size' must be int, got str"),
        (["optimizer.type=SDG"], "unknown optimizer.type 'SDG' (did you mean 'SGD'?)"),
        (
            ["optimizer.momentun=0.9"],
            "optimizer SGD has no argument 'momentun' (did you mean 'momentum'?)",
        ),
        (["data.train.pipeline.0.type=Rezise"], "Rezise"),
        (["auto_scale_lr.enable=True"], "--auto-scale-lr needs auto_scale_lr.base_batch_size"),
        (
            ["model.pretrained=IMAGENET1K_V9"],
            "unknown model.pretrained 'IMAGENET1K_V9' for resnet18: its torchvision weights "
            "are DEFAULT, IMAGENET1K_V1 (or give a path or URL)",
        ),
        (["model.freeze=[layer9]"], "model.freeze entry 'layer9' names no module or parameter"),
        (
            ["checkpoint.save_best=ema/accuracy/top1"],
            "checkpoint.save_best 'ema/accuracy/top1' is not a validation metric",
        ),
        (["schedule.early_stop.metric=acc"], "schedule.early_stop.metric 'acc' is not a valid"),
        (["grad.accumulate=0"], "grad.accumulate must be 1 or more, got 0"),
        (["ema.enabled=True", "ema.momentum=2"], "ema.momentum must be between 0 and 1"),
    ],
)
def test_config_mistakes(tmp_path, options, message):
    line = error_line(
        run_cli("train", QUICKSTART, "--work-dir", "w", "--cfg-options", *options, cwd=tmp_path)
    )
    assert message in line


def test_auto_scale_lr_flag_without_base_batch_size(tmp_path):
    line = error_line(run_cli("train", QUICKSTART, "--auto-scale-lr", cwd=tmp_path))
    assert "--auto-scale-lr needs auto_scale_lr.base_batch_size" in line


def test_float16_amp_on_the_cpu(tmp_path):
    options = ["--cfg-options", "amp.dtype=float16", "schedule.max_epochs=1"]
    result = run_cli("train", QUICKSTART, "--work-dir", "w", "--amp", *options, cwd=tmp_path)
    line = error_line(result)
    assert "amp.dtype=float16 needs a CUDA device, this run is on cpu" in line
    assert not list((tmp_path / "w").glob("*.pt"))


def _copy(tiny_folder: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_folder / "train", root)
    return root


def _folder_options(root: Path, *extra: str) -> list[str]:
    return [f"data.train.root={root}", f"data.val.root={root}", f"data.test.root={root}", *extra]


def test_a_failing_pipeline_step_in_a_loader_worker(tiny_config, tmp_path):
    """A 64 px crop of the 16 px images, in a loader worker: one line naming the step, the
    file and torchvision's message; no traceback, not even Ignite's."""
    config = tmp_path / "crop.py"
    config.write_text(
        f"_base_ = [{str(tiny_config)!r}]\n"
        "data = dict(train=dict(num_workers=2, pipeline=[dict(type='RandomCrop', size=64)]))\n"
    )
    result = run_cli("train", config, "--work-dir", "w", cwd=tmp_path)
    line = error_line(result)
    assert re.fullmatch(
        r"error: data\.train\.pipeline\[0\] RandomCrop failed on \S+/train/\w+/\d\.png: "
        r"Required crop size \(64, 64\) is larger than input image size \(16, 16\)\.?",
        line,
    ), line
    assert "Traceback" not in result.stderr and "terminating" not in result.stderr


def test_ann_file_line_with_missing_file_or_bad_label(tiny_config, tiny_folder, tmp_path):
    root = _copy(tiny_folder, tmp_path)
    ann = tmp_path / "ann.txt"
    for content, message in [
        ("circle/0.png 0\ncircle/missing.png 1\n", "missing.png"),
        ("circle/0.png 0\nsquare/0.png 7\n", "7"),
    ]:
        ann.write_text(content)
        options = _folder_options(root, f"data.train.ann_file={ann}", "data.classes=[a,b,c]")
        line = error_line(
            run_cli(
                "train", tiny_config, "--work-dir", "w", "--cfg-options", *options, cwd=tmp_path
            )
        )
        assert f"{ann}:2" in line and message in line


def test_corrupt_image_fails_naming_it_or_is_skipped_with_a_count(
    tiny_config, tiny_folder, tmp_path
):
    root = _copy(tiny_folder, tmp_path)
    bad = root / "square" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (root / "circle" / "empty.jpg").write_bytes(b"")
    options = [*_folder_options(root), "data.train.batch_size=7", "schedule.validate=False"]
    line = error_line(
        run_cli("train", tiny_config, "--work-dir", "w", "--cfg-options", *options, cwd=tmp_path)
    )
    assert "cannot decode image" in line and ("broken.png" in line or "empty.jpg" in line)
    skipped = run_cli(
        "train",
        tiny_config,
        "--work-dir",
        "w2",
        "--cfg-options",
        *options,
        "data.skip_bad_images=True",
        cwd=tmp_path,
    )
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "skipped 2 unreadable image(s)" in skipped.stderr


def test_num_classes_differs_from_the_data(tiny_config, tmp_path):
    line = error_line(
        run_cli("train", tiny_config, "--cfg-options", "model.num_classes=5", cwd=tmp_path)
    )
    assert "5" in line and "3" in line and "num_classes" in line


@pytest.mark.parametrize(
    "content, message",
    [("truncated", "truncated or corrupt"), (b"hello, not a checkpoint", "truncated or corrupt")],
)
def test_broken_checkpoint_files(tiny_config, tiny_checkpoint, tmp_path, content, message):
    path = tmp_path / "broken.pt"
    data = tiny_checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 3] if content == "truncated" else content)
    line = error_line(run_cli("test", tiny_config, path, cwd=tmp_path))
    assert message in line and "broken.pt" in line


def test_checkpoint_of_another_architecture(tiny_config, tiny_checkpoint, tmp_path):
    line = error_line(
        run_cli(
            "test",
            tiny_config,
            tiny_checkpoint,
            "--cfg-options",
            "model.arch=resnet34",
            cwd=tmp_path,
        )
    )
    assert "does not fit the model" in line and "missing keys" in line


def test_unsupported_url_scheme(tiny_config, tmp_path):
    line = error_line(run_cli("test", tiny_config, "ftp://127.0.0.1/m.pt", cwd=tmp_path))
    assert "unsupported URL scheme 'ftp'" in line


def test_out_into_a_missing_folder(tiny_config, tiny_checkpoint, tmp_path):
    out = tmp_path / "no" / "such" / "preds.json"
    line = error_line(run_cli("test", tiny_config, tiny_checkpoint, "--out", out, cwd=tmp_path))
    assert "does not exist" in line and str(out.parent) in line


def test_resume_with_no_checkpoint_keeps_the_work_dir(tiny_config, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    line = error_line(run_cli("train", tiny_config, "--work-dir", work, "--resume", cwd=tmp_path))
    assert f"no checkpoint to resume from in {work}" in line
    assert (work / "notes.txt").read_text() == "mine"


def test_out_of_memory_suggests_a_smaller_batch(tmp_path):
    """A pipeline whose images cannot fit in memory (resizing to 400k x 400k px) fails at
    once with the allocator's error turned into one line (CUDA memory reads the same)."""
    line = error_line(
        run_cli(
            "train",
            QUICKSTART,
            "--work-dir",
            "w",
            "--cfg-options",
            "data.train.pipeline.0.size=400000",
            cwd=tmp_path,
        )
    )
    assert "out of memory at data.train.batch_size=64 per process" in line
    assert "smaller data.train.batch_size" in line
