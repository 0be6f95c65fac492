"""Visualised predictions (``--show-dir``, ``--show``, ``--interval``, ``--wait-time``) and the
grid of the most confident mistakes.

Both are drawn on rank 0 after the evaluator has completed, from the predictions the
`PredictionCollector` gathered there (every sample once, in dataset order) and the original
images (`dataset.load_rgb`). Drawing during the iterations instead would show rank 0 only its
own shard, or need a gather per batch; drawing afterwards costs the evaluator nothing, chooses
the same samples with 1 or N processes and never touches the metrics. The drawing itself, the
PNG files and the windows are in ``ignite_cls.visualize``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events

from ignite_cls.errors import UserError
from ignite_cls.handlers.predictions import PredictionCollector
from ignite_cls.visualize.draw import MIN_SIDE, draw_grid, draw_prediction, fit_square
from ignite_cls.visualize.png import output_path, png_bytes
from ignite_cls.visualize.windows import require_display_here, show_window

GRID_LIMIT = 64
WINDOW_PREFIX = "ignite_cls: "

logger = logging.getLogger("ignite_cls")


def unique_predictions(predictions: PredictionCollector) -> dict[int, tuple[int, int, float]]:
    """Dataset index -> (true label, predicted label, its score), each index once (a sample
    substituted for an unreadable image is evaluated twice)."""
    best = predictions.scores.max(1)
    found: dict[int, tuple[int, int, float]] = {}
    rows = zip(
        predictions.indices.tolist(),
        predictions.labels.tolist(),
        best.indices.tolist(),
        best.values.tolist(),
        strict=True,
    )
    for index, label, pred, score in rows:
        found.setdefault(index, (label, pred, score))
    return found


def file_stems(dataset: Any, indices: list[int]) -> dict[int, str]:
    """Output name (no extension) per index: the source file's stem, plus `_<index>` when
    that stem occurs more than once in the dataset (CIFAR folders repeat `0000.jpg` per class).
    Counted over the whole dataset, so a sample's name does not depend on `--interval`."""
    counts = Counter(Path(dataset.sample_name(i)).stem for i in range(len(dataset)))
    stems = {}
    for i in indices:
        stem = Path(dataset.sample_name(i)).stem
        stems[i] = stem if counts[stem] == 1 else f"{stem}_{i}"
    return stems


def sample_source(dataset: Any, index: int) -> str:
    """What identifies a sample beyond this run: its file's absolute path, or its name."""
    name = dataset.sample_name(index)
    return os.path.abspath(name) if os.path.isfile(name) else name


def render(
    predictions: PredictionCollector,
    dataset: Any,
    classes: list[str],
    *,
    interval: int = 1,
    show_dir: str | os.PathLike | None = None,
    show: bool = False,
    wait_time: float = 2.0,
) -> list[Path]:
    """Draw every `interval`-th sample of the dataset (by dataset index: 0, N, 2N, ...) that
    `predictions` holds; write each as a PNG into `show_dir` and/or show it in a window.
    Returns the files written."""
    if show:
        require_display_here()
    folder = Path(show_dir) if show_dir else None
    found = unique_predictions(predictions)
    chosen = [i for i in sorted(found) if i % interval == 0]
    stems = file_stems(dataset, chosen)
    written: list[Path] = []
    for index in chosen:
        label, pred, score = found[index]
        drawn = draw_prediction(dataset.load_rgb(index), classes[label], classes[pred], score)
        if folder is not None:
            source = sample_source(dataset, index)
            path = output_path(folder, stems[index], source)
            path.write_bytes(png_bytes(drawn, source))
            written.append(path)
        if show:
            show = show_window(WINDOW_PREFIX + stems[index], drawn, wait_time)
            if not (show or folder):
                break
    return written


class PredictionVisualizer:
    """On the evaluator's COMPLETED event, on rank 0: `render` the gathered predictions.
    Attach it after the `PredictionCollector`, whose COMPLETED handler gathers them."""

    def __init__(
        self,
        predictions: PredictionCollector,
        dataset: Any,
        classes: list[str],
        *,
        show_dir: str | os.PathLike | None = None,
        show: bool = False,
        interval: int = 1,
        wait_time: float = 2.0,
    ) -> None:
        if wait_time < 0:
            raise UserError(f"--wait-time must be 0 (wait for a key) or more, got {wait_time}")
        if show_dir is not None:
            _make_folder(Path(show_dir))
        self.predictions, self.dataset, self.classes = predictions, dataset, classes
        self.show_dir, self.show = show_dir, show
        self.interval, self.wait_time = int(interval), float(wait_time)
        self.files: list[Path] = []  # the PNGs written by the last run

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.COMPLETED, self._render)

    def _render(self, _: Engine) -> None:
        if idist.get_rank() != 0:
            return
        self.files = render(
            self.predictions,
            self.dataset,
            self.classes,
            interval=self.interval,
            show_dir=self.show_dir,
            show=self.show,
            wait_time=self.wait_time,
        )
        if self.show_dir is not None:
            logger.info(f"wrote {len(self.files)} visualised predictions to {self.show_dir}")


def attach_visualizer(
    evaluator: Engine,
    predictions: PredictionCollector,
    dataset: Any,
    classes: list[str],
    test_cfg: dict,
) -> PredictionVisualizer | None:
    """Attach a `PredictionVisualizer` on rank 0 when ``--show-dir`` or ``--show`` asks for
    one (None otherwise: nothing is attached, nothing costs)."""
    if idist.get_rank() != 0 or not (test_cfg["show_dir"] or test_cfg["show"]):
        return None
    visualizer = PredictionVisualizer(
        predictions,
        dataset,
        classes,
        show_dir=test_cfg["show_dir"] or None,
        show=bool(test_cfg["show"]),
        interval=test_cfg["interval"],
        wait_time=test_cfg["wait_time"],
    )
    visualizer.attach(evaluator)
    return visualizer


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--show-dir {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--show-dir {folder}: cannot create the folder ({e.strerror})") from None


def mistakes(predictions: PredictionCollector) -> list[tuple[int, int, int, float]]:
    """Every wrong prediction as (index, true label, predicted label, score), the most
    confident first (ties: lower index first)."""
    found = unique_predictions(predictions)
    wrong = [(i, y, p, s) for i, (y, p, s) in found.items() if y != p]
    wrong.sort(key=lambda m: (-m[3], m[0]))
    return wrong


def mistakes_grid(
    predictions: PredictionCollector,
    dataset: Any,
    classes: list[str],
    limit: int = GRID_LIMIT,
    tile: int = MIN_SIDE,
) -> np.ndarray | None:
    """An RGB grid (up to 8 columns) of the `limit` most confident mistakes, each drawn as by
    `draw_prediction` with the image fitted into a `tile` px square; None without mistakes."""
    wrong = mistakes(predictions)
    if not wrong:
        return None
    tiles = [
        draw_prediction(fit_square(dataset.load_rgb(i), tile), classes[y], classes[p], s, tile)
        for i, y, p, s in wrong[:limit]
    ]
    header = f"most confident mistakes: {len(tiles)} of {len(wrong)}, highest score first"
    return draw_grid(tiles, tile, header)


def write_mistakes_grid(
    path: str | os.PathLike,
    predictions: PredictionCollector,
    dataset: Any,
    classes: list[str],
    limit: int = GRID_LIMIT,
) -> Path | None:
    """Write `mistakes_grid` as a PNG at `path`; the path, or None when nothing was wrong."""
    grid = mistakes_grid(predictions, dataset, classes, limit)
    if grid is None:
        return None
    path = Path(path)
    path.write_bytes(png_bytes(grid))
    return path
