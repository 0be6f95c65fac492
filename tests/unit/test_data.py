"""ignite_cls.data on real images: decoding, datasets, seeded augmentation, samplers, loaders.

The CIFAR-10 JPEGs and Fashion-MNIST PNGs are small subsets of ../shared/datasets/ that
conftest.py extracts into a temporary folder (the tests skip where that folder is absent).
"""

import collections
import copy
import os
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ignite_cls.data import (
    BadImageError,
    DigitsDataset,
    FolderDataset,
    ShardSampler,
    TrainSampler,
    build_data,
    build_dataset,
    build_loader,
    build_transform,
    read_image,
)
from ignite_cls.defaults import DEFAULTS
from ignite_cls.errors import UserError

CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
PER_CLASS = 10
AUGMENT = [
    dict(type="RandomCrop", size=32, padding=4),
    dict(type="RandomHorizontalFlip"),
]


@pytest.fixture(scope="session")
def cifar_root(cifar10_subset) -> Path:
    """CIFAR-10 test JPEGs, PER_CLASS in each of the 10 class folders (see conftest)."""
    return cifar10_subset(20, PER_CLASS) / "test"


@pytest.fixture(scope="session")
def fashion_png(fashion_mnist_subset) -> Path:
    """A 28x28 grayscale Fashion-MNIST PNG."""
    return sorted((fashion_mnist_subset(20, 10) / "test").rglob("*.png"))[0]


@pytest.fixture
def folder(tmp_path, cifar_root) -> Path:
    """A writable copy of the CIFAR subset (tests add odd files to it)."""
    root = tmp_path / "images"
    shutil.copytree(cifar_root, root)
    return root


def _first_jpeg(root: Path) -> Path:
    return sorted(root.rglob("*.jpg"))[0]


# ---------------------------------------------------------------- read_image


def test_read_image_jpeg_is_rgb(cifar_root):
    path = _first_jpeg(cifar_root)
    image = read_image(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, cv2.imread(str(path))[..., ::-1])


def test_read_image_grayscale_png_gets_three_equal_channels(fashion_png):
    image = read_image(fashion_png)
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    gray = cv2.imread(str(fashion_png), cv2.IMREAD_GRAYSCALE)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_read_image_drops_alpha(tmp_path):
    bgra = np.zeros((5, 7, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0
    path = tmp_path / "rgba.png"
    assert cv2.imwrite(str(path), bgra)
    image = read_image(path)
    assert image.shape == (5, 7, 3)
    assert image[0, 0].tolist() == [30, 20, 10]


def test_read_image_scales_16_bit(tmp_path):
    bgr16 = np.zeros((4, 6, 3), np.uint16)
    bgr16[..., 0], bgr16[..., 1], bgr16[..., 2] = 65535, 257 * 100, 0
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), bgr16)
    image = read_image(path)
    assert image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 100, 255]


def test_read_image_non_ascii_path(tmp_path, cifar_root):
    source = _first_jpeg(cifar_root)
    target = tmp_path / "données 图像" / "é.jpg"
    target.parent.mkdir()
    shutil.copy(source, target)
    np.testing.assert_array_equal(read_image(target), read_image(source))


def test_read_image_applies_exif_orientation(tmp_path, cifar_root):
    image = read_image(_first_jpeg(cifar_root))[:, :20]  # not square
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    # A minimal EXIF block: orientation 6, "rotate 90 degrees clockwise to display".
    tiff = b"MM\x00\x2a" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    plain, rotated = tmp_path / "plain.jpg", tmp_path / "rotated.jpg"
    plain.write_bytes(jpeg)
    rotated.write_bytes(jpeg[:2] + segment + jpeg[2:])
    assert read_image(rotated).shape == (20, 32, 3)
    np.testing.assert_array_equal(read_image(rotated), np.rot90(read_image(plain), -1))


def _bad_files(tmp_path: Path, cifar_root: Path, fashion_png: Path) -> dict[str, Path]:
    jpeg, png = _first_jpeg(cifar_root).read_bytes(), fashion_png.read_bytes()
    contents = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "no_end_marker.jpg": jpeg[:-2],
        "truncated.png": png[: len(png) // 2],
        "garbage.png": b"this is not an image" * 10,
    }
    files = {}
    for name, data in contents.items():
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    files["missing.jpg"] = tmp_path / "missing.jpg"
    return files


@pytest.mark.parametrize(
    "name",
    [
        "empty.jpg",
        "truncated.jpg",
        "no_end_marker.jpg",
        "truncated.png",
        "garbage.png",
        "missing.jpg",
    ],
)
def test_read_image_bad_file_names_it(tmp_path, cifar_root, fashion_png, name):
    path = _bad_files(tmp_path, cifar_root, fashion_png)[name]
    with pytest.raises(BadImageError) as info:
        read_image(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert message.startswith(f"cannot decode image: {path}")
    assert "\n" not in message


# ---------------------------------------------------------------- FolderDataset


def test_folder_dataset_classes_labels_and_items(folder):
    (folder / "cat" / "nested").mkdir()
    shutil.copy(folder / "cat" / "0000.jpg", folder / "cat" / "nested" / "UPPER.JPG")
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "cat" / "._0000.jpg").write_bytes(b"macOS resource fork")
    (folder / ".ipynb_checkpoints").mkdir()
    dataset = FolderDataset(folder)
    assert dataset.classes == CIFAR_CLASSES
    assert len(dataset) == 10 * PER_CLASS + 1
    for index in range(len(dataset)):
        class_folder = Path(dataset.sample_name(index)).relative_to(folder).parts[0]
        assert dataset.classes[dataset.targets[index]] == class_folder
    cat = CIFAR_CLASSES.index("cat")
    originals = sorted(p.name for p in (folder / "cat").glob("[!.]*.jpg"))
    assert len(originals) == PER_CLASS
    assert [
        Path(dataset.sample_name(i)).relative_to(folder / "cat").as_posix()
        for i, target in enumerate(dataset.targets)
        if target == cat
    ] == originals + ["nested/UPPER.JPG"]
    image, label, index = dataset[5]
    assert (label, index) == (dataset.targets[5], 5)
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert torch.equal(image, torch.from_numpy(dataset.load_rgb(5)).permute(2, 0, 1))


def test_folder_dataset_classes_set_label_order(folder):
    order = list(reversed(CIFAR_CLASSES))
    dataset = FolderDataset(folder, classes=order)
    assert dataset.classes == order
    assert Path(dataset.sample_name(0)).parent.name == "truck"
    assert dataset.targets[0] == 0
    with pytest.raises(UserError, match=r"no folder for \['zebra'\]"):
        FolderDataset(folder, classes=CIFAR_CLASSES[:-1] + ["zebra"])


def test_folder_dataset_ann_file(folder):
    (folder / "with space.jpg").write_bytes((folder / "dog" / "0001.jpg").read_bytes())
    ann = folder / "list.txt"
    ann.write_text("cat/0000.jpg 3\n\nwith space.jpg 5\nship/0002.jpg 8\n")
    dataset = FolderDataset(folder, ann_file=ann)
    assert dataset.classes == [str(i) for i in range(9)]
    assert dataset.targets == [3, 5, 8]
    assert dataset.sample_name(1) == os.path.join(folder, "with space.jpg")
    np.testing.assert_array_equal(dataset.load_rgb(1), read_image(folder / "dog" / "0001.jpg"))
    named = FolderDataset(folder, ann_file=ann, classes=CIFAR_CLASSES)
    assert named.classes == CIFAR_CLASSES and named.targets == [3, 5, 8]


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing root", r"image folder not found: .*nowhere"),
        ("empty root", r"no class folders in .*empty"),
        ("empty classes", r"no images in class folder\(s\) cat, zebra under"),
        ("missing ann_file", r"annotation file not found: .*absent\.txt"),
        ("ann missing image", r"list\.txt:2: image not found: .*gone\.jpg \(and 1 more missing\)"),
        ("ann label out of range", r"list\.txt:2: label 10 out of range 0\.\.9"),
        ("ann negative label", r"list\.txt:1: label -1 out of range"),
        ("ann malformed line", r"list\.txt:1: expected 'relative/path label'"),
    ],
)
def test_folder_dataset_errors(tmp_path, folder, case, pattern):
    ann = folder / "list.txt"
    kwargs = {}
    if case == "missing root":
        root = tmp_path / "nowhere"
    elif case == "empty root":
        root = tmp_path / "empty"
        root.mkdir()
        (root / "stray.jpg").write_bytes(b"")
    else:
        root = folder
    if case == "empty classes":
        for name in ("cat", "zebra"):
            shutil.rmtree(folder / name, ignore_errors=True)
            (folder / name).mkdir()
            (folder / name / "readme.txt").write_text("no images here")
    elif case == "missing ann_file":
        kwargs["ann_file"] = folder / "absent.txt"
    elif case.startswith("ann"):
        kwargs["ann_file"] = ann
        lines = {
            "ann missing image": "cat/0000.jpg 3\ncat/gone.jpg 3\ndog/gone.jpg 5\n",
            "ann label out of range": "cat/0000.jpg 3\ncat/0001.jpg 10\n",
            "ann negative label": "cat/0000.jpg -1\n",
            "ann malformed line": "cat/0000.jpg\n",
        }[case]
        ann.write_text(lines)
        if case == "ann label out of range":
            kwargs["classes"] = CIFAR_CLASSES
    with pytest.raises(UserError, match=pattern) as info:
        FolderDataset(root, **kwargs)
    assert "\n" not in str(info.value)


def _break_image(folder: Path) -> Path:
    bad = folder / "cat" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    return bad


def test_bad_image_fails_by_default(folder):
    bad = _break_image(folder)
    dataset = FolderDataset(folder)
    index = dataset.paths.index(str(bad))
    with pytest.raises(BadImageError, match="cannot decode image: .*cat.0001\\.jpg"):
        dataset[index]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failing_pipeline_step_names_the_step_and_the_file(cifar_root, workers):
    """In the main process or in a loader worker: one line with the step, the file and the
    step's own message (a 48 px crop of a 32 px CIFAR image)."""
    from ignite_cls.errors import one_line

    pipeline = [dict(type="RandomHorizontalFlip"), dict(type="RandomCrop", size=48)]
    transform = build_transform(pipeline, name="data.train.pipeline")
    dataset = FolderDataset(cifar_root, transform=transform)
    loader = DataLoader(dataset, batch_size=2, num_workers=workers)
    with pytest.raises(UserError) as caught:
        next(iter(loader))
    line = one_line(caught.value)
    first = dataset.paths[0]
    assert line == (
        f"data.train.pipeline[1] RandomCrop failed on {first}: "
        "Required crop size (48, 48) is larger than input image size (32, 32)."
    )


def test_skip_bad_images_substitutes_next_and_counts(folder):
    bad = _break_image(folder)
    dataset = FolderDataset(folder, skip_bad_images=True)
    index = dataset.paths.index(str(bad))
    image, label, used = dataset[index]
    assert used == index + 1 and label == dataset.targets[index + 1]
    assert torch.equal(image, dataset[index + 1][0])
    assert dataset.skipped_count == 1 and dataset.skipped_names == [str(bad)]
    dataset[index]  # a known bad image is not counted again
    assert dataset.skipped_count == 1


def test_skip_count_is_shared_with_loader_workers(folder):
    bads = [_break_image(folder), folder / "truck" / "0000.jpg"]
    bads[1].write_bytes(b"")
    dataset = FolderDataset(folder, skip_bad_images=True)
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    indices = torch.cat([batch[2] for batch in loader])
    assert len(indices) == len(dataset)
    assert dataset.skipped_count == 2
    assert sorted(dataset.skipped_names) == sorted(map(str, bads))
    assert not {dataset.paths.index(str(b)) for b in bads} & set(indices.tolist())


# ---------------------------------------------------------------- seeded augmentation


def test_augmentation_is_a_function_of_seed_epoch_index(folder):
    first = FolderDataset(folder, transform=build_transform(AUGMENT), seed=7)
    second = FolderDataset(folder, transform=build_transform(AUGMENT), seed=7)
    rng_state = torch.get_rng_state()
    for index in range(6):
        a, b = first[(index, 3)][0], second[(index, 3)][0]
        assert a.dtype == torch.uint8 and a.shape == (3, 32, 32)
        assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), rng_state), "reseeding leaked into the global RNG"
    epochs = [torch.stack([first[(i, epoch)][0] for i in range(6)]) for epoch in range(3)]
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    other_seed = FolderDataset(folder, transform=build_transform(AUGMENT), seed=8)
    assert not torch.equal(epochs[0], torch.stack([other_seed[(i, 0)][0] for i in range(6)]))


def test_augmented_batches_do_not_depend_on_worker_count(folder):
    dataset = FolderDataset(folder, transform=build_transform(AUGMENT), seed=1)

    def batches(num_workers: int) -> list[torch.Tensor]:
        sampler = TrainSampler(len(dataset), batch_size=4, seed=1)
        sampler.set_epoch(2)
        loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=num_workers)
        return [batch[0] for batch in loader]

    in_process, in_workers = batches(0), batches(2)
    assert len(in_process) == len(dataset) // 4
    for a, b in zip(in_process, in_workers, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- samplers


@pytest.mark.parametrize("dataset_len", [12, 10, 3])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_train_sampler_shards_cover_epoch(dataset_len, world_size):
    shards = [
        list(TrainSampler(dataset_len, 1, seed=5, rank=r, world_size=world_size, drop_last=False))
        for r in range(world_size)
    ]
    assert len({len(s) for s in shards}) == 1
    keys = [key for shard in shards for key in shard]
    assert {epoch for _, epoch in keys} == {0}
    counts = collections.Counter(index for index, _ in keys)
    assert set(counts) == set(range(dataset_len))
    padding = -dataset_len % world_size
    assert sum(counts.values()) == dataset_len + padding
    if padding == 0:
        assert set(counts.values()) == {1}


def test_train_sampler_drop_last_gives_whole_equal_batches():
    samplers = [TrainSampler(103, 8, seed=0, rank=r, world_size=3) for r in range(3)]
    for sampler in samplers:
        assert len(sampler) == 32 and sampler.num_batches == 4
        assert len(list(sampler)) == 32
    indices = [index for s in samplers for index, _ in s]
    assert len(set(indices)) == len(indices)


def test_train_sampler_resume_yields_tail_of_epoch():
    sampler = TrainSampler(50, 4, seed=3, rank=1, world_size=2)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, start_batch=2)
    assert list(sampler) == full[8:]
    assert all(epoch == 4 for _, epoch in full)
    sampler.set_epoch(4, start_batch=sampler.num_batches)
    assert list(sampler) == []
    with pytest.raises(ValueError):
        sampler.set_epoch(4, start_batch=sampler.num_batches + 1)


def test_train_sampler_reshuffles_per_epoch_and_repeats_per_seed():
    sampler = TrainSampler(100, 10, seed=0)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append([index for index, _ in sampler])
    assert len({tuple(o) for o in orders}) == 3
    assert all(sorted(o) == list(range(100)) for o in orders)
    again = TrainSampler(100, 10, seed=0)
    again.set_epoch(1)
    assert [index for index, _ in again] == orders[1]


def test_train_sampler_too_small_for_a_batch():
    with pytest.raises(UserError, match="fewer than one batch per process"):
        TrainSampler(10, batch_size=8, seed=0, world_size=2)


@pytest.mark.parametrize("dataset_len", [1, 7, 10])
@pytest.mark.parametrize("world_size", [1, 3, 4])
def test_shard_sampler_counts_each_sample_once(dataset_len, world_size):
    shards = [list(ShardSampler(dataset_len, r, world_size)) for r in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(dataset_len))
    assert [len(ShardSampler(dataset_len, r, world_size)) for r in range(world_size)] == [
        len(s) for s in shards
    ]


# ---------------------------------------------------------------- transforms


def test_build_transform_empty_and_nested():
    assert build_transform([]) is None
    transform = build_transform(
        [
            dict(type="Resize", size=40),
            dict(type="RandomApply", transforms=[dict(type="ColorJitter", brightness=0.4)], p=1.0),
            dict(type="CenterCrop", size=36),
        ]
    )
    out = transform(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert out.dtype == torch.uint8 and out.shape == (3, 36, 36)


@pytest.mark.parametrize(
    "pipeline, pattern",
    [
        (
            [dict(type="RandomCorp", size=32)],
            r"pipeline\[0\]: unknown .* 'RandomCorp'; did you mean RandomCrop",
        ),
        ([dict(type="Normalize", mean=[0], std=[1])], r"Normalize is not allowed.*data\.mean"),
        ([dict(type="ToDtype", dtype=torch.float32)], r"ToDtype is not allowed.*data\.mean"),
        (
            [dict(type="Resize", size=8), dict(type="RandomCrop", sise=32)],
            r"pipeline\[1\]: RandomCrop: .*sise",
        ),
        ([dict(type="Pad", padding=[1, 2, 3])], r"pipeline\[0\]: Pad: Padding must be"),
        (
            [dict(type="RandomApply", transforms=[dict(type="Blurr")])],
            r"pipeline\[0\]\.transforms\[0\]: unknown",
        ),
        ([dict(size=32)], r"pipeline\[0\]: expected dict\(type="),
    ],
)
def test_build_transform_errors(pipeline, pattern):
    with pytest.raises(UserError, match=pattern) as info:
        build_transform(pipeline)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- digits


def test_digits_splits_partition_the_set_deterministically():
    from sklearn.datasets import load_digits

    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.classes == [str(i) for i in range(10)]
    everything = np.round(load_digits().images * (255 / 16)).astype(np.uint8)

    def rows(*sets: DigitsDataset) -> list[bytes]:
        return sorted(s.load_rgb(i)[..., 0].tobytes() for s in sets for i in range(len(s)))

    assert rows(train, test) == sorted(image.tobytes() for image in everything)
    again = DigitsDataset("train")
    assert again.targets == train.targets
    np.testing.assert_array_equal(again.load_rgb(17), train.load_rgb(17))
    image = train.load_rgb(0)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    resized, label, index = DigitsDataset("test", build_transform([dict(type="Resize", size=32)]))[
        3
    ]
    assert resized.shape == (3, 32, 32) and (label, index) == (test.targets[3], 3)
    with pytest.raises(UserError, match="split must be 'train' or 'test'"):
        DigitsDataset("val")


# ---------------------------------------------------------------- building from a config


def _cfg() -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    for split in ("train", "val", "test"):
        cfg["data"][split].update(type="digits", num_workers=0, batch_size=64)
        cfg["data"][split]["pipeline"] = [dict(type="Resize", size=16)]
    return cfg


@pytest.mark.parametrize(
    "split_cfg, data_cfg, pattern",
    [
        (
            dict(type="foldr"),
            {},
            r"data\.type: unknown dataset type 'foldr'; did you mean 'folder'",
        ),
        (dict(type="folder"), {}, r"data\.root is not set"),
        (
            dict(type="cifar10", root="/nowhere"),
            {},
            r"CIFAR10 python pickle batches not found.*/nowhere",
        ),
        (
            dict(type="cifar10", root="/x", ann_file="a.txt"),
            {},
            r"ann_file is only used with type 'folder'",
        ),
        (
            dict(type="digits"),
            dict(classes=["a", "b"]),
            r"data\.classes names 2 classes but digits has 10",
        ),
    ],
)
def test_build_dataset_errors(split_cfg, data_cfg, pattern):
    split = {**DEFAULTS["data"]["test"], **split_cfg}
    data = {**DEFAULTS["data"], **data_cfg}
    with pytest.raises(UserError, match=pattern):
        build_dataset(split, data, 0, None)


def test_build_dataset_folder_with_skip_and_class_names(folder):
    split = {**DEFAULTS["data"]["train"], "root": str(folder)}
    dataset = build_dataset(split, {**DEFAULTS["data"], "skip_bad_images": True}, 0, None)
    assert isinstance(dataset, FolderDataset) and dataset.skip_bad_images
    names = [f"digit {i}" for i in range(10)]
    digits = build_dataset(
        {**split, "type": "digits"}, {**DEFAULTS["data"], "classes": names}, 0, None
    )
    assert digits.classes == names


def test_build_data_digits():
    built = build_data(_cfg(), ["train", "val"], rank=0, world_size=1, pin_memory=False)
    train_set, train_loader = built["train"]
    val_set, val_loader = built["val"]
    assert isinstance(train_loader.sampler, TrainSampler)
    assert len(train_loader) == 1437 // 64
    images, labels, indices = next(iter(train_loader))
    assert images.shape == (64, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and indices.dtype == torch.int64
    assert sum(len(batch[0]) for batch in val_loader) == len(val_set) == 360


def test_build_data_class_checks(folder):
    with pytest.raises(UserError, match="model.num_classes is 7 but the data has 10 classes"):
        cfg = _cfg()
        cfg["model"]["num_classes"] = 7
        build_data(cfg, ["train"], rank=0, world_size=1, pin_memory=False)
    ann = folder / "val.txt"
    ann.write_text("cat/0000.jpg 3\n")
    cfg = _cfg()
    cfg["data"]["val"].update(type="folder", root=str(folder), ann_file=str(ann))
    with pytest.raises(UserError, match=r"data\.val classes differ from data\.train \(4 vs 10"):
        build_data(cfg, ["train", "val"], rank=0, world_size=1, pin_memory=False)


def test_loader_with_workers_over_folder(folder):
    dataset = FolderDataset(folder, transform=build_transform(AUGMENT))
    split_cfg = {**DEFAULTS["data"]["train"], "batch_size": 8, "num_workers": 2}
    loader = build_loader(
        dataset, split_cfg, train=True, seed=0, rank=0, world_size=1, pin_memory=False
    )
    batches = list(loader)
    assert len(batches) == len(dataset) // 8 == loader.sampler.num_batches
    for images, labels, indices in batches:
        assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
        assert labels.tolist() == [dataset.targets[i] for i in indices.tolist()]
    eval_loader = build_loader(
        dataset, split_cfg, train=False, seed=0, rank=1, world_size=2, pin_memory=False
    )
    indices = torch.cat([batch[2] for batch in eval_loader]).tolist()
    assert indices == list(range(1, len(dataset), 2))
