# MMPretrain's ImageNet schedule: SGD 0.1, 100 epochs, lr x0.1 at 30, 60, 90; 32 x 8 = 256.
optimizer = dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4)
schedule = dict(
    max_epochs=100,
    val_interval=1,
    lr_policy=dict(type="multistep", milestones=[30, 60, 90], gamma=0.1),
)
auto_scale_lr = dict(base_batch_size=256)
