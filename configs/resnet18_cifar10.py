# ResNet-18 (CIFAR stem) on CIFAR-10 folders, MMPretrain's 200-epoch recipe.
_base_ = [
    "_base_/models/resnet18_cifar.py",
    "_base_/datasets/cifar10_folder.py",
    "_base_/schedules/cifar10_bs128.py",
    "_base_/default_runtime.py",
]
