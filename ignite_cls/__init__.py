"""ignite_cls: train and test image classifiers with PyTorch Ignite, python-fire and MLflow.

``from ignite_cls import Classifier`` gives the trained-model API (``inference.py``); it is
imported on first use, so ``python -m ignite_cls --help`` stays free of torch.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Classifier":
        from ignite_cls.inference import Classifier

        return Classifier
    raise AttributeError(f"module 'ignite_cls' has no attribute {name!r}")
