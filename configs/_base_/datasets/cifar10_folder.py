# CIFAR-10 as image folders (<root>/{train,test}/<class>/*.png|jpg), MMPretrain's augmentation.
_root = "data/cifar10"
data = dict(
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    train=dict(
        type="folder",
        root=_root + "/train",
        batch_size=16,
        num_workers=2,
        pipeline=[
            dict(type="RandomCrop", size=32, padding=4),
            dict(type="RandomHorizontalFlip", p=0.5),
        ],
    ),
    val=dict(type="folder", root=_root + "/test", batch_size=64, num_workers=2, pipeline=[]),
    test=dict(type="folder", root=_root + "/test", batch_size=64, num_workers=2, pipeline=[]),
)
