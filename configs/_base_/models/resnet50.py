model = dict(arch="resnet50", num_classes=1000)
