"""Drawing a prediction: the original image enlarged without smoothing (at least 224 px on
the short side) under a banner with the true class, the predicted class and its score, green
when right, red when wrong; text wrapped to the image width, so it never runs off it. And a
grid of such tiles."""

from __future__ import annotations

import math

import cv2
import numpy as np

MIN_SIDE = 224
MAX_SIDE = 8192
GRID_COLUMNS = 8
GRID_GAP = 4
RIGHT_RGB = (0, 140, 0)
WRONG_RGB = (200, 20, 20)
TEXT_RGB = (255, 255, 255)
HEADER_RGB = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX


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


def draw_grid(tiles: list[np.ndarray], tile: int, header: str) -> np.ndarray:
    """``tiles`` (each ``tile`` px wide) in rows of up to GRID_COLUMNS, under ``header``."""
    height = max(t.shape[0] for t in tiles)
    columns = min(GRID_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    gap = GRID_GAP
    grid = np.zeros((rows * (height + gap) + gap, columns * (tile + gap) + gap, 3), np.uint8)
    for k, drawn in enumerate(tiles):
        top, left = gap + (k // columns) * (height + gap), gap + (k % columns) * (tile + gap)
        grid[top : top + drawn.shape[0], left : left + tile] = drawn
    header_block = text_block([header], grid.shape[1], HEADER_RGB, scale=tile / 200)
    return np.vstack([header_block, grid])


def fit_square(rgb: np.ndarray, side: int) -> np.ndarray:
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
