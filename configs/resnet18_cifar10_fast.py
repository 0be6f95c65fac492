# ResNet-18 (CIFAR stem) on CIFAR-10 in a few seconds an epoch on one modern GPU: the data
# decoded once and kept on the device (crop + flip there), bf16 autocast, channels_last,
# batch 512, SGD nesterov with a one-cycle schedule, label smoothing.
# A longer schedule is one change: --cfg-options schedule.max_epochs=64
_base_ = ["resnet18_cifar10.py"]
model = dict(channels_last=True)
data = dict(
    gpu_resident=True,
    train=dict(batch_size=512, num_workers=0),
    val=dict(batch_size=1024, num_workers=0),
    test=dict(batch_size=1024, num_workers=0),
)
amp = dict(enabled=True, dtype="bfloat16")
optimizer = dict(type="SGD", lr=0.4, momentum=0.9, weight_decay=5e-4, nesterov=True)
schedule = dict(
    max_epochs=24,
    val_interval=24,
    lr_policy=dict(_delete_=True, type="onecycle", pct_start=0.25, anneal_strategy="linear"),
)
loss = dict(label_smoothing=0.1)
checkpoint = dict(interval=24, keep=1)
auto_scale_lr = dict(base_batch_size=512)
log = dict(interval=50)
