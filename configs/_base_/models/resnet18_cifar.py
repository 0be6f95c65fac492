model = dict(arch="resnet18", num_classes=10, cifar_stem=True)
