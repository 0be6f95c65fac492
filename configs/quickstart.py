# The embedded default: a small network on scikit-learn's bundled digits, no download,
# a few minutes on two CPU cores.
_base_ = ["_base_/datasets/digits.py", "_base_/default_runtime.py"]
model = dict(arch="resnet18", num_classes=10)
optimizer = dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
schedule = dict(max_epochs=10, val_interval=1, lr_policy=dict(type="cosine"), warmup_epochs=1)
checkpoint = dict(interval=1, keep=2, save_best="accuracy/top1")
