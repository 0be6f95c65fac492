# Shared runtime settings: seed, logging, checkpoints, MLflow.
seed = 0
log = dict(interval=10)
checkpoint = dict(interval=1, keep=3, save_best="accuracy/top1")
mlflow = dict(tracking_uri=None, experiment=None)
