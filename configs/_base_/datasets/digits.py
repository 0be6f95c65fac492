# scikit-learn's bundled 8x8 digits (no download), upscaled to 32 px without smoothing.
_resize = dict(type="Resize", size=32, interpolation=0)  # 0: nearest
data = dict(
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    train=dict(
        type="digits",
        split="train",
        batch_size=64,
        num_workers=0,
        pipeline=[_resize, dict(type="RandomAffine", degrees=8, translate=(0.08, 0.08))],
    ),
    val=dict(type="digits", split="test", batch_size=256, num_workers=0, pipeline=[_resize]),
    test=dict(type="digits", split="test", batch_size=256, num_workers=0, pipeline=[_resize]),
)
