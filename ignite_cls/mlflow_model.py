"""The code of the MLflow model a train run logs (MLflow's "models from code": loading runs
this file instead of unpickling an object)."""

import mlflow.models

from ignite_cls.serving import ImageClassifierModel

mlflow.models.set_model(ImageClassifierModel())
