model = dict(arch="resnet50", num_classes=10, cifar_stem=True)
