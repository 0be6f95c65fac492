# ResNet-50 pretrained on ImageNet (torchvision's IMAGENET1K_V2 weights, downloaded once into
# $TORCH_HOME/hub/checkpoints) fine-tuned on any class-per-folder dataset
# (data/{train,val}/<class>/*.jpg) at 224 px. The 1000-class head is replaced by one for the
# data's classes; the stem (conv1, bn1) stays frozen, its BatchNorm statistics included.
_base_ = [
    "_base_/models/resnet50.py",
    "_base_/datasets/imagenet_folder.py",  # RandomResizedCrop 224 + flip; Resize 256, CenterCrop 224
    "_base_/default_runtime.py",
]

model = dict(
    num_classes=None,  # the number of class folders
    pretrained="IMAGENET1K_V2",
    freeze=["conv1", "bn1"],
)

data = dict(
    train=dict(root="data/train"),
    val=dict(root="data/val"),
    test=dict(root="data/val"),
)

# AdamW at 1e-3 for a total batch of 256 (32 per GPU x 8; --auto-scale-lr scales it to
# yours), after a warm-up and down a cosine. SGD works too, at a tenth of the from-scratch
# ImageNet lr: dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4).
optimizer = dict(type="AdamW", lr=1e-3, weight_decay=0.05)
auto_scale_lr = dict(base_batch_size=256)
schedule = dict(
    max_epochs=30,
    val_interval=1,
    lr_policy=dict(type="cosine"),
    warmup_epochs=1,  # from lr x 0.01: a new random head's first gradients are large
    warmup_ratio=0.01,
)
loss = dict(label_smoothing=0.1)

# The average of the weights is what test, predict and export use. Momentum 0.0002 averages
# over about 5000 optimizer steps: on a small dataset (a run of fewer steps) raise it.
ema = dict(enabled=True, momentum=0.0002, warmup_iters=1000, momentum_warmup=0.1)
