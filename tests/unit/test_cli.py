"""The command line as a user types it: multi-item --cfg-options (python-fire's trap),
hyphen and underscore flag spellings, --help, and a light entry point (no torch)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from helpers import QUICKSTART, ROOT, run_cli

from ignite_cls import cli
from ignite_cls.__main__ import main
from ignite_cls.cli import COMMANDS, gather_cfg_options
from ignite_cls.config import load_config


@pytest.fixture
def captured_run(monkeypatch) -> list[dict]:
    """The arguments each command hands to the job builder, instead of running the job:
    what is under test here is how argv binds to the command's parameters."""
    calls: list[dict] = []

    def record(command, config, flags, cfg_options, checkpoint=None, inputs=()) -> None:
        calls.append(
            dict(
                command=command,
                config=config,
                flags=flags,
                cfg_options=cfg_options,
                checkpoint=checkpoint,
                inputs=list(inputs),
            )
        )

    monkeypatch.setattr(cli, "_run", record)
    return calls


# ---------------------------------------------------------------- gather_cfg_options


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["c.py"], ["c.py"]),
        (["c.py", "--work-dir", "w"], ["c.py", "--work-dir", "w"]),
        (
            ["c.py", "--cfg-options", "a=1", "b=2", "--work-dir", "w"],
            ["c.py", "--work-dir", "w", "--cfg-options", "['a=1', 'b=2']"],
        ),
        (["c.py", "--cfg_options", "a=1", "b=2"], ["c.py", "--cfg-options", "['a=1', 'b=2']"]),
        (["c.py", "--cfg-options=a=1", "b=2"], ["c.py", "--cfg-options", "['a=1', 'b=2']"]),
        (
            ["c.py", "--cfg-options", "a=1", "--amp", "--cfg-options", "b=[1,2]", "c=x,y"],
            ["c.py", "--amp", "--cfg-options", "['a=1', 'b=[1,2]', 'c=x,y']"],
        ),
        # a short flag ends the items too
        (
            ["c.py", "--cfg-options", "a=1", "-w", "w"],
            ["c.py", "-w", "w", "--cfg-options", "['a=1']"],
        ),
        (["c.py", "--cfg-options"], ["c.py", "--cfg-options", "[]"]),
    ],
)
def test_gather_cfg_options(argv, expected):
    assert gather_cfg_options(argv) == expected


def test_gather_keeps_quotes_and_spaces_in_one_item():
    argv = gather_cfg_options(["c.py", "--cfg-options", "name='a b'", 'x="1,2"'])
    assert argv == ["c.py", "--cfg-options", repr(["name='a b'", 'x="1,2"'])]


# ---------------------------------------------------------------- python-fire's trap


def test_train_gives_every_item_to_cfg_options_and_nothing_to_other_flags(captured_run):
    assert main(["train", "c.py", "--cfg-options", "a=1", "b=2", "c.d=[1,2]"]) == 0
    (call,) = captured_run
    assert call["cfg_options"] == ["a=1", "b=2", "c.d=[1,2]"]
    assert call["config"] == "c.py"
    assert call["flags"]["work_dir"] is None
    assert call["flags"]["resume"] is None
    assert call["flags"]["launcher"] == "none"


def test_test_gives_every_item_to_cfg_options_and_nothing_to_other_flags(captured_run):
    assert main(["test", "c.py", "ck.pt", "--cfg-options", "a=1", "b=2", "c=3"]) == 0
    (call,) = captured_run
    assert call["cfg_options"] == ["a=1", "b=2", "c=3"]
    assert call["checkpoint"] == "ck.pt"
    assert all(call["flags"][name] is None for name in ("work_dir", "out", "out_item", "show_dir"))


def test_predict_takes_every_input_before_the_flags(captured_run):
    argv = ["predict", "c.py", "ck.pt", "a.jpg", "imgs/", "*.png", "--topk", "3"]
    assert main([*argv, "--cfg-options", "a=1", "b=2"]) == 0
    (call,) = captured_run
    assert call["inputs"] == ["a.jpg", "imgs/", "*.png"]
    assert call["flags"]["topk"] == 3 and call["cfg_options"] == ["a=1", "b=2"]


def test_each_flag_sets_its_command_s_config_key():
    assert cli.flag_overrides("test", {"out": "o.json", "amp": False, "show": True}) == {
        "test.out": "o.json",
        "test.show": True,
    }
    predicted = {"out": "o.csv", "topk": 3, "batch_size": 8, "amp": True, "resume": None}
    assert cli.flag_overrides("predict", predicted) == {
        "predict.out": "o.csv",
        "predict.topk": 3,
        "data.test.batch_size": 8,
        "amp.enabled": True,
    }
    assert cli.flag_overrides("train", {"no_validate": True, "resume": True}) == {
        "schedule.validate": False,
        "resume": "auto",
    }


def test_flags_after_cfg_options_keep_their_values(captured_run):
    argv = ["train", "c.py", "--cfg-options", "a=1", "b=2", "--resume", "--work-dir", "w"]
    assert main(argv) == 0
    (call,) = captured_run
    assert call["cfg_options"] == ["a=1", "b=2"]
    assert call["flags"]["resume"] is True
    assert call["flags"]["work_dir"] == "w"


@pytest.mark.parametrize(
    ("command", "flag", "value", "name", "expected"),
    [
        ("train", "--work-dir", "w", "work_dir", "w"),
        ("train", "--work_dir", "w", "work_dir", "w"),
        ("train", "--no-validate", None, "no_validate", True),
        ("train", "--no_validate", None, "no_validate", True),
        ("train", "--auto-scale-lr", None, "auto_scale_lr", True),
        ("train", "--auto_scale_lr", None, "auto_scale_lr", True),
        ("train", "--nproc-per-node", "2", "nproc_per_node", 2),
        ("train", "--nproc_per_node", "2", "nproc_per_node", 2),
        ("test", "--out-item", "metrics", "out_item", "metrics"),
        ("test", "--out_item", "metrics", "out_item", "metrics"),
        ("test", "--show-dir", "s", "show_dir", "s"),
        ("test", "--show_dir", "s", "show_dir", "s"),
        ("test", "--wait-time", "0.5", "wait_time", 0.5),
        ("test", "--wait_time", "0.5", "wait_time", 0.5),
    ],
)
def test_hyphen_and_underscore_spellings_bind_the_same_flag(
    captured_run, command, flag, value, name, expected
):
    positional = ["c.py"] if command == "train" else ["c.py", "ck.pt"]
    argv = [command, *positional, flag, *([value] if value is not None else [])]
    assert main([*argv, "--cfg-options", "a=1", "b=2"]) == 0
    (call,) = captured_run
    assert call["flags"][name] == expected
    assert call["cfg_options"] == ["a=1", "b=2"]


# ---------------------------------------------------------------- the real CLI, end to end


@pytest.mark.parametrize("spelling", ["--cfg-options", "--cfg_options"])
def test_config_command_applies_every_item(tmp_path, spelling):
    result = run_cli(
        "config",
        QUICKSTART,
        spelling,
        "model.arch=resnet34",
        "schedule.max_epochs=3",
        "data.train.pipeline.0.size=24",
        "optimizer.lr=0.01",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "merged.py"
    written.write_text(result.stdout)
    cfg = load_config(written)
    plain = run_cli("config", QUICKSTART, cwd=ROOT)
    assert plain.returncode == 0, plain.stderr
    (tmp_path / "plain.py").write_text(plain.stdout)
    base = load_config(tmp_path / "plain.py")

    assert cfg["model"]["arch"] == "resnet34"
    assert cfg["schedule"]["max_epochs"] == 3
    assert cfg["data"]["train"]["pipeline"][0]["size"] == 24
    assert cfg["optimizer"]["lr"] == 0.01
    # the rest is untouched: only the four items differ from the plain merged config
    cfg["model"]["arch"] = base["model"]["arch"]
    cfg["schedule"]["max_epochs"] = base["schedule"]["max_epochs"]
    cfg["data"]["train"]["pipeline"][0]["size"] = base["data"]["train"]["pipeline"][0]["size"]
    cfg["optimizer"]["lr"] = base["optimizer"]["lr"]
    assert cfg == base


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_every_flag(command):
    result = run_cli(command, "--help", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr  # python-fire shows help on stderr
    params = inspect.signature(COMMANDS[command]).parameters.values()
    for param in params:
        if param.default is inspect.Parameter.empty:
            assert param.name.upper() in text, f"{command} --help lacks {param.name}"
        else:
            assert f"--{param.name}" in text, f"{command} --help lacks --{param.name}"


def test_top_level_help_lists_the_commands():
    result = run_cli("--help", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout + result.stderr


@pytest.mark.parametrize(
    "argv", [["--help"], *([c, "--help"] for c in sorted(COMMANDS)), ["config", QUICKSTART]]
)
def test_help_and_config_do_not_import_torch_or_mlflow(argv):
    snippet = (
        "import sys\n"
        "from ignite_cls.__main__ import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'mlflow', 'ignite', 'cv2') "
        "if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", snippet], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stderr, result.stderr[-2000:]
