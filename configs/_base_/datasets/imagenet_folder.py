# ImageNet-style folders (<root>/{train,val}/<class>/*.JPEG), 224 px, MMPretrain's pipeline.
_root = "data/imagenet"
data = dict(
    train=dict(
        type="folder",
        root=_root + "/train",
        batch_size=32,
        num_workers=5,
        pipeline=[
            dict(type="RandomResizedCrop", size=224, antialias=True),
            dict(type="RandomHorizontalFlip", p=0.5),
        ],
    ),
    val=dict(
        type="folder",
        root=_root + "/val",
        batch_size=32,
        num_workers=5,
        pipeline=[dict(type="Resize", size=256, antialias=True), dict(type="CenterCrop", size=224)],
    ),
    test=dict(
        type="folder",
        root=_root + "/val",
        batch_size=32,
        num_workers=5,
        pipeline=[dict(type="Resize", size=256, antialias=True), dict(type="CenterCrop", size=224)],
    ),
)
