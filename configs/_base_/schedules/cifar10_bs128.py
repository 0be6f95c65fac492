# MMPretrain's CIFAR-10 schedule: SGD 0.1, 200 epochs, lr x0.1 at 100 and 150; 16 x 8 = 128.
optimizer = dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4)
schedule = dict(
    max_epochs=200,
    val_interval=1,
    lr_policy=dict(type="multistep", milestones=[100, 150], gamma=0.1),
)
auto_scale_lr = dict(base_batch_size=128)
