# The work of the whole-command benchmark: ResNet-18 (standard stem) on CIFAR-10 JPEGs at
# 32 px, batch 64, SGD 0.05 with momentum 0.9, constant lr, 2 epochs, validation and a
# checkpoint after each. Give the folders with --cfg-options data.train.root=...
# data.val.root=... data.test.root=... (e.g. the first 200 train / 50 test images per class).
_base_ = ["../configs/resnet18_cifar10.py"]
model = dict(cifar_stem=False)
data = dict(
    train=dict(batch_size=64, num_workers=2),
    val=dict(batch_size=64, num_workers=2),
    test=dict(batch_size=64, num_workers=2),
)
optimizer = dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=0.0)
schedule = dict(max_epochs=2, lr_policy=dict(_delete_=True, type="constant"))
checkpoint = dict(interval=1, keep=2)
