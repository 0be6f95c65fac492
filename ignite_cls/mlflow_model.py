"""The code of the MLflow model a train run logs (MLflow's "models from code": loading runs
this file instead of unpickling an object). PyTorch is imported when the model is loaded,
not when MLflow reads this file to log the model."""

import base64

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from ignite_cls.serving import IMAGE_COLUMN


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    """Image file bytes in, one prediction record per image out (``serving.py``)."""

    def load_context(self, context) -> None:
        from ignite_cls.inference import Classifier

        self.classifier = Classifier.from_checkpoint(context.artifacts["checkpoint"], device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        from ignite_cls.data.images import decode_image
        from ignite_cls.inference import TOPK

        images = []
        for number, data in enumerate(model_input[IMAGE_COLUMN]):
            if isinstance(data, str):  # base64 text, as in a JSON request
                data = base64.b64decode(data)
            images.append(decode_image(bytes(data), f"{IMAGE_COLUMN} of record {number}"))
        topk = int((params or {}).get("topk", TOPK))
        return pd.DataFrame(self.classifier.predict(images, topk=topk))


mlflow.models.set_model(ImageClassifierModel())
