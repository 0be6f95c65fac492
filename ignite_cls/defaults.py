"""Every config key ignite_cls reads, with its default value.

This dict is the contract between config files, `--cfg-options` and the code: a key that is
not here is reported as unknown (with the closest known key), and a value whose type
differs from the default's is rejected. Subtrees listed in OPEN_KEYS take any keys (they are
checked by the code that uses them, e.g. optimizer arguments against the optimizer class)
and are taken whole from the user's config instead of being merged with the default.
"""

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def _split(split: str, batch_size: int = 32) -> dict:
    return dict(
        type="folder",  # folder | cifar10 | cifar100 | digits
        root=None,  # folder: the split's folder; cifar: the folder holding cifar-10-batches-py
        ann_file=None,  # folder only: lines of "relative/path label"
        split=split,  # cifar / digits: "train" or "test"
        batch_size=batch_size,  # per process
        num_workers=2,
        pipeline=[],  # torchvision.transforms.v2 steps: dict(type="RandomCrop", size=32, ...)
    )


DEFAULTS = dict(
    seed=0,
    work_dir=None,  # --work-dir; default runs/<config stem>
    resume=None,  # --resume: None, "auto" (latest in work dir) or a path / URL
    launcher="none",  # --launcher: none | pytorch | slurm | mpi
    nproc_per_node=1,  # --nproc-per-node
    dist=dict(
        stall_timeout=600.0,  # s without a finished iteration: the job ends, stacks logged
    ),
    model=dict(
        arch="resnet18",  # any torchvision classification model name
        num_classes=None,  # None: the number of classes in the data
        cifar_stem=False,  # 3x3 stride-1 first conv, no max-pool (32 px inputs)
        pretrained=None,  # torchvision weights name ("IMAGENET1K_V1", "DEFAULT"), path or URL
        freeze=[],  # module-name prefixes ("conv1", "layer1"): not trained, BatchNorm in eval
        channels_last=False,
        compile=False,  # torch.compile
    ),
    data=dict(
        classes=None,  # class names; None: from the folder names / dataset
        mean=IMAGENET_MEAN,  # on the 0-255 scale, applied on the device
        std=IMAGENET_STD,
        skip_bad_images=False,  # skip unreadable images (with a count) instead of failing
        gpu_resident=False,  # keep the decoded dataset on the device, augment there
        batch_augments=[],  # MixUp / CutMix on training batches, one picked per batch
        train=_split("train"),
        val=_split("test"),
        test=_split("test"),
    ),
    optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4),
    schedule=dict(
        max_epochs=10,
        val_interval=1,  # validate every N epochs
        validate=True,  # --no-validate sets False
        lr_policy=dict(
            type="multistep", milestones=[], gamma=0.1
        ),  # step|multistep|cosine|onecycle|constant
        warmup_epochs=0.0,  # linear warm-up length (fractions allowed)
        warmup_ratio=0.1,  # warm-up starts at lr * warmup_ratio
        early_stop=dict(
            metric=None,  # validation metric to watch ("accuracy/top1", "loss"); None: off
            patience=5,  # validations without improvement before training stops
            min_delta=0.0,  # the smallest change that counts as an improvement
        ),
    ),
    grad=dict(
        accumulate=1,  # batches per optimizer step (the LR schedule counts optimizer steps)
        max_norm=None,  # clip the gradients' total norm to this; None: no clipping
    ),
    ema=dict(
        enabled=False,  # an exponential moving average of the weights, validated beside them
        momentum=0.0002,  # weight of the newest weights per optimizer step
        warmup_iters=0,  # optimizer steps over which the momentum falls from momentum_warmup
        momentum_warmup=0.1,
        use_for_inference=True,  # test, predict, export, the MLflow model: EMA weights if saved
    ),
    auto_scale_lr=dict(enable=False, base_batch_size=None),  # --auto-scale-lr sets enable
    amp=dict(enabled=False, dtype=None),  # --amp; dtype None: float16 on CUDA, bfloat16 on CPU
    loss=dict(label_smoothing=0.0),
    checkpoint=dict(
        interval=1,  # save every N epochs
        interval_iters=None,  # also save every N iterations (mid-epoch checkpoints)
        keep=3,  # keep the newest N periodic checkpoints
        save_best="accuracy/top1",  # metric for best_*.pt; None disables
    ),
    log=dict(interval=10),  # iterations between loss / lr records
    mlflow=dict(
        enabled=True,  # False: no MLflow run at all (e.g. to measure tracking's cost)
        tracking_uri=None,  # None: MLFLOW_TRACKING_URI or MLflow's default (./mlflow.db)
        experiment=None,  # None: the config file stem
        run_name=None,
        log_model=True,  # log the best model as an MLflow model
        log_checkpoint=True,  # log the best checkpoint file as an artifact
    ),
    predict=dict(
        out=None,  # predict --out: .csv, .json, .pkl
        topk=5,  # predict --topk: classes listed per image
    ),
    export=dict(
        format="onnx",  # export --format: onnx | torchscript
        out=None,  # export --out
    ),
    test=dict(
        out=None,  # --out
        out_item=None,  # --out-item: pred | metrics (pred when --out is given)
        show_dir=None,  # --show-dir
        show=False,  # --show
        interval=1,  # --interval
        wait_time=2.0,  # --wait-time
    ),
)

OPEN_KEYS = frozenset({"optimizer", "schedule.lr_policy"})
