"""The exceptions that end a command on purpose, and how the process reports them.

A ``UserError`` is a problem the user can fix (bad config, bad data, bad flags): one line,
exit code 2. ``CheckFailed``: a command's check of its own result failed: one line, exit
code 1. ``Interrupted`` is a clean stop on a signal: 128 + the signal number, as
schedulers expect. Anything else is a bug and keeps its traceback. The entry point and the
spawned workers both end through ``report``, so the messages and codes are the same however
the process was started. Stdlib only: the light CLI imports it.
"""

from __future__ import annotations

import os
import signal
import sys

DEBUG_VARIABLE = "IGNITE_CLS_DEBUG"  # =1: raise instead of printing one line


class UserError(Exception):
    """A problem the user can fix; its message is shown on one line, without a traceback
    (not at all when ``silent``: another rank of the job printed its error)."""

    silent = False


class CheckFailed(Exception):
    """A command's check of its own output failed (e.g. an exported model disagrees with
    PyTorch): one line, exit code 1."""


class Interrupted(Exception):
    """Training stopped on SIGTERM or Ctrl-C after writing a checkpoint; the process exits
    with 128 + the signal number so schedulers see it did not finish."""

    def __init__(self, signum: int, iteration: int, checkpoint: str | None):
        self.signum = signum
        self.iteration = iteration
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        saved = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (rank 0 saves it)"
        super().__init__(
            f"stopped by {name} at iteration {iteration}; {saved}; continue with --resume"
        )


def one_line(error: BaseException) -> str:
    """The error's message on one line.

    An error re-raised from a DataLoader worker carries the worker's traceback, ending with
    ``module.Type: message``: that last line, without its type, is the message. Any other
    multi-line message (MLflow, torch.load) is represented by its first line.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if any("Traceback (most recent call last)" in line for line in lines):
        prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
        return lines[-1].removeprefix(prefix)
    return lines[0]


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator's: CUDA's ``torch.OutOfMemoryError`` or the CPU
    allocator's RuntimeError (told by name and text: this module does not import torch)."""
    return type(error).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(error)


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE) == "1"


def report(error: BaseException) -> int | None:
    """Print the one line that ends a command stopped by ``error`` and return its exit code;
    None when ``error`` is not such a stop (a bug, or a user error while debugging)."""
    if isinstance(error, UserError) and not debugging():
        message, code = f"error: {one_line(error)}", 2
    elif isinstance(error, CheckFailed) and not debugging():
        message, code = f"error: {one_line(error)}", 1
    elif isinstance(error, Interrupted):
        message, code = f"interrupted: {error}", 128 + error.signum
    elif isinstance(error, KeyboardInterrupt):
        message, code = "interrupted", 128 + signal.SIGINT
    else:
        return None
    if not getattr(error, "silent", False):
        print(message, file=sys.stderr, flush=True)
    return code


REPORTED = (UserError, CheckFailed, Interrupted, KeyboardInterrupt)  # what ``report`` ends
