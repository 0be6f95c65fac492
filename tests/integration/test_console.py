"""What the console shows of a whole command: tqdm bars on a terminal, whole lines in a file
(a Slurm .out file, nohup, CI), and the test metrics table on lines of its own."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest
from helpers import NO_MLFLOW, QUICKSTART, cli, cpu_env

pytestmark = pytest.mark.integration

FAST = ["schedule.max_epochs=1", "data.train.batch_size=256", "model.arch=mobilenet_v3_small"]
FAST += [NO_MLFLOW, "log.interval=1"]


def on_a_terminal(args: list[str], cwd: Path) -> str:
    """Run the command with stderr on a 120-column pseudo-terminal; what it showed there."""
    main, secondary = pty.openpty()
    rows_cols = struct.pack("HHHH", 40, 120, 0, 0)  # tqdm draws nothing on a 0-column terminal
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, rows_cols)
    with subprocess.Popen(
        cli(*args), cwd=cwd, env=cpu_env(), stdout=subprocess.DEVNULL, stderr=secondary
    ) as proc:
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal closes when the process ends
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=300) == 0, shown[-3000:]
    os.close(main)
    return shown.decode(errors="replace")


def into_a_file(args: list[str], cwd: Path) -> str:
    with open(cwd / "stderr.txt", "w") as err:
        result = subprocess.run(cli(*args), cwd=cwd, env=cpu_env(), stderr=err, timeout=300)
    text = (cwd / "stderr.txt").read_text()
    assert result.returncode == 0, text[-3000:]
    return text


def commands(work_dir: str) -> tuple[list[str], list[str]]:
    """A one-epoch training into ``work_dir`` and a test of its checkpoint."""
    train = ["train", QUICKSTART, "--work-dir", work_dir, "--cfg-options", *FAST]
    checkpoint = f"{work_dir}/epoch_1.pt"
    test = ["test", QUICKSTART, checkpoint, "--work-dir", f"{work_dir}_test"]
    return train, [*test, "--cfg-options", NO_MLFLOW, "model.arch=mobilenet_v3_small"]


def test_a_terminal_gets_bars_and_a_file_gets_whole_lines(tmp_path):
    train, test = commands("on_terminal")
    shown = on_a_terminal(train, tmp_path)
    assert re.search(r"\rtrain.*\[5/5\] 100%\|", shown), shown[-2000:]  # a finished tqdm bar
    shown = on_a_terminal(test, tmp_path)
    assert re.search(r"\reval.*\[\d+/2\]", shown), shown[-2000:]
    table = shown.index("test metrics:")
    assert shown[table - 1] in "\r\n", shown[table - 200 : table + 20]  # from the line's start

    train, test = commands("into_file")
    written = into_a_file(train, tmp_path) + into_a_file(test, tmp_path)
    assert "\r" not in written and "\x1b" not in written  # no redraws, no escapes
    lines = written.splitlines()
    progress = [line for line in lines if line.startswith("train epoch 1/1 iter ")]
    assert progress and all(re.search(r" \d+ img/s elapsed \S+ eta \S+$", p) for p in progress)
    assert any(line.startswith("epoch 1/1 done in ") for line in lines)
    table = lines.index("test metrics:")
    assert lines[table + 1].split() == ["metric", "value"]
    assert re.fullmatch(r"accuracy/top1 +\d+\.\d\d", lines[table + 3]), lines[table + 3]
