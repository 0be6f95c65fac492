"""The only places where ignite_cls reaches into another library's private parts, each one
because no public API does the job; ``tests/unit/test_compat.py`` checks each against the
installed versions, so an upgrade that changes them fails there, not in a user's run."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the tracking agent imports this module without PyTorch
    from ignite.handlers import ProgressBar
    from torch.utils.data import DataLoader


def close_progress_bar(bar: ProgressBar) -> None:
    """Close the tqdm bar that Ignite's ProgressBar holds (``bar.pbar``) and forget it.

    Ignite closes it only at the end of the bar's epoch; a run that ends in an exception
    must close it, or tqdm redraws it at exit, after the message that says why the run
    stopped."""
    if bar.pbar is not None:
        bar.pbar.close()
        bar.pbar = None


def stop_loader_workers(loaders: Iterable[DataLoader]) -> None:
    """Shut the loaders' persistent worker processes down now (the DataLoader's iterator's
    ``_shutdown_workers``, which its ``__del__`` also calls).

    The workers ignore SIGTERM (the main process decides how to stop, checkpoint first), so
    multiprocessing's exit handler, which terminates them and then joins them, would wait
    for them forever."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def warm_mlflow_requirements_check() -> None:
    """Let MLflow build, now, the table of installed packages it checks a model's
    requirements against (``mlflow.utils.requirements_utils``). It builds it once per
    process, the first time a model is logged, by reading every installed distribution's
    file list: seconds with torch's CUDA wheels installed."""
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    warn_dependency_requirement_mismatches(["mlflow"])


def log_pyfunc_model_unchecked(**log_model_args: Any) -> None:
    """``mlflow.pyfunc.log_model(**log_model_args)`` for a model from code, without the check
    that loads the logged model and predicts its input example (``Model.log``'s
    ``validate_serving_input``, which ``pyfunc.log_model`` does not pass on): loading this
    model imports PyTorch, seconds of CPU in the tracking agent, and the example's answer was
    computed by the same code when the model was prepared (``serving.py``)."""
    import mlflow.pyfunc
    from mlflow.models import Model

    def save_model(validate_serving_input: bool, **save_args: Any) -> None:
        mlflow.pyfunc.save_model(**save_args)

    Model.log(
        artifact_path=None,
        flavor=SimpleNamespace(save_model=save_model),
        flavor_name="pyfunc.ModelFromCode",
        validate_serving_input=False,
        **log_model_args,
    )
