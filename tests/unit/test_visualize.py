"""Drawing, naming and the mistakes grid of the visualisation, on real images (scikit-learn's
digits, CIFAR-10 JPEGs); predictions are set by hand so that each case is known."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ignite_cls.data import DigitsDataset, FolderDataset, read_image
from ignite_cls.handlers.predictions import PredictionCollector
from ignite_cls.handlers.visualize import (
    file_stems,
    mistakes,
    mistakes_grid,
    render,
    write_mistakes_grid,
)
from ignite_cls.visualize.draw import (
    GRID_COLUMNS,
    GRID_GAP,
    MAX_SIDE,
    MIN_SIDE,
    RIGHT_RGB,
    WRONG_RGB,
    draw_prediction,
    upscale,
)
from ignite_cls.visualize.png import png_source
from ignite_cls.visualize.windows import display_problem


@pytest.fixture(scope="module")
def digits() -> DigitsDataset:
    return DigitsDataset("test")


@pytest.fixture(scope="module")
def cifar_root(cifar10_subset):
    return cifar10_subset(20, 10)  # the size other tests extract too


def blocks(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement written independently of OpenCV."""
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1)


def collector_for(labels: list[int], preds: list[int], scores: list[float], n_classes=10):
    """A collector as the evaluator leaves it: sample i predicted preds[i] with scores[i]."""
    collector = PredictionCollector(n_classes)
    table = torch.full((len(labels), n_classes), 0.0)
    for i, (p, s) in enumerate(zip(preds, scores, strict=True)):
        table[i] = (1 - s) / (n_classes - 1)
        table[i, p] = s
    collector.indices = torch.arange(len(labels))
    collector.labels = torch.tensor(labels)
    collector.scores = table
    return collector


def split(drawn: np.ndarray, image_height: int) -> tuple[np.ndarray, np.ndarray]:
    """(banner, image) of a drawn sample."""
    return drawn[:-image_height], drawn[-image_height:]


def dominant(banner: np.ndarray) -> np.ndarray:
    """The banner's most frequent colour (its background)."""
    colours, counts = np.unique(banner.reshape(-1, 3), axis=0, return_counts=True)
    return colours[counts.argmax()]


def test_small_images_are_upscaled_by_whole_factors_without_smoothing(digits, cifar_root):
    digit = digits.load_rgb(0)
    assert np.array_equal(upscale(digit), blocks(digit, 28))  # 8 px -> 224
    cifar = read_image(sorted((cifar_root / "test" / "cat").iterdir())[0])
    assert np.array_equal(upscale(cifar), blocks(cifar, 7))  # 32 px -> 224
    strip = cifar[:10]  # 10 x 32: the short side decides
    assert upscale(strip).shape[:2] == (230, 736)
    large = np.tile(cifar, (8, 10, 1))  # 256 x 320: large enough already
    assert upscale(large) is large
    line = np.tile(cifar[:1], (1, 64, 1))  # 1 x 2048: stops at MAX_SIDE, not at 4 GB
    assert upscale(line).shape[:2] == (4, 8192) and MAX_SIDE == 8192


def test_drawn_sample_is_the_upscaled_image_under_a_label_banner(digits):
    rgb = digits.load_rgb(5)
    drawn = draw_prediction(rgb, "3", "3", 0.91)
    assert drawn.shape[1] == MIN_SIDE and drawn.shape[0] > MIN_SIDE
    banner, image = split(drawn, MIN_SIDE)
    assert np.array_equal(image, blocks(rgb, 28))  # nothing drawn over the image
    same_place = blocks(rgb, 28)[: banner.shape[0]]
    assert (banner != same_place).any(axis=2).mean() > 0.5  # the label region is not the image
    text = (banner == 255).all(axis=2)
    assert text.sum() > 50  # white text on the banner
    assert np.array_equal(dominant(banner), RIGHT_RGB)


def test_correct_and_wrong_predictions_are_drawn_in_different_colours(digits):
    rgb = digits.load_rgb(7)
    right, _ = split(draw_prediction(rgb, "4", "4", 0.8), MIN_SIDE)
    wrong, _ = split(draw_prediction(rgb, "4", "9", 0.8), MIN_SIDE)
    assert np.array_equal(dominant(right), RIGHT_RGB)
    assert np.array_equal(dominant(wrong), WRONG_RGB)
    assert right[..., 1].mean() > right[..., 0].mean()  # green
    assert wrong[..., 0].mean() > wrong[..., 1].mean()  # red


def test_banner_text_depends_on_the_class_names_and_score(digits):
    rgb = digits.load_rgb(3)
    base = draw_prediction(rgb, "cat", "dog", 0.5)
    assert not np.array_equal(base, draw_prediction(rgb, "cat", "cow", 0.5))
    assert not np.array_equal(base, draw_prediction(rgb, "cat", "dog", 0.7))
    assert not np.array_equal(base, draw_prediction(rgb, "car", "dog", 0.5))


@pytest.mark.parametrize(
    "name",
    ["American Staffordshire terrier with a long name", "Supercalifragilisticexpialidocious_x2"],
)
def test_long_class_names_wrap_and_never_run_off_the_image(digits, name):
    rgb = digits.load_rgb(2)
    short, _ = split(draw_prediction(rgb, "cat", "dog", 0.5), MIN_SIDE)
    long, image = split(draw_prediction(rgb, name, name, 0.5), MIN_SIDE)
    assert long.shape[0] > short.shape[0]  # more lines, not a wider or clipped one
    assert np.array_equal(image, blocks(rgb, 28))
    edges = np.concatenate([long[:, :3], long[:, -3:], long[:2], long[-2:]], axis=None)
    assert np.array_equal(np.unique(edges.reshape(-1, 3), axis=0), [RIGHT_RGB])


def test_file_names_are_stems_plus_index_only_where_stems_repeat(digits, cifar_root):
    assert file_stems(digits, [0, 12]) == {0: "000000", 12: "000012"}
    cifar = FolderDataset(cifar_root / "test")  # 0000.jpg, 0001.jpg ... in every class folder
    stems = file_stems(cifar, list(range(len(cifar))))
    assert stems == {i: f"{Path(path).stem}_{i}" for i, path in enumerate(cifar.paths)}
    assert len({Path(path).name for path in cifar.paths}) < len(cifar)  # names do repeat


def test_render_writes_every_interval_th_sample_with_its_source(tmp_path, cifar_root):
    dataset = FolderDataset(cifar_root / "test")
    n = len(dataset)
    preds = [(y + i % 2) % 10 for i, y in enumerate(dataset.targets)]  # every other one wrong
    collector = collector_for(dataset.targets, preds, [0.6] * n)
    written = render(collector, dataset, dataset.classes, interval=4, show_dir=tmp_path)
    assert len(written) == math.ceil(n / 4) == len(list(tmp_path.iterdir()))
    chosen = list(range(0, n, 4))
    for index, path in zip(chosen, written, strict=True):
        source = Path(dataset.paths[index]).resolve()
        assert path.name == f"{source.stem}_{index}.png"  # stems repeat across class folders
        assert png_source(path) == str(source)
        stored = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        label, pred = dataset.targets[index], preds[index]
        expected = draw_prediction(
            dataset.load_rgb(index), dataset.classes[label], dataset.classes[pred], 0.6
        )
        assert np.array_equal(stored, expected)


def test_two_runs_into_one_folder_never_overwrite_each_others_samples(tmp_path, cifar_root):
    # The train and test folders hold different images under the same relative names
    # (airplane/0000.jpg ...), so both runs name their files 0000_0.png, ...
    runs = {}
    for split_name in ("test", "train"):
        dataset = FolderDataset(cifar_root / split_name)
        collector = collector_for(dataset.targets, dataset.targets, [0.9] * len(dataset))
        runs[split_name] = (dataset, collector)
    test_set, test_preds = runs["test"]
    first = render(test_preds, test_set, test_set.classes, show_dir=tmp_path, interval=5)
    before = {p: p.read_bytes() for p in first}
    train_set, train_preds = runs["train"]
    second = render(train_preds, train_set, train_set.classes, show_dir=tmp_path, interval=5)
    assert {p: p.read_bytes() for p in first} == before
    assert not set(first) & set(second)
    clashed = [p for p in second if p.stem.rsplit("_", 1)[0] in {q.stem for q in first}]
    assert clashed  # these would have overwritten the first run's files
    assert len(list(tmp_path.iterdir())) == len(first) + len(second)
    again = render(test_preds, test_set, test_set.classes, show_dir=tmp_path, interval=5)
    assert again == first  # the same samples land on their own files again
    assert len(list(tmp_path.iterdir())) == len(first) + len(second)


def test_mistakes_grid_shows_the_most_confident_mistakes_first(tmp_path, digits):
    n = len(digits)
    labels = digits.targets
    wrong = set(range(0, n, 4))  # 90 mistakes: more than the grid holds
    preds = [(y + 1) % 10 if i in wrong else y for i, y in enumerate(labels)]
    scores = [0.2 + 0.7 * ((i * 37) % n) / n for i in range(n)]
    collector = collector_for(labels, preds, scores)
    ranked = mistakes(collector)
    assert [m[0] for m in ranked] == sorted(wrong, key=lambda i: (-scores[i], i))
    grid = mistakes_grid(collector, digits, digits.classes)
    first, label, pred, score = ranked[0]
    tile = draw_prediction(digits.load_rgb(first), str(label), str(pred), score)
    rows, step_y, step_x = 8, tile.shape[0] + GRID_GAP, MIN_SIDE + GRID_GAP
    assert grid.shape[1] == GRID_COLUMNS * step_x + GRID_GAP
    header = grid.shape[0] - (rows * step_y + GRID_GAP)
    assert header > 0
    for k in (0, 63):  # the first and the last of the 64 tiles
        index, label, pred, score = ranked[k]
        expected = draw_prediction(digits.load_rgb(index), str(label), str(pred), score)
        top, left = header + GRID_GAP + (k // 8) * step_y, GRID_GAP + (k % 8) * step_x
        assert np.array_equal(grid[top : top + tile.shape[0], left : left + MIN_SIDE], expected)
    path = write_mistakes_grid(tmp_path / "grid.png", collector, digits, digits.classes)
    assert np.array_equal(cv2.imread(str(path))[..., ::-1], grid)


def test_mistakes_grid_of_a_few_mistakes_and_of_none(tmp_path, digits):
    labels = digits.targets[:20]
    preds = [(y + 1) % 10 if i < 3 else y for i, y in enumerate(labels)]
    few = mistakes_grid(collector_for(labels, preds, [0.5] * 20), digits, digits.classes)
    assert few.shape[1] == 3 * (MIN_SIDE + GRID_GAP) + GRID_GAP
    perfect = collector_for(labels, labels, [0.5] * 20)
    assert mistakes_grid(perfect, digits, digits.classes) is None
    assert write_mistakes_grid(tmp_path / "g.png", perfect, digits, digits.classes) is None
    assert not (tmp_path / "g.png").exists()


def test_display_problem_is_reported_without_opening_a_window_here(monkeypatch, xvfb_display):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "neither DISPLAY nor WAYLAND_DISPLAY is set" in display_problem()
    monkeypatch.setenv("DISPLAY", ":4999")  # no such server: OpenCV's Qt would abort
    problem = display_problem()
    assert problem.startswith("--show cannot open a window") and "\n" not in problem
    monkeypatch.setenv("DISPLAY", xvfb_display)
    assert display_problem() is None
