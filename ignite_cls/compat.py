"""The only places where ignite_cls reaches into another library's private parts, each one
because no public API does the job; ``tests/unit/test_compat.py`` checks each against the
installed versions, so an upgrade that changes them fails there, not in a user's run."""

from __future__ import annotations

from collections.abc import Iterable

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
