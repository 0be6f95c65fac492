"""ignite_cls: train and test image classifiers with PyTorch Ignite, python-fire and MLflow."""

__version__ = "0.1.0"
