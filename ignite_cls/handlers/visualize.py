"""Visualised predictions (``--show-dir``, ``--show``, ``--interval``, ``--wait-time``) and the
grid of the most confident mistakes, drawn with OpenCV.

Both are drawn on rank 0 after the evaluator has completed, from the predictions the
`PredictionCollector` gathered there (every sample once, in dataset order) and the original
images (`dataset.load_rgb`). Drawing during the iterations instead would show rank 0 only its
own shard, or need a gather per batch; drawing afterwards costs the evaluator nothing, chooses
the same samples with 1 or N processes and never touches the metrics.

A visualised sample is the image upscaled without smoothing (at least 224 px on the short
side) under a banner with the true class, the predicted class and its score: green when right,
red when wrong. Text is wrapped to the image width, so it never runs off the image.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events

from ignite_cls.errors import UserError
from ignite_cls.handlers.predictions import PredictionCollector

MIN_SIDE = 224
MAX_SIDE = 8192
GRID_LIMIT = 64
GRID_COLUMNS = 8
GRID_GAP = 4
RIGHT_RGB = (0, 140, 0)
WRONG_RGB = (200, 20, 20)
TEXT_RGB = (255, 255, 255)
HEADER_RGB = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX
WINDOW_PREFIX = "ignite_cls: "
SOURCE_KEY = b"Source"  # PNG iTXt keyword holding the sample a written image shows
STOP_KEYS = (27, ord("q"))  # Esc or q: show no further windows

logger = logging.getLogger("ignite_cls")

# Runs in a child process: OpenCV's Qt backend aborts the whole process when it cannot reach
# the display, so the parent must not find out by opening a window itself.
_WINDOW_PROBE = (
    "import cv2; cv2.namedWindow('ignite_cls display check', "
    "cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL); "
    "cv2.waitKey(1); cv2.destroyAllWindows(); cv2.waitKey(1)"
)
_display_checked = False


# --- drawing -------------------------------------------------------------------------------


def upscale(rgb: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """`rgb` enlarged by the smallest whole factor that brings its short side to `min_side`,
    each pixel a sharp block (nearest neighbour); images already large enough are unchanged.
    Extreme strips stop at MAX_SIDE on the long side (a 1 x 2000 px image would need 4 GB)."""
    short, long = sorted(rgb.shape[:2])
    factor = min(math.ceil(min_side / short), max(1, MAX_SIDE // long))
    if factor <= 1:
        return rgb
    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def text_block(
    lines: list[str], width: int, background: tuple[int, int, int], scale: float | None = None
) -> np.ndarray:
    """A `width`-wide RGB banner holding `lines`, each wrapped to fit inside its margins; the
    font grows with `width` unless `scale` is given."""
    scale = scale or min(max(width / 400, 0.45), 3.0)
    thickness = max(1, round(scale * 1.5))
    margin = max(4, round(8 * scale))
    wrapped = [part for line in lines for part in _wrap(line, width - 2 * margin, scale, thickness)]
    (_, height), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
    line_height = height + baseline + round(4 * scale)
    block = np.empty((2 * margin + line_height * len(wrapped), width, 3), np.uint8)
    block[:] = background
    for row, text in enumerate(wrapped):
        origin = (margin, margin + row * line_height + height)
        cv2.putText(block, text, origin, FONT, scale, TEXT_RGB, thickness, cv2.LINE_AA)
    return block


def _wrap(text: str, max_width: int, scale: float, thickness: int) -> list[str]:
    """Greedy word wrap; a word wider than a whole line is cut between characters."""

    def fits(s: str) -> bool:
        return cv2.getTextSize(s, FONT, scale, thickness)[0][0] <= max_width

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(word) > 1 and not fits(word):
            cut = 1
            while fits(word[: cut + 1]):
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines or [""]


def draw_prediction(
    rgb: np.ndarray, true_class: str, pred_class: str, score: float, min_side: int = MIN_SIDE
) -> np.ndarray:
    """The sample as RGB: its banner (true class, predicted class and score; green when
    right, red when wrong) above the image upscaled by `upscale`."""
    image = upscale(rgb, min_side)
    colour = RIGHT_RGB if true_class == pred_class else WRONG_RGB
    lines = [f"true: {true_class}", f"pred: {pred_class} {score:.2f}"]
    return np.vstack([text_block(lines, image.shape[1], colour), image])


# --- which samples, which files ------------------------------------------------------------


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


def png_bytes(rgb: np.ndarray, source: str | None = None) -> bytes:
    """`rgb` encoded as PNG, with `source` recorded in an iTXt chunk after the header."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    data = encoded.tobytes()
    if source is None:
        return data
    chunk = SOURCE_KEY + b"\0\0\0\0\0" + source.encode()  # uncompressed, no language
    itxt = struct.pack(">I", len(chunk)) + b"iTXt" + chunk
    itxt += struct.pack(">I", zlib.crc32(b"iTXt" + chunk))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, IHDR length, type, data, CRC
    return data[:end_of_header] + itxt + data[end_of_header:]


def png_source(path: Path) -> str | None:
    """The source recorded by `png_bytes` in the PNG at `path`; None if it has none."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while header := f.read(8):
                if len(header) < 8:
                    return None
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    return None
                if kind != b"iTXt":
                    f.seek(length + 4, os.SEEK_CUR)
                    continue
                keyword, _, rest = f.read(length).partition(b"\0")
                f.seek(4, os.SEEK_CUR)
                if keyword == SOURCE_KEY:
                    return rest[4:].decode(errors="replace")
    except OSError:
        return None
    return None


def output_path(folder: Path, stem: str, source: str) -> Path:
    """`folder/stem.png`, unless that file shows another sample (an earlier run on other
    data): then `stem_<hash of source>.png`, the same name for the same sample every time."""
    path = folder / f"{stem}.png"
    if not path.exists() or png_source(path) == source:
        return path
    digest = zlib.crc32(source.encode())
    return folder / f"{stem}_{digest:08x}.png"


# --- windows -------------------------------------------------------------------------------


def display_problem() -> str | None:
    """Why no OpenCV window can be opened here, or None when one can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _WINDOW_PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "--show: opening a test window did not finish within 60 s"
    if probe.returncode == 0:
        return None
    lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    display_lines = [line for line in lines if "display" in line.lower()]
    detail = (display_lines or lines or [f"exit code {probe.returncode}"])[0]
    return f"--show cannot open a window: {detail[:200]}"


def require_display() -> None:
    """Raise a one-line `UserError` when rank 0 cannot open a window, on every rank alike
    (a collective when there are several processes: call it on every rank, before inference)."""
    global _display_checked
    problem = (display_problem() or "") if idist.get_rank() == 0 else ""
    if idist.get_world_size() > 1:
        problem = idist.broadcast(problem, src=0)
    if problem:
        raise UserError(f"{problem} (save the images with --show-dir DIR instead)")
    _display_checked = True


def _require_display_here() -> None:
    """`require_display` for this process alone, skipped when it already passed."""
    global _display_checked
    if not _display_checked:
        problem = display_problem()
        if problem:
            raise UserError(f"{problem} (save the images with --show-dir DIR instead)")
        _display_checked = True


def show_window(title: str, rgb: np.ndarray, wait_time: float) -> bool:
    """Show `rgb` in its own window for `wait_time` seconds (0: until a key is pressed or
    the window is closed); False when the user pressed Esc or q to see no more."""
    cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    cv2.imshow(title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    deadline = time.monotonic() + wait_time if wait_time > 0 else math.inf
    key = -1
    while key == -1 and time.monotonic() < deadline:
        step_ms = min(100, max(1, math.ceil((deadline - time.monotonic()) * 1000)))
        key = cv2.waitKey(step_ms)
        if not _window_open(title):
            break  # closed by the user
    if _window_open(title):
        cv2.destroyWindow(title)
        cv2.waitKey(1)  # let the GUI process the close
    return key == -1 or (key & 0xFF) not in STOP_KEYS


def _window_open(title: str) -> bool:
    try:
        return cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:
        return False


# --- the handler and the post-run functions ------------------------------------------------


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
        _require_display_here()
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
        draw_prediction(_fit_square(dataset.load_rgb(i), tile), classes[y], classes[p], s, tile)
        for i, y, p, s in wrong[:limit]
    ]
    height = max(t.shape[0] for t in tiles)
    columns = min(GRID_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    gap = GRID_GAP
    grid = np.zeros((rows * (height + gap) + gap, columns * (tile + gap) + gap, 3), np.uint8)
    for k, drawn in enumerate(tiles):
        top, left = gap + (k // columns) * (height + gap), gap + (k % columns) * (tile + gap)
        grid[top : top + drawn.shape[0], left : left + tile] = drawn
    header = f"most confident mistakes: {len(tiles)} of {len(wrong)}, highest score first"
    header_block = text_block([header], grid.shape[1], HEADER_RGB, scale=tile / 200)
    return np.vstack([header_block, grid])


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


def _fit_square(rgb: np.ndarray, side: int) -> np.ndarray:
    """`rgb` scaled to fit a `side` px square (whole-factor nearest when enlarging, area
    averaging when shrinking), centred on black."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        factor = side // max(h, w)
        image = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    else:
        scale = side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    square = np.zeros((side, side, 3), np.uint8)
    top, left = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
    square[top : top + image.shape[0], left : left + image.shape[1]] = image
    return square
