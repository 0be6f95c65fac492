"""The commands, as python-fire sees them: flags with one-line help, nothing heavy imported.

Every flag sets one config key (``FLAG_KEYS``, the README's flag table); the code that acts
on a flag reads that key, so ``grep`` for the key finds the effect.

python-fire binds each extra word to the next free parameter, so
``--cfg-options a=1 b=2`` would silently put ``b=2`` into another flag. ``gather_cfg_options``
rewrites argv first so that every item after ``--cfg-options`` (up to the next flag) travels
as one list.
"""

from __future__ import annotations

from typing import Any

CFG_OPTIONS_FLAGS = ("--cfg-options", "--cfg_options")

# flag -> the config key it sets. A switch sets True (no_validate: False); `--resume` alone
# sets "auto". `--cfg-options` items are applied after these and win.
FLAG_KEYS = {
    "work_dir": "work_dir",
    "resume": "resume",
    "amp": "amp.enabled",
    "no_validate": "schedule.validate",
    "auto_scale_lr": "auto_scale_lr.enable",
    "launcher": "launcher",
    "nproc_per_node": "nproc_per_node",
    "out": "test.out",
    "out_item": "test.out_item",
    "show_dir": "test.show_dir",
    "show": "test.show",
    "interval": "test.interval",
    "wait_time": "test.wait_time",
}
# flags whose key differs by command
COMMAND_FLAG_KEYS = {
    "predict": {"out": "predict.out", "topk": "predict.topk", "batch_size": "data.test.batch_size"},
    "export": {"format": "export.format", "out": "export.out"},
}
INVERTED_SWITCHES = {"no_validate"}


def gather_cfg_options(argv: list[str]) -> list[str]:
    """Turn ``--cfg-options a=1 b=2`` (any number of items) into one fire list literal."""
    out: list[str] = []
    items: list[str] = []
    seen = False
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, inline = word.partition("=")
        if name in CFG_OPTIONS_FLAGS:
            seen = True
            if eq:
                items.append(inline)
            i += 1
            # items are key=value, so any word starting with "-" is the next flag (-w, --amp)
            while i < len(argv) and not argv[i].startswith("-"):
                items.append(argv[i])
                i += 1
            continue
        out.append(word)
        i += 1
    if seen:
        out += ["--cfg-options", repr(items)]
    return out


def flag_overrides(command: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The config keys the given flags set (flags left at None/False set nothing)."""
    keys = {**FLAG_KEYS, **COMMAND_FLAG_KEYS.get(command, {})}
    overrides: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None or value is False:
            continue
        if name in INVERTED_SWITCHES:
            value = not value
        elif name == "resume" and value is True:
            value = "auto"
        overrides[keys[name]] = value
    return overrides


def _run(
    command: str, config: str, flags: dict[str, Any], cfg_options, checkpoint=None, inputs=()
) -> None:
    """Build the job, start the MLflow tracking agent (on rank 0, before torch is imported, so
    both start up side by side), start the workers."""
    from ignite_cls.job import make_job
    from ignite_cls.launch import launch
    from ignite_cls.tracking import agent

    overrides = flag_overrides(command, flags)
    job = make_job(command, config, flags, overrides, cfg_options, checkpoint, list(inputs))
    agent.start(job)
    launch(job)


def train(
    config: str,
    work_dir: str | None = None,
    resume: Any = None,
    amp: bool = False,
    no_validate: bool = False,
    auto_scale_lr: bool = False,
    cfg_options: list[str] | None = None,
    launcher: str = "none",
    nproc_per_node: int | None = None,
) -> None:
    """Train a classifier from a config file.

    Args:
        config: the config file (a Python file; `_base_` inherits).
        work_dir: folder for logs, checkpoints and the merged config (default runs/<config stem>).
        resume: alone, resume from the latest checkpoint in the work dir; with a path or URL, from that file.
        amp: automatic mixed precision (fp16 with a grad scaler on CUDA, bf16 on CPU).
        no_validate: do not validate during training.
        auto_scale_lr: scale the lr by (world size x batch) / auto_scale_lr.base_batch_size.
        cfg_options: config overrides as key=value items (dotted keys; a,b and [a,b] lists); applied last.
        launcher: none | pytorch (torchrun) | slurm (srun) | mpi (mpirun).
        nproc_per_node: spawn this many processes on this node (env NNODES, NODE_RANK, PORT, MASTER_ADDR for several nodes).
    """
    flags = dict(
        work_dir=work_dir,
        resume=resume,
        amp=amp,
        no_validate=no_validate,
        auto_scale_lr=auto_scale_lr,
        launcher=launcher,
        nproc_per_node=nproc_per_node,
    )
    _run("train", config, flags, cfg_options)


def test(
    config: str,
    checkpoint: str,
    work_dir: str | None = None,
    out: str | None = None,
    out_item: str | None = None,
    cfg_options: list[str] | None = None,
    show_dir: str | None = None,
    show: bool = False,
    interval: int = 1,
    wait_time: float = 2.0,
    launcher: str = "none",
    nproc_per_node: int | None = None,
) -> None:
    """Test a checkpoint on the config's test split: metrics table, JSON, optional predictions.

    Args:
        config: the config file the checkpoint was trained with.
        checkpoint: the checkpoint, a path or an http(s) URL (downloaded once into a cache).
        work_dir: folder for the metrics JSON and the log (default runs/<config stem>).
        out: write predictions or metrics to this file (.pkl, .pickle, .json; .csv for predictions).
        out_item: what --out holds: pred (default; one record per sample) or metrics.
        cfg_options: config overrides as key=value items; applied last.
        show_dir: save visualised predictions (PNG) into this folder.
        show: show visualised predictions in a window (needs a display).
        interval: visualise every N-th sample of the dataset.
        wait_time: seconds each window stays open (0 waits for a key).
        launcher: none | pytorch (torchrun) | slurm (srun) | mpi (mpirun).
        nproc_per_node: spawn this many processes on this node.
    """
    flags = dict(
        work_dir=work_dir,
        out=out,
        out_item=out_item,
        show_dir=show_dir,
        show=show,
        interval=interval,
        wait_time=wait_time,
        launcher=launcher,
        nproc_per_node=nproc_per_node,
    )
    _run("test", config, flags, cfg_options, checkpoint=str(checkpoint))


def predict(
    config: str,
    checkpoint: str,
    *inputs: str,
    out: str | None = None,
    topk: int | None = None,
    batch_size: int | None = None,
    amp: bool = False,
    cfg_options: list[str] | None = None,
    launcher: str = "none",
    nproc_per_node: int | None = None,
) -> None:
    """Classify new images with a checkpoint: a table, or one row per image in --out.

    Args:
        config: the config file the checkpoint was trained with (its test pipeline is used).
        checkpoint: the checkpoint, a path or an http(s) URL.
        inputs: image files, folders (recursive), glob patterns, or text files listing one path a line.
        out: write the rows to this file (.csv, .json, .pkl); without it a table is printed.
        topk: classes listed per image with their probabilities (default 5).
        batch_size: images per batch and process (default data.test.batch_size).
        amp: automatic mixed precision.
        cfg_options: config overrides as key=value items; applied last.
        launcher: none | pytorch (torchrun) | slurm (srun) | mpi (mpirun).
        nproc_per_node: spawn this many processes on this node.
    """
    flags = dict(
        out=out,
        topk=topk,
        batch_size=batch_size,
        amp=amp,
        launcher=launcher,
        nproc_per_node=nproc_per_node,
    )
    _run("predict", config, flags, cfg_options, checkpoint=str(checkpoint), inputs=inputs)


def export(
    config: str,
    checkpoint: str,
    format: str | None = None,
    out: str | None = None,
    cfg_options: list[str] | None = None,
) -> None:
    """Export a checkpoint for serving without PyTorch's training stack, checked on test images.

    Args:
        config: the config file the checkpoint was trained with.
        checkpoint: the checkpoint, a path or an http(s) URL.
        format: onnx (the default; needs the export extra) or torchscript.
        out: the file to write.
        cfg_options: config overrides as key=value items; applied last.
    """
    from ignite_cls.export import run_export
    from ignite_cls.job import make_job

    flags = dict(format=format, out=out)
    overrides = flag_overrides("export", flags)
    run_export(make_job("export", config, flags, overrides, cfg_options, str(checkpoint)))


def config(config: str, cfg_options: list[str] | None = None) -> None:
    """Print the fully merged config (defaults, _base_ files and --cfg-options) as a loadable config file.

    Args:
        config: the config file.
        cfg_options: config overrides as key=value items; applied last.
    """
    from ignite_cls.config import format_config
    from ignite_cls.job import make_job

    print(format_config(make_job("config", config, {}, {}, cfg_options).cfg), end="")


def benchmark(
    config: str,
    steps: int = 30,
    repeats: int = 3,
    command_repeats: int = 3,
    json: str | None = None,
    cfg_options: list[str] | None = None,
) -> None:
    """Measure data, model-step, training and test images/s against plain PyTorch baselines,
    and the whole train and test commands against a plain script doing the same work.

    Args:
        config: the config file whose model and data are measured.
        steps: batches per measurement (the data pipeline runs for at least 3 s too).
        repeats: alternating repeats of each paired measurement (medians are reported).
        command_repeats: pairs of whole train and test commands (0: none); folder data only.
        json: also write the figures to this JSON file.
        cfg_options: config overrides as key=value items; applied last.
    """
    from ignite_cls.benchmark import run_benchmark
    from ignite_cls.job import make_job

    job = make_job("benchmark", config, {}, {}, cfg_options)
    run_benchmark(job, steps, repeats, command_repeats, json)


COMMANDS = {
    "train": train,
    "test": test,
    "predict": predict,
    "export": export,
    "config": config,
    "benchmark": benchmark,
}
