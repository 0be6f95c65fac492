"""Progress as a person reads it: into a file, whole lines with images/s and ETA, throttled;
on a terminal, tqdm bars; the training records fired as an event for other handlers."""

from __future__ import annotations

import logging
import re
import time

import torch
from ignite.engine import Engine

from ignite_cls.engines import TrainEvents
from ignite_cls.handlers import progress
from ignite_cls.handlers.progress import ConsoleProgress, TrainingLog

TRAIN_LINE = re.compile(
    r"^train epoch (\d+)/2 iter (\d+)/8: loss [\d.]+ lr 0\.1 \d+ img/s "
    r"elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$"
)
EVAL_LINE = re.compile(r"^eval (\d+)/5: \d+ img/s elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$")


def trainer_with_log(interval: int) -> tuple[Engine, TrainingLog]:
    weight = torch.nn.Parameter(torch.ones(()))
    optimizer = torch.optim.SGD([weight], lr=0.1)

    def step(engine: Engine, batch: int) -> torch.Tensor:
        time.sleep(0.002)
        return torch.tensor(float(batch))

    trainer = Engine(step)
    trainer.register_events(*TrainEvents)
    return trainer, TrainingLog(optimizer, interval, images_per_iter=16)


def test_records_fire_an_event_and_lines_are_whole_and_throttled(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    trainer, training_log = trainer_with_log(interval=2)
    seen = []
    trainer.add_event_handler(
        TrainEvents.RECORDED, lambda e: seen.append(dict(training_log.record))
    )
    console = ConsoleProgress(terminal=False)
    training_log.attach(trainer, console)
    trainer.run(range(8), max_epochs=2)

    assert len(seen) == 8  # every 2nd of 16 iterations
    assert [r["loss"] for r in seen] == [1.0, 3.0, 5.0, 7.0] * 2  # the batch's own loss
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 8 and all(TRAIN_LINE.match(line) for line in lines), lines
    assert [TRAIN_LINE.match(line).group(2) for line in lines] == ["2", "4", "6", "8"] * 2

    monkeypatch.setattr(progress, "LINE_SECONDS", 3600.0)  # at most one line an hour
    trainer, training_log = trainer_with_log(interval=1)
    training_log.attach(trainer, ConsoleProgress(terminal=False))
    trainer.run(range(8), max_epochs=2)
    assert len(capsys.readouterr().err.splitlines()) == 1  # the first record only


def test_evaluation_lines(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    evaluator = Engine(lambda engine, batch: time.sleep(0.002))
    ConsoleProgress(terminal=False).watch_evaluation(evaluator, images_per_iter=10)
    evaluator.run(range(5))
    lines = capsys.readouterr().err.splitlines()
    assert [EVAL_LINE.match(line).group(1) for line in lines] == ["1", "2", "3", "4", "5"]


def test_epoch_line_goes_to_the_log(caplog):
    trainer, training_log = trainer_with_log(interval=4)
    training_log.attach(trainer, None)
    with caplog.at_level(logging.DEBUG, logger="ignite_cls"):
        trainer.run(range(8), max_epochs=1)
    assert re.search(r"epoch 1/1 done in [\d.]+s loss 7 lr 0.1 throughput \d+", caplog.text)
    assert caplog.text.count("iter ") == 2  # a record line each 4 iterations, in the file
