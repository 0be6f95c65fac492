"""A trained classifier as a Python object, for new images::

    from ignite_cls import Classifier
    clf = Classifier.from_checkpoint("runs/r18/best_accuracy_top1_epoch_180.pt")
    clf.predict(["cat.jpg", "dog.png"])  # or HxWx3 uint8 RGB arrays

Images go through what ``test`` does with them: OpenCV decoding, the config's test pipeline
(``data.test.pipeline``), normalisation with ``data.mean``/``data.std`` on the device, the
config's precision (``amp``). ``predict`` (the command), the MLflow model and ``export`` are
built on it, so they all give the same answers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from ignite_cls.checkpoint_io import load_checkpoint, model_state
from ignite_cls.config import check_config, load_config, setting, with_defaults
from ignite_cls.data.images import read_image
from ignite_cls.data.transforms import StepFailed, build_transform
from ignite_cls.engines import StepSettings
from ignite_cls.errors import UserError
from ignite_cls.models import build_trained_model

TOPK = 5


def top_predictions(
    probabilities: torch.Tensor, classes: Sequence[str], topk: int = TOPK
) -> list[dict[str, Any]]:
    """One record per row of ``probabilities``: the predicted ``index``, ``class`` and
    ``score``, and the ``topk`` best as ``topk_indices``, ``topk_classes``, ``topk_scores``."""
    if int(topk) < 1:
        raise UserError(f"--topk must be 1 or more, got {topk}")
    k = min(int(topk), len(classes))
    scores, indices = probabilities.float().topk(k, dim=1)
    return [
        {
            "index": best[0],
            "class": classes[best[0]],
            "score": values[0],
            "topk_indices": best,
            "topk_classes": [classes[i] for i in best],
            "topk_scores": values,
        }
        for values, best in zip(scores.tolist(), indices.tolist(), strict=True)
    ]


def checkpoint_config(checkpoint: dict, source: str, config: str | os.PathLike | dict | None):
    """The config to use: ``config`` (a file or a merged dict), else the checkpoint's own."""
    if config is None:
        config = (checkpoint.get("run_state") or {}).get("config")
        if config is None:
            raise UserError(f"checkpoint {source} carries no config: give the config file")
    cfg = with_defaults(config if isinstance(config, dict) else load_config(config))
    check_config(cfg)
    return cfg


class Classifier:
    """A model with its class names, test pipeline and precision, on one device."""

    def __init__(
        self,
        model: nn.Module,
        cfg: dict,
        classes: list[str],
        settings: StepSettings,
        train_run_id: str | None = None,
    ):
        self.model = model.eval()
        self.cfg = cfg
        self.classes = list(classes)
        self.settings = settings
        self.train_run_id = train_run_id  # the MLflow run that wrote the checkpoint
        self.transform = build_transform(
            setting(cfg, "data.test.pipeline"), name="data.test.pipeline"
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        config: str | os.PathLike | dict | None = None,
        device: str | torch.device | None = None,
    ) -> Classifier:
        """Load a checkpoint (path or URL). Its config and class names travel inside it, so
        ``config`` is needed only to change the config (a file, or a merged dict).
        ``device``: default CUDA when available, else the CPU."""
        source = str(checkpoint)
        loaded = load_checkpoint(checkpoint)
        cfg = checkpoint_config(loaded, source, config)
        run_state = loaded.get("run_state") or {}
        classes = run_state.get("classes") or setting(cfg, "data.classes")
        if not classes:
            raise UserError(f"checkpoint {source} names no classes: set data.classes")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        arch = {**cfg["model"], "compile": False}
        state = model_state(loaded, source, setting(cfg, "ema.use_for_inference"))
        model = build_trained_model(arch, len(classes), state, source)
        settings = StepSettings.from_config(cfg, device)
        return cls(model.to(device), cfg, classes, settings, run_state.get("mlflow_run_id"))

    def preprocess(self, image: str | os.PathLike | np.ndarray) -> torch.Tensor:
        """An image file or an HxWx3 uint8 RGB array, through the test pipeline: CHW uint8."""
        rgb = read_image(image) if isinstance(image, str | os.PathLike) else image
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3):
            raise UserError("images must be file paths or HxWx3 uint8 RGB arrays")
        tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        if self.transform is None:
            return tensor
        try:
            return self.transform(tensor)
        except StepFailed as e:
            name = image if isinstance(image, str | os.PathLike) else "an image array"
            raise UserError(f"{e.step} failed on {name}: {e.reason}") from e

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) on the CPU for a uint8 batch (N, 3, H, W)."""
        labels = torch.zeros(len(images), dtype=torch.long)
        batch, _, _ = self.settings.prepare((images, labels, None))
        with self.settings.autocast():
            logits = self.model(batch)
        return logits.float().softmax(1).cpu()

    def predict(
        self,
        images: Sequence[str | os.PathLike | np.ndarray],
        topk: int = TOPK,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """One record per image (see ``top_predictions``), in order; images given by path
        also get their ``img_path``."""
        batch_size = batch_size or setting(self.cfg, "data.test.batch_size")
        scores = []
        for start in range(0, len(images), batch_size):
            tensors = [self.preprocess(image) for image in images[start : start + batch_size]]
            if len({t.shape for t in tensors}) == 1:
                scores.append(self.probabilities(torch.stack(tensors)))
            else:  # a pipeline without a fixed output size: one image at a time
                scores += [self.probabilities(t[None]) for t in tensors]
        if not scores:
            return []
        records = top_predictions(torch.cat(scores), self.classes, topk)
        for image, record in zip(images, records, strict=True):
            if isinstance(image, str | os.PathLike):
                record["img_path"] = str(image)
        return records

    def torch_module(self) -> nn.Module:
        """The model as a plain module on the CPU: float32 RGB (N, 3, H, W) on the 0-255
        scale in, logits out, normalisation inside (what ``export`` writes)."""
        mean, std = setting(self.cfg, "data.mean"), setting(self.cfg, "data.std")
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        plain = {**self.cfg["model"], "channels_last": False}
        network = build_trained_model(plain, len(self.classes), state, "the classifier")
        return nn.Sequential(v2.Normalize(mean, std), network).eval()


def save_for_inference(path: str | os.PathLike, state: dict, cfg: dict, classes: list[str]) -> Path:
    """A slim checkpoint (weights, class names, config) that ``from_checkpoint`` loads; a
    temporary file, so written plainly (``checkpoint_io.save_checkpoint`` makes files last)."""
    payload = {"model": {k: v.detach().cpu() for k, v in state.items()}}
    payload["run_state"] = {"classes": list(classes), "config": cfg}
    torch.save(payload, path)
    return Path(path)
