# ResNet-50 on ImageNet-style folders: 224 px, 32 x 8 GPUs, 100 epochs.
_base_ = [
    "_base_/models/resnet50.py",
    "_base_/datasets/imagenet_folder.py",
    "_base_/schedules/imagenet_bs256.py",
    "_base_/default_runtime.py",
]
