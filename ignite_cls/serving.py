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

Two steps, in two processes: the command, which has PyTorch loaded, writes the model's files
into a folder as soon as a best checkpoint is written (``prepare_served_model``); the
tracking agent logs that folder (``log_served_model``) without importing PyTorch.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

IMAGE_COLUMN = "image"
PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_FILE, EXAMPLE_FILE, ANSWER_FILE = "model.pt", "example.png", "example_answer.json"


def prepare_served_model(checkpoint: str | Path, example_image: bytes, folder: Path) -> Path:
    """Write the slim checkpoint of ``checkpoint``, the example image and the model's answer
    to it (the logged signature's output) into ``folder``."""
    from ignite_cls.checkpoint_io import load_checkpoint, model_state
    from ignite_cls.data.images import decode_image
    from ignite_cls.inference import TOPK, Classifier, checkpoint_config, save_for_inference

    loaded = load_checkpoint(checkpoint)
    classes = loaded["run_state"]["classes"]
    cfg = checkpoint_config(loaded, str(checkpoint), None)
    folder.mkdir(parents=True, exist_ok=True)
    weights = save_for_inference(
        folder / WEIGHTS_FILE,
        model_state(loaded, str(checkpoint), cfg["ema"]["use_for_inference"]),
        loaded["run_state"]["config"],
        classes,
    )
    answer = Classifier.from_checkpoint(weights, device="cpu").predict(
        [decode_image(example_image, "the example image")]
    )
    (folder / EXAMPLE_FILE).write_bytes(example_image)
    (folder / ANSWER_FILE).write_text(
        json.dumps({"classes": classes, "answer": answer, "topk": TOPK})
    )
    return folder


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


def log_served_model(folder: Path, weights: str) -> None:
    """The model ``prepare_served_model`` wrote into ``folder``, into the open MLflow run as
    ``model``; ``weights`` says which weights they are. The example's answer was computed
    when the folder was written, so MLflow is not asked to load the model again."""
    import pandas as pd
    from mlflow.models import infer_signature

    from ignite_cls.compat import log_pyfunc_model_unchecked

    code = folder / "ignite_cls"
    shutil.rmtree(code, ignore_errors=True)
    shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__"))
    example = pd.DataFrame({IMAGE_COLUMN: [(folder / EXAMPLE_FILE).read_bytes()]})
    facts = json.loads((folder / ANSWER_FILE).read_text())
    answer = pd.DataFrame(facts["answer"])
    log_pyfunc_model_unchecked(
        name="model",
        python_model=str(PACKAGE_DIR / "mlflow_model.py"),
        artifacts={"checkpoint": str(folder / WEIGHTS_FILE)},
        code_paths=[str(code)],
        signature=infer_signature(example, answer, params={"topk": facts["topk"]}),
        input_example=example,
        pip_requirements=requirements(),
        metadata={"classes": facts["classes"], "weights": weights},
    )
