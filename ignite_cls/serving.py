"""The trained model as MLflow serves it.

``mlflow models serve -m runs:/<run id>/model --env-manager local`` answers
``POST /invocations`` with ``{"dataframe_records": [{"image": "<base64 of an image file>"}]}``
by one record per image: ``class``, ``index``, ``score`` and the top-K (``topk_classes``,
``topk_indices``, ``topk_scores``; K is the ``topk`` param, default 5). In-process,
``mlflow.pyfunc.load_model(uri).predict(pandas.DataFrame({"image": [file bytes, ...]}))``
gives the same records. Decoding and preprocessing are ``Classifier``'s, so the answers are
``predict``'s; ``load_model(uri).unwrap_python_model().classifier`` is that ``Classifier``
(``.torch_module()`` the plain torch module).

The model holds a slim checkpoint (weights, class names, config) and this package's code
(``mlflow_model.py`` builds it on loading, nothing is unpickled), so loading it needs only
this project's dependencies.
"""

from __future__ import annotations

import base64
import importlib.metadata
import shutil
import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from ignite_cls.data.images import decode_image
from ignite_cls.inference import TOPK, Classifier, save_for_inference

IMAGE_COLUMN = "image"
PACKAGE_DIR = Path(__file__).resolve().parent


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    """Image file bytes in, one prediction record per image out."""

    def load_context(self, context) -> None:
        self.classifier = Classifier.from_checkpoint(context.artifacts["checkpoint"], device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        images = []
        for number, data in enumerate(model_input[IMAGE_COLUMN]):
            if isinstance(data, str):  # base64 text, as in a JSON request
                data = base64.b64decode(data)
            images.append(decode_image(bytes(data), f"{IMAGE_COLUMN} of record {number}"))
        topk = int((params or {}).get("topk", TOPK))
        return pd.DataFrame(self.classifier.predict(images, topk=topk))


def requirements() -> list[str]:
    """This project's dependencies, pinned to the installed versions."""
    names = ["torch", "torchvision", "pytorch-ignite", "mlflow", "opencv-python", "numpy"]
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def log_served_model(
    cfg: dict, state: dict, classes: list[str], example_image: bytes, weights: str
) -> None:
    """``state`` as the open MLflow run's ``model`` (see the module docstring); ``weights``
    says which weights they are, ``example_image`` is an image file's bytes."""
    from mlflow.models import infer_signature

    example = pd.DataFrame({IMAGE_COLUMN: [example_image]})
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_for_inference(Path(folder) / "model.pt", state, cfg, classes)
        code = Path(folder) / "ignite_cls"
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__"))
        probe = ImageClassifierModel()  # what loading the logged model gives, for its output
        probe.classifier = Classifier.from_checkpoint(checkpoint, device="cpu")
        output = probe.predict(None, example)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PACKAGE_DIR / "mlflow_model.py"),
            artifacts={"checkpoint": str(checkpoint)},
            code_paths=[str(code)],
            signature=infer_signature(example, output, params={"topk": TOPK}),
            input_example=example,
            pip_requirements=requirements(),
            metadata={"classes": classes, "weights": weights},
        )
