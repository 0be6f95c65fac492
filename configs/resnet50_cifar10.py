# ResNet-50 (CIFAR stem) on CIFAR-10: 200 epochs, SGD 0.1, multistep 100/150, 16 x 8 GPUs.
_base_ = [
    "_base_/models/resnet50_cifar.py",
    "_base_/datasets/cifar10_folder.py",
    "_base_/schedules/cifar10_bs128.py",
    "_base_/default_runtime.py",
]
